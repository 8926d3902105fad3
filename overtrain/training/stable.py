"""The stable phase of WSD pretraining (warmup, then a constant learning rate), in segments.

Each budget's decay branches off the stable run where its own schedule would start decaying
(overtrain.training.pretrain). The stable run is a chain of jobs, one segment per branch point:
segment `tok<B>` trains from the previous segment's end to budget B's branch point and writes
the state there (model, optimizer, step, RNG), so each decay branch starts as soon as its segment
is done, a killed study reruns only the unfinished segment, and within a segment the run resumes
from its last save (`save_every`). Batches and learning rates are functions of the step, so the
chain makes exactly the states one continuous run makes.

With `snapshots` (models.<name>.stable_checkpoints) the run also keeps the model as it is when it
has seen each budget's own tokens, before any decay, and a last segment `end` carries it to the
largest budget: these are the stable checkpoints that sit beside the decayed branches at equal
tokens (does annealing, rather than the tokens, raise sensitivity?).
"""

from __future__ import annotations

import json
from pathlib import Path

from overtrain.provenance import code_digest
from overtrain.training.loop import (
    PRETRAIN_LOG_COLUMNS,
    Resume,
    fingerprint,
    learning_rate,
    log_csv,
    make_optimizer,
    resume_dir,
    run_steps,
    steps_for,
    warmup_steps_for,
    wsd_decay_start,
)

END = "end"  # the segment that carries the stable run to the largest budget (snapshots only)


def segments(spec, budgets: list[int], snapshots: bool = False) -> dict[str, int]:
    """Segment id → the step it ends at, in order: `tok<B>` at budget B's branch point, and with
    snapshots `end` at the largest budget's full length."""
    tokens_per_step = spec.batch_size * spec.seq_len
    out = {f"tok{b}": wsd_decay_start(steps_for(b, tokens_per_step), spec.optimizer["decay_fraction"])
           for b in sorted(budgets)}
    if snapshots:
        out[END] = max(out[f"tok{max(budgets)}"], steps_for(max(budgets), tokens_per_step))
    return out


def snapshot_steps(spec, budgets: list[int]) -> dict[int, int]:
    """Budget → the step at which the stable run has seen that many tokens."""
    return {b: steps_for(b, spec.batch_size * spec.seq_len) for b in sorted(budgets)}


def segment_holding(spec, budgets: list[int], budget: int) -> str:
    """The segment during which the stable run passes budget's tokens (its snapshot's home)."""
    start, step = 0, snapshot_steps(spec, budgets)[budget]
    for segment, end in segments(spec, budgets, snapshots=True).items():
        if start < step <= end:
            return segment
        start = end
    raise ValueError(f"budget {budget}: no stable segment reaches step {step}")


def previous_segment(spec, budgets: list[int], segment: str, snapshots: bool = False) -> str | None:
    order = list(segments(spec, budgets, snapshots))
    k = order.index(segment)
    return order[k - 1] if k else None


