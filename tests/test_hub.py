"""Hub checkpoints, offline: a temporary HF cache holds a tiny random model under several
revision refs of a made-up repo, as `huggingface_hub` would have left it. (The whole DAG on Hub
checkpoints runs in tests/test_presets.py: every preset as a miniature.)"""

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from conftest import MICRO, REPO, write_config

from overtrain import models
from overtrain.sources import checkpoints, corpus

REPO_ID = "overtrain-test/tiny-llama"
REVISIONS = {"step1000-tokens4B": 0, "step2000-tokens8B": 1, "step3000-tokens13B": 2}


def fill_cache(hf_home, repo, revisions, pickle_only=False):
    """Write models--org--name/{refs,snapshots} like huggingface_hub's cache."""
    lang = corpus.build_language(topics=MICRO["corpus"]["topics"], seed=1234)
    tok = corpus.build_tokenizer(lang, None)
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    for rev, seed in revisions.items():
        commit = hashlib.sha1(f"{repo}@{rev}".encode()).hexdigest()
        snap = root / "snapshots" / commit
        m = models.make_llama(lang.vocab_size, hidden=16, layers=1, heads=2, intermediate=32,
                              max_len=32, init_std=0.144, seed=seed)
        m.save_pretrained(snap)
        if pickle_only:  # as old repos ship it: a pickled state dict, no safetensors
            import torch

            torch.save(m.state_dict(), snap / "pytorch_model.bin")
            (snap / "model.safetensors").unlink()
        tok.save_pretrained(snap)
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / rev).write_text(commit)
    return root


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return home


@pytest.mark.parametrize(
    "repo,revision,tps,tokens",
    [
        ("allenai/OLMo-1B-hf", "step20000-tokens83B", None, 83 * 10**9),
        ("allenai/OLMo-1B", "step20000-tokens84B", None, 84 * 10**9),
        ("allenai/OLMo-2-0425-1B", "stage1-step140000-tokens294B", None, 294 * 10**9),
        ("allenai/OLMo-2-0425-1B", "stage2-ingredient3-step23852-tokens51B", None, 51 * 10**9),
        ("EleutherAI/pythia-160m", "step143000", None, 143000 * 2_097_152),
        ("EleutherAI/pythia-160m", "main", None, None),
        ("LLM360/Amber", "ckpt_099", 3_497_583_333, 100 * 3_497_583_333),
        ("LLM360/Amber", "ckpt_099", None, None),
        ("HuggingFaceTB/SmolLM2-135M-intermediate-checkpoints", "step-240000", 1_048_576, 240000 * 1_048_576),
    ],
)
def test_parse_tokens(repo, revision, tps, tokens):
    assert checkpoints.parse_tokens(revision, repo, tps) == tokens


def test_checkpoint_tokens_needs_help_when_the_name_is_silent():
    with pytest.raises(ValueError, match="tokens_per_step"):
        checkpoints.checkpoint_tokens("main", {"repo": "EleutherAI/pythia-160m"})
    assert checkpoints.checkpoint_tokens("main", {"repo": "x/y", "tokens": {"main": 7}}) == 7
    with pytest.raises(ValueError, match="stage2_base_tokens"):
        checkpoints.checkpoint_tokens("stage2-ingredient1-step10-tokens1B", {"repo": "a/b"})
    model = {"repo": "a/b", "stage2_base_tokens": 4 * 10**12}
    assert checkpoints.checkpoint_tokens("stage2-ingredient1-step10-tokens1B", model) == 4 * 10**12 + 10**9


def test_resolve_and_select_from_the_cache(hf_home):
    fill_cache(hf_home, REPO_ID, REVISIONS)
    assert sorted(checkpoints.ref_commits(REPO_ID)) == sorted(REVISIONS)
    model = {"repo": REPO_ID, "revisions": {"count": 2}}
    assert checkpoints.select_revisions(model, sorted(REVISIONS)) == ["step1000-tokens4B", "step3000-tokens13B"]
    model = {"repo": REPO_ID, "revisions": {"count": 5, "max_tokens": 9e9}}
    assert checkpoints.select_revisions(model, sorted(REVISIONS)) == ["step1000-tokens4B", "step2000-tokens8B"]


def test_download_records_commit_and_loads_safely(hf_home, tmp_path):
    root = fill_cache(hf_home, REPO_ID, REVISIONS)
    meta = checkpoints.download_hub(REPO_ID, "step2000-tokens8B", tmp_path / "ckpt", tokens=8 * 10**9)
    assert meta["commit"] == (root / "refs" / "step2000-tokens8B").read_text()
    assert meta["tokens"] == 8 * 10**9 and meta["repo"] == REPO_ID
    assert json.loads((tmp_path / "ckpt" / "meta.json").read_text())["commit"] == meta["commit"]
    model, tok = models.load_variant(tmp_path / "ckpt")
    ids = tok("a loaded checkpoint reads its own tokens", return_tensors="pt")["input_ids"]
    assert model.config.vocab_size >= len(tok) and int(ids.max()) < model.config.vocab_size
    assert model(ids).logits.shape[-1] == model.config.vocab_size


