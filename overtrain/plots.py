"""Figures from the tidy metrics table (pandas + matplotlib only)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from overtrain.analysis import select  # noqa: E402

UNITS = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")]


def format_tokens(n: float) -> str:
    """Readable token counts: 124928 → '125K', 999424 → '1M', 2.3e12 → '2.3T'.

    Two significant digits when that is within 1% of the value, else three.
    """
    if n <= 0:
        return "0"
    for digits in (2, 3):
        rounded = float(f"{n:.{digits}g}")
        if abs(rounded - n) <= 0.01 * n:
            break
    for scale, unit in UNITS:
        if rounded >= scale:
            return f"{rounded / scale:g}{unit}"
    return f"{rounded:g}"


def _token_axis(ax, tokens) -> None:
    ticks = sorted(set(int(t) for t in tokens))
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([format_tokens(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("pretraining tokens")
    ax.grid(alpha=0.3)


def _legend(ax, **kw) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _save(fig, paths: list[str | Path]) -> None:
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=120, metadata={"CreationDate": None} if str(p).endswith(".pdf") else None)
    plt.close(fig)


def _mean_by_tokens(df: pd.DataFrame, by: str | None) -> pd.DataFrame:
    keys = ["model", "tokens"] + ([by] if by else [])
    return df.groupby(keys, dropna=False)["value"].mean().reset_index()


def _models(df: pd.DataFrame) -> list[str]:
    return sorted(df["model"].unique())


def noise_pretrain_loss(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Held-out pretraining loss after Gaussian noise vs tokens, one line per γ, plus base."""
    pt = select(metrics, split="pretrain", metric="loss")
    models = _models(pt)
    if pt.empty or not (pt["perturbation"] == "gaussian").any():
        return _nothing_measured(paths, "no Gaussian-noise evaluation of held-out pretraining text "
                                        "(evaluate.pretrain_loss or perturb.gaussian.gammas is off)")
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.8 * len(models)), squeeze=False)
    for row, model in zip(axes, models):
        d = pt[pt["model"] == model]
        base = _mean_by_tokens(d[d["variant"] == "base"], None).set_index("tokens")["value"]
        row[0].plot(base.index, base.values, "k-o", label="base (no noise)")
        noisy = _mean_by_tokens(d[d["perturbation"] == "gaussian"], "gamma")
        for gamma, g in noisy.groupby("gamma"):
            row[0].plot(g["tokens"], g["value"], "-o", label=f"noise γ={gamma:g}·σ_init")
            inc = g["value"].to_numpy() - base.reindex(g["tokens"]).to_numpy()
            row[1].plot(g["tokens"], inc, "-o", label=f"γ={gamma:g}·σ_init")
        row[0].set_ylabel("held-out pretraining loss (nats/token)")
        row[0].set_title(f"{model}: pretraining loss after Gaussian noise")
        row[1].set_ylabel("increase over base (nats/token)")
        row[1].set_yscale("log")
        row[1].set_title(f"{model}: sensitivity to noise")
        for ax in row:
            _token_axis(ax, d["tokens"])
            _legend(ax, fontsize=8)
    _save(fig, paths)


