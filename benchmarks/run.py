"""overtrain's benchmarks: where the time goes. One command runs them all:

    python benchmarks/run.py            # full: the default study twice (with and without the levers)
    python benchmarks/run.py --smoke    # seconds-scale versions, as CI runs them

Writes benchmarks/results.md (and results.json). Every comparison is a ratio measured in one run
on the same machine, so it does not depend on how fast the machine is that day:

P1  the default study's wall time and per-rule breakdown (Snakemake's benchmark files), before
    (separate pretraining runs, a fresh interpreter per job) and after (WSD branches, warm jobs),
    and the fraction of the FLOP limit reached (its model FLOPs at P2's matmul rate on 2 cores);
P2  training throughput of overtrain's pretraining and fine-tuning loop vs a bare PyTorch loop on
    the same model, batch and threads; achieved FLOP/s vs a large fp32 matmul;
P3  evaluation time of overtrain's evaluation step vs a bare lm_eval.simple_evaluate;
P4  `snakemake -n` wall time on a generated grid of ~10,000 jobs;
P5  rerun minimality: jobs scheduled after adding one learning rate vs the jobs that must run;
P6  fine-tuning on instruction-like lengths (long-tailed): non-padding tokens/s of length-grouped
    batches vs plain padded batches (every batch as wide as the longest example) and vs
    randomly ordered batches trimmed to their own longest example.
P7  the default's verdicts at 1 and 2 threads per job (P1's run and one more).
P8  the regime study (configs/overtraining.yaml): wall time and per-rule breakdown, as P1.
P9  the regime study's fixed-learning-rate chain alone (its first three seeds, the two rates whose
    fixed-rate T* it supports, no ℓ2): wall time, per-rule breakdown and the chain's verdicts.

Peak memory per rule (Snakemake's max_rss) is reported for runs whose jobs start in fresh
processes (P1's before run): a warm job runs in a fork of the job server, which Snakemake's
benchmark of the job's own process does not see.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import padding  # benchmarks/padding.py: P6
import throughput  # benchmarks/throughput.py: P2, P3
import verdicts  # benchmarks/verdicts.py: P7
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

MICRO = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())

from overtrain import plan  # noqa: E402 (after the path setup above)


def snakemake(workdir: Path, configfile: Path | None, *args: str) -> subprocess.CompletedProcess:
    return plan.run_snakemake(workdir, configfile, *args)


def seconds_of(command: str) -> float:
    """Wall time of a fresh Python process running `command` (median of 3)."""
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", command], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --------------------------------------------------------------------------------------------- P1
MODEL_IMPORTS = (
    f"import sys; sys.path.insert(0, {str(REPO)!r}); import snakemake; "
    "from overtrain import models; from overtrain.evaluation import evaluate; from overtrain.training import finetune; import lm_eval; "
    "from lm_eval.models.huggingface import HFLM; from transformers import LlamaForCausalLM"
)
TABLE_IMPORTS = f"import sys; sys.path.insert(0, {str(REPO)!r}); import snakemake; from overtrain.analysis import plots"
LIGHT_RULES = {"aggregate", "analyses", "figures", "findings", "theory"}


def p1_default_study(config: dict | None, keep: Path | None = None) -> dict:
    """One run of a study (the default when `config` is None) with `--cores 2`: wall time, per-rule
    job time, and its model FLOPs (overtrain plan's count) for the FLOP-limit comparison."""
    work = Path(tempfile.mkdtemp(prefix="overtrain-p1-")) if keep is None else keep
    work.mkdir(parents=True, exist_ok=True)
    config = config or yaml.safe_load((REPO / "config.yaml").read_text())
    configfile = work / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    t = time.perf_counter()
    r = snakemake(work, configfile, "--cores", "2")
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    bench = work / "results" / config["experiment"] / "benchmarks"
    per_rule: dict[str, list[float]] = {}
    peak_mb: dict[str, float] = {}
    for f in bench.rglob("*.tsv"):
        rule = f.relative_to(bench).parts[0].removesuffix(".tsv")
        if rule == "evaluate":
            rule = "evaluate_checkpoint" if f.name == "checkpoint.tsv" else "evaluate_finetuned"
        header, values = (line.split("\t") for line in f.read_text().splitlines()[:2])
        row = dict(zip(header, values))
        per_rule.setdefault(rule, []).append(float(row["s"]))
        if row.get("max_rss", "NA") not in ("NA", "-"):
            peak_mb[rule] = max(peak_mb.get(rule, 0.0), float(row["max_rss"]))
    resolved = plan.load_study(str(configfile), REPO / "Snakefile")
    flops = plan.plan(resolved, {k: len(v) for k, v in per_rule.items()}, mfu=1.0, peak_tflops=1.0,
                      eval_tokens=None)["rules"]
    startup_model, startup_table = seconds_of(MODEL_IMPORTS), seconds_of(TABLE_IMPORTS)
    total = sum(sum(v) for v in per_rule.values())
    startup = sum(len(v) * (startup_table if k in LIGHT_RULES else startup_model) for k, v in per_rule.items())
    if keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "wall_s": wall,
        "jobs": sum(len(v) for v in per_rule.values()),
        "job_seconds": total,
        "per_rule": {k: {"jobs": len(v), "total_s": sum(v), "mean_s": sum(v) / len(v), "max_rss_mb": peak_mb.get(k)}
                     for k, v in sorted(per_rule.items())},
        "model_tflop": sum(row["tflop"] for row in flops),
        "warm_jobs": config.get("compute", {}).get("warm_jobs", True),
        "branching": any(m.get("branching") for m in config["models"].values()),
        "startup_model_job_s": startup_model,
        "startup_table_job_s": startup_table,
        "startup_share_if_cold": startup / total,
    }


