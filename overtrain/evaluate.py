"""Evaluation through lm-evaluation-harness.

One call evaluates one model variant on all its tasks. Our own tasks are lm-eval task YAMLs
over local JSONL files, written at run time with absolute paths (lm-eval resolves relative
`data_files` against the working directory): the synthetic corpus's tasks, and each fine-tuning
task's own val / test sets (`ft_<task>_val`, `ft_<task>_test`: response loss in nats per target
token; `ft_<task>_test_mc[_instruct|_raw]`: multiple-choice accuracy in each prompt format).
Named lm-eval tasks are included from their stock YAML by path (indexing all of lm-eval's ~14k
task files costs 8 s per job), optionally pointed at a local copy of their data.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import tempfile
import time
from functools import lru_cache
from pathlib import Path

FT_TASK = re.compile(r"ft_(?P<task>\w+?)_(?P<part>val|test)(?P<mc>_mc(?P<variant>_instruct|_raw)?)?")
# lm-eval loads `!function overtrain_metrics.<fn>` from a module beside the YAML files
METRICS_SHIM = "from overtrain.evaluate import response_loss_results, token_mean_loss  # noqa: F401\n"

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


class Evaluation:
    """lm-eval's tasks for one job, built once (datasets read, prompts rendered), and one HFLM
    wrapper around the job's model: `rows()` scores the model as its weights are now, so a job
    that swaps weights in place (perturbations, interpolation points, soups) pays lm-eval's
    set-up once. Same numbers as lm_eval.simple_evaluate (its seeds, 0-shot defaults and
    generation settings are applied the same way), without the per-call task rebuild and the
    environment report (a `pip list` subprocess) that simple_evaluate adds.

    Synthetic tasks need their JSONL in `data_files` (keyed as in SYNTHETIC_TASKS), a
    fine-tuning task's own sets its prepared directory (keyed `ft_<task>`); any other name is an
    lm-eval task, with its data from `task_data[name]` when given.
    """

    def __init__(self, model, tokenizer, splits: dict[str, str], data_files: dict[str, str | Path], *,
                 limit: int | None, batch_size: int | str = 64, max_length: int | None = None,
                 task_data: dict | None = None, max_gen_toks: int | None = None):
        from lm_eval.tasks import TaskManager

        from overtrain.lm import caching_lm_class

        if not any(t not in SYNTHETIC_TASKS and not FT_TASK.fullmatch(t) for t in splits):
            # Nothing to fetch: keep datasets' json builder from phoning home.
            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.splits, self.limit = splits, limit
        with tempfile.TemporaryDirectory(prefix="overtrain-tasks-") as task_dir:
            need_index = write_task_dir(task_dir, list(splits), data_files, task_data)
            self.loaded = TaskManager(include_path=task_dir, include_defaults=need_index).load(list(splits))
        for task in self.loaded["tasks"].values():  # as simple_evaluate configures them
            if max_gen_toks and task.get_config("output_type") == "generate_until":
                task.set_config(key="generation_kwargs", value={"max_gen_toks": max_gen_toks}, update=True)
            if task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=0)
        self.lm = caching_lm_class()(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                                      max_length=max_length)

    def _score(self, tasks: list[str]) -> dict:
        import random

        import numpy as np
        import torch
        from lm_eval.evaluator import evaluate

        random.seed(0)  # simple_evaluate's seeds, every call
        np.random.seed(0)
        torch.manual_seed(0)
        loaded = self.loaded if len(tasks) == len(self.loaded["tasks"]) else {
            "tasks": {t: self.loaded["tasks"][t] for t in tasks}, "groups": {}}
        return evaluate(lm=self.lm, task_dict=loaded, limit=self.limit, bootstrap_iters=0, log_samples=False,
                        verbosity="WARNING")["results"]

    def rows(self, tasks: list[str] | None = None) -> list[dict]:
        """The model's rows (eval_task, split, metric, value) on `tasks` (default: every task)."""
        tasks = list(self.loaded["tasks"]) if tasks is None else tasks
        try:
            results = self._score(tasks)
        except OverflowError:
            # lm-eval's perplexity aggregation overflows (math.exp) on a model worse than
            # e^709 per word: score the tasks one by one and record that one as infinite
            results = {}
            for task in tasks:
                try:
                    results.update(self._score([task]))
                except OverflowError:
                    print(f"{task}: perplexity overflows (the model has exploded); recorded as inf")
                    results[task] = {"word_perplexity,none": math.inf}
        return tidy_results(results, {task: self.splits[task] for task in tasks})


def evaluate_model(model, tokenizer, splits: dict[str, str], data_files: dict[str, str | Path], *,
                   limit: int | None, batch_size: int | str = 64, max_length: int | None = None,
                   task_data: dict | None = None, max_gen_toks: int | None = None) -> list[dict]:
    """One variant on every task in `splits` (task → val | id | ood | pretrain); see Evaluation."""
    return Evaluation(model, tokenizer, splits, data_files, limit=limit, batch_size=batch_size,
                      max_length=max_length, task_data=task_data, max_gen_toks=max_gen_toks).rows()


def checkpoint_labels(checkpoint_dir: str | Path) -> dict:
    """What every result of a checkpoint carries: its pretraining tokens and, for the
    controlled study, its pretraining replicate."""
    meta = json.loads(Path(checkpoint_dir, "meta.json").read_text())
    return {"tokens": meta["tokens"], "pretrain_seed": meta.get("pretrain_seed")}


