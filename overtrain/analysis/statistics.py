"""Statistics of the claims: an effect and its 95% interval over replicates, from the mean curves
over pretraining tokens (bootstrap_effect), cross-fitted where the statistic selects a budget
(Selected), and the statistics themselves, each signed so that a positive value is what a paper
claims. numpy and pandas only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from overtrain.analysis.intervals import N_BOOT, curves, interval, resample_means


def bootstrap_effect(rows: list[pd.DataFrame], statistic: Callable[..., float], n_boot: int = N_BOOT,
                     seed: int = 0) -> dict:
    """Effect and interval of `statistic(tokens, *mean_curves)` over joint resamples of the
    replicates (the same resample for every curve; a replicate missing a budget is dropped). A
    statistic that selects a budget (Selected) is cross-fitted instead: see Selected."""
    wide = [curves(r, dropna=True) for r in rows]
    if any(c.empty for c in wide):
        return {"effect": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_seeds": 0}
    tokens = sorted(set.intersection(*(set(c.index) for c in wide)))
    reps = sorted(set.intersection(*(set(c.columns) for c in wide)))
    if len(tokens) < 2 or not reps:
        return {"effect": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_seeds": len(reps)}
    mats = [c.loc[tokens, reps].to_numpy(float) for c in wide]
    x = np.asarray(tokens, float)
    n = len(reps)
    rng = np.random.default_rng(seed)
    if isinstance(statistic, Selected) and n >= 2:
        per_replicate = statistic.cross_fitted(x, mats[0])
        lo, hi = interval(resample_means(per_replicate, n_boot, seed))
        return {"effect": float(np.mean(per_replicate)), "ci_low": lo, "ci_high": hi, "n_seeds": n}

    def at(cols) -> float:
        return float(statistic(x, *(m[:, cols].mean(axis=1) for m in mats)))

    effect = at(np.arange(n))
    if n < 2:
        return {"effect": effect, "ci_low": effect, "ci_high": effect, "n_seeds": n}
    lo, hi = interval([at(rng.integers(0, n, n)) for _ in range(n_boot)])
    return {"effect": effect, "ci_low": lo, "ci_high": hi, "n_seeds": n}


@dataclass(frozen=True)
class Selected:
    """A statistic that selects a budget, T*, and measures a gain there. Selecting the best of
    several noisy budgets and measuring at it on the same curves is biased upward: on a flat,
    noisy curve the best budget is best by its noise. So it is cross-fitted: each replicate's gain
    is measured at the T* the other replicates choose (their mean curve), which its own noise did
    not pick; the effect is the mean of these per-replicate gains, resampled over replicates. Its
    expectation is the true gain at an honestly chosen T* (conservative, never inflated)."""

    pick: Callable[[np.ndarray, np.ndarray], int | None]  # T*'s index on a mean curve
    gain: Callable[[np.ndarray, int], float]  # one curve's statistic at that index

    def __call__(self, x, y) -> float:
        """The plain statistic on one curve (a study with one replicate: no verdict)."""
        k = self.pick(x, y)
        return np.nan if k is None else float(self.gain(y, k))

    def cross_fitted(self, x, values: np.ndarray) -> np.ndarray:
        """Per replicate (a column of `values`, budgets × replicates): its gain at the T* of the
        others' mean curve."""
        n = values.shape[1]
        out = []
        for r in range(n):
            k = self.pick(x, values[:, [c for c in range(n) if c != r]].mean(axis=1))
            out.append(np.nan if k is None else float(self.gain(values[:, r], k)))
        return np.asarray(out)


# statistics of mean curves (x: tokens) ---------------------------------------------------------

def slope(x, y) -> float:
    """Change per doubling of pretraining tokens (least squares on log2 tokens)."""
    finite = np.isfinite(y)
    return float(np.polyfit(np.log2(x[finite]), y[finite], 1)[0]) if finite.sum() >= 2 else np.nan


# how much better the best interior budget is than the better end (> 0: an interior T*)
u_depth = Selected(pick=lambda x, y: 1 + int(np.argmin(y[1:-1])) if len(y) >= 3 else None,
                   gain=lambda y, k: min(y[0], y[-1]) - y[k])
# how much worse the largest budget is than T*, the best earlier budget: > 0 when it degraded past
# an earlier T*, < 0 by how much it still improved (signed, so that "not supported" is an interval
# below 0, not a degenerate [0, 0] that one replicate's tie turns into "inconclusive")
end_worse = Selected(pick=lambda x, y: int(np.argmin(y[:-1])), gain=lambda y, k: y[-1] - y[k])


def log_slope(x, y) -> float:
    """Relative change per doubling of pretraining tokens: the slope of ln y (y > 0)."""
    return slope(x, np.log(np.where(y > 0, y, np.nan)))


def rank_correlation(x, y_a, y_b) -> float:
    """Spearman's correlation of two curves over the budgets (+1: they rise and fall together)."""
    from scipy.stats import spearmanr

    ok = np.isfinite(y_a) & np.isfinite(y_b)
    if ok.sum() < 3:
        return np.nan
    return float(spearmanr(y_a[ok], y_b[ok]).statistic)


def earlier(x, y_small, y_large) -> float:
    """log2 T*(small) − log2 T*(large): > 0 when the larger perturbation's T* comes earlier."""
    return float(np.log2(x[int(np.argmin(y_small))]) - np.log2(x[int(np.argmin(y_large))]))


def later(x, y_without, y_with) -> float:
    return -earlier(x, y_without, y_with)


def mean_gap(x, y_a, y_b) -> float:
    """Mean over budgets of a − b."""
    return float(np.mean(y_a - y_b))