def _finetuned(d: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned rows without ℓ2 pull, mean over seeds, one line per (method, lr)."""
    ft = d[(d["variant"] == "finetuned") & (d["l2"].fillna(0) == 0)].copy()
    ft["line"] = [f"{m if isinstance(m, str) else 'full'}, lr={lr:g}" for m, lr in zip(ft["ft_method"], ft["lr"])]
    return _mean_by_tokens(ft, "line")


def _mark_diverged(ax, metrics: pd.DataFrame, model: str) -> None:
    """An ✕ at the top of the panel where a fine-tune diverged (it has no evaluation)."""
    from overtrain.analysis import diverged_runs

    d = diverged_runs(metrics[metrics["model"] == model])
    for (method, lr), g in d.groupby(["ft_method", "lr"]):
        ax.plot(g["tokens"], [0.97] * len(g), "x", ms=9, mew=2, color="crimson",
                transform=ax.get_xaxis_transform(), label=f"diverged: {method}, lr={lr:g} (not evaluated)")


def finetune_pretrain_loss(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Held-out pretraining loss after fine-tuning vs tokens, one line per learning rate."""
    pt = select(metrics, split="pretrain", metric="loss")
    models = _models(pt)
    if pt.empty:
        return _nothing_measured(paths, "no held-out pretraining loss (evaluate.pretrain_loss is off)")
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        d = pt[pt["model"] == model]
        base = _mean_by_tokens(d[d["variant"] == "base"], None)
        ax.plot(base["tokens"], base["value"], "k-o", label="base (before fine-tuning)")
        for line, g in _finetuned(d).groupby("line"):
            ax.plot(g["tokens"], g["value"], "-o", label=f"fine-tuned {line}")
        _mark_diverged(ax, metrics, model)
        ax.set_ylabel("held-out pretraining loss (nats/token)")
        ax.set_title(f"{model}: forgetting after fine-tuning")
        _token_axis(ax, d["tokens"])
        _legend(ax, fontsize=8)
    _save(fig, paths)


def finetune_task_metric(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """In-distribution fine-tuning task metrics vs tokens, one line per learning rate."""
    from overtrain.config import prompt_formats

    other_formats = {f for t in set(metrics["eval_task"].dropna()) for f in prompt_formats(t)[1:]}
    ident = metrics[
        (metrics["split"] == "id")
        & metrics["metric"].isin(["acc", "loss"])
        & ~metrics["eval_task"].isin(other_formats)
    ]
    panels = sorted(ident.groupby(["model", "eval_task", "metric"]).groups)
    ncols = max(1, len(panels))
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False)
    for ax, (model, task, metric) in zip(axes[0], panels):
        d = ident[(ident["model"] == model) & (ident["eval_task"] == task) & (ident["metric"] == metric)]
        base = _mean_by_tokens(d[d["variant"] == "base"], None)
        ax.plot(base["tokens"], base["value"], "k-o", label="base")
        for line, g in _finetuned(d).groupby("line"):
            ax.plot(g["tokens"], g["value"], "-o", label=f"fine-tuned {line}")
        _mark_diverged(ax, metrics, model)
        unit = "accuracy" if metric == "acc" else "loss (nats/token)"
        ax.set_ylabel(f"{task} {unit}")
        ax.set_title(f"{model}: {task} ({metric})")
        if metric == "acc":
            choices = 4 if "mc" in task else None
            if choices:
                ax.axhline(1 / choices, color="grey", ls=":", label="chance")
        _token_axis(ax, d["tokens"])
        _legend(ax, fontsize=8)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no in-distribution tasks evaluated", ha="center")
    _save(fig, paths)


def _nothing_measured(paths: list[str | Path], why: str) -> None:
    """A figure whose measurement the config turned off: one panel that says so."""
    fig, ax = plt.subplots(figsize=(6.5, 2.5))
    _empty(ax, why)
    _save(fig, paths)


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def quantization_pretrain_loss(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Increase of held-out pretraining loss from round-to-nearest quantization vs tokens."""
    pt = select(metrics, split="pretrain", metric="loss")
    models = _models(pt) or ["(none)"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        d = pt[pt["model"] == model]
        base = _mean_by_tokens(d[d["variant"] == "base"], None).set_index("tokens")["value"]
        q = d[d["perturbation"] == "rtn"]
        if q.empty:
            _empty(ax, "no quantized variants (perturb.quantize.bits)")
            continue
        for bits, g in _mean_by_tokens(q, "bits").groupby("bits"):
            inc = g["value"].to_numpy() - base.reindex(g["tokens"]).to_numpy()
            ax.plot(g["tokens"], inc, "-o", label=f"RTN int{int(bits)} (per output channel)")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel("pretraining loss increase (nats/token)")
        ax.set_title(f"{model}: sensitivity to weight quantization")
        _token_axis(ax, d["tokens"])
        _legend(ax, fontsize=8)
    _save(fig, paths)


def tuned_learning_rate(tuned: pd.DataFrame, best: pd.DataFrame, paths: list[str | Path]) -> None:
    """With the learning rate chosen per checkpoint on the validation split: the chosen rate, and
    the in-distribution and pretraining metrics it reaches, vs tokens."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4), squeeze=False)
    ax_lr, ax_id, ax_pt = axes[0]
    if best.empty:
        for ax in axes[0]:
            _empty(ax, "no learning-rate selection (analysis.select)")
        _save(fig, paths)
        return
    for (model, task), g in best.groupby(["model", "ft_task"]):
        g = g.sort_values("tokens")
        ax_lr.plot(g["tokens"], g["lr"], "-o", label=f"{model} · {task}")
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("best learning rate (on validation)")
    ax_lr.set_title("optimal learning rate")
    for ax, split, title in ((ax_id, "id", "in-distribution at the tuned rate"), (ax_pt, "pretrain", "held-out pretraining loss at the tuned rate")):
        d = tuned[(tuned["split"] == split) & tuned["metric"].isin(["acc", "loss"])]
        for (model, task, metric), g in d.groupby(["model", "eval_task", "metric"]):
            m = _mean_by_tokens(g, None)
            ax.plot(m["tokens"], m["value"], "-o", label=f"{model} · {task} ({metric})")
        ax.set_title(title)
        ax.set_ylabel("metric (loss: nats/token)")
    for ax in axes[0]:
        _token_axis(ax, best["tokens"])
        _legend(ax, fontsize=7)
    _save(fig, paths)


def finetune_gain(gain: pd.DataFrame, metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Amuro & Char: what fine-tuning adds on each task (latent improvement), and forgetting."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), squeeze=False)
    ax_gain, ax_forget = axes[0]
    d = gain[gain["split"].isin(["id", "ood"]) & (gain["metric"] == "acc")]
    if d.empty:
        _empty(ax_gain, "no accuracy tasks")
    for (model, task, lr), g in d.groupby(["model", "eval_task", "lr"]):
        ax_gain.plot(g["tokens"], g["gain"], "-o", label=f"{task}, lr={lr:g}")
    ax_gain.axhline(0, color="grey", lw=0.8)
    ax_gain.set_ylabel("accuracy gain from fine-tuning (fine-tuned − base)")
    ax_gain.set_title("latent improvement revealed by fine-tuning")
    f = metrics[metrics["metric"] == "forgetting_loss"]
    if f.empty:
        _empty(ax_forget, "no forgetting rows")
    for (task, lr), g in f.groupby(["eval_task", "lr"]):
        m = _mean_by_tokens(g, None)
        ax_forget.plot(m["tokens"], m["value"], "-o", label=f"{task}, lr={lr:g}")
    ax_forget.set_ylabel("loss increase on tasks not fine-tuned on (nats)")
    ax_forget.set_title("forgetting")
    for ax in axes[0]:
        if ax.has_data():
            _token_axis(ax, metrics["tokens"])
            _legend(ax, fontsize=7)
    _save(fig, paths)


def prompt_sensitivity(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Spread of accuracy across prompt formats vs tokens, for base and fine-tuned models."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    d = metrics[metrics["metric"] == "prompt_spread_acc"]
    d = d[d["variant"].isin(["base", "finetuned"])].copy()
    if d.empty:
        _empty(ax, "no prompt variants (evaluate.prompt_variants)")
    else:
        d["line"] = d["variant"] + d["lr"].map(lambda x: "" if pd.isna(x) else f", lr={x:g}")
        for line, g in _mean_by_tokens(d, "line").groupby("line"):
            ax.plot(g["tokens"], g["value"], "-o", label=line)
        ax.set_ylabel("accuracy spread across prompt formats (max − min)")
        ax.set_title("prompt sensitivity (training template, instruction, raw input)")
        _token_axis(ax, d["tokens"])
        _legend(ax, fontsize=8)
    _save(fig, paths)


def connectivity(barriers: pd.DataFrame, soups: pd.DataFrame, paths: list[str | Path]) -> None:
    """Loss barrier between fine-tunes of different seeds, their distance, and soup gains."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4), squeeze=False)
    if barriers.empty:
        for ax in axes[0]:
            _empty(ax, "no connectivity jobs (connectivity.learning_rates)")
        _save(fig, paths)
        return
    ax_b, ax_d, ax_s = axes[0]
    lb = barriers[barriers["metric"] == "loss"]
    for (task, lr), g in lb.groupby(["eval_task", "lr"]):
        m = g.groupby("tokens")["barrier"].mean()
        ax_b.plot(m.index, m.values, "-o", label=f"{task}, lr={lr:g}")
    ax_b.axhline(0, color="grey", lw=0.8)
    ax_b.set_ylabel("loss barrier along the linear path (nats)")
    ax_b.set_title("linear mode connectivity of seed pairs")
    dist = barriers[barriers["metric"] == "l2_distance"]
    for lr, g in dist.groupby("lr"):
        m = g.groupby("tokens")["barrier"].mean()
        ax_d.plot(m.index, m.values, "-o", label=f"lr={lr:g}")
    ax_d.set_ylabel("L2 distance between fine-tunes")
    ax_d.set_title("how far apart seeds land")
    if soups.empty:
        _empty(ax_s, "no soups")
    for (soup, task, metric), g in soups.groupby(["soup", "eval_task", "metric"]):
        m = g.groupby("tokens")["gain"].mean()
        ax_s.plot(m.index, m.values, "-o", label=f"{soup} soup · {task} ({metric})")
    ax_s.axhline(0, color="grey", lw=0.8)
    ax_s.set_ylabel("soup − best single fine-tune (better is > 0)")
    ax_s.set_title("model soups")
    for ax in axes[0]:
        if ax.has_data():
            _token_axis(ax, barriers["tokens"])
            _legend(ax, fontsize=7)
    _save(fig, paths)


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
        _legend(ax, fontsize=7)
    _save(fig, paths)
