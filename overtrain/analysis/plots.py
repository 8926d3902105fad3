"""Figures from the tidy metrics table (pandas + matplotlib only)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from overtrain.analysis.drawing import (  # noqa: E402
    SMOOTHING,
    band,
    budget_colours,
    curve_panels,
    dress,
    empty,
    finetuned_lines,
    finetuning_panel,
    finish,
    legend,
    mark_diverged,
    model_names,
    nothing_measured,
    pretraining_panel,
    save,
)
from overtrain.analysis.tables import increase_over_base, select  # noqa: E402
from overtrain.config import prompt_formats  # noqa: E402

# Every figure of the study: name → (its function, the tables it draws from). A figure is a
# function decorated with @figure(<table names>) taking those tables and its output paths; the
# figures rule makes every one (its names: overtrain.analysis.catalog).
FIGURES: dict[str, tuple[Callable, tuple[str, ...]]] = {}


def figure(*inputs: str):
    """Register a figure drawn from `inputs` (metrics, or analysis tables by name)."""
    def register(fn: Callable) -> Callable:
        FIGURES[fn.__name__] = (fn, inputs)
        return fn

    return register


def draw_all(tables: dict[str, pd.DataFrame], paths: Callable[[str], list[str | Path]]) -> None:
    """Every registered figure, to paths(name)."""
    for name, (fn, inputs) in FIGURES.items():
        fn(*(tables[i] for i in inputs), paths(name))


@figure("training_curves")
def training_curves(curves: pd.DataFrame, paths: list[str | Path]) -> None:
    """Training curves from the jobs' own logs: pretraining loss against tokens seen per budget and
    seed (the WSD stable run and the decay branches that leave it), and fine-tuning loss against
    step per setting, one line per checkpoint, with the epoch boundaries marked."""
    if curves.empty:
        return nothing_measured(paths, "no training job in this study (its results come from elsewhere)")
    panels = curve_panels(curves)
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows + 0.3), squeeze=False)
    for ax, (model, setting, rows) in zip(axes.flat, panels):
        colours = budget_colours(curves.loc[curves["model"] == model, "tokens"])
        if setting is None:
            pretraining_panel(ax, model, rows, colours)
        else:
            finetuning_panel(ax, model, rows, setting, colours)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    ft = curves[curves["phase"] == "finetune"]
    n = ft.groupby(["model", "ckpt", "ft_task", "ft_method", "l2", "lr"])["seed"].nunique().max() if len(ft) else 0
    fig.text(0.5, 0.005, f"curves: rolling mean over 1/{SMOOTHING} of each run's logged steps"
             + (f"; fine-tuning lines: mean over the pretraining seeds × {n} fine-tuning seed(s)" if n else ""),
             ha="center", va="bottom", fontsize=8, color="dimgrey")
    save(fig, paths)


@figure("metrics")
def noise_pretrain_loss(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Held-out pretraining loss after Gaussian noise vs tokens, one line per γ, plus base."""
    pt = select(metrics, split="pretrain", metric="loss")
    models = model_names(pt)
    if pt.empty or not (pt["perturbation"] == "gaussian").any():
        return nothing_measured(paths, "no Gaussian-noise evaluation of held-out pretraining text "
                                        "(evaluate.pretrain_loss or perturb.gaussian.gammas is off)")
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.8 * len(models) + 0.3), squeeze=False)
    for row, model in zip(axes, models):
        d = pt[pt["model"] == model]
        band(row[0], d[d["variant"] == "base"], "base (no noise)", "k-o")
        noisy = d[d["perturbation"] == "gaussian"]
        for gamma, g in noisy.groupby("gamma"):
            band(row[0], g, f"noise γ={gamma:g}·σ_init")
            band(row[1], increase_over_base(d, g), f"γ={gamma:g}·σ_init")
        row[0].set_ylabel("held-out pretraining loss (nats/token)")
        row[0].set_title(f"{model}: pretraining loss after Gaussian noise")
        row[1].set_ylabel("increase over base (nats/token)")
        row[1].set_yscale("log")
        row[1].set_title(f"{model}: sensitivity to noise")
        for ax in row:
            dress(ax, d["tokens"], 8)
    finish(fig, pt, paths)


