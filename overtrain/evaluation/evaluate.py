"""Evaluation through lm-evaluation-harness: one call evaluates one model variant on all its
tasks (overtrain.evaluation.tasks writes them), and the jobs that evaluate a fine-tune, or a
checkpoint with all its in-memory perturbations.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

from overtrain.evaluation.tasks import FT_TASK, SYNTHETIC_TASKS, tidy_results, write_task_dir


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

        from overtrain.evaluation.lm import caching_lm_class

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
    from overtrain.evaluation.curves import learning_jump_rows
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

    import torch

    from overtrain.atomic import atomic_write_json
    from overtrain.models import load_variant
    from overtrain.perturb import KINDS, apply, parse_perturbation
    from overtrain.provenance import package_versions

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
            variant_labels.update(variant="perturbed", **KINDS[perturbation["kind"]].columns(perturbation))
        rows = evaluation.rows(tasks)
        result = {**variant_labels, **checkpoint_labels(checkpoint_dir), "status": "ok", "rows": rows,
                  "runtime": runtime_info(model, batch_size), "versions": package_versions()}
        atomic_write_json(out_json, result)
        elapsed = time.perf_counter() - started
        print(f"[evaluate] variant {done}/{len(outputs)} {variant}: {len(tasks or splits)} tasks; elapsed {elapsed:.0f}s "
              f"eta {elapsed / done * (len(outputs) - done):.0f}s", flush=True)
