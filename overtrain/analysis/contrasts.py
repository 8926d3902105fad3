"""Claims that compare two models of a study at equal tokens (a pair: a treatment and a control).

Progressive sensitivity could come from the tokens themselves or from how the checkpoints were
made. Two controls separate them:

- annealing: a controlled model's decayed checkpoints (WSD, the learning rate annealed to the
  budget) against its stable run at the same tokens (models.<name>.stable_checkpoints makes the
  companion <name>-stable), or a hub model's annealed revisions against unannealed ones
  (models.<name>.compare). If annealing, not tokens, made checkpoints fragile, the decayed ones
  are the more sensitive and the stable ones' sensitivity does not grow (the latter is the usual
  per-model claim on <name>-stable: overtrain.analysis.hypotheses).
- sam: a model pretrained with sharpness-aware minimisation (optimizer.sam_rho) against one
  without. SAM lowers the sharpness that is thought to carry the sensitivity; if it does, the
  SAM model is the less damaged by noise and by fine-tuning.

Each claim is the mean over budgets of the paired gap (the same pretraining seed and data on
both sides), signed so that a positive value is what the factor is claimed to do, with its
interval over replicates (overtrain.analysis.statistics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from overtrain.analysis.evidence import COLUMNS, not_measured
from overtrain.analysis.intervals import N_BOOT, curves, interval, resample_means, summarize
from overtrain.analysis.tables import increase_over_base
from overtrain.analysis.verdict import MIN_EFFECT, verdict
from overtrain.perturb import KINDS


@dataclass(frozen=True)
class Factor:
    """What a pair's treatment is claimed to do: raise (+1) or lower (−1) the damage."""

    name: str
    direction: int  # +1: the treatment is claimed more fragile; −1: less
    verb: str
    source: str


FACTORS = {
    "annealing": Factor("annealing", +1, "raises", "Springer et al. 2025 (annealing vs tokens, a control)"),
    "sam": Factor("sam", -1, "lowers", "Watts et al. 2026 (sharpness-aware pretraining)"),
}


def _measures(m: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One model's damage measures on held-out pretraining text, by condition: the loss increase
    under each Gaussian noise and each quantization (nats), the forgetting of each fine-tuning
    rate (full, no ℓ2 pull; nats) and the base checkpoints' ln Hessian trace (a ratio: traces
    differ by orders of magnitude across budgets)."""
    pretrain = m[m["split"] == "pretrain"]
    loss = pretrain[pretrain["metric"] == "loss"]
    out = {}
    for kind in KINDS.values():
        rows = loss[(loss["variant"] == "perturbed") & (loss["perturbation"] == kind.name)]
        out |= {f"{kind.claim} {kind.claim_condition(v)}": increase_over_base(m, rows[rows[kind.parameter] == v])
                for v in sorted(rows[kind.parameter].dropna().unique())}
    forget = pretrain[(pretrain["metric"] == "forgetting_loss") & (pretrain["l2"].fillna(0) == 0)
                      & (pretrain["ft_method"].fillna("full") == "full")]
    out |= {f"forgetting, lr={lr:g}": forget[forget["lr"] == lr] for lr in sorted(forget["lr"].dropna().unique())}
    sharp = pretrain[(pretrain["metric"] == "hessian_trace") & (pretrain["variant"] == "base")]
    if not sharp.empty:
        out["ln Hessian trace"] = sharp.assign(value=np.log(sharp["value"].where(sharp["value"] > 0)))
    return out


GAP_COLUMNS = ["model", "factor", "treatment", "control", "condition", "tokens", "treatment_mean", "control_mean",
               "gap", "ci_low", "ci_high", "n_seeds"]


def _name(pair: dict) -> str:
    return f"{pair['treatment']} vs {pair['control']}"


def _gaps(metrics: pd.DataFrame, pair: dict):
    """Per damage measure both models have: (treatment means, control means, the signed gap),
    each a (tokens × replicate) table of the matched checkpoints. Checkpoints match at equal tokens,
    or as pair['match'] names them (treatment ckpt → control ckpt: hub revisions, whose tokens
    differ); the tokens are the treatment's."""
    factor = FACTORS[pair["factor"]]
    treated_rows = metrics[metrics["model"] == pair["treatment"]]
    control_rows = metrics[metrics["model"] == pair["control"]]
    if pair.get("match"):
        tokens_of = treated_rows.drop_duplicates("ckpt").set_index("ckpt")["tokens"]
        treated_rows = treated_rows[treated_rows["ckpt"].isin(list(pair["match"]))]
        control_rows = control_rows[control_rows["ckpt"].isin(list(pair["match"].values()))]
        control_rows = control_rows.assign(tokens=control_rows["ckpt"].map(
            {c: tokens_of.get(t) for t, c in pair["match"].items()}))
    treated, control = _measures(treated_rows), _measures(control_rows)
    for condition in (c for c in treated if c in control):
        t, c = curves(treated[condition], dropna=True), curves(control[condition], dropna=True)
        tokens, reps = sorted(set(t.index) & set(c.index)), sorted(set(t.columns) & set(c.columns))
        if tokens and reps:
            t, c = t.loc[tokens, reps], c.loc[tokens, reps]
            yield condition, t, c, factor.direction * (t - c)


