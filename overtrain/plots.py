"""Figures from the tidy metrics table (pandas + matplotlib only)."""

from __future__ import annotations

import math
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
            ax.legend(fontsize=8)
    _save(fig, paths)


def _finetuned(d: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned rows without ℓ2 pull, mean over seeds, one line per (method, lr)."""
    ft = d[(d["variant"] == "finetuned") & (d["l2"].fillna(0) == 0)].copy()
    ft["line"] = ft["ft_method"].fillna("full") + ", lr=" + ft["lr"].map("{:g}".format)
    return _mean_by_tokens(ft, "line")


def finetune_pretrain_loss(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """Held-out pretraining loss after fine-tuning vs tokens, one line per learning rate."""
    pt = select(metrics, split="pretrain", metric="loss")
    models = _models(pt)
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        d = pt[pt["model"] == model]
        base = _mean_by_tokens(d[d["variant"] == "base"], None)
        ax.plot(base["tokens"], base["value"], "k-o", label="base (before fine-tuning)")
        for line, g in _finetuned(d).groupby("line"):
            ax.plot(g["tokens"], g["value"], "-o", label=f"fine-tuned {line}")
        ax.set_ylabel("held-out pretraining loss (nats/token)")
        ax.set_title(f"{model}: forgetting after fine-tuning")
        _token_axis(ax, d["tokens"])
        ax.legend(fontsize=8)
    _save(fig, paths)


def finetune_task_metric(metrics: pd.DataFrame, paths: list[str | Path]) -> None:
    """In-distribution fine-tuning task metrics vs tokens, one line per learning rate."""
    from overtrain.config import PROMPT_VARIANTS

    other_formats = {f for formats in PROMPT_VARIANTS.values() for f in formats[1:]}
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
        unit = "accuracy" if metric == "acc" else "loss (nats/token)"
        ax.set_ylabel(f"{task} {unit}")
        ax.set_title(f"{model}: {task} ({metric})")
        if metric == "acc":
            choices = 4 if "mc" in task else None
            if choices:
                ax.axhline(1 / choices, color="grey", ls=":", label="chance")
        _token_axis(ax, d["tokens"])
        ax.legend(fontsize=8)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no in-distribution tasks evaluated", ha="center")
    _save(fig, paths)
