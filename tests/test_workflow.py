"""The workflow as users run it: config errors before any job, the micro study end to end,
byte-identical reruns and minimal reruns after a config change."""

import json
import re
import shutil

import pandas as pd
import pytest
from conftest import LEAN, MICRO, merge, snakemake, write_config

from overtrain.analysis.tables import METRIC_COLUMNS
from overtrain.plan import parse_job_stats

# Every bad value is refused by the Study the Snakefile loads (tests/test_study.py, in-process);
# these show it happens through the command line before any job, for a schema violation and a
# cross-key check.
CLI_BAD = [
    ({"finetune": {"learning_rates": [-1e-3]}}, "finetune.learning_rates[0]: -0.001 is out of range"),
    ({"models": {"tiny": {"budgets": [100]}}}, "models.tiny.budgets: [100] is less than one step"),
]


@pytest.mark.parametrize("change,message", CLI_BAD)
def test_bad_config_rejected_before_any_job(tmp_path, change, message):
    cfg = write_config(tmp_path / "bad.yaml", merge(MICRO, change))
    r = snakemake(tmp_path, cfg, "--cores", "1")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert message in out, out
    assert "Traceback" not in out
    assert not (tmp_path / "results").exists()


def test_missing_local_path_rejected(tmp_path):
    cfg = dict(MICRO, models={"ext": {"source": "local", "checkpoints": {"c1": {"path": "nowhere/model", "tokens": 10}}}})
    r = snakemake(tmp_path, write_config(tmp_path / "bad.yaml", cfg), "-n")
    assert r.returncode != 0
    assert "models.ext.checkpoints.c1.path: directory 'nowhere/model' does not exist" in r.stdout + r.stderr


@pytest.mark.e2e
def test_micro_study_end_to_end(micro_run):
    work, _ = micro_run
    root = work / "results" / "micro"
    df = pd.read_csv(root / "tables" / "metrics.csv")
    assert list(df.columns) == METRIC_COLUMNS
    # per checkpoint: the base and the grid's fine-tune (seed 0; seed 1 exists for connectivity,
    # which scores it) × 12 rows (acc and acc_norm for 3 prompt formats; word_perplexity and loss
    # for the FT validation, FT test and pretraining texts) + 2 × 2 prompt-spread rows + 2
    # forgetting rows + 2 learning-jump rows (2 epochs) + 1 `diverged` row; γ=0.5 noise and int8
    # on the pretraining text only (perturb.splits) × 2 rows; the connectivity job's 3 α × 6 path
    # rows and 2 soups × 6 rows
    per_ckpt = 2 * 12 + 2 * 2 + 2 + 2 + 1 + 2 * 2 + 3 * 6 + 2 * 6
    ckpts = 2 * 2  # 2 budgets × 2 pretraining seeds
    assert len(df) == ckpts * per_ckpt
    counts = df.groupby("variant").size().to_dict()
    assert counts == {"base": ckpts * 14, "finetuned": ckpts * (14 + 2 + 2 + 1), "perturbed": ckpts * 2 * 2,
                      "interpolated": ckpts * 18, "soup": ckpts * 12}
    assert set(df[df["variant"] == "perturbed"]["split"]) == {"pretrain"}
    assert sorted(df["tokens"].unique()) == [8192, 16384]
    assert sorted(df["pretrain_seed"].unique()) == [0, 1]
    hyp = pd.read_csv(root / "tables" / "hypotheses.csv")
    assert len(set(hyp["hypothesis"])) >= 8 and set(hyp["verdict"]) <= {"supported", "not supported", "inconclusive"}
    assert (hyp[~hyp["condition"].str.startswith("not measured")]["n_seeds"] == 2).all()
    findings = (root / "findings.md").read_text()
    assert "## The seed papers' claims" in findings and "progressive sensitivity to Gaussian noise" in findings
    assert set(df["split"]) == {"id", "val", "pretrain", "ft_train"}
    assert set(df["metric"]) == {
        "acc", "acc_norm", "word_perplexity", "loss", "prompt_spread_acc", "prompt_spread_acc_norm",
        "forgetting_loss", "forgetting_word_perplexity", "epoch1_loss_jump", "epoch1_loss_excess", "diverged",
    }
    assert (df[df["metric"] == "diverged"]["value"] == 0).all()
    assert set(df["eval_task"]) >= {"synth_ft_mc", "synth_ft_mc_instruct", "synth_ft_mc_raw", "synth_ft_val_ppl"}
    interp = df[df["variant"] == "interpolated"]
    assert sorted(interp["alpha"].unique()) == [0.0, 0.5, 1.0] and set(interp["seeds"]) == {"0+1"}
    assert set(df[df["variant"] == "soup"]["soup"]) == {"uniform", "greedy"}
    for name in ("pretrain_loss", "best_lr", "lr_trend", "tuned", "inflection", "finetune_gain", "barriers", "soups", "theory"):
        assert len(pd.read_csv(root / "tables" / f"{name}.csv")) > 0, name
    barriers = pd.read_csv(root / "tables" / "barriers.csv")
    assert set(barriers["metric"]) == {"loss", "acc", "loss_linear", "acc_linear", "l2_distance"}
    ft = df[df["variant"] == "finetuned"]
    assert (ft["lr"] == 1e-3).all() and (ft["ft_task"] == "synth_ft").all()
    assert (ft["ft_method"] == "full").all()
    pert = df[df["variant"] == "perturbed"]
    assert set(pert["perturbation"]) == {"gaussian", "rtn"}
    assert pert[pert["perturbation"] == "gaussian"]["gamma"].eq(0.5).all()
    assert pert[pert["perturbation"] == "rtn"]["bits"].eq(8).all()
    for name in ("noise_pretrain_loss", "finetune_pretrain_loss", "finetune_task_metric", "theory",
                 "quantization_pretrain_loss", "tuned_learning_rate", "finetune_gain",
                 "prompt_sensitivity", "connectivity"):
        for ext in ("png", "pdf"):
            assert (root / "figures" / f"{name}.{ext}").stat().st_size > 1000
    ckpt = root / "checkpoints" / "tiny" / "tok8192-s0"
    assert (ckpt / "model.safetensors").exists() and not list(ckpt.glob("*.bin"))
    assert (root / "benchmarks" / "pretrain" / "tiny" / "tok8192-s0.tsv").exists()
    assert (root / "logs" / "evaluate" / "tiny" / "tok8192-s0" / "checkpoint.log").exists()


