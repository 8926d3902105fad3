"""The one training loop: schedule, optimizer, mixed precision, token-normalised gradient
accumulation, divergence stop, progress lines and resume. Pretraining and fine-tuning both use it.

A plain AdamW loop rather than transformers.Trainer: batches are indexed by step (so a run can
branch or resume at any step and see the same data), and the learning rate is a pure function
of the step. On these tiny models Trainer and a plain loop ran at the same speed when the
project was designed; benchmark P2 compares this loop with a bare PyTorch one.

Precision: parameters and optimizer state stay float32 (the master weights); with
`dtype: bfloat16` only the forward and backward run under bf16 autocast. AdamW on bf16
parameters would round every update smaller than half a bf16 spacing away (at lr 2e-6 most of
them), so small-learning-rate fine-tunes would barely move.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from overtrain.training.distributed import Group
from overtrain.training.preemption import Preempted, StopRequest

IGNORE = -100  # label of tokens that carry no loss (prompt, padding, <bos>)


def warmup_steps_for(total_steps: int, warmup_steps: int) -> int:
    """Warmup shrinks for short budgets so the decay never starts inside it (≤ 10% of the run)."""
    return max(1, min(warmup_steps, total_steps // 10))


def learning_rate(
    step: int,
    total_steps: int,
    peak: float,
    schedule: str,
    warmup_steps: int,
    decay_fraction: float = 0.2,
    final_fraction: float = 0.0,
) -> float:
    """LR at `step` (0-based) of a run of `total_steps`: linear warmup, then the schedule.

    wsd: constant, then a linear decay over the last `decay_fraction` of the run towards
    `final_fraction`·peak; cosine: cosine decay from the end of warmup; constant: flat.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return peak * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))
    if schedule == "wsd":
        decay_start = wsd_decay_start(total_steps, decay_fraction)
        if step < decay_start:
            return peak
        progress = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
        return peak * (1 - (1 - final_fraction) * progress)
    raise ValueError(f"unknown schedule {schedule!r}; allowed: wsd, cosine, constant")


def steps_for(budget_tokens: int, tokens_per_step: int) -> int:
    """Optimizer steps of a pretraining budget (at least one)."""
    return max(1, int(round(budget_tokens / tokens_per_step)))


def wsd_decay_start(total_steps: int, decay_fraction: float) -> int:
    return total_steps - int(round(decay_fraction * total_steps))


def make_optimizer(model, lr: float, weight_decay: float, betas: tuple[float, float]):
    """AdamW; weight decay on matrices only (norm gains are left alone)."""
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))


