"""A run beside the paper it reproduces: the published numbers (a results model with `beside:
<our model>`, overtrain.evaluation.imported) joined with our own measurements of the same
condition — checkpoint (the published checkpoint nearest in pretraining tokens, within a relative
tolerance), variant, fine-tuning task, evaluation task and metric — one row per our measurement
that has a published counterpart: our mean over replicates with its 95% interval, the published
number and the difference. pandas only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from overtrain.analysis.intervals import N_BOOT, interval, replicate_ids, resample_means, summarize

# the condition a published number is joined on (the split is ours: a table calls a prompt
# variant of a task's own test set out of distribution where we call it in)
CONDITION = ["variant", "ft_task", "eval_task", "metric"]
COLUMNS = ["model", "published_model", "ckpt", "tokens", "published_ckpt", "published_tokens", "variant", "ft_task",
           "lr", "published_lr", "eval_task", "split", "metric", "ours", "ci_low", "ci_high", "n", "published",
           "difference", "note"]


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


def stated_changes(rows: pd.DataFrame, model: str, changes: pd.DataFrame, tolerance: float = 0.05,
                   n_boot: int = N_BOOT, per_rate: bool = False) -> pd.DataFrame:
    """Changes a paper states in its text ("the 3T checkpoint is ≈ 3% worse on AlpacaEval than the
    2.3T one after fine-tuning"), beside ours: the relative change (%) of the metric from our
    checkpoint nearest `from_tokens` to ours nearest `to_tokens` (each within `tolerance`), per
    replicate, then its mean and 95% interval. `rows`: the fine-tuned rows to read — the tuned
    learning rate's (one per checkpoint and replicate), or every rate's with `per_rate` (a row
    each). A stated change no checkpoint pair of ours matches is kept, `ours` empty and `note`
    saying why."""
    out = []
    mine = rows[(rows["model"] == model) & (rows["variant"] == "finetuned")]
    tokens = np.array(sorted(mine["tokens"].unique()), dtype=float)
    for _, c in changes.iterrows():
        ends = [nearest(float(c[k]), tokens, tolerance) for k in ("from_tokens", "to_tokens")]
        d = mine[(mine["ft_task"] == c["ft_task"]) & (mine["eval_task"] == c["eval_task"]) & (mine["metric"] == c["metric"])]
        row = {"model": model, "published_model": c["source"], "published_ckpt": f"{c['from_tokens']:.3g} → {c['to_tokens']:.3g}",
               "published_tokens": int(c["to_tokens"]), "variant": "finetuned", "ft_task": c["ft_task"],
               "eval_task": c["eval_task"], "split": d["split"].iloc[0] if len(d) else None,
               "metric": f"{c['metric']}: relative change (%)", "published": float(c["change"])}
        if None in ends or ends[0] == ends[1] or d.empty:
            why = "no two checkpoints of ours within the tolerance" if None in ends or ends[0] == ends[1] else "not measured"
            out.append({**row, "note": f"{why} (tokens {c['from_tokens']:.3g} → {c['to_tokens']:.3g})"})
            continue
        ckpt = {t: mine.loc[mine["tokens"] == t, "ckpt"].iloc[0] for t in ends}
        for lr, g in (d.groupby("lr") if per_rate else [(None, d)]):
            per = g.assign(_replicate=replicate_ids(g)).pivot_table(index="_replicate", columns="tokens",
                                                                     values="value", aggfunc="mean")
            if not set(ends) <= set(per.columns):
                out.append({**row, "lr": lr, "note": "no replicate has both checkpoints"})
                continue
            values = (100 * (per[ends[1]] - per[ends[0]]) / per[ends[0]].abs()).dropna().to_numpy(float)
            if len(values) == 0:
                out.append({**row, "lr": lr, "note": "no replicate has both checkpoints"})
                continue
            lo, hi = interval(resample_means(values, n_boot)) if len(values) > 1 else (values.mean(), values.mean())
            out.append({**row, "ckpt": f"{ckpt[ends[0]]} → {ckpt[ends[1]]}", "tokens": int(ends[1]), "lr": lr,
                        "ours": values.mean(), "ci_low": lo, "ci_high": hi, "n": len(values),
                        "difference": values.mean() - float(c["change"]), "note": None})
    return pd.DataFrame(out, columns=COLUMNS)
