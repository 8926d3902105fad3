"""Everything a study downloads, fetched before any compute job, and compute jobs that cannot.

Compute nodes of a cluster often have no network. So the rules that download (hub checkpoints,
judge models, fine-tuning and multimodal data, and the `prefetch` rule for what evaluation
reads: lm-eval tasks' datasets, through lm-eval's own task configs; NLTK data; AlpacaEval's
prompts) are local rules, run where Snakemake runs, and every other job runs offline
(overtrain.offline: the Hugging Face variables set, in this process too, and NLTK reading only
the study's own copy), so a resource the prefetch missed fails at once, naming it, instead of hanging
on a node.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from overtrain.offline import nltk_search_path

# lm-eval tasks whose code needs NLTK data at import, and what (IFEval's instruction checks)
NLTK_NEEDS = {"ifeval": ["tokenizers/punkt_tab"]}
ALPACA_EVAL = ("tatsu-lab/alpaca_eval", "alpaca_eval.json")  # repo (a dataset) and file of the prompts


def remote_tasks(tasks: list[str], task_data: dict) -> list[str]:
    """The evaluation tasks whose data lm-eval downloads: stock tasks without a local copy
    (evaluate.task_data); ours (synthetic, fine-tuning test sets) are files of the study."""
    from overtrain.evaluation.tasks import FT_TASK, SYNTHETIC_TASKS

    return sorted(t for t in set(tasks) if t not in SYNTHETIC_TASKS and not FT_TASK.fullmatch(t)
                  and t not in task_data and t != "winrate")


def wanted(tasks: list[str], task_data: dict, judge: dict) -> dict:
    """What a study's evaluation needs fetched: {tasks, nltk, alpaca_eval}; all empty for a
    study that reads only its own files (the embedded default)."""
    nltk = sorted({r for t in tasks for r in NLTK_NEEDS.get(t, [])})
    alpaca = bool(judge.get("enabled")) and "alpaca_eval" in (judge.get("prompts"), judge.get("reference"))
    return {"tasks": remote_tasks(tasks, task_data), "nltk": nltk, "alpaca_eval": alpaca}


def _dataset_of(task: str) -> tuple[str | None, str | None]:
    """A stock lm-eval task's Hub dataset and config, from its own YAML (lm-eval's loader,
    includes resolved), without loading any data."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from overtrain.evaluation.tasks import _stock_task_files

    path = _stock_task_files().get(task)
    if path is None:
        return None, None
    cfg = load_yaml(path, resolve_func=False)
    return cfg.get("dataset_path"), cfg.get("dataset_name")


def sizes(want: dict) -> dict[str, int | None]:
    """Bytes each download of `want` will take, asked before fetching (what `overtrain plan`
    lists): a task's dataset from the Hub's file sizes (the files under its config, else the
    whole dataset repo: an upper bound), an NLTK resource from NLTK's package index, AlpacaEval's
    prompts from the Hub. None where nobody can say: offline (HF_HUB_OFFLINE asks nothing), or a
    resource the index does not list."""
    from huggingface_hub import HfApi, constants

    keys = ([f"task:{t}" for t in want["tasks"]] + [f"nltk:{r}" for r in want["nltk"]]
            + (["alpaca_eval"] if want["alpaca_eval"] else []))
    out: dict[str, int | None] = dict.fromkeys(keys)
    if constants.HF_HUB_OFFLINE:
        return out
    api = HfApi()
    for task in want["tasks"]:
        repo, name = _dataset_of(task)
        try:
            files = [(f.rfilename, f.size or 0) for f in api.dataset_info(repo, files_metadata=True).siblings]
        except Exception:  # unreachable, unknown repo: the plan says the size is unknown
            continue
        under = [size for path, size in files if name and (path.startswith(f"{name}/") or f"/{name}/" in path)]
        out[f"task:{task}"] = sum(under) if under else sum(size for _, size in files)
    for resource in want["nltk"]:
        try:
            from nltk.downloader import Downloader

            out[f"nltk:{resource}"] = int(Downloader().info(resource.split("/")[-1]).size)
        except Exception:
            continue
    if want["alpaca_eval"]:
        try:
            out["alpaca_eval"] = int(api.get_paths_info(ALPACA_EVAL[0], [ALPACA_EVAL[1]], repo_type="dataset")[0].size)
        except Exception:
            pass
    return out