def p1_before(config: dict) -> dict:
    """The same study without the speed levers: separate pretraining runs, a fresh interpreter per job."""
    import copy

    before = copy.deepcopy(config)
    for m in before["models"].values():
        m["branching"] = False
    before.setdefault("compute", {})["warm_jobs"] = False
    return p1_default_study(before)


# --------------------------------------------------------------------------------------------- P9
# The links of the regime study's chain that need no learning-rate tuning
CHAIN = ("progressive sensitivity to Gaussian noise", "interior T* of the pretraining loss under Gaussian noise",
         "interior T* of the pretraining loss after fine-tuning at a fixed learning rate",
         "larger learning rate → earlier T*", "forgetting grows with pretraining tokens")


def fixed_lr_chain(regime: dict) -> dict:
    """The regime study cut to its fixed-rate chain: the first three pretraining seeds (the fewest
    a verdict here is read from), its two lowest learning rates (the fixed-rate T* it supports; two, so that
    "larger rate → earlier T*" is measured) and no ℓ2 pull. Everything else as the regime study."""
    import copy

    chain = copy.deepcopy(regime)
    chain["experiment"] = f"{regime['experiment']}-fixed-lr"
    for m in chain["models"].values():
        m["seeds"] = m["seeds"][:3]
    chain["finetune"]["learning_rates"] = sorted(regime["finetune"]["learning_rates"])[:2]
    chain["finetune"]["l2"] = [0.0]
    return chain


def p9_fixed_lr_chain(regime: dict, keep: Path | None) -> dict:
    """P1's measurement of the fixed-rate chain, with its claims from the run's hypotheses table."""
    import pandas as pd

    config = fixed_lr_chain(regime)
    work = keep or Path(tempfile.mkdtemp(prefix="overtrain-p9-"))
    res = p1_default_study(config, work)
    claims = pd.read_csv(work / "results" / config["experiment"] / "tables" / "hypotheses.csv")
    claims = claims[claims["hypothesis"].isin(CHAIN)]
    res["claims"] = claims[["hypothesis", "condition", "effect", "ci_low", "ci_high", "n_seeds", "verdict"]].to_dict("records")
    res["seeds"] = len(next(iter(config["models"].values()))["seeds"])
    res["learning_rates"] = config["finetune"]["learning_rates"]
    if keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return res


# --------------------------------------------------------------------------------------------- P4
def p4_dry_run(target_jobs: int) -> dict:
    budgets = 20 if target_jobs >= 10_000 else 4
    lrs = max(1, round((target_jobs / budgets - 1) / 2 / 10))
    cfg = {
        "experiment": "grid",
        "models": {"tiny": {"source": "pretrain", "budgets": [4096 * (i + 1) for i in range(budgets)]}},
        "finetune": {"learning_rates": [round(1e-4 * (i + 1), 8) for i in range(lrs)], "seeds": list(range(10))},
        "perturb": {"gaussian": {"gammas": []}, "quantize": {"bits": []}},
        "connectivity": {"learning_rates": []},
    }
    work = Path(tempfile.mkdtemp(prefix="overtrain-p4-"))
    (work / "grid.yaml").write_text(yaml.safe_dump(cfg))
    t = time.perf_counter()
    r = snakemake(work, work / "grid.yaml", "-n", "--quiet", "rules")
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    total = int(re.search(r"^total\s+(\d+)", r.stdout, re.M)[1])
    shutil.rmtree(work, ignore_errors=True)
    return {"jobs": total, "dry_run_s": wall}


