"""Benchmark P7: are the default's verdicts the same at 1 and 2 threads per job?"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def thread_robustness(snakemake, dirs: dict[int, Path | None]) -> dict:
    """The default's verdicts at compute.threads_per_job 1 and 2 (other float rounding, a stand-in
    for another CPU): the claims whose verdict differs. `snakemake(workdir, configfile, *args)` runs
    the workflow; `dirs` may name existing run directories (e.g. P1's kept run for 1 thread), which
    are brought up to date instead of run afresh."""
    import pandas as pd

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    runs = {}
    for threads in (1, 2):
        work = dirs.get(threads) or Path(tempfile.mkdtemp(prefix=f"overtrain-p7-t{threads}-"))
        config["compute"]["threads_per_job"] = threads
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        r = snakemake(work, work / "config.yaml", "--cores", "2")
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        runs[threads] = pd.read_csv(work / "results" / config["experiment"] / "tables" / "hypotheses.csv")
    from overtrain.analysis.compare import CLAIM_KEYS as keys
    from overtrain.analysis.compare import claims

    both = claims(runs[1], runs[2])  # what `overtrain compare` shows, with the runs as _1 and _2
    both = both[both["in"] == "both"].rename(columns=lambda c: c.removesuffix("_a") + "_1" if c.endswith("_a")
                                             else c.removesuffix("_b") + "_2" if c.endswith("_b") else c)
    differ = both[both["changed"]]
    return {"claims": len(both), "differ": differ[keys + ["verdict_1", "verdict_2"]].to_dict("records"),
            "rows": both[keys + ["min_effect_1", "effect_1", "ci_low_1", "ci_high_1", "verdict_1", "effect_2",
                                 "ci_low_2", "ci_high_2", "verdict_2"]].to_dict("records")}


def margin(verdict: str, ci_low: float, ci_high: float, delta: float) -> float:
    """How far the interval must move to change the verdict (the rule of docs/outputs.md: supported if
    ci_low > δ, not supported if ci_high ≤ −δ, else inconclusive)."""
    if verdict == "supported":
        return ci_low - delta
    if verdict == "not supported":
        return -delta - ci_high
    return min(delta - ci_low, ci_high + delta)


def closest_call(p: dict) -> str:
    """The claim nearest to changing its verdict, in either run: the one another CPU is likeliest
    to move. Among the claims with a margin δ > 0 (continuous effects; T*'s location moves in
    whole budgets, δ = 0)."""
    best = None
    for r in p["rows"]:
        for k in (1, 2):
            if r[f"effect_{k}"] != r[f"effect_{k}"] or not r["min_effect_1"] > 0:  # not measured; discrete
                continue
            m = margin(r[f"verdict_{k}"], r[f"ci_low_{k}"], r[f"ci_high_{k}"], r["min_effect_1"])
            if best is None or m < best[0]:
                best = (m, r, k)
    if best is None:
        return "No continuous claim was measured."
    m, r, k = best
    return (f"Closest call: *{r['hypothesis']}* ({r['condition']}) at {k} thread{'s' * (k > 1)}: "
            f"{r[f'verdict_{k}']}, 95% CI [{r[f'ci_low_{k}']:.3g}, {r[f'ci_high_{k}']:.3g}] against the margin "
            f"δ = {r['min_effect_1']:g}; it would change verdict if its interval moved by {m:.3g}.")


def markdown(p: dict) -> list[str]:
    """The P7 section of benchmarks/results.md: every claim's verdict at 1 and 2 threads."""

    def cell(r: dict, k: int) -> str:
        if r[f"effect_{k}"] != r[f"effect_{k}"]:  # NaN: not measured
            return "—"
        return f"{r[f'effect_{k}']:.3g} [{r[f'ci_low_{k}']:.3g}, {r[f'ci_high_{k}']:.3g}]"

    lines = [
        "## P7 — verdicts at 1 and 2 threads per job (the default study, run twice)",
        "",
        f"{p['claims']} claims; verdicts that differ: **{len(p['differ'])}**. {closest_call(p)}",
        "",
        "| claim | condition | 1 thread: effect [95% CI] | verdict | 2 threads: effect [95% CI] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['hypothesis']} | {r['condition'] if r['condition'] == r['condition'] else ''} | "
              f"{cell(r, 1)} | {r['verdict_1']} | {cell(r, 2)} | {r['verdict_2']} |" for r in p["rows"]]
    return lines + [""]
