"""Our lm-eval tasks, written as task YAMLs at run time, and lm-eval's results as tidy rows.

Our own tasks are lm-eval task YAMLs over local JSONL files, with absolute paths (lm-eval
resolves relative `data_files` against the working directory): the synthetic corpus's tasks,
and each fine-tuning task's own val / test sets (`ft_<task>_val`, `ft_<task>_test`: response
loss in nats per target token; `ft_<task>_test_mc[_instruct|_raw]`: multiple-choice accuracy in
each prompt format). Named lm-eval tasks are included from their stock YAML by path (indexing
all of lm-eval's ~14k task files costs 8 s per job), optionally pointed at a local copy of their
data.
"""

from __future__ import annotations

import glob
import json
import math
import re
from functools import lru_cache
from pathlib import Path

FT_TASK = re.compile(r"ft_(?P<task>\w+?)_(?P<part>val|test)(?P<mc>_mc(?P<variant>_instruct|_raw)?)?")
# lm-eval loads `!function overtrain_metrics.<fn>` from a module beside the YAML files
METRICS_SHIM = "from overtrain.evaluation.tasks import response_loss_results, token_mean_loss  # noqa: F401\n"

# Our synthetic tasks: name → (data file key, lm-eval output type, metrics, prompt field).
SYNTHETIC_TASKS = {
    "synth_pretrain_ppl": ("pretrain_heldout", "loglikelihood_rolling", ["word_perplexity"], None),
    "synth_ft_ppl": ("ft_heldout", "loglikelihood_rolling", ["word_perplexity"], None),
    "synth_ft_val_ppl": ("ft_val", "loglikelihood_rolling", ["word_perplexity"], None),
    "synth_ft_mc": ("ft_mc", "multiple_choice", ["acc", "acc_norm"], "context"),
    "synth_ft_mc_instruct": ("ft_mc", "multiple_choice", ["acc", "acc_norm"], "context_instruct"),
    "synth_ft_mc_raw": ("ft_mc", "multiple_choice", ["acc", "acc_norm"], "context_raw"),
}


def task_yaml(name: str, data_file: str | Path) -> str:
    """The lm-eval task definition of a synthetic task over a local JSONL file."""
    key, output_type, metrics, field = SYNTHETIC_TASKS[name]
    lines = [
        f"task: {name}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {Path(data_file).resolve()}",
        "test_split: test",
        f"output_type: {output_type}",
    ]
    # Fields are named directly (not as "{{field}}" templates): lm-eval then reads doc[field]
    # instead of compiling a Jinja template for every document, which was half the time.
    if output_type == "loglikelihood_rolling":
        # the request is doc_to_target alone; a field name as doc_to_text (its context, unused
        # here) spares a Jinja compile of "" per document
        lines += ["doc_to_text: text", "doc_to_target: text"]
    else:
        lines += [
            f"doc_to_text: {field}",
            "doc_to_choice: choices",
            "doc_to_target: gold",
            'target_delimiter: " "',
        ]
    lines.append("metric_list:")
    for m in metrics:
        higher = "false" if "perplexity" in m else "true"
        agg = "weighted_perplexity" if m == "word_perplexity" else "mean"
        lines += [f"  - metric: {m}", f"    aggregation: {agg}", f"    higher_is_better: {higher}"]
    lines += ["metadata:", "  version: 1.0", ""]
    return "\n".join(lines)


def response_loss_results(doc: dict, results: list) -> dict:
    """Per document: (log-likelihood of the response, its tokens), for a token-weighted mean."""
    return {"loss": (float(results[0][0]), int(doc["n_target"]))}


def token_mean_loss(items: list) -> float:
    """Response loss in nats per target token over all documents (a long response weighs more)."""
    total = sum(n for _, n in items)
    return -sum(ll for ll, _ in items) / max(1, total)


