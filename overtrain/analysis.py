"""Tidy tables from evaluation results. pandas only: no torch, no lm-eval (fast to start)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

# The contract of tables/metrics.csv (DESIGN.md): one row per measurement, in this order.
METRIC_COLUMNS = [
    "model",
    "ckpt",
    "tokens",
    "variant",
    "ft_task",
    "lr",
    "seed",
    "perturbation",
    "gamma",
    "eval_task",
    "split",
    "metric",
    "value",
]
VARIANTS = ["base", "finetuned", "perturbed", "interpolated", "soup"]
SPLITS = ["id", "ood", "pretrain", "ft_train"]
LABEL_COLUMNS = ["model", "ckpt", "variant", "ft_task", "lr", "seed", "perturbation", "gamma"]


def rows_from_eval(result: dict) -> list[dict]:
    """One evaluation JSON (labels + rows) → contract rows; absent labels stay empty."""
    labels = {c: result.get(c) for c in LABEL_COLUMNS}
    return [{**labels, "tokens": result["tokens"], **row} for row in result["rows"]]


def metrics_table(eval_files: list[str | Path]) -> pd.DataFrame:
    """All evaluations as one tidy table, in a deterministic order."""
    rows = []
    for path in sorted(str(p) for p in eval_files):
        rows += rows_from_eval(json.loads(Path(path).read_text()))
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    df["tokens"] = df["tokens"].astype("int64")
    df["seed"] = df["seed"].astype("Int64")
    df["lr"] = df["lr"].astype("float64")
    df["gamma"] = df["gamma"].astype("float64")
    bad = set(df["variant"]) - set(VARIANTS)
    if bad:
        raise ValueError(f"unknown variants {bad}; allowed {VARIANTS}")
    bad = set(df["split"]) - set(SPLITS)
    if bad:
        raise ValueError(f"unknown splits {bad}; allowed {SPLITS}")
    order = pd.Categorical(df["variant"], categories=VARIANTS, ordered=True)
    df = df.assign(_v=order).sort_values(
        ["model", "tokens", "_v", "ft_task", "lr", "perturbation", "gamma", "seed", "split", "eval_task", "metric"],
        kind="mergesort",
        na_position="first",
    )
    return df.drop(columns="_v").reset_index(drop=True)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    from overtrain.atomic import atomic_write_text

    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))


def select(df: pd.DataFrame, **equal) -> pd.DataFrame:
    """Rows whose columns equal the given values."""
    mask = pd.Series(True, index=df.index)
    for col, value in equal.items():
        mask &= df[col] == value
    return df[mask]


def pretrain_loss_by_variant(df: pd.DataFrame) -> pd.DataFrame:
    """Held-out pretraining loss per checkpoint for base, each γ and each learning rate.

    Noise and fine-tuning seeds are averaged; columns: model, tokens, condition, value, increase
    (over the base checkpoint's loss).
    """
    pt = select(df, split="pretrain", metric="loss")
    base = pt[pt["variant"] == "base"].set_index(["model", "tokens"])["value"]
    parts = [pt[pt["variant"] == "base"].assign(condition="base")]
    noisy = pt[pt["variant"] == "perturbed"]
    parts.append(noisy.assign(condition="noise γ=" + noisy["gamma"].map("{:g}".format)))
    ft = pt[pt["variant"] == "finetuned"]
    parts.append(ft.assign(condition="fine-tune lr=" + ft["lr"].map("{:g}".format)))
    out = (
        pd.concat(parts)
        .groupby(["model", "tokens", "condition"], sort=True)["value"]
        .mean()
        .reset_index()
    )
    out["increase"] = out["value"] - base.reindex(list(zip(out["model"], out["tokens"]))).to_numpy()
    return out
