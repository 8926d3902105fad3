"""Config → the grid of jobs: checkpoints, fine-tuning runs, connectivity groups, perturbed
variants and the evaluation tasks (and their splits) of every variant.

Imported by the Snakefile and by every script; imports only the ids and the perturbation
registry (standard library at import), so the workflow can be planned without torch.
"""

from __future__ import annotations

import re

from overtrain.ids import finetuned_variant, group_id, pretrain_ckpt_id, run_id
from overtrain.perturb import variant_ids

# Prompt formats evaluated beside a task when evaluate.prompt_variants is on (training template
# first). Kept here, not in overtrain.evaluation.evaluate, so planning the DAG needs no lm-eval.
PROMPT_VARIANTS = {"synth_ft_mc": ["synth_ft_mc", "synth_ft_mc_instruct", "synth_ft_mc_raw"]}
VARIANT_SUFFIXES = ("_instruct", "_raw")


def prompt_formats(task: str) -> list[str]:
    """A multiple-choice task and its other prompt formats (training template first)."""
    if task in PROMPT_VARIANTS:
        return PROMPT_VARIANTS[task]
    if re.fullmatch(r"ft_\w+_test_mc", task):
        return [task] + [task + s for s in VARIANT_SUFFIXES]
    return [task]


class ConfigError(ValueError):
    """A config value that is well-typed but unusable; the message names the key."""


def checkpoints(config: dict) -> list[tuple[str, str]]:
    """(model, ckpt) pairs of every checkpoint in the study."""
    out = []
    for name, m in config["models"].items():
        if m["source"] in ("pretrain", "stable"):  # stable: a controlled model's stable-run checkpoints
            out += [(name, pretrain_ckpt_id(b, s)) for s in m["seeds"] for b in m["budgets"]]
        elif m["source"] == "local":
            out += [(name, ckpt) for ckpt in m["checkpoints"]]
        elif m["source"] == "hub":
            if not isinstance(m["revisions"], list):
                raise ConfigError(f"models.{name}.revisions: the selector was not resolved")
            out += [(name, rev) for rev in m["revisions"]]
    return out


# Fine-tuning tasks with images: fine-tuned by method llava only (overtrain.training.llava), and
# method llava fine-tunes only these. synth_mm: pictures of the synthetic language
# (overtrain.sources.images); llava: the image-text data of multimodal.data (LLaVA conversations).
MULTIMODAL_TASKS = {"synth_mm", "llava"}


def is_multimodal(task: str) -> bool:
    return task in MULTIMODAL_TASKS


def methods_for(config: dict, task: str) -> list[str]:
    """The configured methods that apply to a task: llava to multimodal tasks, the others to text."""
    return [m for m in config["finetune"]["methods"] if (m == "llava") == is_multimodal(task)]


def grid_runs(config: dict) -> list[tuple[str, str]]:
    """(task, run) pairs of the fine-tuning grid (tasks × methods × learning rates × l2 × seeds):
    the fine-tunes every checkpoint is evaluated (and judged) with, the same seeds at every
    learning rate."""
    ft = config["finetune"]
    return [
        (task, run_id(lr, seed, method, l2))
        for task in ft["tasks"]
        for method in methods_for(config, task)
        for lr in learning_rates(config, task)
        for l2 in (ft["l2"] if method != "llava" else [0.0])
        for seed in ft["seeds"]
    ]


def finetune_runs(config: dict) -> list[tuple[str, str]]:
    """(task, run) pairs fine-tuned from every checkpoint: the grid, plus the extra seeds that
    connectivity needs at its learning rates (text methods only: see connectivity_groups). The
    connectivity job scores those on its own tasks (its path's endpoints); the grid's evaluation
    leaves them out, so a learning rate with connectivity does not average more fine-tuning seeds
    than the others."""
    runs = grid_runs(config)
    runs += [(task, run_id(lr, seed, method, l2)) for task, method, lr, l2, seeds in _connected(config)
             for seed in seeds]
    return list(dict.fromkeys(runs))


def multimodal_runs(config: dict) -> list[tuple[str, str]]:
    """(task, run) of the LLaVA fine-tunes: their image-conditioned evaluations."""
    return [(task, run) for task, run in grid_runs(config) if run.startswith("llava-")]


def judged_variants(config: dict) -> list[str]:
    """Variants whose responses are judged (evaluate.judge): the base checkpoint and every fine-tune."""
    if not config["evaluate"]["judge"]["enabled"]:
        return []
    return ["base"] + [finetuned_variant(task, run) for task, run in grid_runs(config) if not run.startswith("llava-")]


def learning_rates(config: dict, task: str) -> list[float]:
    """A task's learning-rate grid: finetune.learning_rates_by_task[task], else the shared one."""
    ft = config["finetune"]
    return ft["learning_rates_by_task"].get(task, ft["learning_rates"])