@pytest.mark.e2e
def test_every_long_job_logs_progress(micro_run):
    """`tail -f` on a job log tells where it is: step/total, loss, tokens/s and ETA for training,
    a line per evaluated variant and per point of a connectivity path."""
    logs = micro_run[0] / "results" / "micro" / "logs"
    expect = {"pretrain": r"\[pretrain \d+\] step (\d+)/\1 loss [\d.]+ [\d,]+ tok/s elapsed \d+s eta 0s",
              "finetune": r"\[finetune lr=[\d.e-]+\] step \d+/\d+ loss [\d.]+ [\d,]+ tok/s elapsed \d+s eta \d+s",
              "evaluate": r"\[evaluate\] (variant \d+/\d+ \S+: \d+ tasks; elapsed \d+s eta \d+s|\d+ tasks in \d+s)",
              "connectivity": r"\[connectivity\] \d+/~\d+ evaluations .*eta \d+s"}
    for rule, pattern in expect.items():
        files = sorted((logs / rule).rglob("*.log"))
        assert files, f"no {rule} logs"
        for f in files:
            assert re.search(pattern, f.read_text()), f"{f} has no progress line like {pattern!r}"


@pytest.mark.e2e
def test_rerun_from_scratch_is_byte_identical(lean_run, tmp_path):
    """A second run from scratch, each job in a fresh interpreter (compute.warm_jobs off), gives
    the same bytes as the first, whose jobs ran in warm processes."""
    work, _ = lean_run
    assert "Jobs start in warm processes" in (work / "snakemake.out").read_text()
    cold = write_config(tmp_path / "cold.yaml", merge(LEAN, {"compute": {"warm_jobs": False}}))
    r = snakemake(tmp_path, cold, "--cores", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "warm processes" not in r.stdout + r.stderr
    a = (work / "results/lean/tables/metrics.csv").read_bytes()
    b = (tmp_path / "results/lean/tables/metrics.csv").read_bytes()
    assert a == b


@pytest.mark.e2e
def test_adding_a_learning_rate_schedules_only_new_jobs(micro_run):
    work, cfg = micro_run
    r = snakemake(work, cfg, "-n")
    assert "Nothing to be done" in r.stdout + r.stderr
    more = merge(MICRO, {"finetune": {"learning_rates": [1e-3, 3e-3]}})
    r = snakemake(work, write_config(work / "more.yaml", more), "-n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert parse_job_stats(r.stdout) == {  # 4 checkpoints (2 budgets × 2 pretraining seeds)
        "finetune": 4,
        "evaluate_finetuned": 4,
        "aggregate": 1,
        "training_curves": 1,  # the new runs' train logs join the curves
        "analyses": 1,
        "figures": 1,
        "findings": 1,
        "all": 1,
    }


@pytest.mark.e2e
def test_adding_a_pretraining_seed_schedules_only_its_replicate(micro_run):
    work, _ = micro_run
    more = merge(MICRO, {"models": {"tiny": {"seeds": [0, 1, 2]}}})
    r = snakemake(work, write_config(work / "more_seeds.yaml", more), "-n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert parse_job_stats(r.stdout) == {
        "pretrain": 2, "finetune": 4, "evaluate_checkpoint": 2, "evaluate_finetuned": 2, "connectivity": 2,
        "aggregate": 1, "training_curves": 1, "analyses": 1, "figures": 1, "findings": 1, "all": 1,
    }
    assert "checkpoints/tiny/tok8192-s2" in r.stdout


@pytest.mark.e2e
def test_adding_a_budget_schedules_only_its_chain(micro_run):
    work, _ = micro_run
    more = merge(MICRO, {"models": {"tiny": {"budgets": [8192, 16384, 24576]}}})
    r = snakemake(work, write_config(work / "more_budget.yaml", more), "-n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert parse_job_stats(r.stdout) == {  # the new budget, for each of the 2 pretraining seeds
        "pretrain": 2,
        "finetune": 4,  # seed 0 and connectivity's seed 1, which the connectivity job scores
        "evaluate_checkpoint": 2,
        "evaluate_finetuned": 2,
        "connectivity": 2,
        "aggregate": 1,
        "training_curves": 1,  # the new runs' train logs join the curves
        "analyses": 1,
        "figures": 1,
        "findings": 1,
        "all": 1,
    }


@pytest.mark.e2e
def test_lora_and_l2_grid_adds_only_their_runs(micro_run):
    work, _ = micro_run
    more = merge(MICRO, {"finetune": {"methods": ["full", "lora"], "l2": [0.0, 10.0]}})
    r = snakemake(work, write_config(work / "more_methods.yaml", more), "-n")
    assert r.returncode == 0, r.stderr[-2000:]
    # 4 checkpoints × (lora + full-l2 10 + lora-l2 10) × 2 seeds (connectivity's; the grid
    # evaluates seed 0): the plain full runs are done already; each new group gets its
    # connectivity job
    assert parse_job_stats(r.stdout) == {
        "finetune": 24,
        "evaluate_finetuned": 12,
        "connectivity": 12,
        "aggregate": 1,
        "training_curves": 1,  # the new runs' train logs join the curves
        "analyses": 1,
        "figures": 1,
        "findings": 1,
        "all": 1,
    }
    for run in ("lora-lr0.001-s0", "full-lr0.001-l210-s0", "lora-lr0.001-l210-s0"):
        assert f"finetuned/tiny/tok8192-s0/synth_ft/{run}" in r.stdout


@pytest.mark.e2e
def test_report_bundles_every_figure_and_table(micro_run):
    work, cfg = micro_run
    report = work / "report.html"
    r = snakemake(work, cfg, "--report", str(report))
    assert r.returncode == 0, r.stderr[-2000:]
    html = report.read_text()
    from overtrain.analysis import catalog

    for name in [f"{f}.png" for f in catalog.figure_names() + ["theory"]] + \
            [f"{t}.csv" for t in catalog.table_names() + ["metrics", "training_curves"]]:
        assert name in html, name
    assert "latent improvement" in html  # captions come along


@pytest.mark.e2e
def test_a_diverging_learning_rate_is_a_result_not_a_crash(micro_run, tmp_path):
    work = tmp_path / "micro"
    shutil.copytree(micro_run[0], work, symlinks=True)  # the shared run stays as it was
    more = merge(MICRO, {"finetune": {"learning_rates": [1e-3, 50.0]}})
    r = snakemake(work, write_config(work / "diverging.yaml", more), "--cores", "2")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "4 fine-tune(s) diverged" in out and "lr=50.0" in out  # 4 checkpoints
    root = work / "results" / "micro"
    df = pd.read_csv(root / "tables" / "metrics.csv")
    flags = df[df["metric"] == "diverged"].set_index(["ckpt", "lr", "seed"])["value"]
    assert flags.xs(50.0, level="lr").eq(1).all() and flags.xs(1e-3, level="lr").eq(0).all()
    assert len(flags) == 4 * 2  # every evaluated fine-tune has its flag: 4 checkpoints × (lr 1e-3, lr 50)
    diverged = df[(df["lr"] == 50.0) & (df["variant"] == "finetuned")]
    assert set(diverged["metric"]) == {"diverged"}  # not evaluated
    best = pd.read_csv(root / "tables" / "best_lr.csv")
    assert (best["lr"] == 1e-3).all()  # never chosen
    inflection = pd.read_csv(root / "tables" / "inflection.csv")
    # a rate at which every fine-tune diverged has no curve, and no other T* is made undefined by it
    assert "fine-tune full lr=50" not in set(inflection["condition"]) and inflection["t_star"].notna().all()
    meta = json.loads((root / "finetuned/tiny/tok8192-s0/synth_ft/full-lr50-s0/meta.json").read_text())
    assert meta["diverged"] and meta["steps"] > meta["diverged_at_step"] + 1  # stopped early
    assert (root / "figures" / "finetune_pretrain_loss.png").stat().st_size > 1000
    # the two real studies (before and after adding the rate) side by side, as a user compares them
    import os
    import subprocess
    import sys

    cli = os.path.join(os.path.dirname(sys.executable), "overtrain")
    page = subprocess.run([cli, "compare", str(micro_run[0]), str(work)], capture_output=True, text=True, timeout=120)
    assert page.returncode == 0, page.stderr
    assert "claims measured in both" in page.stdout and "| tiny | progressive sensitivity to Gaussian noise" in page.stdout
    as_json = json.loads(subprocess.run([cli, "compare", str(micro_run[0]), str(work), "--json"], capture_output=True,
                                        text=True, timeout=120).stdout)
    measured = pd.read_csv(micro_run[0] / "results/micro/tables/hypotheses.csv")["effect"].notna().sum()
    assert as_json["claims"] == measured > 10
    # a rate at which every fine-tune diverged changes no claim, verdict, chosen rate or T*
    assert as_json["changed"] == [] and as_json["learning_rates"] == [] and as_json["t_star"] == []
    assert all(r["effect_change"] == 0 for r in as_json["rows"])


@pytest.mark.e2e
def test_scheduling_settings_rerun_nothing(micro_run):
    work, _ = micro_run
    cfg = dict(MICRO)
    moved = merge(MICRO, {"compute": {"runtime": 999, "mem_mb": 9999, "gpus_per_job": 0},
                          "finetune": {"save_every": 3}, "models": {"tiny": {"save_every": 7}}})
    r = snakemake(work, write_config(work / "rescheduled.yaml", moved), "-n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-3000:]
    assert cfg == MICRO


CHROMIUM = shutil.which("chromium")


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package (CI installs it: .ci/run)")
def test_the_report_opens_on_the_findings_in_a_browser(micro_run):
    """The report rendered by headless Chromium: its first page is the findings (the verdict of
    every claim), before the workflow's description."""
    import subprocess

    work, cfg = micro_run
    report = work / "report_findings.html"
    r = snakemake(work, cfg, "--report", str(report))
    assert r.returncode == 0, r.stderr[-2000:]
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={work / 'chromium'}",
         "--virtual-time-budget=10000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    assert "Findings" in dom, dom[:2000]
    verdicts = pd.read_csv(work / "results" / "micro" / "verdicts.csv")
    assert len(verdicts) >= 8
    for claim in ("progressive sensitivity to Gaussian noise", "larger learning rate → earlier T*"):
        assert claim in dom
    assert dom.index("Findings") < dom.index("The study")