@figure("metrics")
def finetune_pretrain_loss(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Held-out pretraining loss after fine-tuning vs tokens, one line per learning rate."""
    pt = select(metrics, split="pretrain", metric="loss")
    models = model_names(pt)
    if pt.empty:
        return nothing_measured(paths, "no held-out pretraining loss (evaluate.pretrain_loss is off)")
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.3), squeeze=False)
    for ax, model in zip(axes[0], models):
        d = pt[pt["model"] == model]
        band(ax, d[d["variant"] == "base"], "base (before fine-tuning)", "k-o")
        for line, g in finetuned_lines(d):
            band(ax, g, f"fine-tuned {line}")
        mark_diverged(ax, metrics, model)
        ax.set_ylabel("held-out pretraining loss (nats/token)")
        ax.set_title(f"{model}: forgetting after fine-tuning")
        dress(ax, d["tokens"], 8)
    finish(fig, pt, paths)


@figure("metrics")
def finetune_task_metric(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """In-distribution fine-tuning task metrics vs tokens, one line per learning rate."""
    other_formats = {f for t in set(metrics["eval_task"].dropna()) for f in prompt_formats(t)[1:]}
    ident = metrics[
        (metrics["split"] == "id")
        & metrics["metric"].isin(["acc", "loss"])
        & ~metrics["eval_task"].isin(other_formats)
    ]
    panels = sorted(ident.groupby(["model", "eval_task", "metric"]).groups)
    ncols = max(1, len(panels))
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.3), squeeze=False)
    for ax, (model, task, metric) in zip(axes[0], panels):
        d = ident[(ident["model"] == model) & (ident["eval_task"] == task) & (ident["metric"] == metric)]
        band(ax, d[d["variant"] == "base"], "base", "k-o")
        for line, g in finetuned_lines(d):
            band(ax, g, f"fine-tuned {line}")
        mark_diverged(ax, metrics, model)
        unit = "accuracy" if metric == "acc" else "loss (nats/token)"
        ax.set_ylabel(f"{task} {unit}")
        ax.set_title(f"{model}: {task} ({metric})")
        if metric == "acc" and task.startswith("synth_ft_mc"):
            ax.axhline(1 / 4, color="grey", ls=":", label="chance")
        dress(ax, d["tokens"], 8)
    if not panels:
        empty(axes[0][0], "no in-distribution tasks evaluated")
    finish(fig, ident, paths)


@figure("metrics")
def quantization_pretrain_loss(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Increase of held-out pretraining loss from round-to-nearest quantization vs tokens."""
    pt = select(metrics, split="pretrain", metric="loss")
    models = model_names(pt) or ["(none)"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.3), squeeze=False)
    for ax, model in zip(axes[0], models):
        d = pt[pt["model"] == model]
        q = d[d["perturbation"] == "rtn"]
        if q.empty:
            empty(ax, "no quantized variants (perturb.quantize.bits)")
            continue
        for bits, g in q.groupby("bits"):
            band(ax, increase_over_base(d, g), f"RTN int{int(bits)} (per output channel)")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel("pretraining loss increase (nats/token)")
        ax.set_title(f"{model}: sensitivity to weight quantization")
        dress(ax, d["tokens"], 8)
    finish(fig, pt, paths)


