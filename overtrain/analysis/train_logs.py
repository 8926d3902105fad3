"""The training curves of a study as one tidy table: every logged step of every training job
(pretraining runs or WSD decay branches, stable-run segments, fine-tunes), read from the
train_log.csv each job already writes beside its model, labelled from where the job wrote it.
One row per logged step. pandas only."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from overtrain import ids

COLUMNS = ["model", "ckpt", "tokens", "pretrain_seed", "phase", "ft_task", "ft_method", "l2", "lr", "seed",
           "step", "tokens_seen", "epoch", "step_lr", "loss", "grad_norm"]


def _checkpoint_labels(ckpt_dir: Path) -> dict:
    """A checkpoint's tokens and pretraining seed (its meta.json; a hub or local checkpoint has
    no pretraining seed)."""
    meta = json.loads((ckpt_dir / "meta.json").read_text())
    return {"tokens": meta.get("budget_tokens", meta.get("tokens")), "pretrain_seed": meta.get("pretrain_seed")}


def _log(path: Path, labels: dict) -> pd.DataFrame:
    log = pd.read_csv(path / "train_log.csv")
    log = log.rename(columns={"lr": "step_lr", "tokens": "tokens_seen"})
    for key, value in labels.items():
        log[key] = value
    return log


def path_labels(root: str | Path, job_dir: str | Path) -> dict:
    """What a training job's output directory under the results root says of it:
    checkpoints/<model>/<ckpt> (a pretraining run, WSD decay branch or fetched checkpoint),
    stable/<model>/s<seed>/<segment> (phase `stable`), finetuned/<model>/<ckpt>/<task>/<run>
    (phase `finetune`, with the run's settings)."""
    kind, model, *rest = Path(job_dir).relative_to(root).parts
    if kind == "checkpoints":
        return {"model": model, "ckpt": rest[0]}
    if kind == "stable":
        return {"model": model, "ckpt": rest[1], "phase": "stable", "pretrain_seed": int(rest[0].removeprefix("s"))}
    if kind == "finetuned":
        ckpt, task, run = rest
        r = ids.parse_run_id(run)
        return {"model": model, "ckpt": ckpt, "phase": "finetune", "ft_task": task, "ft_method": r["method"],
                "l2": r["l2"], "lr": r["lr"], "seed": r["seed"]}
    raise ValueError(f"{job_dir}: not a training job's directory (checkpoints/, stable/ or finetuned/ under {root})")


def read(root: str | Path, dirs: list[str | Path]) -> pd.DataFrame:
    """The curves of the training jobs whose output directories are `dirs` (path_labels), a
    checkpoint's phase `pretrain` or `decay` (a WSD branch) and tokens from its meta.json. A
    directory without a train log (a hub checkpoint) adds nothing."""
    root = Path(root)
    frames = []
    for d in map(Path, dirs):
        labels = path_labels(root, d)
        if not (d / "train_log.csv").is_file():
            continue
        if "phase" not in labels:
            meta = json.loads((d / "meta.json").read_text())
            labels |= {"phase": "decay" if meta.get("branched_at_step") is not None else "pretrain",
                       **_checkpoint_labels(d)}
        elif labels["phase"] == "finetune":
            labels |= _checkpoint_labels(root / "checkpoints" / labels["model"] / labels["ckpt"])
        frames.append(_log(d, labels))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(frames, ignore_index=True).reindex(columns=COLUMNS)
    # a checkpoint is its tokens and pretraining seed; a stable run's segments follow by step
    return table.sort_values(["model", "phase", "tokens", "pretrain_seed", "ft_task", "ft_method", "l2", "lr", "seed",
                              "step"], kind="stable", ignore_index=True)


def epoch_boundaries(run: pd.DataFrame) -> list[int]:
    """The steps at which a fine-tune starts a new pass over its data (its epoch column's
    integer part goes up)."""
    epoch = run["epoch"].astype(float).to_numpy()
    return [int(s) for s, before, now in zip(run["step"].iloc[1:], epoch[:-1], epoch[1:])
            if int(round(now, 9)) > int(round(before, 9))]
