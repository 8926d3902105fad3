"""What a claim is judged on (Evidence: one model's rows, its chosen learning rates, its
connectivity barriers, the verdict settings) and the row a claim writes: its effect with a 95%
interval and verdict, or the "not measured" row. pandas only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from overtrain.analysis.intervals import N_BOOT
from overtrain.analysis.statistics import bootstrap_effect
from overtrain.analysis.tables import tuned_metrics
from overtrain.analysis.verdict import MIN_EFFECT, verdict

COLUMNS = ["hypothesis", "source", "condition", "effect", "ci_low", "ci_high", "min_effect", "n_seeds", "verdict",
           "statistic"]
SPRINGER = "Springer et al. 2025"
AMURO = "Amuro & Char (Sun & Dredze 2024)"


@dataclass(frozen=True)
class Evidence:
    """What the claims of one model are judged on: its rows of metrics.csv, the learning rates
    chosen on validation, the connectivity barriers, and the verdict settings."""

    model: str
    rows: pd.DataFrame
    best: pd.DataFrame | None = None
    barriers: pd.DataFrame | None = None
    n_boot: int = N_BOOT
    min_effect: float = MIN_EFFECT

    @property
    def pretrain_loss(self) -> pd.DataFrame:
        m = self.rows
        return m[(m["split"] == "pretrain") & (m["metric"] == "loss")]

    def perturbed(self, kind: str) -> pd.DataFrame:
        """Pretraining-loss rows of one perturbation kind."""
        pt = self.pretrain_loss
        return pt[(pt["variant"] == "perturbed") & (pt["perturbation"] == kind)]

    def finetuned_by_method(self) -> dict[str, pd.DataFrame]:
        """Pretraining-loss rows of fine-tunes without an ℓ2 pull: full fine-tunes, and LLaVA ones
        (the same claims after multimodal tuning: Springer §3.4.2)."""
        pt = self.pretrain_loss
        tuned_by = pt[(pt["variant"] == "finetuned") & (pt["l2"].fillna(0) == 0)]
        method = tuned_by["ft_method"].fillna("full")
        return {mth: tuned_by[method == mth] for mth in ("full", "llava") if (method == mth).any()}

    def tuned(self, rows: pd.DataFrame | None = None) -> pd.DataFrame:
        """`rows` (default: all) of the fine-tunes at the learning rate chosen on validation."""
        rows = self.rows if rows is None else rows
        if self.best is None or self.best.empty:
            return rows.iloc[0:0]
        return tuned_metrics(rows, self.best)

    def judged(self, hypothesis: str, source: str, condition: str, statistic: str, curves: list[pd.DataFrame],
               fn: Callable[..., float], margin: bool = True) -> dict:
        """A claim's row: `fn`'s effect on `curves` with its interval and verdict. `margin`: the
        effect is in nats or accuracy and δ applies; off for T*'s location, which moves in
        whole budgets."""
        result = bootstrap_effect(curves, fn, self.n_boot)
        delta = self.min_effect if margin else 0.0
        return {"hypothesis": hypothesis, "source": source, "condition": condition, "statistic": statistic,
                **result, "min_effect": delta,
                "verdict": verdict(result["ci_low"], result["ci_high"], result["n_seeds"], delta)}


def not_measured(hypothesis: str, source: str, why: str) -> dict:
    """The row of a claim the study did not measure, saying what is missing."""
    return {"hypothesis": hypothesis, "source": source, "condition": f"not measured: {why}", "statistic": "",
            "effect": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_seeds": 0, "min_effect": np.nan,
            "verdict": "inconclusive"}


def method_prefix(method: str) -> str:
    """How a condition names the fine-tuning method: nothing for full fine-tuning."""
    return "" if method == "full" else f"{method}, "


def l2_suffix(l2: float) -> str:
    """How a condition names the ℓ2 pull toward the pretrained weights: nothing at λ = 0."""
    return f", λ={l2:g}" if l2 else ""
