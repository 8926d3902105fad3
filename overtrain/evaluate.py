"""Evaluation through lm-evaluation-harness.

One call evaluates one model variant on all its tasks. Our synthetic tasks are lm-eval task
YAMLs over local JSONL files (written at run time with absolute paths, since lm-eval resolves
relative `data_files` against the working directory); named lm-eval tasks are used as they are.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

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
        lines += ['doc_to_text: ""', "doc_to_target: text"]
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


def evaluate_model(
    model,
    tokenizer,
    splits: dict[str, str],
    data_files: dict[str, str | Path],
    *,
    limit: int | None,
    batch_size: int | str = 64,
    max_length: int | None = None,
) -> list[dict]:
    """Run lm-eval once over every task in `splits` (task → id | ood | pretrain).

    Synthetic tasks need their JSONL in `data_files` (keyed as in SYNTHETIC_TASKS); any other
    name is looked up among lm-eval's own tasks.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    synthetic = [t for t in splits if t in SYNTHETIC_TASKS]
    named = [t for t in splits if t not in SYNTHETIC_TASKS]
    if not named:
        # Nothing to fetch: keep datasets' json builder from phoning home.
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="overtrain-tasks-") as task_dir:
        for name in synthetic:
            key = SYNTHETIC_TASKS[name][0]
            if key not in data_files:
                raise KeyError(f"task {name} needs the data file {key!r}")
            Path(task_dir, f"{name}.yaml").write_text(task_yaml(name, data_files[key]))
        manager = TaskManager(include_path=task_dir if synthetic else None, include_defaults=bool(named))
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)

        def run(tasks: list[str]) -> dict:
            return lm_eval.simple_evaluate(
                model=lm,
                tasks=tasks,
                task_manager=manager,
                limit=limit,
                log_samples=False,
                bootstrap_iters=0,
                random_seed=0,
                numpy_random_seed=0,
                torch_random_seed=0,
                fewshot_random_seed=0,
            )["results"]

        try:
            results = run(list(splits))
        except OverflowError:
            # lm-eval's perplexity aggregation overflows (math.exp) on a model worse than
            # e^709 per word: score the tasks one by one and record that one as infinite
            results = {}
            for task in splits:
                try:
                    results.update(run([task]))
                except OverflowError:
                    print(f"{task}: perplexity overflows (the model has exploded); recorded as inf")
                    results[task] = {"word_perplexity,none": math.inf}
    return tidy_results(results, splits)


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
) -> dict:
    """Evaluate one fine-tune on every task and write {labels, tokens, rows} atomically.

    Rows also carry the run's `diverged` flag and its learning-jump rows. A diverged fine-tune
    (no weights) is not evaluated: its result has status "diverged" and only the flag row.
    """
    import json

    from overtrain.atomic import atomic_write_json
    from overtrain.curves import learning_jump_rows
    from overtrain.models import load_variant, package_versions

    tokens = json.loads(Path(checkpoint_dir, "meta.json").read_text())["tokens"]
    ft_meta = json.loads(Path(finetuned_dir, "meta.json").read_text())
    task = labels["ft_task"]
    if ft_meta.get("diverged"):
        print(f"not evaluated: the fine-tune diverged ({ft_meta.get('diverged_reason')})")
        result = {**labels, "tokens": tokens, "status": "diverged", "rows": [diverged_row(task, True)],
                  "versions": package_versions()}
        atomic_write_json(out_json, result)
        return result
    model, tokenizer = load_variant(checkpoint_dir, finetuned_dir, None, trust_remote_code, device, dtype)
    rows = evaluate_model(model, tokenizer, splits, data_files, limit=limit, batch_size=batch_size,
                          max_length=max_length)
    rows += [diverged_row(task, False)] + learning_jump_rows(Path(finetuned_dir, "train_log.csv"), task)
    result = {**labels, "tokens": tokens, "status": "ok", "rows": rows, "runtime": runtime_info(model, batch_size),
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
) -> None:
    """The base checkpoint and all its perturbations in one process (one JSON each).

    `outputs` maps a variant id ('base', 'gauss-g0.1-s0', 'rtn-int8', …) to its JSON. The model is
    loaded once and restored from a pristine copy of its weights before each perturbation: at
    tiny scale process start-up costs more than an evaluation, at OLMo scale loading does.
    """
    import json

    import torch

    from overtrain.atomic import atomic_write_json
    from overtrain.models import load_variant, package_versions
    from overtrain.perturb import apply, parse_perturbation

    meta = json.loads(Path(checkpoint_dir, "meta.json").read_text())
    model, tokenizer = load_variant(checkpoint_dir, None, None, trust_remote_code, device, dtype)
    pristine = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for variant, out_json in outputs.items():
        with torch.no_grad():
            model.load_state_dict(pristine)
        variant_labels = {**labels, "variant": "base"}
        if variant != "base":
            perturbation = parse_perturbation(variant)
            apply(model, perturbation)
            variant_labels.update(variant="perturbed", perturbation=perturbation["kind"])
            if perturbation["kind"] == "gaussian":
                variant_labels.update(gamma=perturbation["gamma"], seed=perturbation["seed"])
            else:
                variant_labels.update(bits=perturbation["bits"])
        rows = evaluate_model(
            model, tokenizer, splits, data_files, limit=limit, batch_size=batch_size, max_length=max_length
        )
        result = {**variant_labels, "tokens": meta["tokens"], "status": "ok", "rows": rows,
                  "runtime": runtime_info(model, batch_size), "versions": package_versions()}
        atomic_write_json(out_json, result)