@dataclass(frozen=True)
class Precision:
    """Where the loop runs and in which dtype it computes (parameters stay float32)."""

    device: str = "cpu"
    dtype: str = "float32"  # float32 | bfloat16 (autocast)

    @property
    def autocast(self) -> bool:
        return self.dtype == "bfloat16"

    def context(self):
        import torch

        if self.autocast:
            return torch.autocast(device_type=self.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def describe(self) -> dict:
        return {"device": self.device, "param_dtype": "float32", "compute_dtype": self.dtype,
                "autocast": self.autocast}


@dataclass(frozen=True)
class DivergenceGuard:
    """When a run counts as diverged: a non-finite loss or gradient norm, or (factor > 0) a mean
    loss over the last `window` steps above `factor` × the loss of the first step (the model as
    it was before any update)."""

    factor: float = 0.0
    window: int = 10

    @classmethod
    def for_run(cls, factor: float, total_steps: int) -> DivergenceGuard:
        """A window of 10 steps, or a quarter of a short run."""
        return cls(factor, max(1, min(10, total_steps // 4)))

    def check(self, log: list[dict], grad_norm: float) -> str | None:
        loss = log[-1]["loss"]
        if not math.isfinite(loss) or not math.isfinite(grad_norm):
            return f"non-finite training loss ({loss}) or gradient norm ({grad_norm}) at step {log[-1]['step']}"
        w = self.window
        if self.factor > 0 and len(log) >= w:
            reference = log[0]["loss"]
            recent = sum(r["loss"] for r in log[-w:]) / w
            if recent > self.factor * reference:
                return (f"training loss exploded: mean {recent:.4g} over steps {log[-w]['step']}–"
                        f"{log[-1]['step']} > {self.factor:g} × the first step's {reference:.4g}")
        return None


class Resume:
    """Where and how often a run saves its state, so a killed job continues where it stopped.

    The state (model, optimizer, torch RNG, step, log) is written atomically every `every` steps
    into `directory`, tagged with a fingerprint of everything that changes the run; a state with
    another fingerprint, or one that cannot be read, is ignored (the run starts afresh). Batches
    and learning rates are functions of the step, so a resumed run is bit-identical to an
    uninterrupted one. In a multi-process run rank 0 writes and every rank reads.
    """

    def __init__(self, directory: str | Path, every: int, fingerprint: str):
        self.directory, self.every, self.fingerprint = Path(directory), every, fingerprint

    def load(self) -> dict | None:
        import torch

        path = self.directory / "state.pt"
        if not path.exists():
            return None
        try:
            state = torch.load(path, weights_only=True)
        except Exception as e:  # a torn file after a node crash: start afresh, say so
            print(f"ignoring unreadable resume state {path} ({type(e).__name__}: {e}); starting afresh")
            return None
        if state.get("fingerprint") != self.fingerprint:
            print(f"ignoring resume state {path}: it belongs to a run with other settings")
            return None
        return state

    def save(self, state: dict) -> None:
        import torch

        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / "state.pt.tmp"
        with open(tmp, "wb") as f:
            torch.save({**state, "fingerprint": self.fingerprint}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.directory / "state.pt")

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def fingerprint(**settings) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """sha256 of a file (data, checkpoint metadata): part of a resume fingerprint."""
    from overtrain.integrity import sha256

    return sha256(path)


class Progress:
    """Progress lines for `tail -f` on a job log: step/total, loss, tokens/s, ETA.

    A line every `every` steps (≈ 20 per run) and at least every `seconds` (a long step on a
    big model still reports).
    """

    def __init__(self, start: int, stop: int, label: str = "train", seconds: float = 60.0, enabled: bool = True):
        self.start, self.stop, self.label, self.seconds, self.enabled = start, stop, label, seconds, enabled
        self.every = max(1, (stop - start) // 20)
        self.t0 = self.last = time.perf_counter()
        self.tokens = 0

    def update(self, step: int, loss: float, tokens: int) -> None:
        self.tokens += tokens
        now = time.perf_counter()
        done = step + 1 - self.start
        if not self.enabled or not (done % self.every == 0 or step + 1 == self.stop or now - self.last >= self.seconds):
            return
        self.last = now
        elapsed = now - self.t0
        rate = self.tokens / elapsed if elapsed > 0 else 0.0
        eta = elapsed / done * (self.stop - step - 1)
        print(f"[{self.label}] step {step + 1}/{self.stop} loss {loss:.4f} {rate:,.0f} tok/s "
              f"elapsed {elapsed:.0f}s eta {eta:.0f}s", flush=True)


def labelled_tokens(labels) -> int:
    """Tokens that carry loss in a batch: the targets after the causal shift."""
    return int((labels[:, 1:] != IGNORE).sum())


def loss_sum(model, micro: dict):
    """Summed next-token cross-entropy of a micro-batch (float32 logits, padding ignored)."""
    import torch.nn.functional as F

    labels = micro["labels"]
    inputs = {k: v for k, v in micro.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE, reduction="sum"
    )


def run_steps(
    model,
    optimizer,
    micro_batches: Callable[[int], list[dict]],
    lr_for_step: Callable[[int], float],
    start: int,
    stop: int,
    *,
    grad_clip: float,
    log: list[dict],
    precision: Precision = Precision(),
    resume: Resume | None = None,
    after_step: Callable[[float], None] | None = None,
    guard: DivergenceGuard = DivergenceGuard(),
    group: Group | None = None,
    label: str = "train",
    sam_rho: float = 0.0,
    on_step_end: Callable[[int], None] | None = None,
) -> str | None:
    """Train steps [start, stop); append one log row per step. Returns why the run diverged
    (and stopped early), or None.

    `micro_batches(step)` gives this process's micro-batches of the step (dicts of tensors with
    `labels`). The loss is normalised over all labelled tokens of the whole step, across
    micro-batches and processes: k micro-batches make the same update as one batch of them, and
    gradients are synchronised over the processes once per step (`group.sync`).
    `after_step(lr)` runs after each optimizer step (the ℓ2 pull toward pretrained weights).
    `group` (overtrain.training.distributed): the processes of the run; one by default.
    `sam_rho` > 0: sharpness-aware minimisation (Foret et al. 2021), twice the compute per step.
    `on_step_end(step)` runs after each step's update (a snapshot of the model, say).
    """
    import torch

    group = group or Group(device=precision.device)
    if resume is not None and (state := resume.load()) is not None:
        group.load_train_state(model, optimizer, state)
        torch.set_rng_state(state["rng"])
        log[:] = state["log"]
        start = state["step"]
        if group.is_main:
            print(f"resumed at step {start} from {resume.directory}")
    params = [p for p in model.parameters() if p.requires_grad]
    progress = Progress(start, stop, label, enabled=group.is_main)

    def save(at_step: int) -> None:
        state = {"step": at_step, "rng": torch.get_rng_state(), "log": log, **group.train_state(model, optimizer)}
        if group.is_main:
            resume.save(state)
        group.barrier()

    model.train()
    diverged = None
    with StopRequest() if resume is not None else contextlib.nullcontext() as request:
        for step in range(start, stop):
            lr = lr_for_step(step)
            for g in optimizer.param_groups:
                g["lr"] = lr
            micros = [{k: v.to(precision.device) for k, v in m.items()} for m in micro_batches(step)]
            # the stop request rides on the step's one count reduction: every process stops at the same step
            counts = group.all_sum(torch.tensor([float(sum(labelled_tokens(m["labels"]) for m in micros)),
                                                 float(sum(int(m["labels"].numel()) for m in micros)),
                                                 float(request is not None and request.requested)]))
            if counts[2] > 0:
                save(step)
                stopped = Preempted(step, str(resume.directory))
                if group.is_main:
                    print(f"[{label}] {stopped}", flush=True)
                raise stopped
            n_targets = max(1.0, float(counts[0]))

            def backward() -> float:
                """Gradients of the step's token-mean loss (accumulated over the micro-batches,
                synchronised once) and the loss itself."""
                total = torch.zeros((), dtype=torch.float64)
                for k, micro in enumerate(micros):
                    with group.sync(model, last=k == len(micros) - 1):
                        with precision.context():
                            summed = loss_sum(model, micro)
                        # DDP and FSDP average gradients over processes: scale by the world size
                        (summed * (group.world / n_targets)).backward()
                    total += summed.detach().double().cpu()
                return float(group.all_sum(total)) / n_targets

            loss = backward()
            if sam_rho > 0:  # sharpness-aware: the gradient at the worst point of a ρ-ball, applied here
                sam_ascent(params, sam_rho, backward, optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf")))
            log.append({"step": step, "lr": lr, "loss": loss, "grad_norm": grad_norm})
            if (diverged := guard.check(log, grad_norm)) is not None:
                optimizer.zero_grad(set_to_none=True)
                break
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if after_step is not None:
                after_step(lr)
            if on_step_end is not None:
                on_step_end(step)
            progress.update(step, loss, int(counts[1]))
            if resume is not None and resume.every and (step + 1) % resume.every == 0 and step + 1 < stop:
                save(step + 1)
    model.eval()
    if diverged and group.is_main:
        print(f"[{label}] DIVERGED: {diverged}; stopped at step {log[-1]['step']} of {stop}", flush=True)
    return diverged


def sam_ascent(params: list, rho: float, backward: Callable[[], float], optimizer) -> None:
    """Replace the gradients (at θ) by those at θ + ρ·g/‖g‖, the first-order worst point of a
    ρ-ball (SAM), θ restored: the optimizer step then descends the ball's worst loss."""
    import torch

    grads = [p.grad for p in params]
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)).item() or 1.0
    steps = [None if g is None else g * (rho / norm) for g in grads]
    with torch.no_grad():
        for p, e in zip(params, steps):
            if e is not None:
                p.add_(e)
    optimizer.zero_grad(set_to_none=True)
    backward()
    with torch.no_grad():
        for p, e in zip(params, steps):
            if e is not None:
                p.sub_(e)


# a pretraining run's (or stable segment's) train_log.csv: each step's tokens seen, learning rate,
# loss and gradient norm before clipping
PRETRAIN_LOG_COLUMNS = ["step", "tokens", "lr", "loss", "grad_norm"]


def log_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def resume_dir(out_dir: str | Path) -> Path:
    """Beside the output, not in it: Snakemake removes an incomplete output before a rerun."""
    out = Path(out_dir)
    return out.with_name(out.name + ".resume")
