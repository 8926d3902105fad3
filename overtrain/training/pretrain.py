"""Controlled pretraining of tiny Llama models on the synthetic corpus, one run per token budget,
or WSD branches: each budget's decay branched off the stable run (overtrain.training.stable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from overtrain.provenance import code_digest
from overtrain.training.loop import (
    IGNORE,
    PRETRAIN_LOG_COLUMNS,
    Precision,
    Resume,
    file_digest,
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

PRETRAIN_UNSCORED = 3  # <bos>, the topic tag and the first word carry no learnable signal


@dataclass(frozen=True)
class PretrainSpec:
    """Everything that defines a pretraining run except its budget (shared by all budgets)."""

    architecture: dict
    optimizer: dict
    batch_size: int
    seq_len: int
    seed: int
    data_seed: int
    save_every: int = 0
    threads: int = 1

    def identity(self) -> dict:
        """What changes a run's numbers (where it saves, and its threads, do not: a resumed run may
        differ in them)."""
        return {k: v for k, v in asdict(self).items() if k not in ("save_every", "threads")}

    @classmethod
    def from_config(cls, model: dict, seq_len: int, replicate: int = 0, threads: int = 1,
                    save_every: int = 0) -> PretrainSpec:
        """From a config's `models.<name>` entry, for pretraining replicate `replicate` (init seed
        seed + replicate, data order data_seed + replicate)."""
        init, data = model["seed"] + replicate, model["data_seed"] + replicate
        return cls(
            architecture={k: v for k, v in model["architecture"].items() if k != "family"},
            optimizer=model["optimizer"],
            batch_size=model["batch_size"],
            seq_len=seq_len,
            seed=init,
            data_seed=data,
            save_every=save_every,
            threads=threads,
        )


def batches_of(language_path: str | Path, spec: PretrainSpec):
    import torch

    from overtrain.sources.corpus import load_language, pretrain_batch

    lang = load_language(language_path)

    def micro_batches(step: int) -> list[dict]:
        ids = torch.from_numpy(pretrain_batch(lang, step, spec.batch_size, spec.seq_len, spec.data_seed))
        labels = ids.clone()
        labels[:, :PRETRAIN_UNSCORED] = IGNORE
        return [{"input_ids": ids, "labels": labels}]

    return lang, micro_batches


def _run_fingerprint(language_path, spec: PretrainSpec, **more) -> str:
    return fingerprint(spec=asdict(spec), language=file_digest(language_path),
                       code=code_digest(__file__), **more)


def pretrain(
    language_path: str | Path,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    spec: PretrainSpec,
    budget_tokens: int,
    branch_from: str | Path | None = None,
    pretrain_seed: int = 0,
) -> dict:
    """Pretrain one checkpoint with a complete warmup→decay schedule for its own budget.

    With `branch_from` (a stable-phase state written by `pretrain_stable`), only the decay
    phase is trained, starting from the shared stable run (WSD branching). With
    `spec.save_every`, the state is saved beside `out_dir` (<out_dir>.resume/) and a rerun
    resumes from it.
    """
    import torch

    from overtrain.models import load_tokenizer, make_llama, save_model, set_threads

    set_threads(spec.threads)
    opt_cfg = spec.optimizer
    lang, micro_batches = batches_of(language_path, spec)
    tokens_per_step = spec.batch_size * spec.seq_len
    total = steps_for(budget_tokens, tokens_per_step)
    warmup = warmup_steps_for(total, opt_cfg["warmup_steps"])
    model = make_llama(lang.vocab_size, max_len=spec.seq_len, seed=spec.seed, **spec.architecture)
    opt = make_optimizer(model, opt_cfg["lr"], opt_cfg["weight_decay"], opt_cfg["betas"])
    start, log = 0, []
    if branch_from is not None:
        state = torch.load(Path(branch_from) / "state.pt", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, warmup = state["step"], state["warmup_steps"]
        if start != wsd_decay_start(total, opt_cfg["decay_fraction"]):
            raise ValueError(f"stable state at step {start} does not match budget {budget_tokens}")

    def lr_for_step(step: int) -> float:
        return learning_rate(step, total, opt_cfg["lr"], opt_cfg["schedule"], warmup, opt_cfg["decay_fraction"])

    resume = Resume(
        resume_dir(out_dir),
        spec.save_every,
        _run_fingerprint(language_path, spec, budget=budget_tokens,
                         branch=file_digest(Path(branch_from) / "state.pt") if branch_from else None),
    )
    diverged = run_steps(model, opt, micro_batches, lr_for_step, start, total, grad_clip=opt_cfg["grad_clip"],
                         log=log, resume=resume, label=f"pretrain {budget_tokens}", sam_rho=opt_cfg.get("sam_rho", 0.0))
    if diverged:
        raise RuntimeError(f"pretraining diverged: {diverged}; lower models.<name>.optimizer.lr")
    for row in log:
        row["tokens"] = (row["step"] + 1) * tokens_per_step
    meta = {
        "source": "pretrain",
        "tokens": total * tokens_per_step,
        "budget_tokens": budget_tokens,
        "steps": total,
        "tokens_per_step": tokens_per_step,
        "schedule": opt_cfg["schedule"],
        "warmup_steps": warmup,
        "branched_at_step": start if branch_from is not None else None,
        "seed": spec.seed,
        "data_seed": spec.data_seed,
        "pretrain_seed": pretrain_seed,
        "architecture": spec.architecture,
        "optimizer": opt_cfg,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "final_train_loss": log[-1]["loss"] if log else None,
        **Precision().describe(),
        "threads": spec.threads,
    }
    log_text = log_csv(log, PRETRAIN_LOG_COLUMNS)
    save_model(model, load_tokenizer(tokenizer_dir), out_dir, meta, {"train_log.csv": log_text})
    resume.clear()
    return meta
