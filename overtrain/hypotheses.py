"""The seed papers' claims, judged on whatever study was run, each with a 95% interval.

Every claim is a statistic of curves over pretraining tokens (one curve per replicate: a
pretraining seed, or a fine-tuning / noise seed where the study has one pretraining run),
signed so that a positive effect is what the paper claims. The replicates are resampled with
replacement (the same resample for every curve of a claim) and the statistic recomputed on the
mean curves; the interval is the central 95% of the resamples.

Verdict: supported if the interval lies above +δ; not supported if it lies at or below −δ;
inconclusive otherwise, with fewer than 2 replicates, or when the study did not measure what the
claim needs. δ (`analysis.min_effect`, in nats or accuracy; 0 for T*'s location, which moves in
whole budgets) is the smallest effect a verdict counts. Why a margin: with three replicates the
percentile interval of a mean is the range of the replicates' own statistics, so without one a
claim that every seed shows by a hair is "supported" on one CPU and "inconclusive" on the next,
whose float rounding moves one seed across 0. pandas and numpy only.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from overtrain.intervals import N_BOOT, interval, replicate_ids

COLUMNS = ["hypothesis", "source", "condition", "effect", "ci_low", "ci_high", "min_effect", "n_seeds", "verdict",
           "statistic"]
MIN_EFFECT = 0.01  # nats or accuracy: 1% perplexity, one accuracy point
SPRINGER = "Springer et al. 2025"
AMURO = "Amuro & Char (Sun & Dredze 2024)"


def verdict(ci_low: float, ci_high: float, n: int, min_effect: float = 0.0) -> str:
    if n < 2 or not np.isfinite(ci_low) or not np.isfinite(ci_high):
        return "inconclusive"
    if ci_low > min_effect:
        return "supported"
    if ci_high <= -min_effect:
        return "not supported"
    return "inconclusive"


def _wide(rows: pd.DataFrame) -> pd.DataFrame:
    """tokens × replicate means (a replicate missing a budget is dropped)."""
    d = rows.assign(_r=replicate_ids(rows))
    return d.pivot_table(index="tokens", columns="_r", values="value", aggfunc="mean").dropna(axis=1).sort_index()


def judge(curves: list[pd.DataFrame], statistic: Callable[..., float], n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Effect and interval of `statistic(tokens, *mean_curves)` over joint replicate resamples."""
    curves = [_wide(c) for c in curves]
    if any(c.empty for c in curves):
        return {"effect": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_seeds": 0}
    tokens = sorted(set.intersection(*(set(c.index) for c in curves)))
    reps = sorted(set.intersection(*(set(c.columns) for c in curves)))
    if len(tokens) < 2 or not reps:
        return {"effect": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_seeds": len(reps)}
    mats = [c.loc[tokens, reps].to_numpy(float) for c in curves]
    x = np.asarray(tokens, float)

    def at(cols) -> float:
        return float(statistic(x, *(m[:, cols].mean(axis=1) for m in mats)))

    n = len(reps)
    effect = at(np.arange(n))
    if n < 2:
        return {"effect": effect, "ci_low": effect, "ci_high": effect, "n_seeds": n}
    rng = np.random.default_rng(seed)
    lo, hi = interval([at(rng.integers(0, n, n)) for _ in range(n_boot)])
    return {"effect": effect, "ci_low": lo, "ci_high": hi, "n_seeds": n}


# statistics of mean curves (x: tokens) ---------------------------------------------------------

def slope(x, y) -> float:
    """Change per doubling of pretraining tokens (least squares on log2 tokens)."""
    finite = np.isfinite(y)
    return float(np.polyfit(np.log2(x[finite]), y[finite], 1)[0]) if finite.sum() >= 2 else np.nan


def u_depth(x, y) -> float:
    """How much better the best interior budget is than the better end (> 0: an interior T*)."""
    if len(y) < 3:
        return np.nan
    return float(min(y[0], y[-1]) - np.min(y[1:-1]))


def end_worse(x, y) -> float:
    """How much worse the largest budget is than the best earlier budget: > 0 when it degraded
    past an earlier T*, < 0 by how much it still improved. Signed, so that "not supported" is an
    interval below 0, not a degenerate [0, 0] that one seed's tie turns into "inconclusive"."""
    return float(y[-1] - np.min(y[:-1]))


def earlier(x, y_small, y_large) -> float:
    """log2 T*(small) − log2 T*(large): > 0 when the larger perturbation's T* comes earlier."""
    return float(np.log2(x[int(np.argmin(y_small))]) - np.log2(x[int(np.argmin(y_large))]))


def later(x, y_without, y_with) -> float:
    return -earlier(x, y_without, y_with)


def mean_gap(x, y_a, y_b) -> float:
    """Mean over budgets of a − b."""
    return float(np.mean(y_a - y_b))


# the claims -----------------------------------------------------------------------------------

def _verdict_row(hypothesis: str, source: str, condition: str, statistic: str, result: dict,
                 min_effect: float) -> dict:
    return {"hypothesis": hypothesis, "source": source, "condition": condition, "statistic": statistic, **result,
            "min_effect": min_effect,
            "verdict": verdict(result["ci_low"], result["ci_high"], result["n_seeds"], min_effect)}


def _prefix(method: str) -> str:
    """How a condition names the fine-tuning method: nothing for full fine-tuning."""
    return "" if method == "full" else f"{method}, "


def _not_measured(hypothesis: str, source: str, why: str) -> dict:
    return _verdict_row(hypothesis, source, f"not measured: {why}", "",
                {"effect": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_seeds": 0}, np.nan)


def _increase(df: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """rows' value minus the base checkpoint's (same checkpoint, so the same replicate)."""
    base = df[(df["variant"] == "base")].set_index(["model", "ckpt", "eval_task", "metric"])["value"]
    keys = list(zip(rows["model"], rows["ckpt"], rows["eval_task"], rows["metric"]))
    return rows.assign(value=rows["value"].to_numpy() - base.reindex(keys).to_numpy())


def _pretrain_loss(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["split"] == "pretrain") & (df["metric"] == "loss")]


def _tuned(df: pd.DataFrame, best: pd.DataFrame | None) -> pd.DataFrame:
    from overtrain.analysis import tuned_metrics

    if best is None or best.empty:
        return df.iloc[0:0]
    return tuned_metrics(df, best)


def claims(df: pd.DataFrame, best: pd.DataFrame | None = None, barriers: pd.DataFrame | None = None,
           n_boot: int = N_BOOT, min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """Every claim on every model of the study: one row per claim and condition."""
    rows = []
    for model, m in df.groupby("model"):
        rows += _model_claims(m, None if best is None else best[best["model"] == model],
                              None if barriers is None else barriers[barriers["model"] == model], n_boot, model,
                              min_effect)
    return pd.DataFrame(rows, columns=["model"] + COLUMNS)


def _model_claims(m: pd.DataFrame, best, barriers, n_boot: int, model: str, min_effect: float) -> list[dict]:
    def row(*args):  # nats or accuracy: the margin applies
        return _verdict_row(*args, min_effect)

    def order_row(*args):  # T*'s location moves in whole budgets: any shift counts
        return _verdict_row(*args, 0.0)

    out = []
    pt = _pretrain_loss(m)
    noisy = pt[(pt["variant"] == "perturbed") & (pt["perturbation"] == "gaussian")]
    quant = pt[(pt["variant"] == "perturbed") & (pt["perturbation"] == "rtn")]
    tuned_by = pt[(pt["variant"] == "finetuned") & (pt["l2"].fillna(0) == 0)]
    method = tuned_by["ft_method"].fillna("full")
    # full fine-tunes, and LLaVA ones (the same claims after multimodal tuning: Springer §3.4.2)
    by_method = {mth: tuned_by[method == mth] for mth in ("full", "llava") if (method == mth).any()}
    ft = by_method.get("full", tuned_by.iloc[0:0])
    gammas = sorted(noisy["gamma"].dropna().unique())

    # progressive sensitivity
    h = "progressive sensitivity to Gaussian noise"
    for g in gammas:
        out.append(row(h, SPRINGER + " §3.3", f"γ={g:g}", "slope of the pretraining-loss increase per doubling of tokens",
                       judge([_increase(m, noisy[noisy["gamma"] == g])], slope, n_boot)))
    if not gammas:
        out.append(_not_measured(h, SPRINGER + " §3.3", "no Gaussian noise on held-out pretraining text"))
    h = "progressive sensitivity to quantization"
    for bits in sorted(quant["bits"].dropna().unique()):
        out.append(row(h, SPRINGER + " §3.3 (Kumar et al. 2024)", f"RTN int{int(bits)}",
                       "slope of the pretraining-loss increase per doubling of tokens",
                       judge([_increase(m, quant[quant["bits"] == bits])], slope, n_boot)))
    if quant.empty:
        out.append(_not_measured(h, SPRINGER + " §3.3", "no quantized evaluation of held-out pretraining text"))

    # inflection points
    h = "interior T* of the pretraining loss under Gaussian noise"
    for g in gammas:
        out.append(row(h, SPRINGER + " §3.3", f"γ={g:g}", "better end − best interior budget (nats)",
                       judge([noisy[noisy["gamma"] == g]], u_depth, n_boot)))
    if not gammas:
        out.append(_not_measured(h, SPRINGER + " §3.3", "no Gaussian noise"))
    h = "larger γ → earlier T*"
    if len(gammas) >= 2:
        out.append(order_row(h, SPRINGER + " §3.3", f"γ={gammas[0]:g} vs {gammas[-1]:g}", "log2 T*(small γ) − log2 T*(large γ)",
                             judge([noisy[noisy["gamma"] == gammas[0]], noisy[noisy["gamma"] == gammas[-1]]], earlier, n_boot)))
    else:
        out.append(_not_measured(h, SPRINGER + " §3.3", "fewer than two γ"))
    h = "interior T* of the pretraining loss after fine-tuning at a fixed learning rate"
    for mth, rows in by_method.items():
        lrs = sorted(rows["lr"].dropna().unique())
        for lr in lrs:
            out.append(row(h, SPRINGER + " §3.4.1", f"{_prefix(mth)}lr={lr:g}", "better end − best interior budget (nats)",
                           judge([rows[rows["lr"] == lr]], u_depth, n_boot)))
        h2 = "larger learning rate → earlier T*"
        if len(lrs) >= 2:
            out.append(order_row(h2, SPRINGER + " §3.4.1", f"{_prefix(mth)}lr={lrs[0]:g} vs {lrs[-1]:g}",
                                 "log2 T*(small lr) − log2 T*(large lr)",
                                 judge([rows[rows["lr"] == lrs[0]], rows[rows["lr"] == lrs[-1]]], earlier, n_boot)))
        else:
            out.append(_not_measured(h2, SPRINGER + " §3.4.1", f"{_prefix(mth)}fewer than two learning rates"))
    if not by_method:
        out.append(_not_measured(h, SPRINGER + " §3.4.1", "no fine-tune evaluated on held-out pretraining text"))
        out.append(_not_measured("larger learning rate → earlier T*", SPRINGER + " §3.4.1", "fewer than two learning rates"))

    # the headline: the tuned-rate in-distribution metric degrades past T*
    h = "the in-distribution metric at the tuned learning rate degrades past T*"
    tuned = _tuned(m, best)
    ident = tuned[(tuned["split"] == "id") & tuned["metric"].isin(["loss", "acc"])]
    from overtrain.config import prompt_formats

    ident = ident[~ident["eval_task"].isin({f for t in set(ident["eval_task"]) for f in prompt_formats(t)[1:]})]
    for (task, metric), g in ident.groupby(["eval_task", "metric"]):
        g = g.assign(value=-g["value"]) if metric == "acc" else g  # lower is better for the statistic
        mth = g["ft_method"].fillna("full").iloc[0]
        out.append(row(h, SPRINGER + " §2, §3.4.2", f"{_prefix(mth)}{task} ({metric})",
                       "largest budget − best earlier budget (worse direction; nats or accuracy)", judge([g], end_worse, n_boot)))
    if ident.empty:
        out.append(_not_measured(h, SPRINGER + " §2", "no learning-rate selection or no in-distribution task"))

    # ℓ2 regularisation toward the pretrained weights
    pt_l2 = pt[(pt["variant"] == "finetuned") & (pt["l2"].fillna(0) > 0)]
    h1, h2 = "ℓ2 toward the pretrained weights delays T*", "ℓ2 toward the pretrained weights costs in-distribution loss"
    if pt_l2.empty:
        out += [_not_measured(h1, SPRINGER + " §4", "finetune.l2 has no λ > 0"),
                _not_measured(h2, SPRINGER + " §4", "finetune.l2 has no λ > 0")]
    else:
        ft_all = m[(m["variant"] == "finetuned") & (m["ft_method"].fillna("full") == "full")]
        for (lr, lam), g in pt_l2.groupby(["lr", "l2"]):
            without = ft[ft["lr"] == lr]
            out.append(order_row(h1, SPRINGER + " §4", f"lr={lr:g}, λ={lam:g}", "log2 T*(λ) − log2 T*(λ=0)",
                                 judge([without, g], later, n_boot)))
            own = ft_all[(ft_all["lr"] == lr) & (ft_all["split"] == "id") & (ft_all["metric"] == "loss")]
            task = sorted(own["eval_task"].unique())[:1]
            own = own[own["eval_task"].isin(task)]
            out.append(row(h2, SPRINGER + " §4", f"lr={lr:g}, λ={lam:g}, {task[0] if task else '-'}",
                           "mean over budgets of ID loss(λ) − ID loss(λ=0) (nats)",
                           judge([own[own["l2"].fillna(0) == lam], own[own["l2"].fillna(0) == 0]], mean_gap, n_boot)))

    # Amuro & Char: forgetting and prompt sensitivity
    h = "forgetting grows with pretraining tokens"
    forget = m[(m["metric"] == "forgetting_loss") & (m["split"] == "pretrain") & (m["l2"].fillna(0) == 0)]
    forget_method = forget["ft_method"].fillna("full")
    for mth in ("full", "llava"):
        rows = forget[forget_method == mth]
        for lr in sorted(rows["lr"].dropna().unique()):
            out.append(row(h, AMURO, f"{_prefix(mth)}lr={lr:g}",
                           "slope of the pretraining-loss increase after fine-tuning per doubling",
                           judge([rows[rows["lr"] == lr]], slope, n_boot)))
    if forget.empty:
        out.append(_not_measured(h, AMURO, "no held-out pretraining loss after fine-tuning"))
    spread = m[m["metric"] == "prompt_spread_acc"]
    tuned_spread = _tuned(spread, best)
    base_spread = spread[spread["variant"] == "base"]
    h1, h2 = "fine-tuning increases prompt sensitivity", "more pretraining reduces prompt sensitivity after fine-tuning"
    if tuned_spread.empty or base_spread.empty:
        out += [_not_measured(h1, AMURO, "no prompt variants or no learning-rate selection"),
                _not_measured(h2, AMURO, "no prompt variants or no learning-rate selection")]
    else:
        for task, g in tuned_spread.groupby("eval_task"):
            b = base_spread[base_spread["eval_task"] == task]
            out.append(row(h1, AMURO, f"{task}, tuned lr", "mean over budgets of accuracy spread: fine-tuned − base",
                           judge([g, b], mean_gap, n_boot)))
            out.append(row(h2, AMURO, f"{task}, tuned lr", "−slope of the fine-tuned accuracy spread per doubling",
                           judge([g], lambda x, y: -slope(x, y), n_boot)))

    # linear mode connectivity (path dependence)
    h = "fine-tunes of later checkpoints are more linearly connected (lower barrier)"
    if barriers is None or barriers.empty or not (barriers["metric"] == "loss").any():
        out.append(_not_measured(h, "path-dependence post (Alignment Forum)", "connectivity is off"))
    else:
        b = barriers[barriers["metric"] == "loss"].rename(columns={"barrier": "value"})
        for (task, lr), g in b.groupby(["eval_task", "lr"]):
            g = g.assign(seed=0)
            out.append(row(h, "path-dependence post (Alignment Forum)", f"{task}, lr={lr:g}",
                           "−slope of the loss barrier between seeds per doubling (nats)",
                           judge([g], lambda x, y: -slope(x, y), n_boot)))

    # learning jumps at epoch boundaries
    h = "training loss drops at epoch boundaries (learning jumps)"
    jumps = m[(m["split"] == "ft_train") & (m["metric"] == "epoch1_loss_excess")]
    jump_method = jumps["ft_method"].fillna("full")
    for (mth, lr), g in jumps.assign(_m=jump_method).groupby(["_m", "lr"]):
        out.append(row(h, "fast.ai (Howard & Whitaker 2023)", f"{_prefix(mth)}lr={lr:g}, epoch 1→2",
                       "mean over budgets of the boundary drop beyond the within-epoch trend (nats)",
                       judge([g.drop(columns="_m")], lambda x, y: float(np.mean(y)), n_boot)))
    if jumps.empty:
        out.append(_not_measured(h, "fast.ai (Howard & Whitaker 2023)", "no fine-tune crosses an epoch boundary"))
    return [{"model": model, **r} for r in out]
