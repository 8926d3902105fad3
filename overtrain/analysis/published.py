"""A run beside the paper it reproduces: the published numbers (a results model with `beside:
<our model>`, overtrain.evaluation.imported) joined with our own measurements of the same
condition — checkpoint (the published checkpoint nearest in pretraining tokens, within a relative
tolerance), variant, fine-tuning task, evaluation task and metric — one row per our measurement
that has a published counterpart: our mean over replicates with its 95% interval, the published
number and the difference. pandas only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from overtrain.analysis.intervals import N_BOOT, summarize

# the condition a published number is joined on (the split is ours: a table calls a prompt
# variant of a task's own test set out of distribution where we call it in)
CONDITION = ["variant", "ft_task", "eval_task", "metric"]
COLUMNS = ["model", "published_model", "ckpt", "tokens", "published_ckpt", "published_tokens", "variant", "ft_task",
           "lr", "published_lr", "eval_task", "split", "metric", "ours", "ci_low", "ci_high", "n", "published",
           "difference"]


def nearest(tokens: float, candidates: np.ndarray, tolerance: float) -> float | None:
    """The candidate nearest to `tokens` if it is within `tolerance` × tokens, else None."""
    if len(candidates) == 0:
        return None
    best = candidates[np.argmin(np.abs(candidates - tokens))]
    return float(best) if abs(best - tokens) <= tolerance * tokens else None


def beside(metrics: pd.DataFrame, pairs: dict[str, str], tolerance: float = 0.05,
           n_boot: int = N_BOOT) -> pd.DataFrame:
    """Our rows beside the published ones for every (published model → our model) of `pairs`."""
    out = []
    keep = metrics["variant"].isin(["base", "finetuned"]) & pd.to_numeric(metrics["value"], errors="coerce").notna()
    rows = metrics[keep].astype({"value": float})
    for published_model, model in pairs.items():
        paper = rows[rows["model"] == published_model]
        ours = rows[rows["model"] == model]
        if paper.empty or ours.empty:
            continue
        ours = summarize(ours.assign(ft_task=ours["ft_task"].fillna(""), lr=ours["lr"].fillna(-1)),
                         ["ckpt", "tokens", "lr", "split"] + CONDITION, n_boot=n_boot)
        paper = paper.assign(ft_task=paper["ft_task"].fillna(""), lr=paper["lr"].fillna(-1))
        paper_tokens = np.array(sorted(paper["tokens"].unique()), dtype=float)
        by_condition = {key: g for key, g in paper.groupby(CONDITION + ["tokens"], dropna=False)}
        for _, r in ours.iterrows():
            match = nearest(float(r["tokens"]), paper_tokens, tolerance)
            if match is None:
                continue
            found = by_condition.get(tuple(r[c] for c in CONDITION) + (match,))
            if found is None:
                continue
            same_rate = found[found["lr"] == r["lr"]]
            p = (same_rate if len(same_rate) else found).iloc[0]
            out.append({"model": model, "published_model": published_model, "ckpt": r["ckpt"], "tokens": int(r["tokens"]),
                        "published_ckpt": p["ckpt"], "published_tokens": int(p["tokens"]), "variant": r["variant"],
                        "ft_task": r["ft_task"] or None, "lr": None if r["lr"] < 0 else r["lr"],
                        "published_lr": None if p["lr"] < 0 else p["lr"], "eval_task": r["eval_task"],
                        "split": r["split"], "metric": r["metric"], "ours": r["mean"], "ci_low": r["ci_low"],
                        "ci_high": r["ci_high"], "n": r["n"], "published": float(p["value"]),
                        "difference": r["mean"] - float(p["value"])})
    return pd.DataFrame(out, columns=COLUMNS)
