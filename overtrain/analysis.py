"""Tidy tables from evaluation results. pandas only: no torch, no lm-eval (fast to start)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    "ft_method",
    "l2",
    "bits",
    "eval_task",
    "split",
    "metric",
    "value",
]
VARIANTS = ["base", "finetuned", "perturbed", "interpolated", "soup"]
SPLITS = ["id", "ood", "pretrain", "ft_train"]
LABEL_COLUMNS = [
    "model", "ckpt", "variant", "ft_task", "lr", "seed", "perturbation", "gamma", "ft_method", "l2", "bits"
]
# The columns of DESIGN.md's contract; the others (ft_method, l2, bits) sit between gamma and
# eval_task.
CONTRACT_COLUMNS = [
    "model", "ckpt", "tokens", "variant", "ft_task", "lr", "seed", "perturbation", "gamma",
    "eval_task", "split", "metric", "value",
]


def rows_from_eval(result: dict) -> list[dict]:
    """One evaluation JSON (labels + rows) → contract rows; absent labels stay empty."""
    labels = {c: result.get(c) for c in LABEL_COLUMNS}
    return [{**labels, "tokens": result["tokens"], **row} for row in result["rows"]]


def forgetting_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned − base, for every task that was not fine-tuned on (splits pretrain and ood).

    For a loss a positive value is forgetting; for an accuracy a negative one.
    """
    ft = df[(df["variant"] == "finetuned") & df["split"].isin(["pretrain", "ood"])]
    base = df[df["variant"] == "base"][["model", "ckpt", "eval_task", "metric", "value"]]
    merged = ft.merge(base, on=["model", "ckpt", "eval_task", "metric"], suffixes=("", "_base"))
    merged["value"] = merged["value"] - merged["value_base"]
    merged["metric"] = "forgetting_" + merged["metric"]
    return merged[METRIC_COLUMNS]


def prompt_spread_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Prompt sensitivity: max − min of a metric across a task's prompt formats, per variant."""
    from overtrain.config import PROMPT_VARIANTS

    parts = []
    for task, formats in PROMPT_VARIANTS.items():
        d = df[df["eval_task"].isin(formats) & df["metric"].isin(["acc", "acc_norm"])]
        if d["eval_task"].nunique() < len(formats):
            continue
        keys = [c for c in METRIC_COLUMNS if c not in ("eval_task", "value")]
        g = d.groupby(keys, dropna=False)["value"]
        spread = (g.max() - g.min()).reset_index()
        spread["metric"] = "prompt_spread_" + spread["metric"]
        spread["eval_task"] = task
        parts.append(spread[METRIC_COLUMNS])
    return pd.concat(parts) if parts else pd.DataFrame(columns=METRIC_COLUMNS)


def metrics_table(eval_files: list[str | Path]) -> pd.DataFrame:
    """All evaluations as one tidy table, with forgetting and prompt-sensitivity rows, in a
    deterministic order."""
    rows = []
    for path in sorted(str(p) for p in eval_files):
        rows += rows_from_eval(json.loads(Path(path).read_text()))
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    df["tokens"] = df["tokens"].astype("int64")
    for col in ("lr", "gamma", "l2"):
        df[col] = df[col].astype("float64")
    for col in ("seed", "bits"):
        df[col] = df[col].astype("Int64")
    df = pd.concat([df, forgetting_rows(df), prompt_spread_rows(df)], ignore_index=True)
    bad = set(df["variant"]) - set(VARIANTS)
    if bad:
        raise ValueError(f"unknown variants {bad}; allowed {VARIANTS}")
    bad = set(df["split"]) - set(SPLITS)
    if bad:
        raise ValueError(f"unknown splits {bad}; allowed {SPLITS}")
    order = pd.Categorical(df["variant"], categories=VARIANTS, ordered=True)
    df = df.assign(_v=order).sort_values(
        ["model", "tokens", "_v", "ft_task", "ft_method", "lr", "l2", "perturbation", "gamma",
         "bits", "seed", "split", "eval_task", "metric"],
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
    noisy = pt[(pt["variant"] == "perturbed") & (pt["perturbation"] == "gaussian")]
    parts.append(noisy.assign(condition="noise γ=" + noisy["gamma"].map("{:g}".format)))
    quant = pt[(pt["variant"] == "perturbed") & (pt["perturbation"] == "rtn")]
    parts.append(quant.assign(condition="rtn int" + quant["bits"].map(lambda b: f"{int(b)}")))
    ft = pt[(pt["variant"] == "finetuned") & (pt["l2"].fillna(0) == 0)]
    label = ft["ft_method"].fillna("full") + " lr=" + ft["lr"].map("{:g}".format)
    parts.append(ft.assign(condition="fine-tune " + label))
    out = (
        pd.concat(parts)
        .groupby(["model", "tokens", "condition"], sort=True)["value"]
        .mean()
        .reset_index()
    )
    out["increase"] = out["value"] - base.reindex(list(zip(out["model"], out["tokens"]))).to_numpy()
    return out


def epoch_jumps(losses: list[float], steps_per_epoch: float, window: int | None = None) -> list[dict]:
    """The drop of training loss at each epoch boundary, against the drop inside epochs.

    jump_e = mean(loss over the last m steps of epoch e) − mean(loss over the first m steps of
    epoch e+1), m ≈ 5% of an epoch (≥ 1). The same difference of adjacent m-step windows taken
    inside epochs gives the ordinary trend; `excess` = jump − that trend (the fast.ai "learning
    jump" is a large positive excess).
    """
    loss = np.asarray(losses, dtype=float)
    m = window or max(1, int(round(0.05 * steps_per_epoch)))
    boundaries = [
        int(round(e * steps_per_epoch)) for e in range(1, int(len(loss) // steps_per_epoch) + 1)
    ]
    boundaries = [b for b in boundaries if m <= b <= len(loss) - m]
    if not boundaries:
        return []

    def drop(t: int) -> float:
        return float(loss[t - m : t].mean() - loss[t : t + m].mean())

    inside = [t for t in range(m, len(loss) - m + 1) if all(abs(t - b) >= m for b in boundaries)]
    trend = float(np.mean([drop(t) for t in inside])) if inside else 0.0
    return [
        {"epoch": e + 1, "jump": drop(b), "excess": drop(b) - trend}
        for e, b in enumerate(boundaries)
    ]


def learning_jump_rows(train_log_csv: str | Path, task: str) -> list[dict]:
    """Evaluation-style rows (split ft_train) for each epoch boundary of a fine-tune's log."""
    log = pd.read_csv(train_log_csv)
    if len(log) < 2 or log["epoch"].iloc[1] <= 0:
        return []
    steps_per_epoch = 1.0 / float(log["epoch"].iloc[1] - log["epoch"].iloc[0])
    rows = []
    for j in epoch_jumps(log["loss"].tolist(), steps_per_epoch):
        for name in ("jump", "excess"):
            rows.append(
                {
                    "eval_task": task,
                    "split": "ft_train",
                    "metric": f"epoch{j['epoch']}_loss_{name}",
                    "value": j[name],
                }
            )
    return rows