@figure("tuned", "best_lr")
def tuned_learning_rate(tuned: pd.DataFrame, best: pd.DataFrame, paths: list[str | Path]) -> None:
    """With the learning rate chosen per checkpoint on the validation split: the chosen rate, and
    the in-distribution and pretraining metrics it reaches, vs tokens."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3), squeeze=False)
    ax_lr, ax_id, ax_pt = axes[0]
    if best.empty:
        for ax in axes[0]:
            empty(ax, "no learning-rate selection (analysis.select)")
        save(fig, paths)
        return
    for (model, task), g in best.groupby(["model", "ft_task"]):
        band(ax_lr, g.assign(value=np.log10(g["lr"])), f"{model} · {task}")
    ax_lr.set_ylabel("log10 best learning rate (chosen on validation)")
    ax_lr.set_title("optimal learning rate")
    for ax, split, title in ((ax_id, "id", "in-distribution at the tuned rate"),
                             (ax_pt, "pretrain", "held-out pretraining loss at the tuned rate")):
        d = tuned[(tuned["split"] == split) & tuned["metric"].isin(["acc", "loss"])]
        for (model, task, metric), g in d.groupby(["model", "eval_task", "metric"]):
            band(ax, g, f"{model} · {task} ({metric})")
        ax.set_title(title)
        ax.set_ylabel("metric (loss: nats/token)")
    for ax in axes[0]:
        dress(ax, best["tokens"], 7)
    finish(fig, tuned, paths)


@figure("finetune_gain", "metrics")
def finetune_gain(gain: pd.DataFrame, metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Amuro & Char: what fine-tuning adds on each task (latent improvement), and forgetting."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3), squeeze=False)
    ax_gain, ax_forget = axes[0]
    d = gain[gain["split"].isin(["id", "ood"]) & (gain["metric"] == "acc")]
    if d.empty:
        empty(ax_gain, "no accuracy tasks")
    for (model, task, lr), g in d.groupby(["model", "eval_task", "lr"]):
        band(ax_gain, g.rename(columns={"gain": "g"}), f"{task}, lr={lr:g}", value="g")
    ax_gain.axhline(0, color="grey", lw=0.8)
    ax_gain.set_ylabel("accuracy gain from fine-tuning (fine-tuned − base)")
    ax_gain.set_title("latent improvement revealed by fine-tuning")
    f = metrics[metrics["metric"] == "forgetting_loss"]
    if f.empty:
        empty(ax_forget, "no forgetting rows")
    for (task, lr), g in f.groupby(["eval_task", "lr"]):
        band(ax_forget, g, f"{task}, lr={lr:g}")
    ax_forget.set_ylabel("loss increase on tasks not fine-tuned on (nats)")
    ax_forget.set_title("forgetting")
    for ax in axes[0]:
        if ax.has_data():
            dress(ax, metrics["tokens"], 7)
    finish(fig, f, paths)


@figure("metrics")
def prompt_sensitivity(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Spread of accuracy across prompt formats vs tokens, for base and fine-tuned models."""
    fig, ax = plt.subplots(figsize=(6.5, 4.3))
    d = metrics[metrics["metric"] == "prompt_spread_acc"]
    d = d[d["variant"].isin(["base", "finetuned"])].copy()
    if d.empty:
        empty(ax, "no prompt variants (evaluate.prompt_variants)")
    else:
        d["line"] = d["eval_task"] + ": " + d["variant"] + d["lr"].map(lambda x: "" if pd.isna(x) else f", lr={x:g}")
        for line, g in d.groupby("line"):
            band(ax, g, line)
        ax.set_ylabel("accuracy spread across prompt formats (max − min)")
        ax.set_title("prompt sensitivity (training template, instruction, raw input)")
        dress(ax, d["tokens"], 7)
    finish(fig, d, paths)


