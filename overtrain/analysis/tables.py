"""Tidy tables from evaluation results. pandas only: no torch, no lm-eval (fast to start)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from overtrain.analysis.intervals import N_BOOT, interval, summarize
from overtrain.analysis.intervals import curves as replicate_curves
from overtrain.config import own_val_task, prompt_formats
from overtrain.evaluation.results import read_result
from overtrain.perturb import KINDS

# The contract of tables/metrics.csv (docs/outputs.md): one row per measurement, in this order.
METRIC_COLUMNS = [
    "model",
    "ckpt",
    "tokens",
    "parameters",
    "pretrain_seed",
    "variant",
    "ft_task",
    "lr",
    "seed",
    "perturbation",
    "gamma",
    "ft_method",
    "l2",
    "bits",
    "alpha",
    "soup",
    "seeds",
    "eval_task",
    "split",
    "metric",
    "value",
]
VARIANTS = ["base", "finetuned", "perturbed", "interpolated", "soup"]
SPLITS = ["id", "val", "ood", "pretrain", "ft_train"]
LABEL_COLUMNS = [
    "model", "ckpt", "parameters", "pretrain_seed", "variant", "ft_task", "lr", "seed", "perturbation", "gamma", "ft_method", "l2", "bits",
    "alpha", "soup", "seeds",
]
# The columns of the original design's contract; the others (ft_method, l2, bits) sit between gamma and
# eval_task.
CONTRACT_COLUMNS = [
    "model", "ckpt", "tokens", "variant", "ft_task", "lr", "seed", "perturbation", "gamma",
    "eval_task", "split", "metric", "value",
]


def rows_from_eval(result: dict) -> list[dict]:
    """One evaluation JSON → contract rows; absent labels stay empty.

    A connectivity JSON contributes its path (variant interpolated, with alpha and the pair of
    seeds) and its soups (variant soup, with the soup kind and its ingredients).
    """
    labels = {c: result.get(c) for c in LABEL_COLUMNS}
    if "interpolation" in result:
        out = [{**labels, "tokens": result["tokens"], "variant": "interpolated", **r} for r in result["interpolation"]]
        out += [{**labels, "tokens": result["tokens"], "variant": "soup", **r} for r in result["soups"]]
        return out
    # rows imported from elsewhere (overtrain.evaluation.imported) carry their own checkpoint labels
    return [{**labels, "tokens": result.get("tokens"), **row} for row in result["rows"]]


def increase_over_base(df: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with their value minus the base checkpoint's on the same task and metric (the same
    checkpoint: the same replicate); NaN where the base was not evaluated."""
    keys = ["model", "ckpt", "eval_task", "metric"]
    base = df[df["variant"] == "base"].set_index(keys)["value"]
    return rows.assign(value=rows["value"].to_numpy() - base.reindex(list(zip(*(rows[k] for k in keys)))).to_numpy())


def forgetting_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned − base, for every task that was not fine-tuned on (splits pretrain and ood).

    For a loss a positive value is forgetting; for an accuracy a negative one.
    """
    ft = df[(df["variant"] == "finetuned") & df["split"].isin(["pretrain", "ood"])]
    ft = ft[~ft["metric"].str.startswith(("forgetting_", "prompt_spread_"))]
    base = df[df["variant"] == "base"][["model", "ckpt", "eval_task", "metric", "value"]]
    merged = ft.merge(base, on=["model", "ckpt", "eval_task", "metric"], suffixes=("", "_base"))
    merged["value"] = merged["value"] - merged["value_base"]
    merged["metric"] = "forgetting_" + merged["metric"]
    return merged[METRIC_COLUMNS]


def prompt_spread_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Prompt sensitivity: max − min of a metric across a task's prompt formats, per variant."""
    parts = []
    for task in sorted(set(df["eval_task"].dropna())):
        formats = prompt_formats(task)
        if len(formats) < 2:
            continue
        d = df[df["eval_task"].isin(formats) & df["metric"].isin(["acc", "acc_norm"])]
        if d["eval_task"].nunique() < len(formats):
            continue
        keys = [c for c in METRIC_COLUMNS if c not in ("eval_task", "value")]
        g = d.groupby(keys, dropna=False)["value"]
        spread = (g.max() - g.min()).reset_index()
        spread = spread[(g.count() == len(formats)).to_numpy()]  # every format evaluated
        spread["metric"] = "prompt_spread_" + spread["metric"]
        spread["eval_task"] = task
        parts.append(spread[METRIC_COLUMNS])
    return pd.concat(parts) if parts else pd.DataFrame(columns=METRIC_COLUMNS)


