"""Every analysis table of a study, from its metrics.csv and its connectivity results: what the
analyses rule writes (tables/<name>.csv, one per key of the dict `compute` returns; the
workflow reads those names from this code: overtrain.analysis.catalog)."""

from __future__ import annotations

import pandas as pd

from overtrain.analysis import contrasts, hypotheses, published, tables


def compute(metrics: pd.DataFrame, connectivity: list[dict], select: dict | None, n_boot: int,
            min_effect: float, pairs: list[dict] = (), beside: dict[str, str] | None = None,
            tolerance: float = 0.05, stated: list[tuple[str, pd.DataFrame]] = ()) -> dict[str, pd.DataFrame]:
    """The tables, by name. `select` (analysis.select) chooses each checkpoint's learning rate on
    validation; without it the tuned-rate tables are empty and the claims that need them say so.
    `pairs` (overtrain.study.Study.pairs): models compared at equal tokens, whose claims follow
    the per-model ones in hypotheses.csv. `beside` (published model → our model): the published
    numbers joined with ours at checkpoints within `tolerance` (relative tokens); `stated` (our
    model, a paper's stated changes): those changes beside ours, at the tuned learning rate."""
    best = tables.best_learning_rates(metrics, select) if select else pd.DataFrame(columns=tables.RUN_KEYS + ["lr"])
    trend = [{"model": m, "ft_task": t, "ft_method": meth, "l2": l2,
              "trend": tables.lr_trend(g["tokens"].tolist(), g["lr"].tolist())}
             for (m, t, meth, l2), g in best.groupby(["model", "ft_task", "ft_method", "l2"], dropna=False)]
    barriers, soups = tables.connectivity_tables(connectivity)
    chosen = best if select else None
    claims = hypotheses.claims(metrics, chosen, barriers, n_boot, min_effect)
    if pairs:
        claims = pd.concat([claims, contrasts.claims(metrics, list(pairs), n_boot, min_effect)], ignore_index=True)
    tuned = tables.tuned_metrics(metrics, best) if select else pd.DataFrame(columns=tables.METRIC_COLUMNS)
    paper = [published.beside(metrics, beside or {}, tolerance, n_boot)]
    paper += [published.stated_changes(tuned if select else metrics, model, changes, tolerance, n_boot,
                                       per_rate=not select) for model, changes in stated]
    return {
        "hypotheses": claims,
        "pretrain_loss": tables.pretrain_loss_by_variant(metrics, n_boot),
        "best_lr": best,
        "lr_trend": pd.DataFrame(trend, columns=["model", "ft_task", "ft_method", "l2", "trend"]),
        "tuned": tuned,
        "inflection": tables.inflection_table(metrics, chosen, n_boot),
        "finetune_gain": tables.finetune_gain(metrics),
        "barriers": barriers,
        "soups": soups,
        "contrasts": contrasts.gap_table(metrics, list(pairs), n_boot),
        "published": pd.concat([p for p in paper if len(p)], ignore_index=True) if any(len(p) for p in paper) else paper[0],
    }
