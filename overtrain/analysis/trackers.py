"""A study in the trackers the field uses, offline: TensorBoard event files and Weights & Biases
offline runs (`wandb sync` uploads them later, from any machine with a login; no credential is
ever needed where the study runs).

Written after the fact from what the jobs already wrote — the training curves table (every logged
step), Snakemake's benchmark of each training job (its wall time: the throughput) and metrics.csv
(every evaluation) — so tracking changes no training job and costs nothing when off. Runs:

- one per training job, named like its output: `<model>/<ckpt>` (a pretraining run or WSD decay
  branch), `<model>/stable-s<seed>` (the stable run, all segments), `<model>/<ckpt>/<task>/<run>`
  (a fine-tune); scalars per logged step `train/loss`, `train/lr`, `train/grad_norm` (and
  `train/tokens_seen` when pretraining), and at the last step the job's mean throughput
  `throughput/tokens_per_s` (pretraining) or `throughput/steps_per_s` (fine-tuning);
- one evaluation run per model and pretraining seed, `<model>/evaluation[-s<seed>]`, whose step is
  the checkpoint's pretraining tokens: `<variant>/<split>/<eval_task>/<metric>` for the base,
  each fine-tune and each perturbation.

tensorboard and wandb are optional extras (`pip install overtrain[tracking]`), imported only here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from overtrain import ids
from overtrain.analysis.train_logs import path_labels
from overtrain.perturb import KINDS, variant_id


@dataclass
class Run:
    """One tracked run: its name, kind, labels (the run's config) and scalars as (tag, step, value)."""

    name: str
    job_type: str
    labels: dict
    scalars: list[tuple[str, int, float]] = field(default_factory=list)


def _value(x) -> object:
    """A JSON-friendly label (NaN → None, numpy numbers → Python)."""
    if isinstance(x, float) and math.isnan(x):
        return None
    return x.item() if hasattr(x, "item") else x


LABELS = ["model", "ckpt", "tokens", "pretrain_seed", "phase", "ft_task", "ft_method", "l2", "lr", "seed"]


def run_name(labels: dict) -> str:
    """A training job's run, named like its output directory (train_logs.path_labels): a stable
    run's segments are one run."""
    if labels.get("phase") == "stable":
        return f"{labels['model']}/stable-s{int(labels['pretrain_seed'])}"
    if labels.get("phase") == "finetune":
        run = ids.run_id(labels["lr"], int(labels["seed"]), labels["ft_method"], labels["l2"])
        return f"{labels['model']}/{labels['ckpt']}/{labels['ft_task']}/{run}"
    return f"{labels['model']}/{labels['ckpt']}"


def training_runs(curves: pd.DataFrame, seconds: dict[str, float] | None = None) -> list[Run]:
    """A run per training job from the curves table; `seconds` (run name → the job's wall time,
    summed over a stable run's segments) adds its throughput at the last step."""
    seconds = seconds or {}
    if curves.empty:
        return []
    jobs = curves[LABELS].astype(object).where(curves[LABELS].notna(), None)
    names = {key: run_name(dict(zip(LABELS, key))) for key in set(jobs.itertuples(index=False, name=None))}
    curves = curves.assign(run=[names[key] for key in jobs.itertuples(index=False, name=None)])
    out = []
    for name, g in curves.groupby("run", sort=True):
        g = g.sort_values("step")
        labels = {k: _value(v) for k, v in g.iloc[0][LABELS].items()}
        pretraining = labels["phase"] != "finetune"
        if labels["phase"] == "stable":
            labels["ckpt"] = None
        run = Run(name, "pretrain" if pretraining else "finetune", labels)
        steps = g["step"].astype(int).tolist()
        series = {"train/loss": g["loss"], "train/lr": g["step_lr"], "train/grad_norm": g["grad_norm"]}
        if pretraining:
            series["train/tokens_seen"] = g["tokens_seen"]
        for tag, values in series.items():
            run.scalars += [(tag, step, float(v)) for step, v in zip(steps, values) if pd.notna(v)]
        if seconds.get(name):
            last = steps[-1]
            if pretraining:
                per_step = float(g["tokens_seen"].iloc[-1]) / (last + 1)
                run.scalars.append(("throughput/tokens_per_s", last, len(g) * per_step / seconds[name]))
            else:
                run.scalars.append(("throughput/steps_per_s", last, len(g) / seconds[name]))
        out.append(run)
    return out


def _variant(r: pd.Series) -> str:
    if r["variant"] == "finetuned":
        return ids.finetuned_variant(r["ft_task"], ids.run_id(r["lr"], int(r["seed"]), r["ft_method"], r["l2"]))
    if r["variant"] == "perturbed":
        kind = KINDS[r["perturbation"]]
        return variant_id(kind.name, {k: r[k] for k in (kind.parameter, "seed") if pd.notna(r[k])})
    return str(r["variant"])


def evaluation_runs(metrics: pd.DataFrame) -> list[Run]:
    """An evaluation run per model and pretraining seed, stepped by pretraining tokens."""
    rows = metrics[metrics["variant"].isin(["base", "finetuned", "perturbed"])
                   & pd.to_numeric(metrics["value"], errors="coerce").notna()]
    out = []
    for (model, seed), g in rows.groupby(["model", rows["pretrain_seed"].fillna(-1)], sort=True):
        name = f"{model}/evaluation" + (f"-s{int(seed)}" if seed >= 0 else "")
        run = Run(name, "evaluation", {"model": model, "pretrain_seed": None if seed < 0 else int(seed)})
        for _, r in g.sort_values("tokens").iterrows():
            tag = f"{_variant(r)}/{r['split']}/{r['eval_task']}/{r['metric']}"
            run.scalars.append((tag, int(r["tokens"]), float(r["value"])))
        out.append(run)
    return out


def job_seconds(root: str | Path, benchmarks: list[tuple[str | Path, str | Path]]) -> dict[str, float]:
    """Run name → wall seconds from (training job's output directory under `root`, its Snakemake
    benchmark file) pairs; a stable run's segments add up."""
    out: dict[str, float] = {}
    for job_dir, path in benchmarks:
        name = run_name(path_labels(root, job_dir))
        out[name] = out.get(name, 0.0) + float(pd.read_csv(path, sep="\t")["s"].iloc[-1])
    return out


def write_tensorboard(runs: list[Run], out_dir: str | Path) -> None:
    """One event-file directory per run under out_dir (`tensorboard --logdir out_dir`)."""
    from tensorboard.summary import Writer

    for run in runs:
        writer = Writer(str(Path(out_dir, run.name)))
        for tag, step, value in run.scalars:
            writer.add_scalar(tag, value, step)
        writer.close()


def write_wandb(runs: list[Run], out_dir: str | Path, project: str, group: str, config: dict) -> None:
    """Weights & Biases offline runs under out_dir/wandb (`wandb sync out_dir/wandb/offline-run-*`),
    grouped by the experiment, named like the jobs, the study's config attached."""
    os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    settings = wandb.Settings(mode="offline", silent=True, x_disable_stats=True, disable_git=True, save_code=False,
                              console="off")
    for run in runs:
        handle = wandb.init(dir=str(Path(out_dir).resolve()), project=project, group=group, name=run.name, job_type=run.job_type,
                            config={**run.labels, "study": config}, settings=settings)
        by_step: dict[int, dict] = {}
        for tag, step, value in run.scalars:
            by_step.setdefault(step, {})[tag] = value
        for step in sorted(by_step):
            handle.log(by_step[step], step=step)
        handle.finish()