def connectivity_groups(config: dict) -> list[tuple[str, str, list[int]]]:
    """(task, group, seeds) of every connectivity job per checkpoint (text fine-tunes: a LLaVA
    fine-tune's projector is not on the language models' path)."""
    return [(task, group_id(lr, method, l2), seeds) for task, method, lr, l2, seeds in _connected(config)]


def _connected(config: dict) -> list[tuple[str, str, float, float, list[int]]]:
    """(task, method, lr, l2, seeds) of every connectivity group."""
    ft, conn = config["finetune"], config["connectivity"]
    if len(conn["seeds"]) < 2:
        return []
    return [
        (task, method, lr, l2, sorted(conn["seeds"]))
        for task in ft["tasks"]
        for method in methods_for(config, task)
        if method != "llava"
        for lr in conn["learning_rates"]
        for l2 in ft["l2"]
    ]


def perturbations(config: dict, splits: dict[str, str] | None = None) -> list[str]:
    """The perturbed variants of every checkpoint: none when nothing they would be scored on
    (perturb.splits) is evaluated. `splits`: a checkpoint's evaluation as the rules build it
    (with the fine-tuning tasks' specs); by default eval_splits(config)."""
    if not perturbed_splits(config, eval_splits(config) if splits is None else splits):
        return []
    return variant_ids(config["perturb"])


def perturbed_splits(config: dict, splits: dict[str, str]) -> dict[str, str]:
    """The tasks of `splits` (a checkpoint's evaluation) that its perturbed variants are scored on."""
    keep = set(config["perturb"]["splits"])
    return {task: split for task, split in splits.items() if split in keep}


def own_eval_tasks(task: str, spec: dict | None, prompt_variants: bool) -> dict[str, str]:
    """A fine-tuning task's own evaluation sets → split: `val` chooses its learning rate, `id`
    is what is reported. synth_ft: the corpus's validation text, held-out text and MC items;
    any other task: response loss on its val and test splits, and for classification the
    multiple-choice accuracy on its test split (in each prompt format)."""
    if is_multimodal(task):  # image-conditioned: scored by overtrain.training.llava, not lm-eval
        return {}
    if task == "synth_ft":
        out = {"synth_ft_val_ppl": "val", "synth_ft_ppl": "id", "synth_ft_mc": "id"}
        mc = "synth_ft_mc"
    else:
        out = {f"ft_{task}_val": "val", f"ft_{task}_test": "id"}
        mc = f"ft_{task}_test_mc" if spec and spec.get("format") == "classification" else None
        if mc:
            out[mc] = "id"
        if mc and not (spec or {}).get("variants"):
            return out
    if prompt_variants and mc:
        out.update({variant: "id" for variant in prompt_formats(mc)})
    return out


def eval_splits(config: dict, specs: dict | None = None, ft_task: str | None = None) -> dict[str, str]:
    """Every evaluation task of a variant → its split (val | id | ood | pretrain).

    A fine-tune of `ft_task` is scored on its own val and test sets (val, id), on the other
    fine-tuning tasks' test sets (ood: what it forgets) and on the shared evaluate.val / id /
    ood lists and the pretraining text. The base checkpoint and its perturbations (`ft_task`
    None) are scored on every fine-tuning task's own sets. `specs` gives each fine-tuning
    task's dataset spec (its format decides its evaluation sets).
    """
    ev, specs = config["evaluate"], specs or {}
    pv = ev["prompt_variants"]
    out = {t: "val" for t in ev["val"]}
    for t in ev["id"]:
        if t in out:
            raise ConfigError(f"evaluate: task {t!r} is listed in both 'val' and 'id'")
        out[t] = "id"
    for t in ev["ood"]:
        if t in out:
            raise ConfigError(f"evaluate: task {t!r} is listed in both 'id' and 'ood'")
        out[t] = "ood"
    for task in config["finetune"]["tasks"]:
        own = own_eval_tasks(task, specs.get(task), pv)
        if ft_task is None or task == ft_task:
            out.update(own)
        else:  # another task's test sets measure forgetting; its val set selects nothing here
            out.update({t: "ood" for t, split in own.items() if split == "id"})
    if pv:
        for task, split in list(out.items()):
            for variant in prompt_formats(task):
                out.setdefault(variant, split)
    if ev["pretrain_loss"]:
        out[ev["pretrain_task"]] = "pretrain"
    return out


def own_val_task(task: str) -> str:
    """The evaluation task that chooses a fine-tuning task's learning rate (select task: own)."""
    if is_multimodal(task):
        return f"{task}_val"
    return "synth_ft_val_ppl" if task == "synth_ft" else f"ft_{task}_val"