def test_pickle_only_repo_is_refused(hf_home, tmp_path):
    fill_cache(hf_home, "overtrain-test/pickled", {"step1-tokens1B": 0}, pickle_only=True)
    with pytest.raises(checkpoints.HubError, match="no safetensors weights.*pytorch_model.bin.*safetensors only"):
        checkpoints.download_hub("overtrain-test/pickled", "step1-tokens1B", tmp_path / "c", tokens=1)
    assert not (tmp_path / "c").exists()


def test_no_cache_and_no_hub_is_a_clear_error(hf_home, tmp_path):
    with pytest.raises(checkpoints.HubError, match=r"overtrain-test/absent revision step5-tokens1B .*hf download"):
        checkpoints.download_hub("overtrain-test/absent", "step5-tokens1B", tmp_path / "c", tokens=1)
    with pytest.raises(checkpoints.HubError, match="overtrain-test/absent: the Hub is unreachable"):
        checkpoints.ref_commits("overtrain-test/absent")


def hub_config(revisions, tmp_path):
    """The micro study on hub checkpoints, fine-tuned on Anthropic-HH-style local JSONL."""
    hh = tmp_path / "hh.jsonl"
    hh.write_text("".join(
        json.dumps({"chosen": f"\n\nHuman: w{i} w{i + 1}\n\nAssistant: w{i + 2} w{i + 3}"}) + "\n"
        for i in range(40)
    ))
    cfg = json.loads(json.dumps(MICRO))
    cfg["experiment"] = "hub"
    cfg["models"] = {"tiny_hub": {"source": "hub", "repo": REPO_ID, "revisions": revisions}}
    cfg["finetune"].update(
        tasks=["hh_local"], n_examples=24, n_val=8, n_test=8, max_length=32,
        datasets={"hh_local": {"path": "json", "data_files": str(hh), "format": "hh"}},
    )
    cfg["perturb"] = {"gaussian": {"gammas": [0.5], "seeds": [0]}, "quantize": {"bits": []}}
    return cfg


def run_env(hf_home):
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_CACHE=str(hf_home / "hub"), HF_HUB_OFFLINE="1")
    return env


def test_selector_without_cache_fails_before_any_job(hf_home, tmp_path):
    cfg = write_config(tmp_path / "hub.yaml", hub_config({"count": 2}, tmp_path))
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
         str(tmp_path), "--configfile", str(cfg), "-n"],
        capture_output=True, text=True, env=run_env(hf_home), timeout=120,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "models.tiny_hub.revisions: overtrain-test/tiny-llama: the Hub is unreachable" in out
    assert "Traceback" not in out


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_preset_plans_offline_as_the_presets_page_says(preset, hf_home, tmp_path):
    """`overtrain plan` (the console script) answers offline from Snakemake's dry run and the
    model cards' parameter counts; docs/presets.md's table shows exactly its totals."""
    script = os.path.join(os.path.dirname(sys.executable), "overtrain")
    r = subprocess.run([script, "plan", "--configfile", str(REPO / "configs" / preset), "--json"],
                       capture_output=True, text=True, env=run_env(hf_home), timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    plan = json.loads(r.stdout)
    jobs = {row["rule"]: row["jobs"] for row in plan["rules"]}
    cfg = yaml.safe_load((REPO / "configs" / preset).read_text())
    assert plan["total"]["jobs"] == sum(jobs.values())
    if all(m["source"] == "results" for m in cfg["models"].values()):  # rows read, no model job
        assert jobs["import_results"] == len(cfg["models"]) and plan["total"]["gpu_hours"] == 0
        assert "evaluate_checkpoint" not in jobs and not plan["prefetch"]
        return
    assert jobs["evaluate_checkpoint"] > 0
    fetched = {d["what"] for d in plan["prefetch"]}  # what the prefetch rule downloads before compute jobs
    assert ("NLTK tokenizers/punkt_tab" in fetched) == ("ifeval" in cfg.get("evaluate", {}).get("id", []))
    assert ("prefetch" in jobs) == bool(fetched)
    if all(m["source"] == "pretrain" for m in cfg["models"].values()):  # our own tiny pretraining: from the architecture
        assert plan["parameters"][0]["source"] == "architecture" and plan["total"]["download_gb"] == 0
        return
    assert jobs["hub_checkpoint"] > 0
    hub = [p for p in plan["parameters"] if cfg["models"][p["model"]]["source"] == "hub"]
    assert hub and all(p["parameters"] and p["source"] == "model card" for p in hub)
    assert all(p["source"] == "config" for p in plan["parameters"] if p not in hub)  # published numbers beside
    t = plan["total"]
    assert t["gpu_hours"] > 0 and t["download_gb"] > 0 and t["disk_gb"] > 0
    readme = (REPO / "docs" / "presets.md").read_text()
    row = re.search(rf"^\| `configs/{re.escape(preset)}` \|.*\| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$",
                    readme, re.M)
    assert row, f"docs/presets.md's table has no row for {preset}"
    said = (int(row[1]), float(row[2]), float(row[3]), float(row[4]))
    planned = (t["jobs"], round(t["gpu_hours"], 1), round(t["download_gb"], 1), round(t["disk_gb"]))
    assert said == planned, f"docs/presets.md says {said} for {preset} (jobs, GPU-h, download GB, disk GB); plan: {planned}"