def gap_table(metrics: pd.DataFrame, pairs: list[dict], n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per pair, damage measure and budget: both models' means and the paired gap signed as the
    factor claims (> 0: what it is claimed to do), with its 95% interval over replicates."""
    out = []
    for pair in pairs:
        for condition, t, c, gap in _gaps(metrics, pair):
            per = gap.stack().rename("gap").reset_index().rename(columns={"_replicate": "seed"})
            s = summarize(per.assign(pretrain_seed=per["seed"]), ["tokens"], "gap", n_boot)
            out.append(pd.DataFrame({
                "model": _name(pair), "factor": pair["factor"], "treatment": pair["treatment"],
                "control": pair["control"], "condition": condition, "tokens": s["tokens"],
                "treatment_mean": t.mean(axis=1).to_numpy(), "control_mean": c.mean(axis=1).to_numpy(),
                "gap": s["mean"], "ci_low": s["ci_low"], "ci_high": s["ci_high"], "n_seeds": s["n"]}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=GAP_COLUMNS)


def claims(metrics: pd.DataFrame, pairs: list[dict], n_boot: int = N_BOOT,
           min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """Every pair's claims (overtrain.study.Study.pairs), one row per damage measure both models
    have: the mean over matched checkpoints of the signed gap, its 95% interval over replicates
    (each replicate's mean gap, resampled), and the verdict; the model column names the pair."""
    rows = []
    for pair in pairs:
        factor = FACTORS[pair["factor"]]
        h = f"{factor.name} {factor.verb} the damage"
        pairing = "matched checkpoints (compare.match)" if pair.get("match") else "equal tokens"
        found = False
        for condition, _, _, gap in _gaps(metrics, pair):
            found = True
            per_replicate = gap.mean(axis=0).to_numpy(float)
            n = len(per_replicate)
            lo, hi = interval(resample_means(per_replicate, n_boot)) if n > 1 else (np.nan, np.nan)
            effect = float(per_replicate.mean())
            rows.append({"model": _name(pair), "hypothesis": h, "source": factor.source, "condition": condition,
                         "statistic": f"mean over {pairing} of {'treatment − control' if factor.direction > 0 else 'control − treatment'}, "
                                      "per replicate", "effect": effect, "ci_low": effect if n == 1 else lo,
                         "ci_high": effect if n == 1 else hi, "min_effect": min_effect, "n_seeds": n,
                         "verdict": verdict(lo, hi, n, min_effect)})
        if not found:
            rows.append({"model": _name(pair), **not_measured(h, factor.source, f"no damage measure on both models at {pairing}")})
    return pd.DataFrame(rows, columns=["model"] + COLUMNS)
