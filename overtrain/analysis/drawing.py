"""How every figure is drawn: a panel over pretraining tokens, a line with its 95% band over
replicates, the note under a figure, a panel for what was not measured, and the files.
matplotlib and pandas only."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from overtrain.analysis.formatting import format_tokens  # noqa: E402
from overtrain.analysis.intervals import replicate_ids, summarize  # noqa: E402


def token_axis(ax, tokens) -> None:
    ticks = sorted(set(int(t) for t in tokens))
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([format_tokens(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("pretraining tokens")
    ax.grid(alpha=0.3)


def legend(ax, **kw) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def save(fig, paths: list[str | Path]) -> None:
    fig.tight_layout(rect=(0, 0.03, 1, 1))  # room for the replicate note
    for p in paths:
        fig.savefig(p, dpi=120, metadata={"CreationDate": None} if str(p).endswith(".pdf") else None)
    plt.close(fig)


def band(ax, rows: pd.DataFrame, label: str, style: str = "-o", color=None, value: str = "value") -> None:
    """One line: the mean over replicates vs tokens, with its 95% bootstrap band (none for no rows:
    a LLaVA task has no base-checkpoint row, for instance)."""
    if rows.empty:
        return
    s = summarize(rows, ["tokens"], value)
    s = s[np.isfinite(s["mean"].astype(float))]
    if s.empty:
        return
    (line,) = ax.plot(s["tokens"], s["mean"], style, label=label, ms=4, **({"color": color} if color else {}))
    if (s["n"] > 1).any():
        ax.fill_between(s["tokens"], s["ci_low"], s["ci_high"], color=line.get_color(), alpha=0.2, lw=0)


def note(fig, rows: pd.DataFrame) -> None:
    """How many replicates the lines average, under the figure."""
    if rows.empty:
        return
    n = int(replicate_ids(rows).nunique())
    text = (f"lines: mean over {n} replicates; bands: 95% bootstrap interval" if n > 1
            else "one replicate (no interval): add pretraining or fine-tuning seeds for bands")
    fig.text(0.5, 0.005, text, ha="center", va="bottom", fontsize=8, color="dimgrey")


def dress(ax, tokens, fontsize: int = 8) -> None:
    """A panel over pretraining tokens: its axis and its legend."""
    token_axis(ax, tokens)
    legend(ax, fontsize=fontsize)


def finish(fig, rows: pd.DataFrame, paths: list[str | Path]) -> None:
    """The replicate note under the figure, then the files."""
    note(fig, rows)
    save(fig, paths)


def model_names(df: pd.DataFrame) -> list[str]:
    return sorted(df["model"].unique())


def finetuned_lines(d: pd.DataFrame):
    """Fine-tuned rows without ℓ2 pull, one group per (method, lr)."""
    ft = d[(d["variant"] == "finetuned") & (d["l2"].fillna(0) == 0)].copy()
    ft["line"] = [f"{m if isinstance(m, str) else 'full'}, lr={lr:g}" for m, lr in zip(ft["ft_method"], ft["lr"])]
    return ft.groupby("line")


def mark_diverged(ax, metrics: pd.DataFrame, model: str) -> None:
    """An ✕ at the top of the panel where a fine-tune diverged (it has no evaluation)."""
    from overtrain.analysis.tables import diverged_runs

    d = diverged_runs(metrics[metrics["model"] == model])
    for (method, lr), g in d.groupby(["ft_method", "lr"]):
        ax.plot(g["tokens"], [0.97] * len(g), "x", ms=9, mew=2, color="crimson",
                transform=ax.get_xaxis_transform(), label=f"diverged: {method}, lr={lr:g} (not evaluated)")


def nothing_measured(paths: list[str | Path], why: str) -> None:
    """A figure whose measurement the config turned off: one panel that says so."""
    fig, ax = plt.subplots(figsize=(6.5, 2.5))
    empty(ax, why)
    save(fig, paths)


def empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])
