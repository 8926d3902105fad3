"""The seed papers' claims, judged on whatever study was run, each with a 95% interval.

Every claim is a statistic of curves over pretraining tokens (one curve per replicate: a
pretraining seed, or a fine-tuning / noise seed where the study has one pretraining run),
signed so that a positive effect is what the paper claims, with its interval over the
replicates (overtrain.analysis.statistics).

The verdict rule (a margin δ around 0, and why) is overtrain.analysis.verdict's. pandas and
numpy only.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from overtrain.analysis.evidence import AMURO, COLUMNS, SPRINGER, Evidence, l2_suffix, method_prefix, not_measured
from overtrain.analysis.intervals import N_BOOT
from overtrain.analysis.statistics import (
    earlier,
    end_worse,
    later,
    log_slope,
    mean_gap,
    rank_correlation,
    slope,
    u_depth,
)
from overtrain.analysis.tables import by_setting, increase_over_base, main_id_rows
from overtrain.analysis.verdict import MIN_EFFECT
from overtrain.config import prompt_formats
from overtrain.perturb import KINDS, Kind


def progressive_sensitivity(kind: Kind) -> Callable[[Evidence], list[dict]]:
    """Springer et al. §3.3: the damage a perturbation does grows with pretraining tokens (one
    claim per registered perturbation kind, one row per strength)."""
    h = f"progressive sensitivity to {kind.claim}"

    def claim(e: Evidence) -> list[dict]:
        rows = e.perturbed(kind.name)
        values = sorted(rows[kind.parameter].dropna().unique())
        if not values:
            return [not_measured(h, kind.source, f"no {kind.claim} on held-out pretraining text")]
        return [e.judged(h, kind.source, kind.claim_condition(v),
                         "slope of the pretraining-loss increase per doubling of tokens",
                         [increase_over_base(e.rows, rows[rows[kind.parameter] == v])], slope) for v in values]

    claim.__name__ = f"progressive_sensitivity_{kind.name}"
    return claim


def interior_t_star_under_noise(e: Evidence) -> list[dict]:
    h, source = "interior T* of the pretraining loss under Gaussian noise", SPRINGER + " §3.3"
    noisy = e.perturbed("gaussian")
    gammas = sorted(noisy["gamma"].dropna().unique())
    if not gammas:
        return [not_measured(h, source, "no Gaussian noise")]
    return [e.judged(h, source, f"γ={g:g}", "better end − the interior T* the other replicates choose (cross-fitted; nats)", [noisy[noisy["gamma"] == g]],
                     u_depth) for g in gammas]


def larger_noise_earlier_t_star(e: Evidence) -> list[dict]:
    h, source = "larger γ → earlier T*", SPRINGER + " §3.3"
    noisy = e.perturbed("gaussian")
    gammas = sorted(noisy["gamma"].dropna().unique())
    if len(gammas) < 2:
        return [not_measured(h, source, "fewer than two γ")]
    return [e.judged(h, source, f"γ={gammas[0]:g} vs {gammas[-1]:g}", "log2 T*(small γ) − log2 T*(large γ)",
                     [noisy[noisy["gamma"] == gammas[0]], noisy[noisy["gamma"] == gammas[-1]]], earlier, margin=False)]


def interior_t_star_after_finetuning(e: Evidence) -> list[dict]:
    h, source = "interior T* of the pretraining loss after fine-tuning at a fixed learning rate", SPRINGER + " §3.4.1"
    by_method = e.finetuned_by_method()
    if not by_method:
        return [not_measured(h, source, "no fine-tune evaluated on held-out pretraining text")]
    return [e.judged(h, source, f"{method_prefix(mth)}lr={lr:g}", "better end − the interior T* the other replicates choose (cross-fitted; nats)",
                     [rows[rows["lr"] == lr]], u_depth)
            for mth, rows in by_method.items() for lr in sorted(rows["lr"].dropna().unique())]


def larger_learning_rate_earlier_t_star(e: Evidence) -> list[dict]:
    h, source = "larger learning rate → earlier T*", SPRINGER + " §3.4.1"
    by_method = e.finetuned_by_method()
    if not by_method:
        return [not_measured(h, source, "fewer than two learning rates")]
    out = []
    for mth, rows in by_method.items():
        lrs = sorted(rows["lr"].dropna().unique())
        if len(lrs) < 2:
            out.append(not_measured(h, source, f"{method_prefix(mth)}fewer than two learning rates"))
            continue
        out.append(e.judged(h, source, f"{method_prefix(mth)}lr={lrs[0]:g} vs {lrs[-1]:g}",
                            "log2 T*(small lr) − log2 T*(large lr)",
                            [rows[rows["lr"] == lrs[0]], rows[rows["lr"] == lrs[-1]]], earlier, margin=False))
    return out


def tuned_metric_degrades(e: Evidence) -> list[dict]:
    """The headline: the in-distribution metric at the tuned learning rate degrades past T*."""
    h, source = "the in-distribution metric at the tuned learning rate degrades past T*", SPRINGER + " §2, §3.4.2"
    tuned = e.tuned()
    ident = tuned[(tuned["split"] == "id") & tuned["metric"].isin(["loss", "acc"])]
    other_formats = {f for t in set(ident["eval_task"]) for f in prompt_formats(t)[1:]}
    ident = ident[~ident["eval_task"].isin(other_formats)]
    if ident.empty:
        return [not_measured(h, SPRINGER + " §2", "no learning-rate selection or no in-distribution task")]
    out = []
    for (mth, l2, task, metric), g in by_setting(ident, "eval_task", "metric"):
        g = g.assign(value=-g["value"]) if metric == "acc" else g  # lower is better for the statistic
        out.append(e.judged(h, source, f"{method_prefix(mth)}{task} ({metric})" + l2_suffix(l2),
                            "largest budget − the earlier T* the other replicates choose (cross-fitted; worse direction; nats or accuracy)", [g], end_worse))
    return out


def _l2_runs(e: Evidence) -> pd.DataFrame:
    pt = e.pretrain_loss
    return pt[(pt["variant"] == "finetuned") & (pt["l2"].fillna(0) > 0)]


def l2_delays_t_star(e: Evidence) -> list[dict]:
    h, source = "ℓ2 toward the pretrained weights delays T*", SPRINGER + " §4"
    pulled = _l2_runs(e)
    if pulled.empty:
        return [not_measured(h, source, "finetune.l2 has no λ > 0")]
    full = e.finetuned_by_method().get("full", pulled.iloc[0:0])
    return [e.judged(h, source, f"lr={lr:g}, λ={lam:g}", "log2 T*(λ) − log2 T*(λ=0)", [full[full["lr"] == lr], g],
                     later, margin=False) for (lr, lam), g in pulled.groupby(["lr", "l2"])]


def l2_costs_in_distribution_loss(e: Evidence) -> list[dict]:
    h, source = "ℓ2 toward the pretrained weights costs in-distribution loss", SPRINGER + " §4"
    pulled = _l2_runs(e)
    if pulled.empty:
        return [not_measured(h, source, "finetune.l2 has no λ > 0")]
    m = e.rows
    ft_all = m[(m["variant"] == "finetuned") & (m["ft_method"].fillna("full") == "full")]
    out = []
    for (lr, lam), _ in pulled.groupby(["lr", "l2"]):
        own = ft_all[(ft_all["lr"] == lr) & (ft_all["split"] == "id") & (ft_all["metric"] == "loss")]
        task = sorted(own["eval_task"].unique())[:1]
        own = own[own["eval_task"].isin(task)]
        out.append(e.judged(h, source, f"lr={lr:g}, λ={lam:g}, {task[0] if task else '-'}",
                            "mean over budgets of ID loss(λ) − ID loss(λ=0) (nats)",
                            [own[own["l2"].fillna(0) == lam], own[own["l2"].fillna(0) == 0]], mean_gap))
    return out


def forgetting_grows(e: Evidence) -> list[dict]:
    """Fine-tuning costs more of what pretraining knew at later checkpoints: the held-out
    pretraining loss after fine-tuning, or, where no pretraining text is scored (a benchmark
    study, a published table), the accuracy lost on the tasks not fine-tuned on (OOD)."""
    h = "forgetting grows with pretraining tokens"
    m = e.rows
    forget = m[(m["metric"] == "forgetting_loss") & (m["split"] == "pretrain") & (m["l2"].fillna(0) == 0)]
    method = forget["ft_method"].fillna("full")
    out = [e.judged(h, AMURO, f"{method_prefix(mth)}lr={lr:g}",
                    "slope of the pretraining-loss increase after fine-tuning per doubling",
                    [rows[rows["lr"] == lr]], slope)
           for mth in ("full", "llava") for rows in [forget[method == mth]] for lr in sorted(rows["lr"].dropna().unique())]
    if not out:
        lost = m[(m["metric"] == "forgetting_acc") & (m["split"] == "ood") & (m["l2"].fillna(0) == 0)]
        lost = lost.assign(value=-lost["value"])  # accuracy lost: > 0 is forgetting
        out = [e.judged(h, AMURO, f"{task}, lr={lr:g}, OOD accuracy lost (mean over {g['eval_task'].nunique()} tasks)",
                        "slope of the OOD accuracy lost after fine-tuning per doubling", [g], slope)
               for (task, lr), g in lost.groupby(["ft_task", "lr"])]
    return out or [not_measured(h, AMURO, "no held-out pretraining loss or OOD task after fine-tuning")]


def _own_task_rows(e: Evidence) -> pd.DataFrame:
    """Fine-tunes (no ℓ2 pull) on their own task, in its training prompt format, signed so that
    larger is better (accuracy as is, loss negated)."""
    m = e.rows
    ident = main_id_rows(m[(m["variant"] == "finetuned") & (m["l2"].fillna(0) == 0)])
    return ident.assign(value=ident["value"].where(ident["metric"] == "acc", -ident["value"]))


def fixed_rate_metric_degrades(e: Evidence) -> list[dict]:
    """Amuro & Char: after fine-tuning at the protocol's one rate, a task's own metric peaks at an
    intermediate checkpoint and falls after it (SocialIQa at step 424k, PAWS at 505k)."""
    h = "the in-distribution metric at a fixed learning rate degrades past T*"
    own = _own_task_rows(e)
    if own.empty:
        return [not_measured(h, AMURO, "no fine-tune evaluated on its own task")]
    return [e.judged(h, AMURO, f"{method_prefix(mth)}{task} ({metric}), lr={lr:g}",
                     "largest budget − the earlier T* the other replicates choose (cross-fitted; worse direction)",
                     [g.assign(value=-g["value"])], end_worse)
            for (mth, lr, task, metric), g in own.assign(ft_method=own["ft_method"].fillna("full")).groupby(
                ["ft_method", "lr", "eval_task", "metric"])]


def latent_improvement(e: Evidence) -> list[dict]:
    """Amuro & Char: what fine-tuning adds to a task grows with pretraining, though the base
    checkpoints do not show it (MNLI: the base stays near chance, the fine-tunes climb)."""
    h = "what fine-tuning adds grows with pretraining (latent improvement)"
    own = _own_task_rows(e)
    if own.empty:
        return [not_measured(h, AMURO, "no base checkpoint and fine-tune on the same task")]
    signed_base = e.rows.assign(value=e.rows["value"].where(e.rows["metric"] == "acc", -e.rows["value"]))
    gain = increase_over_base(signed_base, own)
    out = [e.judged(h, AMURO, f"{task} ({metric}), lr={lr:g}", "slope of fine-tuned − base per doubling of tokens",
                    [g], slope) for (lr, task, metric), g in gain.groupby(["lr", "eval_task", "metric"])
           if g["value"].notna().any()]
    return out or [not_measured(h, AMURO, "the base checkpoints were not evaluated on the fine-tuning tasks")]


def _prompt_spread(e: Evidence) -> tuple[pd.DataFrame, pd.DataFrame]:
    spread = e.rows[e.rows["metric"] == "prompt_spread_acc"]
    return e.tuned(spread), spread[spread["variant"] == "base"]


def finetuning_raises_prompt_sensitivity(e: Evidence) -> list[dict]:
    h = "fine-tuning increases prompt sensitivity"
    tuned, base = _prompt_spread(e)
    if tuned.empty or base.empty:
        return [not_measured(h, AMURO, "no prompt variants or no learning-rate selection")]
    return [e.judged(h, AMURO, f"{method_prefix(mth)}{task}, tuned lr" + l2_suffix(l2),
                     "mean over budgets of accuracy spread: fine-tuned − base", [g, base[base["eval_task"] == task]],
                     mean_gap) for (mth, l2, task), g in by_setting(tuned, "eval_task")]


def pretraining_lowers_prompt_sensitivity(e: Evidence) -> list[dict]:
    h = "more pretraining reduces prompt sensitivity after fine-tuning"
    tuned, base = _prompt_spread(e)
    if tuned.empty or base.empty:
        return [not_measured(h, AMURO, "no prompt variants or no learning-rate selection")]
    return [e.judged(h, AMURO, f"{method_prefix(mth)}{task}, tuned lr" + l2_suffix(l2),
                     "−slope of the fine-tuned accuracy spread per doubling", [g], lambda x, y: -slope(x, y))
            for (mth, l2, task), g in by_setting(tuned, "eval_task")]


def later_checkpoints_more_connected(e: Evidence) -> list[dict]:
    """Linear mode connectivity (path dependence)."""
    h, source = ("fine-tunes of later checkpoints are more linearly connected (lower barrier)",
                 "path-dependence post (Alignment Forum)")
    b = e.barriers
    if b is None or b.empty or not (b["metric"] == "loss").any():
        return [not_measured(h, source, "connectivity is off")]
    b = b[b["metric"] == "loss"].rename(columns={"barrier": "value"})
    return [e.judged(h, source, f"{task}, lr={lr:g}", "−slope of the loss barrier between seeds per doubling (nats)",
                     [g.assign(seed=0)], lambda x, y: -slope(x, y)) for (task, lr), g in b.groupby(["eval_task", "lr"])]


def learning_jumps(e: Evidence) -> list[dict]:
    h, source = "training loss drops at epoch boundaries (learning jumps)", "fast.ai (Howard & Whitaker 2023)"
    m = e.rows
    jumps = m[(m["split"] == "ft_train") & (m["metric"] == "epoch1_loss_excess")]
    if jumps.empty:
        return [not_measured(h, source, "no fine-tune crosses an epoch boundary")]
    return [e.judged(h, source, f"{method_prefix(mth)}lr={lr:g}, epoch 1→2",
                     "mean over budgets of the boundary drop beyond the within-epoch trend (nats)",
                     [g.drop(columns="_m")], lambda x, y: float(np.mean(y)))
            for (mth, lr), g in jumps.assign(_m=jumps["ft_method"].fillna("full")).groupby(["_m", "lr"])]


WATTS = "Watts et al. 2026 (sharpness-aware pretraining)"


def _sharpness(e: Evidence, metric: str, variant: str = "base") -> pd.DataFrame:
    m = e.rows
    return m[(m["metric"] == metric) & (m["variant"] == variant) & (m["split"] == "pretrain")]


def sharpness_grows(e: Evidence) -> list[dict]:
    """Sharpness of the base checkpoints on held-out pretraining text rises with tokens."""
    h = "sharpness grows with pretraining tokens"
    out = []
    for metric, what in (("hessian_trace", "Hessian trace (Hutchinson)"), ("sam_rise", "SAM rise (ρ-ball)")):
        rows = _sharpness(e, metric)
        if not rows.empty:
            out.append(e.judged(h, WATTS, f"base, {what}", "relative change per doubling of tokens (slope of ln)",
                                [rows], log_slope))
    return out or [not_measured(h, WATTS, "evaluate.sharpness.probes is 0")]


def sharpness_predicts_sensitivity(e: Evidence) -> list[dict]:
    """Across checkpoints, the sharper base is the one noise and fine-tuning damage more."""
    h = "sharpness predicts noise sensitivity and forgetting across checkpoints"
    sharp = _sharpness(e, "hessian_trace")
    if sharp.empty:
        return [not_measured(h, WATTS, "evaluate.sharpness.probes is 0")]
    out = []
    noisy = e.perturbed("gaussian")
    for g in sorted(noisy["gamma"].dropna().unique()):
        out.append(e.judged(h, WATTS, f"noise γ={g:g}", "Spearman correlation over budgets: Hessian trace vs the "
                            "pretraining-loss increase under noise", [sharp, increase_over_base(e.rows, noisy[
                                noisy["gamma"] == g])], rank_correlation))
    m = e.rows
    forget = m[(m["metric"] == "forgetting_loss") & (m["split"] == "pretrain") & (m["l2"].fillna(0) == 0)
               & (m["ft_method"].fillna("full") == "full")]
    for lr in sorted(forget["lr"].dropna().unique()):
        out.append(e.judged(h, WATTS, f"forgetting, lr={lr:g}", "Spearman correlation over budgets: Hessian trace "
                            "vs the pretraining-loss increase after fine-tuning", [sharp, forget[forget["lr"] == lr]],
                            rank_correlation))
    return out or [not_measured(h, WATTS, "no noise and no fine-tune on held-out pretraining text")]


# Every claim, in the order of hypotheses.csv: a claim is a function (Evidence) -> its rows, or
# its "not measured" row. Adding a claim is adding a function here and a test.
CLAIMS: list[Callable[[Evidence], list[dict]]] = [
    *(progressive_sensitivity(kind) for kind in KINDS.values()),
    interior_t_star_under_noise,
    larger_noise_earlier_t_star,
    interior_t_star_after_finetuning,
    larger_learning_rate_earlier_t_star,
    tuned_metric_degrades,
    l2_delays_t_star,
    l2_costs_in_distribution_loss,
    forgetting_grows,
    fixed_rate_metric_degrades,
    latent_improvement,
    finetuning_raises_prompt_sensitivity,
    pretraining_lowers_prompt_sensitivity,
    later_checkpoints_more_connected,
    learning_jumps,
    sharpness_grows,
    sharpness_predicts_sensitivity,
]


def claims(df: pd.DataFrame, best: pd.DataFrame | None = None, barriers: pd.DataFrame | None = None,
           n_boot: int = N_BOOT, min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """Every claim on every model of the study: one row per claim and condition."""
    rows = []
    for model, m in df.groupby("model"):
        e = Evidence(model, m, None if best is None else best[best["model"] == model],
                     None if barriers is None else barriers[barriers["model"] == model], n_boot, min_effect)
        rows += [{"model": model, **row} for claim in CLAIMS for row in claim(e)]
    return pd.DataFrame(rows, columns=["model"] + COLUMNS)