def needed(want: dict) -> bool:
    return bool(want["tasks"] or want["nltk"] or want["alpaca_eval"])


def fetch(want: dict, tasks: list[str], task_data: dict, nltk_dir: str | Path, manifest: str | Path) -> dict:
    """Download what `want` lists into the caches the jobs read (the Hugging Face caches; NLTK
    data into `nltk_dir`), then write the manifest: what was fetched and where."""
    from overtrain.atomic import atomic_write_json

    record: dict = {"tasks": {}, "nltk": {}, "alpaca_eval": None}
    nltk_dir = Path(nltk_dir)
    for resource in want["nltk"]:
        where = _nltk(resource, nltk_dir)
        record["nltk"][resource] = {"path": str(where), "bytes": sum(f.stat().st_size for f in where.rglob("*") if f.is_file())}
    if want["tasks"] or tasks:
        record["tasks"] = _lm_eval_tasks([t for t in tasks if t in want["tasks"] or t in NLTK_NEEDS], task_data,
                                         nltk_dir)
    if want["alpaca_eval"]:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(ALPACA_EVAL[0], ALPACA_EVAL[1], repo_type="dataset")
        record["alpaca_eval"] = {"path": path, "bytes": os.path.getsize(path)}
    atomic_write_json(manifest, record)
    return record


def _nltk(resource: str, nltk_dir: Path) -> Path:
    """The study's copy of an NLTK resource: from an NLTK data directory this machine has (NLTK's
    own search path, NLTK_DATA included), else NLTK's downloader."""
    import nltk

    target = nltk_dir / resource
    if target.exists():
        return target
    try:
        found = Path(str(nltk.data.find(resource)))
    except LookupError:
        if not nltk.download(resource.split("/")[-1], download_dir=str(nltk_dir), quiet=True, raise_on_error=True):
            raise RuntimeError(f"NLTK resource {resource!r}: the download failed") from None
        return target
    tmp = Path(tempfile.mkdtemp(dir=nltk_dir.parent if nltk_dir.parent.exists() else None))
    shutil.copytree(found, tmp / "copy")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp / "copy", target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def _lm_eval_tasks(names: list[str], task_data: dict, nltk_dir: Path) -> dict:
    """Build each task as the evaluation jobs do (lm-eval's task configs): building one loads its
    dataset, which fills the datasets cache. Returns each task's dataset and its test rows."""
    from lm_eval.tasks import TaskManager

    from overtrain.evaluation.tasks import write_task_dir

    nltk_search_path(nltk_dir)
    out = {}
    with tempfile.TemporaryDirectory(prefix="overtrain-prefetch-") as task_dir:
        need_index = write_task_dir(task_dir, names, {}, task_data)
        loaded = TaskManager(include_path=task_dir, include_defaults=need_index).load(names)
        for name, task in loaded["tasks"].items():
            docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
            files = {f["filename"] for split in (task.dataset or {}).values() for f in split.cache_files}
            out[name] = {"dataset": task.get_config("dataset_path"), "name": task.get_config("dataset_name"),
                         "rows": len(docs) if docs is not None else 0,
                         "bytes": sum(os.path.getsize(f) for f in files if os.path.exists(f))}
    return out


def manifest_summary(path: str | Path) -> str:
    record = json.loads(Path(path).read_text())
    return (f"{len(record['tasks'])} lm-eval task(s), {len(record['nltk'])} NLTK resource(s)"
            + (", AlpacaEval prompts" if record["alpaca_eval"] else ""))
