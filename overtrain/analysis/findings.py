"""The study's findings as a Markdown page written by the workflow (never typed by hand): the
verdicts on the seed papers' claims, then the key tables, each number with its 95% interval
over replicates. pandas only."""

from __future__ import annotations

import math
import platform

import pandas as pd

from overtrain.analysis.formatting import format_tokens
from overtrain.analysis.verdict import rule


def _num(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{digits}g}"


def _ci(mean: float, lo: float, hi: float, n: int, digits: int = 3) -> str:
    if n is not None and n > 1 and not (math.isnan(lo) or math.isnan(hi)):
        return f"{_num(mean, digits)} [{_num(lo, digits)}, {_num(hi, digits)}]"
    return _num(mean, digits)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def verdict_table(hypotheses: pd.DataFrame) -> pd.DataFrame:
    """The claims in one compact table (the report's first page): claim, condition, effect with
    its interval, replicates, verdict."""
    return pd.DataFrame({
        "claim": hypotheses["hypothesis"],
        "condition": hypotheses["condition"],
        "effect [95% CI]": [_ci(e, lo, hi, n) for e, lo, hi, n in
                            zip(hypotheses["effect"], hypotheses["ci_low"], hypotheses["ci_high"], hypotheses["n_seeds"])],
        "replicates": hypotheses["n_seeds"].astype(int),
        "verdict": hypotheses["verdict"],
    })


def _margin(hypotheses: pd.DataFrame) -> float:
    """δ, as the table records it (the claims on T*'s location record 0)."""
    values = sorted({float(v) for v in hypotheses["min_effect"].dropna() if v > 0})
    return values[-1] if values else 0.0


def render(*, experiment: str, command: str, code: str, replicates: int, hypotheses: pd.DataFrame,
           pretrain_loss: pd.DataFrame, best_lr: pd.DataFrame, inflection: pd.DataFrame,
           published: pd.DataFrame | None = None) -> str:
    """The findings page."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch = version("torch")
    except PackageNotFoundError:  # the analysis environment has no torch
        torch = "–"
    lines = [
        f"# Findings: `{experiment}`",
        "",
        f"Written by the workflow's `findings` rule (`{command}`), code version `{code}`, on "
        f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%d} with Python {platform.python_version()}, torch {torch}, "
        f"{platform.machine()}. Every number is the mean over {replicates} replicate(s) "
        "(pretraining seeds, or fine-tuning / noise seeds where there is one pretraining run) with its 95% bootstrap "
        "interval in brackets. Machine-dependent: the last digits of every number (CPU instruction set, "
        "`compute.threads_per_job`) and, through them, now and then a discrete choice (the learning rate that wins "
        "on validation at one budget of one seed), which can move a borderline verdict between inconclusive and a "
        "firm one; `python benchmarks/run.py --only P7` compares the default's verdicts at 1 and 2 threads per job.",
        "",
        "## The seed papers' claims",
        "",
        "Verdict rule: " + rule(_margin(hypotheses)),
        "",
    ]
    several = hypotheses["model"].nunique() > 1 if "model" in hypotheses else False  # then say whose claim
    rows = [([f"`{h['model']}`"] if several else []) + [
        h["hypothesis"], h["condition"], _ci(h["effect"], h["ci_low"], h["ci_high"], h["n_seeds"]),
        str(int(h["n_seeds"])), f"**{h['verdict']}**", h["source"]] for _, h in hypotheses.iterrows()]
    lines += _table((["model"] if several else []) + ["claim", "condition", "effect [95% CI]", "n", "verdict",
                                                      "source"], rows)
    if (hypotheses["n_seeds"] == 1).any():
        lines += ["", "n = 1: one replicate gives the effect but no interval, so its verdict is inconclusive by the "
                  "rule; a firm verdict needs at least 2 replicates (pretraining seeds, or fine-tuning seeds of one "
                  "checkpoint), and 3 make the interval the range of three independent effects."]
    lines += ["", "Effects: " + "; ".join(sorted({f"{h} — {s}" for h, s in
                                                   zip(hypotheses["hypothesis"], hypotheses["statistic"]) if s})), ""]
    if not pretrain_loss.empty:
        lines += ["## Held-out pretraining loss (nats/token)", ""]
        for model, m in pretrain_loss.groupby("model"):
            conditions = list(dict.fromkeys(["base"] + sorted(c for c in m["condition"].unique() if c != "base")))
            body = []
            for tokens, t in m.groupby("tokens"):
                cells = t.set_index("condition")
                body.append([format_tokens(tokens)] + [
                    _ci(cells.loc[c, "value"], cells.loc[c, "ci_low"], cells.loc[c, "ci_high"], cells.loc[c, "n"])
                    if c in cells.index else "–" for c in conditions])
            lines += [f"`{model}`:", ""] + _table(["tokens"] + conditions, body) + [""]
    if not best_lr.empty:
        lines += ["## Learning rate chosen on the validation split", ""]
        body = []
        for (model, task, tokens), g in best_lr.groupby(["model", "ft_task", "tokens"]):
            counts = g["lr"].value_counts().sort_index()
            body.append([model, task, format_tokens(tokens), ", ".join(f"{lr:g} ×{n}" for lr, n in counts.items())])
        lines += _table(["model", "task", "tokens", "chosen rate × replicates"], body) + [""]
    if not inflection.empty:
        lines += ["## Inflection points T* (tokens at which the metric is best)", ""]
        body = [[r["model"], r["condition"], f"{r['eval_task']} ({r['metric']})",
                 f"{format_tokens(r['t_star'])} [{format_tokens(r['ci_low'])}, {format_tokens(r['ci_high'])}]"
                 if r["n_seeds"] > 1 else format_tokens(r["t_star"]) if not math.isnan(r["t_star"]) else "–",
                 "yes" if r["interior"] else "no"] for _, r in inflection.iterrows()]
        lines += _table(["model", "condition", "metric", "T* [95% CI]", "interior"], body) + [""]
    if published is not None and not published.empty:
        lines += beside_published(published)
    return "\n".join(lines)


def beside_published(published: pd.DataFrame) -> list[str]:
    """The run beside the paper (tables/published.csv): every measurement with a published
    counterpart at the nearest published checkpoint."""
    lines = ["## Beside the published numbers", "",
             "Our mean over replicates [95% CI] beside the number the paper published for the same condition, at "
             "the published checkpoint nearest in pretraining tokens (`tables/published.csv`).", ""]
    body = []
    for _, r in published.sort_values(["model", "variant", "ft_task", "eval_task", "metric", "tokens"],
                                      na_position="first").iterrows():
        rate = "tuned lr" if pd.isna(r["lr"]) else f"lr={r['lr']:g}"
        fine_tune = f"{r['ft_task']} {rate}" if r["variant"] == "finetuned" else "base"
        ours = (f"– ({r['note']})" if pd.isna(r["ours"]) else _ci(r["ours"], r["ci_low"], r["ci_high"], int(r["n"])))
        body.append([f"`{r['model']}` {r['ckpt'] if isinstance(r['ckpt'], str) else '–'}",
                     f"{r['published_model']} {r['published_ckpt']}", fine_tune, f"{r['eval_task']} ({r['metric']})",
                     ours, _num(r["published"]), "–" if pd.isna(r["difference"]) else _num(r["difference"])])
    return lines + _table(["ours", "published", "variant", "task (metric)", "ours [95% CI]", "published",
                           "ours − published"], body) + [""]