def ft_task_yaml(name: str, data_dir: str | Path) -> str:
    """A fine-tuning task's own evaluation set as an lm-eval task over its prepared JSONL."""
    m = FT_TASK.fullmatch(name)
    path = Path(data_dir, f"{m['part']}.jsonl").resolve()
    lines = [f"task: {name}", "dataset_path: json", "dataset_kwargs:", "  data_files:", f"    test: {path}",
             "test_split: test"]
    if m["mc"]:
        field = "prompt" + (m["variant"] or "")
        lines += ["output_type: multiple_choice", f"doc_to_text: {field}", "doc_to_choice: choices",
                  "doc_to_target: gold", 'target_delimiter: ""', "metric_list:",
                  "  - {metric: acc, aggregation: mean, higher_is_better: true}",
                  "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}"]
    else:
        lines += ["output_type: loglikelihood", "doc_to_text: prompt", "doc_to_target: completion",
                  'target_delimiter: ""', "process_results: !function overtrain_metrics.response_loss_results",
                  "metric_list:",
                  "  - {metric: loss, aggregation: !function overtrain_metrics.token_mean_loss, higher_is_better: false}"]
    return "\n".join(lines + ["metadata:", "  version: 1.0", ""])


@lru_cache(maxsize=None)
def _stock_task_files() -> dict[str, str]:
    """Stock lm-eval task name → its YAML file (a line `task: <name>`), read once per process."""
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks"
    found = {}
    for path in glob.glob(str(root / "**" / "*.yaml"), recursive=True):
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("task:"):
                    found.setdefault(line.split(":", 1)[1].strip().strip("'\""), path)
                    break
    return found


def stock_task_yaml(name: str, local: dict | None = None) -> str | None:
    """A YAML that includes a stock lm-eval task by path, so the task index need not be built;
    `local` = {path, split, format} points it at a local copy of its data (a datasets
    save_to_disk directory of one split, or a JSON/JSONL file). None: not a single stock task
    (a group, or unknown: left to lm-eval's full index)."""
    path = _stock_task_files().get(name)
    if path is None:
        return None
    lines = [f"include: {path}", f"task: {name}"]
    if local:
        split = local.get("split", "test")
        data = Path(local["path"]).resolve()
        if local.get("format", "arrow") == "arrow":
            files = sorted(str(p) for p in data.glob("*.arrow"))
            if not files:
                raise FileNotFoundError(f"evaluate.task_data.{name}.path: no *.arrow files in {data}")
            lines += ["dataset_path: arrow"]
        else:
            files = [str(data)]
            lines += ["dataset_path: json"]
        lines += ["dataset_name: null", "dataset_kwargs:", "  data_files:", f"    {split}: {json.dumps(files)}",
                  "training_split: null", "validation_split: null", f"test_split: {split}", "fewshot_split: null"]
    return "\n".join(lines + [""])


def write_task_dir(task_dir: str | Path, tasks: list[str], data_files: dict, task_data: dict | None = None) -> bool:
    """Write the YAML of every task we define or include; returns whether lm-eval must also
    index its own tasks (a requested name we could not include)."""
    task_dir = Path(task_dir)
    (task_dir / "overtrain_metrics.py").write_text(METRICS_SHIM)
    need_index = False
    for name in tasks:
        if name in SYNTHETIC_TASKS:
            key = SYNTHETIC_TASKS[name][0]
            if key not in data_files:
                raise KeyError(f"task {name} needs the data file {key!r}")
            text = task_yaml(name, data_files[key])
        elif (m := FT_TASK.fullmatch(name)) and f"ft_{m['task']}" in data_files:
            text = ft_task_yaml(name, data_files[f"ft_{m['task']}"])
        else:
            text = stock_task_yaml(name, (task_data or {}).get(name))
            if text is None:
                need_index = True
                continue
        (task_dir / f"{name}.yaml").write_text(text)
    return need_index


def tidy_results(results: dict, splits: dict[str, str]) -> list[dict]:
    """lm-eval's results dict → rows (eval_task, split, metric, value), sorted.

    Stderr entries are dropped; a rolling perplexity also yields our `loss` = ln(word_perplexity),
    the mean per-token negative log-likelihood in nats (one word is one token here).
    """
    rows = []
    for task, split in splits.items():
        if task not in results:
            raise KeyError(f"lm-eval returned no results for task {task!r}")
        for key, value in results[task].items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric, _filter = key.split(",", 1)
            rows.append({"eval_task": task, "split": split, "metric": metric, "value": float(value)})
            if metric == "word_perplexity":
                rows.append(
                    {"eval_task": task, "split": split, "metric": "loss", "value": math.log(value)}
                )
    return sorted(rows, key=lambda r: (r["split"], r["eval_task"], r["metric"]))