@figure("metrics")
def sharpness(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Sharpness on held-out pretraining text vs tokens: the Hessian's trace (Hutchinson) and the
    loss rise one SAM step away, for the base checkpoints and after fine-tuning at each rate."""
    d = metrics[(metrics["split"] == "pretrain") & metrics["metric"].isin(["hessian_trace", "sam_rise"])]
    if d.empty:
        return nothing_measured(paths, "no sharpness measures (evaluate.sharpness.probes is 0)")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3), squeeze=False)
    for ax, metric, label in ((axes[0][0], "hessian_trace", "Hessian trace of the held-out loss (Hutchinson)"),
                              (axes[0][1], "sam_rise", "loss rise one SAM step away (nats)")):
        rows = d[d["metric"] == metric]
        for model, m in rows.groupby("model"):
            band(ax, m[m["variant"] == "base"], f"{model}: base", "k-o")
            for line, g in finetuned_lines(m):
                band(ax, g, f"{model}: fine-tuned {line}")
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.set_title(label.split(" (")[0])
        dress(ax, rows["tokens"], 7)
    finish(fig, d, paths)


@figure("inflection")
def t_star_vs_learning_rate(inflection: pd.DataFrame, paths: list[str | Path]) -> None:
    """Where the effect lives: T* (95% interval over replicates) in tokens per parameter against
    the fine-tuning learning rate, for the held-out pretraining loss after fine-tuning at each
    fixed rate and the in-distribution metrics at each rate; the tuned rate's in-distribution T*
    as a band. A filled marker is an interior T*; a hollow one lies at an end of the budgets."""
    at_rate = inflection[inflection["lr"].notna() & (inflection["l2"].fillna(0) == 0)]
    if at_rate.empty:
        return nothing_measured(paths, "no fine-tuning learning rates (finetune.learning_rates)")
    models = model_names(at_rate)
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        d = at_rate[at_rate["model"] == model]
        per = float(d["parameters"].iloc[0]) if d["parameters"].notna().any() else 1.0
        unit = "tokens per parameter" if d["parameters"].notna().any() else "tokens"
        lines = d.assign(line=[("pretraining loss" if not c.endswith("(id)") else f"ID {task} ({metric})")
                               + (f", {m}" if m != "full" else "") for c, task, metric, m in
                               zip(d["condition"], d["eval_task"], d["metric"], d["ft_method"].fillna("full"))])
        for line, g in lines.groupby("line", sort=True):
            g = g.sort_values("lr")
            y, lo, hi = g["t_star"] / per, g["ci_low"] / per, g["ci_high"] / per
            (h,) = ax.plot(g["lr"], y, "-", label=line)
            ax.errorbar(g["lr"], y, yerr=[y - lo, hi - y], fmt="none", ecolor=h.get_color(), capsize=3)
            interior = g["interior"].astype(bool).to_numpy()
            ax.plot(g["lr"][interior], y[interior], "o", color=h.get_color())
            ax.plot(g["lr"][~interior], y[~interior], "o", mfc="white", color=h.get_color())
        tuned = inflection[(inflection["model"] == model) & (inflection["condition"] == "tuned lr (id)")]
        tuned = tuned[~tuned["eval_task"].isin({f for t in set(tuned["eval_task"]) for f in prompt_formats(t)[1:]})]
        for _, r in tuned.iterrows():
            ax.axhspan(r["ci_low"] / per, r["ci_high"] / per, alpha=0.12, color="grey")
            ax.axhline(r["t_star"] / per, ls="--", color="grey", lw=1,
                       label=f"tuned lr: ID {r['eval_task']} ({r['metric']})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("fine-tuning learning rate")
        ax.set_ylabel(f"T* ({unit})")
        ax.set_title(f"{model}: where more pretraining stops helping")
        ax.grid(alpha=0.3)
        legend(ax, fontsize=7)
    save(fig, paths)


@figure("contrasts")
def pair_contrasts(gaps: pd.DataFrame, paths: list[str | Path]) -> None:
    """Models compared at equal tokens (stable_checkpoints: annealed vs stable; compare: SAM vs
    plain): the paired gap in each damage measure per budget, signed as the factor is claimed
    (> 0: annealing raises the damage, SAM lowers it), with its 95% band over seeds."""
    if gaps.empty:
        return nothing_measured(paths, "no models compared at equal tokens "
                                "(models.<name>.stable_checkpoints or models.<name>.compare)")
    pairs = model_names(gaps)
    fig, axes = plt.subplots(1, len(pairs), figsize=(6.5 * len(pairs), 4.5), squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        d = gaps[gaps["model"] == pair]
        for condition, g in d.groupby("condition", sort=True):
            (line,) = ax.plot(g["tokens"], g["gap"], "-o", ms=4, label=condition)
            ax.fill_between(g["tokens"], g["ci_low"], g["ci_high"], color=line.get_color(), alpha=0.2, lw=0)
        ax.axhline(0, color="grey", lw=0.8)
        factor = d["factor"].iloc[0]
        claimed = "annealed more damaged" if factor == "annealing" else "SAM less damaged"
        ax.set_ylabel("paired gap (nats; the trace: ln ratio)")
        ax.set_title(f"{pair}: > 0 = {claimed}")
        dress(ax, d["tokens"], 7)
    fig.text(0.5, 0.005, f"lines: mean over {int(gaps['n_seeds'].max())} pretraining seeds, paired; bands: 95% "
             "bootstrap interval", ha="center", va="bottom", fontsize=8, color="dimgrey")
    save(fig, paths)


@figure("barriers", "soups")
def connectivity(barriers: pd.DataFrame, soups: pd.DataFrame, paths: list[str | Path]) -> None:
    """Loss barrier between fine-tunes of different seeds, their distance, and soup gains."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3), squeeze=False)
    if barriers.empty:
        for ax in axes[0]:
            empty(ax, "no connectivity jobs (connectivity.learning_rates)")
        save(fig, paths)
        return
    ax_b, ax_d, ax_s = axes[0]
    for (task, lr), g in barriers[barriers["metric"] == "loss"].groupby(["eval_task", "lr"]):
        band(ax_b, g, f"{task}, lr={lr:g}", value="barrier")
    ax_b.axhline(0, color="grey", lw=0.8)
    ax_b.set_ylabel("loss barrier along the linear path (nats)")
    ax_b.set_title("linear mode connectivity of seed pairs")
    for lr, g in barriers[barriers["metric"] == "l2_distance"].groupby("lr"):
        band(ax_d, g, f"lr={lr:g}", value="barrier")
    ax_d.set_ylabel("L2 distance between fine-tunes")
    ax_d.set_title("how far apart seeds land")
    if soups.empty:
        empty(ax_s, "no soups")
    for (soup, task, metric), g in soups.groupby(["soup", "eval_task", "metric"]):
        band(ax_s, g, f"{soup} soup · {task} ({metric})", value="gain")
    ax_s.axhline(0, color="grey", lw=0.8)
    ax_s.set_ylabel("soup − best single fine-tune (better is > 0)")
    ax_s.set_title("model soups")
    for ax in axes[0]:
        if ax.has_data():
            dress(ax, barriers["tokens"], 7)
    finish(fig, barriers, paths)


def theory(table: pd.DataFrame, paths: list[str | Path]) -> None:
    """The two-layer linear model: pretraining loss after noise / fine-tuning vs pretraining time."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4), squeeze=False)
    ax_n, ax_f, ax_ft = axes[0]
    base = table[table["condition"] == "base"]
    for ax in (ax_n, ax_f):
        ax.plot(base["tau"], base["pretrain_loss"], "k-o", ms=3, label="after pretraining")
    for gamma, g in table[table["condition"] == "noise"].groupby("parameter"):
        ax_n.plot(g["tau"], g["pretrain_loss"], "-o", ms=3, label=f"+ noise γ={gamma:g}")
    ft = table[table["condition"] == "finetune"]
    for l2, g in ft.groupby("parameter"):
        ax_f.plot(g["tau"], g["pretrain_loss"], "-o", ms=3, label=f"after fine-tuning, λ={l2:g}")
        ax_ft.plot(g["tau"], g["finetune_loss"], "-o", ms=3, label=f"λ={l2:g}")
    ax_n.set_title("pretraining loss after Gaussian noise")
    ax_f.set_title("pretraining loss after fine-tuning (misaligned task)")
    ax_ft.set_title("fine-tuning task loss")
    changed = table[table["condition"] != "base"]["pretrain_loss"].dropna()
    for ax in (ax_n, ax_f):  # the base loss falls to ~0; keep the perturbed curves readable
        ax.set_ylim(bottom=0.5 * changed.min())
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pretraining time τ (gradient-flow units)")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        legend(ax, fontsize=7)
    save(fig, paths)