def runtime_info(model, batch_size: int | str) -> dict:
    """Where and how an evaluation ran, recorded in every result (CPU-fp32 and GPU-bf16
    results must never mix unseen)."""
    import torch

    param = next(model.parameters())
    info = {"device": str(param.device), "dtype": str(param.dtype).removeprefix("torch."),
            "batch_size": batch_size, "threads": torch.get_num_threads()}
    if param.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(param.device)
    return info


def diverged_row(task: str, diverged: bool) -> dict:
    """Every fine-tune's row `split ft_train, metric diverged`: 1 when its training diverged."""
    return {"eval_task": task, "split": "ft_train", "metric": "diverged", "value": float(diverged)}


def evaluate_finetuned(
    out_json: str | Path,
    checkpoint_dir: str | Path,
    finetuned_dir: str | Path,
    labels: dict,
    *,
    splits: dict[str, str],
    data_files: dict[str, str | Path],
    limit: int | None,
    batch_size: int | str,
    max_length: int | None,
    trust_remote_code: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    task_data: dict | None = None,
    max_gen_toks: int | None = None,
) -> dict:
    """Evaluate one fine-tune on every task and write {labels, tokens, rows} atomically.

    Rows also carry the run's `diverged` flag and its learning-jump rows. A diverged fine-tune
    (no weights) is not evaluated: its result has status "diverged" and only the flag row.
    """
    import json

    from overtrain.atomic import atomic_write_json
    from overtrain.curves import learning_jump_rows
    from overtrain.models import load_variant
    from overtrain.provenance import package_versions

    ckpt = checkpoint_labels(checkpoint_dir)
    ft_meta = json.loads(Path(finetuned_dir, "meta.json").read_text())
    task = labels["ft_task"]
    if ft_meta.get("diverged"):
        print(f"not evaluated: the fine-tune diverged ({ft_meta.get('diverged_reason')})")
        result = {**labels, **ckpt, "status": "diverged", "rows": [diverged_row(task, True)],
                  "versions": package_versions()}
        atomic_write_json(out_json, result)
        return result
    model, tokenizer = load_variant(checkpoint_dir, finetuned_dir, None, trust_remote_code, device, dtype)
    started = time.perf_counter()
    rows = evaluate_model(model, tokenizer, splits, data_files, limit=limit, batch_size=batch_size,
                          max_length=max_length, task_data=task_data, max_gen_toks=max_gen_toks)
    rows += [diverged_row(task, False)] + learning_jump_rows(Path(finetuned_dir, "train_log.csv"), task)
    print(f"[evaluate] {len(splits)} tasks in {time.perf_counter() - started:.0f}s", flush=True)
    result = {**labels, **ckpt, "status": "ok", "rows": rows, "runtime": runtime_info(model, batch_size),
              "versions": package_versions()}
    atomic_write_json(out_json, result)
    return result


def evaluate_checkpoint(
    outputs: dict[str, str | Path],
    checkpoint_dir: str | Path,
    labels: dict,
    *,
    splits: dict[str, str],
    data_files: dict[str, str | Path],
    limit: int | None,
    batch_size: int | str,
    max_length: int | None,
    trust_remote_code: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    task_data: dict | None = None,
    max_gen_toks: int | None = None,
    perturbed_tasks: list[str] | None = None,
) -> None:
    """The base checkpoint and all its perturbations in one process (one JSON each).

    `outputs` maps a variant id ('base', 'gauss-g0.1-s0', 'rtn-int8', …) to its JSON. The model is
    loaded once and restored from a pristine copy of its weights before each perturbation: at
    tiny scale process start-up costs more than an evaluation, at OLMo scale loading does. The
    base is scored on every task of `splits`, a perturbed variant on `perturbed_tasks` (default:
    the same).
    """
    import json

    import torch

    from overtrain.atomic import atomic_write_json
    from overtrain.models import load_variant
    from overtrain.provenance import package_versions
    from overtrain.perturb import apply, parse_perturbation

    meta = json.loads(Path(checkpoint_dir, "meta.json").read_text())
    model, tokenizer = load_variant(checkpoint_dir, None, None, trust_remote_code, device, dtype)
    pristine = {k: v.detach().clone() for k, v in model.state_dict().items()}
    evaluation = Evaluation(model, tokenizer, splits, data_files, limit=limit, batch_size=batch_size,
                            max_length=max_length, task_data=task_data, max_gen_toks=max_gen_toks)
    started = time.perf_counter()
    for done, (variant, out_json) in enumerate(outputs.items(), 1):
        with torch.no_grad():
            model.load_state_dict(pristine)
        variant_labels, tasks = {**labels, "variant": "base"}, None
        if variant != "base":
            tasks = perturbed_tasks
            perturbation = parse_perturbation(variant)
            apply(model, perturbation)
            variant_labels.update(variant="perturbed", perturbation=perturbation["kind"])
            if perturbation["kind"] == "gaussian":
                variant_labels.update(gamma=perturbation["gamma"], seed=perturbation["seed"])
            else:
                variant_labels.update(bits=perturbation["bits"])
        rows = evaluation.rows(tasks)
        result = {**variant_labels, **checkpoint_labels(checkpoint_dir), "status": "ok", "rows": rows,
                  "runtime": runtime_info(model, batch_size), "versions": package_versions()}
        atomic_write_json(out_json, result)
        elapsed = time.perf_counter() - started
        print(f"[evaluate] variant {done}/{len(outputs)} {variant}: {len(tasks or splits)} tasks; elapsed {elapsed:.0f}s "
              f"eta {elapsed / done * (len(outputs) - done):.0f}s", flush=True)
