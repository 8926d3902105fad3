"""Means with 95% bootstrap intervals over replicates, for every table, figure and claim.

A replicate is an independent repetition of the study's randomness: a pretraining seed when the
study has several (the controlled study: initialisation and data order), else the run's own
seed (fine-tuning data order, noise draw). Values are first averaged within a replicate (over
the other seeds), then the replicates are resampled with replacement. pandas and numpy only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_BOOT = 1000
LEVEL = 0.95


def replicate_ids(df: pd.DataFrame) -> pd.Series:
    """Each row's replicate: its pretraining seed when the rows span several, else its own seed
    (0 where it has none, e.g. a base checkpoint)."""
    pretrain = df["pretrain_seed"] if "pretrain_seed" in df else pd.Series(pd.NA, index=df.index)
    if pretrain.dropna().nunique() > 1:
        return pretrain.fillna(0).astype("int64")
    seed = df["seed"] if "seed" in df else pd.Series(pd.NA, index=df.index)
    return seed.fillna(0).astype("int64")


def resample_means(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement) of the replicates' values."""
    values = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    return values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)


def interval(samples: np.ndarray) -> tuple[float, float]:
    """The central 95% of bootstrap samples."""
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(np.asarray(samples, float), [tail, 100 - tail])
    return float(lo), float(hi)


def summarize(df: pd.DataFrame, by: list[str], value: str = "value", n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per group of `by`: the mean over replicates, its 95% bootstrap interval and the number of
    replicates (one replicate: the interval is the point).

    A non-finite replicate (a fine-tune that diverged, a model whose loss overflowed) makes the
    mean non-finite, which is what it is, and the tables say so; the interval is over the finite
    replicates, the spread of those that trained (figures leave such a budget out and mark the
    diverged fine-tunes instead)."""
    d = df.assign(_replicate=replicate_ids(df))
    per = d.groupby(by + ["_replicate"], dropna=False)[value].mean().reset_index()
    rows = []
    for key, g in per.groupby(by, dropna=False, sort=True):
        values = g[value].to_numpy(float)
        finite = values[np.isfinite(values)] if np.isfinite(values).any() else values
        mean = float(values.mean())
        lo, hi = interval(resample_means(finite, n_boot)) if len(finite) > 1 else (mean, mean)
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "mean": mean, "ci_low": lo,
                     "ci_high": hi, "n": len(values)})
    return pd.DataFrame(rows, columns=by + ["mean", "ci_low", "ci_high", "n"])


def curves(df: pd.DataFrame, value: str = "value", dropna: bool = False) -> pd.DataFrame:
    """A (tokens × replicate) table of the replicate means; a replicate missing a budget is
    dropped. `dropna` first drops the budgets no replicate has a value for (the claims' curves),
    where by default such a budget empties the table (T* must see every budget)."""
    d = df.assign(_replicate=replicate_ids(df))
    wide = d.pivot_table(index="tokens", columns="_replicate", values=value, aggfunc="mean", dropna=dropna)
    return wide.dropna(axis=1).sort_index()