# --------------------------------------------------------------------------------------------- P5
def p5_rerun_minimality() -> dict:
    work = Path(tempfile.mkdtemp(prefix="overtrain-p5-"))
    (work / "a.yaml").write_text(yaml.safe_dump(MICRO))
    r = snakemake(work, work / "a.yaml", "--cores", "2")
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    more = json.loads(json.dumps(MICRO))
    more["finetune"]["learning_rates"].append(3.0e-3)
    (work / "b.yaml").write_text(yaml.safe_dump(more))
    scheduled = plan.parse_job_stats(snakemake(work, work / "b.yaml", "-n").stdout)
    ckpts = len(MICRO["models"]["tiny"]["budgets"]) * len(MICRO["models"]["tiny"]["seeds"])
    must = {"finetune": ckpts, "evaluate_finetuned": ckpts, "aggregate": 1, "analyses": 1, "figures": 1, "findings": 1,
            "all": 1}
    shutil.rmtree(work, ignore_errors=True)
    return {"scheduled": scheduled, "must_run": must, "scheduled_total": sum(scheduled.values()),
            "must_total": sum(must.values()), "exact": scheduled == must}


# --------------------------------------------------------------------------------------------- report
def rule_table(per_rule: dict) -> list[str]:
    """A study's per-rule job time as markdown rows (P8, P9)."""
    return ["| rule | jobs | total s | mean s |", "|---|---|---|---|",
            *(f"| {k} | {v['jobs']} | {v['total_s']:.1f} | {v['mean_s']:.2f} |" for k, v in per_rule.items())]