def train_segment(language_path: str | Path, out_dir: str | Path, spec, budgets: list[int], segment: str,
                  previous: str | Path | None = None, snapshots: bool = False) -> dict:
    """Train one segment of the stable run and write its end state (state.pt), its steps'
    log (train_log.csv) and, with snapshots, the model at each budget's tokens that falls in it
    (snapshot-tok<B>.pt, weights only)."""
    import torch

    from overtrain.atomic import atomic_directory
    from overtrain.models import make_llama, set_threads
    from overtrain.training.pretrain import batches_of

    set_threads(spec.threads)
    opt_cfg = spec.optimizer
    plan = segments(spec, budgets, snapshots)
    if segment not in plan:
        raise ValueError(f"unknown stable segment {segment!r}; this run has {list(plan)}")
    order = list(plan)
    start = plan[order[order.index(segment) - 1]] if order.index(segment) else 0
    end = plan[segment]
    tokens_per_step = spec.batch_size * spec.seq_len
    # one warmup for every branch, the smallest budget's (≤ 10% of its run): each branch point
    # then lies after it
    warmup = warmup_steps_for(steps_for(min(budgets), tokens_per_step), opt_cfg["warmup_steps"])
    lang, micro_batches = batches_of(language_path, spec)
    model = make_llama(lang.vocab_size, max_len=spec.seq_len, seed=spec.seed, **spec.architecture)
    opt = make_optimizer(model, opt_cfg["lr"], opt_cfg["weight_decay"], opt_cfg["betas"])
    if previous is not None:
        state = torch.load(Path(previous) / "state.pt", weights_only=True)
        if state["step"] != start:
            raise ValueError(f"{previous}: the previous segment ends at step {state['step']}, this one starts at {start}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
    elif start != 0:
        raise ValueError(f"segment {segment} starts at step {start}: it needs the previous segment's state")
    resume = Resume(resume_dir(out_dir), spec.save_every, fingerprint(
        spec=spec.identity(), segment=segment, start=start, end=end, snapshots=snapshots, budgets=sorted(budgets),
        language=_digest(language_path), previous=_digest(Path(previous) / "state.pt") if previous else None,
        code=code_digest(__file__)))
    wanted = {s: b for b, s in snapshot_steps(spec, budgets).items() if snapshots and start < s <= end}

    def keep_snapshot(step: int) -> None:  # after the update of step `step`: the model has seen (step + 1) steps
        if step + 1 in wanted:
            resume.directory.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                       resume.directory / f"snapshot-tok{wanted[step + 1]}.pt")

    log: list[dict] = []
    diverged = run_steps(model, opt, micro_batches, lambda s: learning_rate(s, 10**12, opt_cfg["lr"], "constant", warmup),
                         start, end, grad_clip=opt_cfg["grad_clip"], log=log, resume=resume, label=f"stable {segment}",
                         sam_rho=opt_cfg.get("sam_rho", 0.0), on_step_end=keep_snapshot)
    if diverged:
        raise RuntimeError(f"pretraining diverged: {diverged}; lower models.<name>.optimizer.lr")
    for row in log:
        row["tokens"] = (row["step"] + 1) * tokens_per_step
    with atomic_directory(out_dir) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": end, "warmup_steps": warmup,
                    "rng": torch.get_rng_state()}, tmp / "state.pt")
        for budget in wanted.values():
            (resume.directory / f"snapshot-tok{budget}.pt").replace(tmp / f"snapshot-tok{budget}.pt")
        (tmp / "train_log.csv").write_text(log_csv(log, PRETRAIN_LOG_COLUMNS))
        meta = {"segment": segment, "start_step": start, "end_step": end, "warmup_steps": warmup,
                "snapshots": sorted(wanted.values()), "tokens_per_step": tokens_per_step}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    resume.clear()
    return meta


def _digest(path: str | Path) -> str:
    from overtrain.integrity import sha256

    return sha256(path)


def save_snapshot(segment_dir: str | Path, budget: int, tokenizer_dir: str | Path, out_dir: str | Path, spec,
                  vocab_size: int, pretrain_seed: int) -> dict:
    """The stable run's model at `budget` tokens as a checkpoint directory (a stable checkpoint:
    constant learning rate, no decay), beside the decayed branch of the same tokens."""
    import torch

    from overtrain.models import load_tokenizer, make_llama, save_model

    model = make_llama(vocab_size, max_len=spec.seq_len, seed=spec.seed, **spec.architecture)
    model.load_state_dict(torch.load(Path(segment_dir) / f"snapshot-tok{budget}.pt", weights_only=True))
    steps = snapshot_steps(spec, [budget])[budget]
    meta = {"source": "stable", "phase": "stable", "tokens": steps * spec.batch_size * spec.seq_len,
            "budget_tokens": budget, "steps": steps, "seed": spec.seed, "data_seed": spec.data_seed,
            "pretrain_seed": pretrain_seed, "architecture": spec.architecture, "optimizer": spec.optimizer,
            "n_parameters": sum(p.numel() for p in model.parameters()), "threads": spec.threads}
    save_model(model, load_tokenizer(tokenizer_dir), out_dir, meta)
    return meta