def metrics_table(eval_files: list[str | Path]) -> pd.DataFrame:
    """All evaluations as one tidy table, with forgetting and prompt-sensitivity rows, in a
    deterministic order. Refuses a model whose results mix device types or dtypes (their
    `runtime`: CPU-float32 and GPU-bfloat16 numbers differ in more than the last digits)."""
    rows, runtimes = [], {}
    for path in sorted(str(p) for p in eval_files):
        result = read_result(path)
        rows += rows_from_eval(result)
        if "runtime" in result:
            where = (result["runtime"]["device"].split(":")[0], result["runtime"]["dtype"])
            runtimes.setdefault(result.get("model"), {}).setdefault(where, path)
    for model, seen in runtimes.items():
        if len(seen) > 1:
            raise ValueError(f"model {model!r}: its results were computed in {len(seen)} ways (" + "; ".join(
                f"{device} {dtype}: e.g. {path}" for (device, dtype), path in sorted(seen.items()))
                + "); one model's numbers must come from one device type and dtype: rerun those with compute.device "
                  "and compute.dtype as the others (delete them and run again)")
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    df["tokens"] = df["tokens"].astype("int64")
    for col in ("lr", "gamma", "l2", "alpha"):
        df[col] = df[col].astype("float64")
    for col in ("parameters", "pretrain_seed", "seed", "bits"):
        df[col] = df[col].astype("Int64")
    df = pd.concat([df, forgetting_rows(df), prompt_spread_rows(df)], ignore_index=True)
    bad = set(df["variant"]) - set(VARIANTS)
    if bad:
        raise ValueError(f"unknown variants {bad}; allowed {VARIANTS}")
    bad = set(df["split"]) - set(SPLITS)
    if bad:
        raise ValueError(f"unknown splits {bad}; allowed {SPLITS}")
    order = pd.Categorical(df["variant"], categories=VARIANTS, ordered=True)
    df = df.assign(_v=order).sort_values(
        ["model", "tokens", "pretrain_seed", "_v", "ft_task", "ft_method", "lr", "l2", "perturbation", "gamma",
         "bits", "seed", "soup", "seeds", "alpha", "split", "eval_task", "metric"],
        kind="mergesort",
        na_position="first",
    )
    return df.drop(columns="_v").reset_index(drop=True)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    from overtrain.atomic import atomic_write_text

    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))


def select(df: pd.DataFrame, **equal) -> pd.DataFrame:
    """Rows whose columns equal the given values."""
    mask = pd.Series(True, index=df.index)
    for col, value in equal.items():
        mask &= df[col] == value
    return df[mask]