def markdown(res: dict, smoke: bool) -> str:
    lines = [
        "# overtrain benchmarks",
        "",
        f"Machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; "
        f"{'smoke run (small sizes; not the reference numbers)' if smoke else 'full run'}. "
        "Produced by `python benchmarks/run.py" + (" --smoke" if smoke else "") + "`.",
        "",
    ]
    if "P1" in res:
        p = res["P1"]
        lines += [
            "## P1 — the default study",
            "",
            f"Wall time `snakemake --cores 2`: **{p['wall_s']:.0f} s** for {p['jobs']} jobs "
            f"({p['job_seconds']:.0f} job-seconds; WSD branching {'on' if p['branching'] else 'off'}, "
            f"warm jobs {'on' if p['warm_jobs'] else 'off'}). Its model compute (`overtrain plan`: "
            f"6·N·tokens training, 2·N·tokens evaluation) is {p['model_tflop']:.3g} TFLOP.",
            "",
        ]
        if "P1_before" in res:
            b = res["P1_before"]
            lines += [
                f"Before, the same study without the levers (separate pretraining runs per budget, a fresh "
                f"interpreter per job): **{b['wall_s']:.0f} s** ({b['job_seconds']:.0f} job-seconds, "
                f"{b['model_tflop']:.3g} TFLOP); after / before = **{p['wall_s'] / b['wall_s']:.2f}**. Process "
                f"start-up and imports in a fresh interpreter: {b['startup_model_job_s']:.1f} s per model job, "
                f"{b['startup_table_job_s']:.1f} s per table job, {100 * b['startup_share_if_cold']:.0f}% of "
                "the before run's job time.",
                "",
            ]
        if "P2" in res:
            limit = p["model_tflop"] * 1e12 / (2 * res["P2"]["matmul_flops"])
            lines += [f"FLOP limit: {p['model_tflop']:.3g} TFLOP at 2 cores × the 1-thread matmul rate of P2 "
                      f"= {limit:.0f} s, **{100 * limit / p['wall_s']:.0f}%** of the wall time.", ""]
        before = "P1_before" in res
        lines += ["| rule | jobs | total s | mean s |" + (" before: jobs | total s | peak RSS MB (fresh process) |"
                                                          if before else ""),
                  "|---|---|---|---|" + ("---|---|---|" if before else "")]
        for k, v in p["per_rule"].items():
            extra = ""
            if before:
                bv = res["P1_before"]["per_rule"].get(k)
                peak = bv.get("max_rss_mb") if bv else None
                extra = (f" {bv['jobs']} | {bv['total_s']:.1f} | {peak:.0f} |" if peak else
                         f" {bv['jobs']} | {bv['total_s']:.1f} | – |") if bv else " 0 | 0 | – |"
            lines.append(f"| {k} | {v['jobs']} | {v['total_s']:.1f} | {v['mean_s']:.2f} |{extra}")
        lines.append("")
    lines += throughput.markdown(res)
    if "P4" in res:
        p = res["P4"]
        lines += ["## P4 — planning a large grid", "",
                  f"`snakemake -n` on {p['jobs']:,} jobs: **{p['dry_run_s']:.1f} s**.", ""]
    if "P5" in res:
        p = res["P5"]
        lines += [
            "## P5 — rerun minimality (micro study, one learning rate added)",
            "",
            f"Scheduled {p['scheduled_total']} jobs, {p['must_total']} must run: "
            f"**{'exact' if p['exact'] else 'NOT exact'}** ({p['scheduled']}).",
            "",
        ]
    if "P6" in res:
        lines += padding.markdown(res["P6"])
    if "P7" in res:
        lines += verdicts.markdown(res["P7"])
    if "P8" in res:
        p = res["P8"]
        lines += ["## P8 — the regime study (configs/overtraining.yaml)", "",
                  f"Wall time `snakemake --cores 2 --configfile configs/overtraining.yaml`, from scratch: "
                  f"**{p['wall_s'] / 60:.1f} min** for {p['jobs']} jobs ({p['job_seconds']:.0f} job-seconds, "
                  f"{p['model_tflop']:.3g} TFLOP). Its findings: docs/overtraining/findings.md.", "",
                  *rule_table(p["per_rule"]), ""]
    if "P9" in res:
        p = res["P9"]
        rates = ", ".join(f"{lr:g}" for lr in p["learning_rates"])
        lines += ["## P9 — the regime study's fixed-learning-rate chain", "",
                  f"configs/overtraining.yaml cut to its first {p['seeds']} pretraining seeds, "
                  f"learning rates {rates} and no ℓ2 (benchmarks/run.py `fixed_lr_chain`), from scratch with "
                  f"`--cores 2`: **{p['wall_s'] / 60:.1f} min** for {p['jobs']} jobs ({p['job_seconds']:.0f} job-seconds).",
                  "", "| claim | condition | effect [95% CI] | n | verdict |", "|---|---|---|---|---|"]
        lines += [f"| {c['hypothesis']} | {c['condition']} | {c['effect']:.3g} [{c['ci_low']:.3g}, {c['ci_high']:.3g}] "
                  f"| {c['n_seeds']} | **{c['verdict']}** |" for c in p["claims"]]
        lines += ["", *rule_table(p["per_rule"]), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="small, quick versions (CI)")
    ap.add_argument("--only", default="P1,P2,P3,P4,P5,P6,P7,P8,P9", help="comma-separated subset")
    ap.add_argument("--merge", action="store_true", help="keep the other sections of the existing results.json")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results.md"))
    ap.add_argument("--keep", help="run P1's default study in this directory and keep its results")
    ap.add_argument("--two-threads", help="P7: bring this run directory (2 threads per job) up to date instead")
    ap.add_argument("--no-before", action="store_true", help="skip P1's run without the speed levers")
    ap.add_argument("--keep-regime", help="run P8's regime study in this directory and keep its results")
    ap.add_argument("--keep-chain", help="run P9's fixed-rate chain in this directory and keep its results")
    a = ap.parse_args()
    todo = a.only.split(",")
    res = {}
    if "P1" in todo:
        res["P1"] = p1_default_study(MICRO if a.smoke else None, Path(a.keep) if a.keep else None)
        if not a.smoke and not a.no_before:
            res["P1_before"] = p1_before(yaml.safe_load((REPO / "config.yaml").read_text()))
    if "P2" in todo:
        res["P2"] = throughput.p2_training(steps=10 if a.smoke else 60)
    if "P3" in todo:
        res["P3"] = throughput.p3_evaluation(limit=32 if a.smoke else 256, repeats=1 if a.smoke else 3)
    if "P4" in todo:
        res["P4"] = p4_dry_run(1000 if a.smoke else 10_000)
    if "P5" in todo:
        res["P5"] = p5_rerun_minimality()
    if "P6" in todo:
        res["P6"] = padding.p6_padding(n_examples=64 if a.smoke else 512, steps=4 if a.smoke else 32)
    if "P7" in todo:
        res["P7"] = verdicts.thread_robustness(snakemake, {1: Path(a.keep) if a.keep else None,
                                          2: Path(a.two_threads) if a.two_threads else None})
    regime = yaml.safe_load((REPO / "configs" / "overtraining.yaml").read_text())
    if "P8" in todo:
        res["P8"] = p1_default_study(
            {**MICRO, "experiment": "regime-smoke"} if a.smoke else regime, Path(a.keep_regime) if a.keep_regime else None)
    if "P9" in todo:
        res["P9"] = p9_fixed_lr_chain(
            {**MICRO, "experiment": "regime-smoke", "finetune": {**MICRO["finetune"], "learning_rates": [1e-3, 3e-3]}}
            if a.smoke else regime, Path(a.keep_chain) if a.keep_chain else None)
    out = Path(a.out)
    if a.merge and out.with_suffix(".json").exists():  # update some sections of an earlier full run
        res = {**json.loads(out.with_suffix(".json").read_text()), **res}
    out.write_text(markdown(res, a.smoke))
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(out.read_text())


if __name__ == "__main__":
    main()
