"""Pretraining and fine-tuning loops.

A plain AdamW loop rather than transformers.Trainer: batches are indexed by step (so a run can
branch or resume at any step and see the same data), and the learning rate is a pure function
of the step. On these tiny models Trainer and a plain loop run at the same speed (measured in
shared/research/controlled-study.md), so nothing is lost.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

PRETRAIN_UNSCORED = 3  # <bos>, the topic tag and the first word carry no learnable signal


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
class Resume:
    """Where and how often a run saves its state, so a killed job continues where it stopped.

    The state (model, optimizer, torch RNG, step, log) is written atomically every `every` steps
    into `directory`, tagged with a fingerprint of the run's settings; a state with another
    fingerprint is ignored. Batches and learning rates are functions of the step, so a resumed
    run is bit-identical to an uninterrupted one.
    """

    directory: Path
    every: int
    fingerprint: str

    def load(self) -> dict | None:
        import torch

        path = self.directory / "state.pt"
        if not path.exists():
            return None
        state = torch.load(path, weights_only=True)
        return state if state.get("fingerprint") == self.fingerprint else None

    def save(self, model, optimizer, step: int, log: list[dict]) -> None:
        import torch

        self.directory.mkdir(parents=True, exist_ok=True)
        state = {
            "fingerprint": self.fingerprint,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "log": log,
        }
        tmp = self.directory / "state.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.directory / "state.pt")

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def fingerprint(**settings) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_steps(
    model,
    optimizer,
    batch_for_step: Callable[[int], tuple],
    lr_for_step: Callable[[int], float],
    start: int,
    stop: int,
    grad_clip: float,
    log: list[dict],
    resume: Resume | None = None,
    anchor: dict | None = None,
    anchor_strength: float = 0.0,
    grad_accum: int = 1,
) -> None:
    """Train steps [start, stop); append one log row per step.

    `anchor` (parameter name → pretrained tensor) with `anchor_strength` λ pulls the weights
    toward the pretrained ones after every step: θ ← θ₀ + (1 − lr·λ)(θ − θ₀), clipped at θ₀. This
    is the ℓ2 regularisation toward the pretrained weights, applied decoupled as AdamW does with
    weight decay: with Adam an ℓ2 term in the loss would be normalised away. λ → ∞ keeps θ = θ₀.
    """
    import torch

    if resume is not None and (state := resume.load()) is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        log[:] = state["log"]
        start = state["step"]
        print(f"resumed at step {start} from {resume.directory}")
    params = dict(model.named_parameters())
    model.train()
    for step in range(start, stop):
        lr = lr_for_step(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [t.to(model.device) if t is not None else None for t in batch_for_step(step)]
        loss = 0.0
        for k in range(grad_accum):  # micro-batches: same update, less memory
            ids, labels, mask = (t[k::grad_accum] if t is not None else None for t in batch)
            micro = model(input_ids=ids, labels=labels, attention_mask=mask).loss / grad_accum
            micro.backward()
            loss = loss + micro.detach()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], grad_clip
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if anchor and anchor_strength > 0:
            keep = max(0.0, 1.0 - lr * anchor_strength)
            with torch.no_grad():
                for name, theta0 in anchor.items():
                    p = params[name]
                    p.copy_(theta0 + keep * (p - theta0))
        log.append({"step": step, "lr": lr, "loss": loss.item()})
        if resume is not None and resume.every and (step + 1) % resume.every == 0 and step + 1 < stop:
            resume.save(model, optimizer, step + 1, log)
    model.eval()


def log_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _pretrain_batches(language_path: str | Path, batch_size: int, seq_len: int, data_seed: int):
    import torch

    from overtrain.corpus import load_language, pretrain_batch

    lang = load_language(language_path)

    def batch_for_step(step: int):
        ids = torch.from_numpy(pretrain_batch(lang, step, batch_size, seq_len, data_seed))
        labels = ids.clone()
        labels[:, :PRETRAIN_UNSCORED] = -100
        return ids, labels, None

    return lang, batch_for_step


def pretrain(
    language_path: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    *,
    budget_tokens: int,
    architecture: dict,
    optimizer: dict,
    batch_size: int,
    seq_len: int,
    seed: int,
    data_seed: int,
    branch_from: str | Path | None = None,
    save_every: int = 0,
) -> dict:
    """Pretrain one checkpoint with a complete warmup→decay schedule for its own budget.

    With `branch_from` (a stable-phase state written by `pretrain_stable`), only the decay
    phase is trained, starting from the shared stable run (WSD branching). With `save_every`,
    the run's state is saved beside `out_dir` (<out_dir>.resume/) and a rerun resumes from it.
    """
    import torch

    from overtrain.models import load_tokenizer, make_llama, save_model

    lang, batch_for_step = _pretrain_batches(language_path, batch_size, seq_len, data_seed)
    tokens_per_step = batch_size * seq_len
    total = max(1, int(round(budget_tokens / tokens_per_step)))
    schedule = optimizer["schedule"]
    warmup = warmup_steps_for(total, optimizer["warmup_steps"])
    model = make_llama(lang.vocab_size, max_len=seq_len, seed=seed, **architecture)
    opt = make_optimizer(model, optimizer["lr"], optimizer["weight_decay"], optimizer["betas"])
    start, log = 0, []
    if branch_from is not None:
        state = torch.load(Path(branch_from) / "state.pt", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
        warmup = state["warmup_steps"]
        if start != wsd_decay_start(total, optimizer["decay_fraction"]):
            raise ValueError(f"stable state at step {start} does not match budget {budget_tokens}")

    def lr_for_step(step: int) -> float:
        return learning_rate(
            step, total, optimizer["lr"], schedule, warmup, optimizer["decay_fraction"]
        )

    resume = Resume(
        resume_dir(out_dir),
        save_every,
        fingerprint(
            budget=budget_tokens, arch=architecture, opt=optimizer, batch=batch_size,
            seq=seq_len, seed=seed, data_seed=data_seed, branch=str(branch_from),
        ),
    )
    run_steps(
        model, opt, batch_for_step, lr_for_step, start, total, optimizer["grad_clip"], log, resume
    )
    for row in log:
        row["tokens"] = (row["step"] + 1) * tokens_per_step
    meta = {
        "source": "pretrain",
        "tokens": total * tokens_per_step,
        "budget_tokens": budget_tokens,
        "steps": total,
        "tokens_per_step": tokens_per_step,
        "schedule": schedule,
        "warmup_steps": warmup,
        "branched_at_step": start if branch_from is not None else None,
        "seed": seed,
        "data_seed": data_seed,
        "architecture": architecture,
        "optimizer": optimizer,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "final_train_loss": log[-1]["loss"] if log else None,
    }
    log_text = log_csv(log, ["step", "tokens", "lr", "loss"])
    save_model(model, load_tokenizer(tokenizer_dir), out_dir, meta, {"train_log.csv": log_text})
    resume.clear()
    return meta


def resume_dir(out_dir: str | Path) -> Path:
    """Beside the output, not in it: Snakemake removes an incomplete output before a rerun."""
    out = Path(out_dir)
    return out.with_name(out.name + ".resume")


def pretrain_stable(
    language_path: str | Path,
    out_dir: str | Path,
    *,
    budgets: list[int],
    architecture: dict,
    optimizer: dict,
    batch_size: int,
    seq_len: int,
    seed: int,
    data_seed: int,
) -> dict:
    """One warmup + constant-LR run, saving model and optimizer state where each budget's decay
    branch starts (WSD branching). Fewer tokens in total than separate runs, but one serial job."""
    import torch

    from overtrain.atomic import atomic_directory
    from overtrain.models import make_llama

    lang, batch_for_step = _pretrain_batches(language_path, batch_size, seq_len, data_seed)
    tokens_per_step = batch_size * seq_len
    totals = {b: max(1, int(round(b / tokens_per_step))) for b in budgets}
    branch_steps = {b: wsd_decay_start(s, optimizer["decay_fraction"]) for b, s in totals.items()}
    warmup = warmup_steps_for(max(totals.values()), optimizer["warmup_steps"])
    if min(branch_steps.values()) < warmup:
        raise ValueError(
            f"the smallest budget branches at step {min(branch_steps.values())}, inside the "
            f"{warmup}-step warmup of the stable run; drop it or use separate runs"
        )
    model = make_llama(lang.vocab_size, max_len=seq_len, seed=seed, **architecture)
    opt = make_optimizer(model, optimizer["lr"], optimizer["weight_decay"], optimizer["betas"])
    log: list[dict] = []
    step = 0
    with atomic_directory(out_dir) as tmp:
        for budget in sorted(budgets):
            stop = branch_steps[budget]
            run_steps(
                model,
                opt,
                batch_for_step,
                lambda s: learning_rate(s, 10**12, optimizer["lr"], "constant", warmup),
                step,
                stop,
                optimizer["grad_clip"],
                log,
            )
            step = stop
            state = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "warmup_steps": warmup,
            }
            (tmp / f"tok{budget}").mkdir()
            torch.save(state, tmp / f"tok{budget}" / "state.pt")
        (tmp / "meta.json").write_text(json.dumps({"branch_steps": branch_steps}, indent=1))
    return {"branch_steps": branch_steps, "stable_steps": step}


def read_prompt_completion(path: str | Path) -> list[tuple[str, str]]:
    """Fine-tuning examples from JSONL: {"prompt", "completion"} (loss on the completion) or
    {"text"} (loss on everything)."""
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if "text" in r:
                rows.append(("", r["text"]))
            elif "prompt" in r and "completion" in r:
                rows.append((r["prompt"], r["completion"]))
            else:
                raise ValueError(f"{path}:{n}: expected keys 'text' or 'prompt'+'completion'")
    if not rows:
        raise ValueError(f"{path}: no fine-tuning examples")
    return rows


def encode_examples(tokenizer, examples: list[tuple[str, str]], max_len: int):
    """Token ids and labels (-100 on <bos> and the prompt), right-padded to a common length."""
    import torch

    ids_list, label_list = [], []
    for prompt, completion in examples:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        ids = (bos + p + c)[:max_len]
        labels = ([-100] * (len(bos) + len(p)) + c)[:max_len]
        ids_list.append(ids)
        label_list.append(labels)
    width = max(len(x) for x in ids_list)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(ids_list), width), pad, dtype=torch.long)
    labels = torch.full((len(ids_list), width), -100, dtype=torch.long)
    mask = torch.zeros((len(ids_list), width), dtype=torch.long)
    for i, (x, y) in enumerate(zip(ids_list, label_list)):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return ids, labels, mask


def finetune_steps(n_examples: int, batch_size: int, steps: int | None, epochs: float | None) -> int:
    """Steps of a fine-tune given either a step budget or a number of epochs."""
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of finetune.steps and finetune.epochs")
    return steps if steps is not None else max(1, math.ceil(epochs * n_examples / batch_size))


def add_lora(model, lora: dict):
    """Wrap `model` with LoRA adapters (peft); only the adapters train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        target_modules=list(lora["target_modules"]),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def finetune(
    checkpoint_dir: str | Path,
    train_jsonl: str | Path,
    out_dir: str | Path,
    *,
    lr: float,
    batch_size: int,
    max_len: int,
    warmup_steps: int,
    schedule: str,
    weight_decay: float,
    grad_clip: float,
    seed: int,
    steps: int | None = None,
    epochs: float | None = None,
    method: str = "full",
    lora: dict | None = None,
    l2: float = 0.0,
    save_every: int = 0,
    grad_accum: int = 1,
    trust_remote_code: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    betas: tuple[float, float] = (0.9, 0.95),
) -> dict:
    """Fine-tune for a fixed number of steps (or epochs); the data order is drawn from `seed`.

    Examples are visited in a fresh permutation per epoch, so `epoch` in the log is exact.
    `method` is `full` (all weights) or `lora` (peft adapters; the saved directory holds only the
    adapter). `l2` pulls the trained weights toward their pretrained values (see run_steps).
    """
    import torch

    from overtrain.models import load_variant, save_model

    model, tokenizer = load_variant(
        checkpoint_dir, trust_remote_code=trust_remote_code, device=device, dtype=dtype
    )
    examples = read_prompt_completion(train_jsonl)
    ids, labels, mask = encode_examples(tokenizer, examples, max_len)
    n = len(examples)
    total = finetune_steps(n, batch_size, steps, epochs)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(total * batch_size / n))])
    torch.manual_seed(seed)
    if method == "lora":
        model = add_lora(model, lora)
    elif method != "full":
        raise ValueError(f"unknown fine-tuning method {method!r}; allowed: full, lora")
    anchor = {
        name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
    } if l2 > 0 else None

    def batch_for_step(step: int):
        idx = torch.from_numpy(order[step * batch_size : (step + 1) * batch_size])
        return ids[idx], labels[idx], mask[idx]

    warmup = warmup_steps_for(total, warmup_steps) if warmup_steps else 0
    opt = make_optimizer(model, lr, weight_decay, betas)
    resume = Resume(
        resume_dir(out_dir),
        save_every,
        fingerprint(
            ckpt=str(checkpoint_dir), data=str(train_jsonl), lr=lr, batch=batch_size, steps=total,
            warmup=warmup, schedule=schedule, wd=weight_decay, clip=grad_clip, seed=seed,
            method=method, lora=lora, l2=l2,
        ),
    )
    log: list[dict] = []
    run_steps(
        model,
        opt,
        batch_for_step,
        lambda s: learning_rate(s, total, lr, schedule, warmup),
        0,
        total,
        grad_clip,
        log,
        resume,
        anchor,
        l2,
        grad_accum,
    )
    for row in log:
        row["epoch"] = row["step"] * batch_size / n
    meta = {
        "base_checkpoint": str(checkpoint_dir),
        "train_file": str(train_jsonl),
        "n_examples": n,
        "method": method,
        "lora": lora if method == "lora" else None,
        "l2": l2,
        "lr": lr,
        "steps": total,
        "epochs": total * batch_size / n,
        "batch_size": batch_size,
        "warmup_steps": warmup,
        "schedule": schedule,
        "weight_decay": weight_decay,
        "seed": seed,
        "final_train_loss": log[-1]["loss"],
    }
    log_text = log_csv(log, ["step", "epoch", "lr", "loss"])
    save_model(model, tokenizer, out_dir, meta, {"train_log.csv": log_text})
    resume.clear()
    return meta
