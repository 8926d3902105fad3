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
from dataclasses import dataclass, field
from pathlib import Path

from overtrain.evaluation.results import checkpoint_labels, write_result
from overtrain.evaluation.sharpness import SharpnessSettings, sharpness_rows
from overtrain.evaluation.tasks import FT_TASK, SYNTHETIC_TASKS, tidy_results, write_task_dir


@dataclass(frozen=True)
class EvalSettings:
    """How a job evaluates, built once from its rule's params: the tasks and their splits, the
    data they read, how many items, batch and context sizes, and where the model runs."""

    splits: dict[str, str]
    data_files: dict[str, str | Path]
    limit: int | None = None
    batch_size: int | str = 64
    max_length: int | None = None
    task_data: dict | None = None
    max_gen_toks: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    trust_remote_code: bool = False
    # evaluate.sharpness, measured on the documents of data_files["sharpness"], labelled with
    # the pretraining-loss task
    sharpness: SharpnessSettings = field(default_factory=SharpnessSettings)
    sharpness_task: str = "pretrain"

    def sharpness_rows(self, model, tokenizer) -> list[dict]:
        """The variant's sharpness rows, when evaluate.sharpness is on."""
        if not self.sharpness.enabled:
            return []
        return sharpness_rows(model, tokenizer, self.data_files["sharpness"], self.sharpness, self.sharpness_task,
                              self.max_length)


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

    def __init__(self, model, tokenizer, settings: EvalSettings):
        from lm_eval.tasks import TaskManager

        from overtrain.evaluation.lm import caching_lm_class

        s = settings
        splits = s.splits
        if not any(t not in SYNTHETIC_TASKS and not FT_TASK.fullmatch(t) for t in splits):
            # Nothing to fetch: keep datasets' json builder from phoning home.
            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.splits, self.limit = splits, s.limit
        with tempfile.TemporaryDirectory(prefix="overtrain-tasks-") as task_dir:
            need_index = write_task_dir(task_dir, list(splits), s.data_files, s.task_data)
            self.loaded = TaskManager(include_path=task_dir, include_defaults=need_index).load(list(splits))
        for task in self.loaded["tasks"].values():  # as simple_evaluate configures them
            if s.max_gen_toks and task.get_config("output_type") == "generate_until":
                task.set_config(key="generation_kwargs", value={"max_gen_toks": s.max_gen_toks}, update=True)
            if task.get_config("num_fewshot") is None:
                task.set_config(key="num_fewshot", value=0)
            task.set_fewshot_seed(seed=0)
        self.lm = caching_lm_class()(pretrained=model, tokenizer=tokenizer, batch_size=s.batch_size,
                                      max_length=s.max_length)

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


def evaluate_model(model, tokenizer, settings: EvalSettings) -> list[dict]:
    """One variant on every task of `settings.splits` (task → val | id | ood | pretrain)."""
    return Evaluation(model, tokenizer, settings).rows()


def diverged_row(task: str, diverged: bool) -> dict:
    """Every fine-tune's row `split ft_train, metric diverged`: 1 when its training diverged."""
    return {"eval_task": task, "split": "ft_train", "metric": "diverged", "value": float(diverged)}


def evaluate_finetuned(out_json: str | Path, checkpoint_dir: str | Path, finetuned_dir: str | Path, labels: dict,
                       settings: EvalSettings) -> dict:
    """Evaluate one fine-tune on every task and write {labels, tokens, rows} atomically.

    Rows also carry the run's `diverged` flag and its learning-jump rows. A diverged fine-tune
    (no weights) is not evaluated: its result has status "diverged" and only the flag row.
    """
    from overtrain.evaluation.curves import learning_jump_rows
    from overtrain.models import load_variant

    labels = {**labels, **checkpoint_labels(checkpoint_dir)}
    ft_meta = json.loads(Path(finetuned_dir, "meta.json").read_text())
    task = labels["ft_task"]
    if ft_meta.get("diverged"):
        print(f"not evaluated: the fine-tune diverged ({ft_meta.get('diverged_reason')})")
        return write_result(out_json, labels, "diverged", rows=[diverged_row(task, True)])
    s = settings
    model, tokenizer = load_variant(checkpoint_dir, finetuned_dir, None, s.trust_remote_code, s.device, s.dtype)
    started = time.perf_counter()
    rows = evaluate_model(model, tokenizer, s) + s.sharpness_rows(model, tokenizer)
    rows += [diverged_row(task, False)] + learning_jump_rows(Path(finetuned_dir, "train_log.csv"), task)
    print(f"[evaluate] {len(s.splits)} tasks in {time.perf_counter() - started:.0f}s", flush=True)
    return write_result(out_json, labels, "ok", model=model, batch_size=s.batch_size, rows=rows)


def evaluate_checkpoint(outputs: dict[str, str | Path], checkpoint_dir: str | Path, labels: dict,
                        settings: EvalSettings, perturbed_tasks: list[str] | None = None) -> None:
    """The base checkpoint and all its perturbations in one process (one JSON each).

    `outputs` maps a variant id ('base', 'gauss-g0.1-s0', 'rtn-int8', …) to its JSON. The model is
    loaded once and restored from a pristine copy of its weights before each perturbation: at
    tiny scale process start-up costs more than an evaluation, at OLMo scale loading does. The
    base is scored on every task of `splits`, a perturbed variant on `perturbed_tasks` (default:
    the same).
    """
    import torch

    from overtrain.models import load_variant
    from overtrain.perturb import KINDS, apply, parse_perturbation

    s = settings
    model, tokenizer = load_variant(checkpoint_dir, None, None, s.trust_remote_code, s.device, s.dtype)
    # the pristine weights wait on the CPU: one copy of the model on the device (at 7B in bf16,
    # a second copy there would be 14 GB)
    pristine = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    evaluation = Evaluation(model, tokenizer, s)
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
        rows = evaluation.rows(tasks) + (s.sharpness_rows(model, tokenizer) if variant == "base" else [])
        write_result(out_json, {**variant_labels, **checkpoint_labels(checkpoint_dir)}, "ok", model=model,
                     batch_size=s.batch_size, rows=rows)
        elapsed = time.perf_counter() - started
        print(f"[evaluate] variant {done}/{len(outputs)} {variant}: {len(tasks or s.splits)} tasks; elapsed {elapsed:.0f}s "
              f"eta {elapsed / done * (len(outputs) - done):.0f}s", flush=True)