def pretrain_loss_by_variant(df: pd.DataFrame, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Held-out pretraining loss per budget for base, each γ, each quantization and each
    learning rate, and its increase over the base checkpoint (of the same replicate): means
    over replicates with 95% bootstrap intervals."""
    pt = select(df, split="pretrain", metric="loss")
    parts = [pt[pt["variant"] == "base"].assign(condition="base")]
    for kind in KINDS.values():
        rows = pt[(pt["variant"] == "perturbed") & (pt["perturbation"] == kind.name)]
        parts.append(rows.assign(condition=[kind.label(v) for v in rows[kind.parameter]]))
    ft = pt[(pt["variant"] == "finetuned") & (pt["l2"].fillna(0) == 0)]
    labels = [f"fine-tune {m if isinstance(m, str) else 'full'} lr={lr:g}" for m, lr in zip(ft["ft_method"], ft["lr"])]
    parts.append(ft.assign(condition=labels))
    rows = pd.concat(parts)
    rows = rows.assign(increase=increase_over_base(df, rows)["value"].to_numpy())
    keys = ["model", "tokens", "condition"]
    value = summarize(rows, keys, "value", n_boot).rename(columns={"mean": "value"})
    inc = summarize(rows, keys, "increase", n_boot).rename(
        columns={"mean": "increase", "ci_low": "increase_ci_low", "ci_high": "increase_ci_high"})
    return value.merge(inc.drop(columns="n"), on=keys)


# ---------------------------------------------------------------------------------------------
# Analyses of the three studies (each returns a tidy table)
# ---------------------------------------------------------------------------------------------

RUN_KEYS = ["model", "ckpt", "tokens", "ft_task", "ft_method", "l2"]


def _finetuned(df: pd.DataFrame) -> pd.DataFrame:
    ft = df[df["variant"] == "finetuned"].copy()
    ft["ft_method"] = ft["ft_method"].fillna("full")
    ft["l2"] = ft["l2"].fillna(0.0)
    return ft


def diverged_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The fine-tunes whose training diverged (their `diverged` row is 1), one row each."""
    ft = _finetuned(df)
    d = ft[(ft["metric"] == "diverged") & (ft["value"] > 0)]
    cols = RUN_KEYS + ["pretrain_seed", "lr", "seed"]
    return d.reindex(columns=cols).sort_values(RUN_KEYS + ["lr", "seed"]).reset_index(drop=True)


def diverged_summary(metrics_csv: str | Path) -> str:
    """The study log's account of fine-tunes that diverged (recorded, not evaluated)."""
    if not Path(metrics_csv).exists():
        return ""
    runs = diverged_runs(pd.read_csv(metrics_csv))
    if runs.empty:
        return "No fine-tune diverged."
    lines = [f"{r.model} {r.ckpt} {r.ft_task} {r.ft_method} lr={r.lr} seed={r.seed}" for r in runs.itertuples()]
    return (f"{len(lines)} fine-tune(s) diverged (stopped early, not evaluated; never chosen as best lr):\n  "
            + "\n  ".join(lines))


def best_learning_rates(df: pd.DataFrame, select: dict) -> pd.DataFrame:
    """The learning rate with the best validation score (mean over seeds) per checkpoint and task.

    A learning rate at which any seed diverged is never chosen: it counts as the worst.
    """
    ft = _finetuned(df)
    bad = diverged_runs(df)[RUN_KEYS + ["lr"]].drop_duplicates()
    if not bad.empty:
        marked = ft.merge(bad.assign(_diverged=True), on=RUN_KEYS + ["lr"], how="left")
        ft = ft[marked["_diverged"].isna().to_numpy()]
    task = ft["ft_task"].map(own_val_task) if select["task"] == "own" else select["task"]
    val = ft[(ft["eval_task"] == task) & (ft["metric"] == select["metric"])]
    if val.empty:
        return pd.DataFrame(columns=RUN_KEYS + ["lr", "val_score", "n_seeds"])
    means = val.groupby(RUN_KEYS + ["lr"], dropna=False)["value"].agg(["mean", "count"]).reset_index()
    means = means.sort_values("mean", ascending=not select["higher_is_better"], kind="mergesort")
    order = ["model", "ft_task", "ft_method", "l2", "tokens"]
    best = means.groupby(RUN_KEYS, dropna=False).head(1).sort_values(order, kind="mergesort")
    return best.rename(columns={"mean": "val_score", "count": "n_seeds"}).reset_index(drop=True)


def by_setting(rows: pd.DataFrame, *keys: str):
    """Fine-tune rows grouped by their setting — method and ℓ2 pull (missing: full, λ = 0) — then
    by `keys`. A rate is tuned per setting (RUN_KEYS), so settings are never pooled: averaging
    plain fine-tunes with ℓ2-pulled ones would judge neither."""
    rows = rows.assign(ft_method=rows["ft_method"].fillna("full"), l2=rows["l2"].fillna(0.0))
    return rows.groupby(["ft_method", "l2", *keys])


def tuned_metrics(df: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Every reported metric of the fine-tunes at the chosen learning rate (the paper's tuned-LR
    view); the val split chose the rate and is never reported."""
    ft = _finetuned(df)
    ft = ft[~ft["split"].isin(["ft_train", "val"])]
    tuned = ft.merge(best[RUN_KEYS + ["lr"]], on=RUN_KEYS + ["lr"])
    return tuned[METRIC_COLUMNS].reset_index(drop=True)


def lr_trend(tokens: list[float], lrs: list[float]) -> str:
    """Class of the optimal learning rate's trend with pretraining tokens.

    constant: one learning rate everywhere; otherwise the sign of the log-log slope decides
    increasing / decreasing, and a change of ≥ 10× over the range makes it "quickly".
    """
    if len(set(lrs)) <= 1:
        return "constant"
    x, y = np.log(np.asarray(tokens, float)), np.log(np.asarray(lrs, float))
    fit = np.polyfit(x, y, 1)
    if abs(fit[0]) < 1e-12:
        return "constant"
    first, last = np.exp(np.polyval(fit, [x.min(), x.max()]))
    speed = "quickly" if max(first, last) / min(first, last) >= 10 else "slowly"
    return f"{speed} {'decreasing' if fit[0] < 0 else 'increasing'}"


def inflection(rows: pd.DataFrame, higher_is_better: bool, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """T*: the budget where the replicate-averaged metric is best, with a bootstrap interval.

    `rows` has tokens, value and the replicate columns (pretrain_seed, seed). Replicates are
    resampled with replacement; each resample's mean curve gives a T*; the interval is the
    central 95% of them. `interior` says whether T* lies strictly inside the budget range (an
    inflection, not an end point).
    """
    wide = replicate_curves(rows)
    tokens, values = wide.index.to_numpy(), wide.to_numpy()  # (budgets, replicates)
    sign = 1 if higher_is_better else -1

    def t_star(cols) -> float:
        with np.errstate(invalid="ignore"):
            mean = values[:, cols].mean(axis=1)
        return float(tokens[int(np.argmax(sign * np.nan_to_num(mean, nan=-sign * np.inf)))])

    n = values.shape[1]
    if n == 0:
        return {"t_star": np.nan, "ci_low": np.nan, "ci_high": np.nan, "interior": False, "n_seeds": 0}
    best = t_star(np.arange(n))
    rng = np.random.default_rng(seed)
    boots = [t_star(rng.integers(0, n, n)) for _ in range(n_boot)] if n > 1 else [best]
    lo, hi = interval(boots)
    return {"t_star": best, "ci_low": lo, "ci_high": hi, "interior": bool(tokens.min() < best < tokens.max()),
            "n_seeds": int(n)}


def main_id_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """In-distribution loss and accuracy rows, in each task's training prompt format only."""
    ident = rows[(rows["split"] == "id") & rows["metric"].isin(["acc", "loss"])]
    other_formats = {f for task in set(ident["eval_task"]) for f in prompt_formats(task)[1:]}
    return ident[~ident["eval_task"].isin(other_formats)]


def _l2_label(l2: float) -> str:
    """How an inflection condition names the ℓ2 pull: nothing at λ = 0."""
    return f" l2={l2:g}" if l2 else ""


def inflection_table(df: pd.DataFrame, best: pd.DataFrame | None, n_boot: int = N_BOOT) -> pd.DataFrame:
    """T* of the held-out pretraining loss after each perturbation and each learning rate, of the
    in-distribution metrics at each learning rate, and of every metric at the tuned learning
    rate; with the model's parameters (T* in tokens per parameter = t_star / parameters)."""
    rows = []
    pt = df[(df["split"] == "pretrain") & (df["metric"] == "loss")]
    for model, m in pt.groupby("model"):
        for kind in KINDS.values():
            for value, g in m[m["perturbation"] == kind.name].groupby(kind.parameter):
                rows.append({"model": model, "condition": kind.label(value), "eval_task": g["eval_task"].iloc[0],
                             "metric": "loss", **inflection(g, False, n_boot)})
    for model, m in df.groupby("model"):
        ft = _finetuned(m)
        diverged = diverged_runs(m)
        parts = [("", ft[(ft["split"] == "pretrain") & (ft["metric"] == "loss")]), (" (id)", main_id_rows(ft))]
        for suffix, part in parts:
            for (method, l2, lr, task, metric), g in part.groupby(["ft_method", "l2", "lr", "eval_task", "metric"]):
                label = f"fine-tune {method} lr={lr:g}{_l2_label(l2)}{suffix}"
                # a diverged fine-tune has no evaluation: it counts as infinitely bad, never as T*
                gone = diverged[(diverged["ft_method"] == method) & (diverged["l2"] == l2) & (diverged["lr"] == lr)]
                cols = ["tokens", "pretrain_seed", "seed"]
                bad = -np.inf if metric == "acc" else np.inf
                curves = pd.concat([g[cols + ["value"]], gone[cols].assign(value=bad)])
                rows.append({"model": model, "condition": label, "eval_task": task, "metric": metric,
                             "ft_method": method, "lr": lr, "l2": l2, **inflection(curves, metric == "acc", n_boot)})
    if best is not None and not best.empty:
        tuned = tuned_metrics(df, best)
        ident = tuned[tuned["split"].isin(["id", "pretrain", "ood"]) & tuned["metric"].isin(["acc", "loss"])]
        for (method, l2, model, task, split, metric), g in by_setting(ident, "model", "eval_task", "split", "metric"):
            label = "tuned lr" + ("" if method == "full" else f" {method}") + _l2_label(l2)
            rows.append({"model": model, "condition": f"{label} ({split})", "eval_task": task, "metric": metric,
                         "ft_method": method, "l2": l2, **inflection(g, metric == "acc", n_boot)})
    columns = ["model", "condition", "eval_task", "metric", "ft_method", "lr", "l2", "t_star", "ci_low", "ci_high",
               "interior", "n_seeds", "parameters"]
    parameters = df.groupby("model")["parameters"].max() if "parameters" in df else pd.Series(dtype="float64")
    out = pd.DataFrame(rows, columns=columns)
    return out.assign(parameters=out["model"].map(parameters).astype("Int64"))


def finetune_gain(df: pd.DataFrame) -> pd.DataFrame:
    """Amuro & Char's latent improvement: fine-tuned − base score per task and checkpoint
    (mean over seeds), beside the base score it starts from."""
    keep = df["metric"].isin(["acc", "loss"]) & df["split"].isin(["id", "ood", "pretrain", "val"])
    base = df[(df["variant"] == "base") & keep][["model", "ckpt", "tokens", "eval_task", "split", "metric", "value"]]
    ft = _finetuned(df[keep])
    ft = ft.groupby(RUN_KEYS + ["lr", "eval_task", "split", "metric"], dropna=False)["value"].mean().reset_index()
    out = ft.merge(base.rename(columns={"value": "base"}), on=["model", "ckpt", "tokens", "eval_task", "split", "metric"])
    out = out.rename(columns={"value": "finetuned"})
    out["gain"] = out["finetuned"] - out["base"]
    return out.sort_values(["model", "tokens", "eval_task", "metric", "lr"], kind="mergesort").reset_index(drop=True)


def connectivity_tables(results: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Barriers (and L2 distances) per pair, and soup gains over the best single fine-tune."""
    barriers, soups = [], []
    for r in results:
        keys = {k: r.get(k) for k in ("model", "ckpt", "tokens", "pretrain_seed", "ft_task", "ft_method", "lr", "l2")}
        barriers += [{**keys, **b} for b in r["barriers"]]
        singles = {}
        for row in r["interpolation"]:
            if row["alpha"] in (0.0, 1.0):
                seed = row["seeds"].split("+")[0 if row["alpha"] == 0.0 else 1]
                singles[(seed, row["eval_task"], row["metric"])] = row["value"]
        for row in r["soups"]:
            members = row["seeds"].split("+")
            vals = [singles.get((s, row["eval_task"], row["metric"])) for s in members]
            if row["metric"] not in ("acc", "loss") or None in vals:
                continue
            higher = row["metric"] == "acc"
            all_singles = [v for (s, t, m), v in singles.items() if t == row["eval_task"] and m == row["metric"]]
            best = max(all_singles) if higher else min(all_singles)
            gain = row["value"] - best if higher else best - row["value"]
            soups.append({**keys, "soup": row["soup"], "ingredients": row["seeds"], "eval_task": row["eval_task"],
                          "split": row["split"], "metric": row["metric"], "value": row["value"],
                          "best_single": best, "gain": gain})
    keys = ["model", "ckpt", "tokens", "pretrain_seed", "ft_task", "ft_method", "lr", "l2"]
    return (
        pd.DataFrame(barriers, columns=keys + ["seeds", "eval_task", "split", "metric", "barrier"]),
        pd.DataFrame(soups, columns=keys + ["soup", "ingredients", "eval_task", "split", "metric",
                                            "value", "best_single", "gain"]),
    )
