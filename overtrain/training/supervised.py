"""One supervised run, shared by text fine-tuning (overtrain.training.finetune) and LLaVA's two
stages (overtrain.training.llava): its settings, built once from the config, and the run itself
(steps, batch order, warmup, optimizer, resume state keyed by everything that changes it, the
one training loop, the epoch column). Each caller brings its own model and collation, and saves
what it trained its own way; a run that diverged is saved the same way by both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

from overtrain.training.distributed import Group
from overtrain.training.loop import (
    DivergenceGuard,
    Precision,
    Resume,
    fingerprint,
    learning_rate,
    log_csv,
    make_optimizer,
    resume_dir,
    run_steps,
    warmup_steps_for,
)
from overtrain.training.sft import Encoded, batch_order, finetune_steps, split_micro


@dataclass(frozen=True)
class TrainSettings:
    """How a supervised run trains: the config's `finetune` section (or LLaVA's stage 1) and the
    job's compute settings. AdamW's betas are fixed (0.9, 0.95), as in the presets' papers."""

    steps: int | None = 60
    epochs: float | None = None
    batch_size: int = 16
    grad_accum: int = 1
    warmup_steps: int = 20
    schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.95)
    divergence_factor: float = 3.0
    group_by_length: bool = True
    save_every: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1

    # where a run saves its resume state, and its thread count, are not part of what it is:
    # a resumed run may differ in them
    NOT_IN_FINGERPRINT = ("save_every", "threads")

    @classmethod
    def from_config(cls, section: dict, **compute) -> TrainSettings:
        """From a config section (keys that are not settings, such as lr or tasks, are ignored)
        and the job's compute settings (device, dtype, threads, save_every)."""
        names = {f.name for f in fields(cls)} - {"betas"}
        return cls(**{k: v for k, v in {**section, **compute}.items() if k in names})

    def identity(self) -> dict:
        """The settings that change the run's numbers (its resume fingerprint)."""
        return {k: v for k, v in asdict(self).items() if k not in self.NOT_IN_FINGERPRINT}


def split_settings(settings: dict, defaults: TrainSettings) -> tuple[dict, TrainSettings]:
    """One flat set of keyword settings → (the spec's own, its TrainSettings on `defaults`): what
    lets a test or a script write FinetuneSpec.flat(lr=…, steps=…, max_len=…)."""
    names = {f.name for f in fields(TrainSettings)}
    return ({k: v for k, v in settings.items() if k not in names},
            replace(defaults, **{k: v for k, v in settings.items() if k in names}))


@dataclass
class Run:
    """What a supervised run did: its per-step log (with the epoch), why it diverged (or None),
    and the settings it resolved (steps, warmup, the order's seed)."""

    log: list[dict]
    diverged: str | None
    steps: int
    warmup_steps: int
    n_examples: int
    order_seed: int
    settings: TrainSettings
    precision: Precision
    resume: Resume

    def log_text(self) -> str:
        return log_csv(self.log, ["step", "epoch", "lr", "loss", "grad_norm"])

    def describe(self) -> dict:
        """The run's part of its output's meta.json."""
        s = self.settings
        return {"n_examples": self.n_examples, "steps": self.steps, "epochs": self.steps * s.batch_size / self.n_examples,
                "batch_size": s.batch_size, "grad_accum": s.grad_accum, "warmup_steps": self.warmup_steps,
                "schedule": s.schedule, "weight_decay": s.weight_decay, "group_by_length": s.group_by_length,
                "order_seed": self.order_seed, **self.precision.describe(), "threads": s.threads,
                "final_train_loss": self.log[-1]["loss"] if self.log else None, "diverged": self.diverged is not None,
                **({"diverged_reason": self.diverged, "diverged_at_step": self.log[-1]["step"]} if self.diverged else {})}


def supervised_run(model, examples: Encoded, collate: Callable[[list[int]], dict], out_dir: str | Path, *,
                   lr: float, order_seed: int, settings: TrainSettings, fingerprint_extra: dict,
                   group: Group | None = None, after_step: Callable[[float], None] | None = None,
                   label: str = "finetune") -> Run:
    """Train `model` (ready: wrapped, frozen where it should be, on its device) on `examples`
    for the settings' steps or epochs, in a length-grouped order drawn from `order_seed`; each
    process takes its slice of every step and `collate(indices)` makes a micro-batch. The resume
    state (beside `out_dir`) is keyed by the settings, the learning rate and
    `fingerprint_extra` (data, checkpoint, code); the caller clears it once it has saved."""
    group = group or Group(device=settings.device)
    s = settings
    if s.batch_size % (group.world * s.grad_accum):
        raise ValueError(f"batch_size={s.batch_size} is not divisible by processes × grad_accum = "
                         f"{group.world} × {s.grad_accum}")
    n = len(examples.ids)
    total = finetune_steps(n, s.batch_size, s.steps, s.epochs)
    order = batch_order(examples.lengths, s.batch_size, total, order_seed, s.group_by_length)
    warmup = warmup_steps_for(total, s.warmup_steps) if s.warmup_steps else 0
    precision = Precision(group.device, s.dtype)

    def micro_batches(step: int) -> list[dict]:
        mine = split_micro(order[step], group.world)[group.rank]
        return [collate(part) for part in split_micro(mine, s.grad_accum)]

    optimizer = make_optimizer(model, lr, s.weight_decay, s.betas)
    resume = Resume(resume_dir(out_dir), s.save_every,
                    fingerprint(settings=s.identity(), lr=lr, order_seed=order_seed, world=group.world,
                                **fingerprint_extra))
    log: list[dict] = []
    diverged = run_steps(model, optimizer, micro_batches, lambda step: learning_rate(step, total, lr, s.schedule, warmup),
                         0, total, grad_clip=s.grad_clip, log=log, precision=precision, resume=resume,
                         after_step=after_step, guard=DivergenceGuard.for_run(s.divergence_factor, total), group=group,
                         label=label)
    for row in log:
        row["epoch"] = row["step"] * s.batch_size / n
    return Run(log, diverged, total, warmup, n, order_seed, s, precision, resume)


def save_diverged(out_dir: str | Path, meta: dict, run: Run) -> None:
    """A diverged run is a result: its directory keeps meta.json (why, and at which step) and
    train_log.csv, but no weights."""
    from overtrain.atomic import atomic_directory, atomic_write_json
    from overtrain.provenance import package_versions

    with atomic_directory(out_dir) as tmp:
        atomic_write_json(tmp / "meta.json", {**meta, "versions": package_versions()})
        (tmp / "train_log.csv").write_text(run.log_text())
