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
from overtrain.analysis.train_logs import epoch_boundaries  # noqa: E402


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


SMOOTHING = 25  # a training curve is drawn as a rolling mean over 1/SMOOTHING of its logged steps


def smooth(loss: pd.Series) -> pd.Series:
    return loss.rolling(max(1, len(loss) // SMOOTHING), min_periods=1).mean()


def budget_colours(tokens) -> dict:
    budgets = sorted({int(t) for t in tokens if t == t})
    return dict(zip(budgets, plt.cm.viridis(np.linspace(0, 0.9, max(1, len(budgets))))))


def pretraining_panel(ax, model: str, d: pd.DataFrame, colours: dict) -> None:
    """Every pretraining run (or WSD decay branch) coloured by its budget, each seed's stable run
    in black."""
    labelled = set()
    for (tokens, phase, _ckpt), run in d[d["phase"].isin(["pretrain", "decay"])].groupby(
            ["tokens", "phase", "ckpt"]):
        label = f"{format_tokens(tokens)} budget" + (" (decay branch)" if phase == "decay" else "")
        ax.plot(run["tokens_seen"], smooth(run["loss"]), lw=1, color=colours[int(tokens)],
                label=None if label in labelled else label)
        labelled.add(label)
    for i, (_seed, run) in enumerate(d[d["phase"] == "stable"].groupby("pretrain_seed")):
        run = run.sort_values("step")
        ax.plot(run["tokens_seen"], smooth(run["loss"]), lw=1, color="k", alpha=0.8,
                label=None if i else "stable run (constant lr)")
    ax.set_xscale("log")
    ax.set_xlabel("tokens seen in pretraining")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title(f"{model}: pretraining")
    ax.grid(alpha=0.3)
    legend(ax, fontsize=7)


def finetuning_panel(ax, model: str, d: pd.DataFrame, setting: tuple, colours: dict) -> None:
    """One fine-tuning setting: the loss per step for each checkpoint's tokens (mean over the
    pretraining and fine-tuning seeds), the epoch boundaries dotted."""
    task, method, l2, lr = setting
    for tokens, runs in d.groupby("tokens"):
        mean = runs.groupby("step")["loss"].mean()
        ax.plot(mean.index, smooth(mean), lw=1.2, color=colours.get(int(tokens)),
                label=f"from {format_tokens(tokens)} tokens")
    first = next(iter(d.groupby(["ckpt", "seed"])))[1].sort_values("step")
    for i, step in enumerate(epoch_boundaries(first)):
        ax.axvline(step, color="grey", ls=":", lw=1, label=None if i else "epoch boundary")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title(f"{model}: {task}, {method}, lr={lr:g}" + (f", ℓ2={l2:g}" if l2 else ""), fontsize=9)
    ax.grid(alpha=0.3)
    legend(ax, fontsize=7)


SETTING = ["ft_task", "ft_method", "l2", "lr"]


def curve_panels(curves: pd.DataFrame) -> list[tuple[str, tuple | None, pd.DataFrame]]:
    """The training-curves figure's panels, each (model, fine-tuning setting or None for
    pretraining, its rows): per model its pretraining, then each fine-tuning setting."""
    panels = []
    for model in model_names(curves):
        d = curves[curves["model"] == model]
        if (d["phase"] != "finetune").any():
            panels.append((model, None, d[d["phase"] != "finetune"]))
        for setting, rows in d[d["phase"] == "finetune"].groupby(SETTING, dropna=False, sort=True):
            panels.append((model, setting, rows))
    return panels
