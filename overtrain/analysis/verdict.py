"""The verdict rule, in code and in words, from one place: hypotheses applies it, and the
findings page and the report state it (the report's captions through the rules' params).
Standard library only, so the workflow can state it at parse time."""

from __future__ import annotations

import math

MIN_EFFECT = 0.01  # nats or accuracy: 1% perplexity, one accuracy point


def verdict(ci_low: float, ci_high: float, n: int, min_effect: float = 0.0) -> str:
    """supported if the 95% interval lies above δ, not supported if at or below −δ, else (or with
    fewer than 2 replicates, or a non-finite interval) inconclusive."""
    if n < 2 or not math.isfinite(ci_low) or not math.isfinite(ci_high):
        return "inconclusive"
    if ci_low > min_effect:
        return "supported"
    if ci_high <= -min_effect:
        return "not supported"
    return "inconclusive"


def rule(min_effect: float) -> str:
    """The rule as the findings page and the report state it."""
    return (
        "**supported** if the 95% interval of the effect (signed so that > 0 is what the paper claims) lies "
        "above δ, **not supported** if it lies at or below −δ, **inconclusive** otherwise (or with fewer than "
        "2 replicates, or when the study did not measure what the claim needs). δ is the smallest effect a "
        f"verdict counts (`analysis.min_effect`: {min_effect:g} nats or accuracy; 0 for claims on T*'s "
        "location, which moves in whole budgets). With three replicates the percentile interval of a mean is "
        "the range of the replicates' own values: read a firm verdict as 'every replicate shows it, by more "
        "than δ'; without the margin a claim every replicate shows by a hair flips with the float rounding "
        "of the next CPU. An effect measured at a best budget (an interior T*, a degradation past T*) is "
        "cross-fitted: each replicate's effect is taken at the T* the other replicates choose, so that the "
        "best of several noisy budgets does not pass for an effect."
    )
