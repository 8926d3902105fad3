"""Config → the grid of jobs, and the checks a JSON schema cannot express.

Imported by the Snakefile and by every script; imports nothing else from the package, so the
workflow can be planned without torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# Prompt formats evaluated beside a task when evaluate.prompt_variants is on (training template
# first). Kept here, not in overtrain.evaluate, so planning the DAG needs no lm-eval.
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


def fmt(x: float | int) -> str:
    """The canonical text of a number in a file name: 0.001, 3e-05, 125000."""
    return f"{x:g}" if isinstance(x, float) else str(x)


RUN_PATTERN = r"(?P<method>full|lora|llava)-lr(?P<lr>[0-9.e+-]+?)(?:-l2(?P<l2>[0-9.e+-]+?))?-s(?P<seed>[0-9]+)"


def run_id(lr: float, seed: int, method: str = "full", l2: float = 0.0) -> str:
    """'full-lr0.001-s0'; an ℓ2 pull toward the pretrained weights adds '-l2<λ>'."""
    reg = f"-l2{fmt(float(l2))}" if l2 else ""
    return f"{method}-lr{fmt(float(lr))}{reg}-s{seed}"


def parse_run_id(run: str) -> dict:
    m = re.fullmatch(RUN_PATTERN, run)
    if not m:
        raise ValueError(f"bad run id {run!r}; expected <full|lora|llava>-lr<lr>[-l2<λ>]-s<seed>")
    return {
        "method": m["method"],
        "lr": float(m["lr"]),
        "l2": float(m["l2"]) if m["l2"] else 0.0,
        "seed": int(m["seed"]),
    }


def gaussian_id(gamma: float, seed: int) -> str:
    return f"gauss-g{fmt(float(gamma))}-s{seed}"


def rtn_id(bits: int) -> str:
    return f"rtn-int{bits}"


def pretrain_ckpt_id(budget: int, seed: int = 0) -> str:
    """'tok125000-s0': a pretraining budget and its pretraining seed (a replicate of the study)."""
    return f"tok{budget}-s{seed}"


def parse_pretrain_ckpt(ckpt: str) -> tuple[int, int]:
    """'tok125000-s2' → (125000, 2)."""
    m = re.fullmatch(r"tok(\d+)-s(\d+)", ckpt)
    if not m:
        raise ValueError(f"bad pretraining checkpoint id {ckpt!r}; expected tok<budget>-s<seed>")
    return int(m[1]), int(m[2])


def checkpoints(config: dict) -> list[tuple[str, str]]:
    """(model, ckpt) pairs of every checkpoint in the study."""
    out = []
    for name, m in config["models"].items():
        if m["source"] == "pretrain":
            out += [(name, pretrain_ckpt_id(b, s)) for s in m["seeds"] for b in m["budgets"]]
        elif m["source"] == "local":
            out += [(name, ckpt) for ckpt in m["checkpoints"]]
        elif m["source"] == "hub":
            if not isinstance(m["revisions"], list):
                raise ConfigError(f"models.{name}.revisions: the selector was not resolved")
            out += [(name, rev) for rev in m["revisions"]]
    return out


def synthetic_tasks_used(config: dict) -> bool:
    """Whether any job needs the synthetic corpus (its data or its evaluation sets)."""
    splits = eval_splits(config)
    pretrain = any(m["source"] == "pretrain" for m in config["models"].values())
    return pretrain or "synth_ft" in config["finetune"]["tasks"] or any(t.startswith("synth_") for t in splits)


# Fine-tuning tasks with images: fine-tuned by method llava only (overtrain.multimodal), and
# method llava fine-tunes only these. synth_mm: pictures of the synthetic language
# (overtrain.images); llava: the image-text data of multimodal.data (LLaVA conversations).
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


def parse_variant(variant: str) -> dict:
    """'base' or 'ft-<task>-<run>' (a fine-tune) → its labels in metrics.csv."""
    if variant == "base":
        return {"variant": "base"}
    m = re.fullmatch(rf"ft-(?P<task>[A-Za-z0-9_]+)-(?P<run>{RUN_PATTERN})", variant)
    if not m:
        raise ValueError(f"bad variant {variant!r}; expected base or ft-<task>-<run>")
    run = parse_run_id(m["run"])
    return {"variant": "finetuned", "ft_task": m["task"], "ft_method": run["method"], "lr": run["lr"],
            "l2": run["l2"], "seed": run["seed"]}


def judged_variants(config: dict) -> list[str]:
    """Variants whose responses are judged (evaluate.judge): the base checkpoint and every fine-tune."""
    if not config["evaluate"]["judge"]["enabled"]:
        return []
    return ["base"] + [f"ft-{task}-{run}" for task, run in grid_runs(config) if not run.startswith("llava-")]


def learning_rates(config: dict, task: str) -> list[float]:
    """A task's learning-rate grid: finetune.learning_rates_by_task[task], else the shared one."""
    ft = config["finetune"]
    return ft["learning_rates_by_task"].get(task, ft["learning_rates"])


def group_id(lr: float, method: str = "full", l2: float = 0.0) -> str:
    """A run id without its seed: the fine-tunes that connectivity compares."""
    return run_id(lr, 0, method, l2).rsplit("-s", 1)[0]


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
    g = config["perturb"]["gaussian"]
    out = [gaussian_id(gamma, seed) for gamma in g["gammas"] for seed in g["seeds"]]
    return out + [rtn_id(bits) for bits in config["perturb"]["quantize"]["bits"]]


def perturbed_splits(config: dict, splits: dict[str, str]) -> dict[str, str]:
    """The tasks of `splits` (a checkpoint's evaluation) that its perturbed variants are scored on."""
    keep = set(config["perturb"]["splits"])
    return {task: split for task, split in splits.items() if split in keep}


def own_eval_tasks(task: str, spec: dict | None, prompt_variants: bool) -> dict[str, str]:
    """A fine-tuning task's own evaluation sets → split: `val` chooses its learning rate, `id`
    is what is reported. synth_ft: the corpus's validation text, held-out text and MC items;
    any other task: response loss on its val and test splits, and for classification the
    multiple-choice accuracy on its test split (in each prompt format)."""
    if is_multimodal(task):  # image-conditioned: scored by overtrain.multimodal, not lm-eval
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


def check(config: dict, basedir: str | Path = ".", known_ft_tasks: set[str] = frozenset(),
          specs: dict | None = None) -> None:
    """Checks beyond the schema: cross-key constraints and paths. Raises ConfigError."""
    names = set(config["models"])
    for name, m in config["models"].items():
        key = f"models.{name}"
        if m["source"] == "pretrain":
            arch = m["architecture"]
            if arch["hidden"] % arch["heads"]:
                raise ConfigError(
                    f"{key}.architecture: hidden={arch['hidden']} must be divisible by "
                    f"heads={arch['heads']}"
                )
            budgets = m["budgets"]
            if len(set(budgets)) != len(budgets):
                raise ConfigError(f"{key}.budgets: duplicate budgets in {budgets}")
            tokens_per_step = m["batch_size"] * config["corpus"]["seq_len"]
            too_small = [b for b in budgets if b < tokens_per_step]
            if too_small:
                raise ConfigError(
                    f"{key}.budgets: {too_small} is less than one step "
                    f"(batch_size × corpus.seq_len = {tokens_per_step} tokens)"
                )
        elif m["source"] == "local":
            for ckpt, c in m["checkpoints"].items():
                path = Path(basedir, c["path"])
                if not path.is_dir():
                    raise ConfigError(
                        f"{key}.checkpoints.{ckpt}.path: directory {c['path']!r} does not exist"
                    )
    ft = config["finetune"]
    allowed = {"synth_ft"} | MULTIMODAL_TASKS | set(known_ft_tasks) | set(ft["datasets"])
    for i, task in enumerate(ft["tasks"]):
        if task not in allowed:
            raise ConfigError(
                f"finetune.tasks[{i}]: unknown task {task!r}; allowed: {sorted(allowed)} "
                "(or define it under finetune.datasets)"
            )
    for i, task in enumerate(ft["tasks"]):
        if not methods_for(config, task):
            raise ConfigError(
                f"finetune.tasks[{i}]: no method in finetune.methods {ft['methods']} applies to {task!r}; "
                + ("a multimodal task is fine-tuned by method llava" if is_multimodal(task)
                   else "method llava fine-tunes multimodal tasks only (synth_mm, llava); add full or lora")
            )
    if "llava" in ft["tasks"] and not {"captions", "instruct"} <= set((config.get("multimodal") or {}).get("data") or {}):
        raise ConfigError("multimodal.data: task llava needs its captions (stage 1) and instruct (stage 2) sources, "
                          "each {repo, revision, split, n} or {path, n}")
    if "llava" in ft["methods"] and config["compute"]["processes_per_job"] > 1:
        raise ConfigError("compute.processes_per_job: LLaVA fine-tunes run in one process; set 1")
    for task in ft["learning_rates_by_task"]:
        if task not in ft["tasks"]:
            raise ConfigError(f"finetune.learning_rates_by_task.{task}: not one of finetune.tasks {ft['tasks']}")
    for task, spec in ft["datasets"].items():
        if task not in known_ft_tasks and ({"path", "format"} - set(spec)):
            raise ConfigError(f"finetune.datasets.{task}: a new dataset needs 'path' and 'format'")
    if (ft["steps"] is None) == (ft["epochs"] is None):
        raise ConfigError("finetune: set exactly one of 'steps' and 'epochs' (the other to null)")
    shards = config["compute"]["processes_per_job"] * ft["grad_accum"]
    if ft["batch_size"] % shards:
        raise ConfigError(
            f"finetune.batch_size: {ft['batch_size']} is not divisible by compute.processes_per_job × "
            f"finetune.grad_accum = {shards}; each process and micro-batch takes an equal share of a step"
        )
    if "lora" in ft["methods"] and ft["parallel"] == "fsdp" and config["compute"]["processes_per_job"] > 1:
        raise ConfigError("finetune.parallel: fsdp shards full fine-tunes; use ddp for methods: [lora]")
    splits = eval_splits(config, specs)
    conn = config["connectivity"]
    if conn["learning_rates"] and len(conn["seeds"]) < 2:
        raise ConfigError("connectivity.seeds: needs at least 2 seeds to compare fine-tunes")
    missing = [t for t in conn["tasks"] if t not in splits]
    if conn["learning_rates"] and missing:
        raise ConfigError(f"connectivity.tasks: {missing} are not evaluated (add them to evaluate)")
    select = config["analysis"]["select"]
    if conn["learning_rates"] and len(conn["seeds"]) >= 2 and select is None:
        raise ConfigError(
            "connectivity.learning_rates: connectivity needs analysis.select (greedy soups add "
            "fine-tunes in the order of that validation score); set it, or connectivity.learning_rates: []"
        )
    if select is not None and select["task"] != "own" and select["task"] not in splits:
        raise ConfigError(
            f"analysis.select.task: {select['task']!r} is not evaluated (add it to evaluate, or use 'own': "
            "each fine-tuning task's own validation set)"
        )
    judge = config["evaluate"]["judge"]
    if judge["enabled"]:
        if "model" not in judge:
            raise ConfigError("evaluate.judge.model: the judge ({repo, revision} or {path}) is required when enabled")
        if judge["prompts"] != "alpaca_eval":
            spec = (specs or {}).get(judge["prompts"])
            if judge["prompts"] not in ft["tasks"] or (spec or {}).get("format") not in ("hh", "messages", "alpaca"):
                raise ConfigError(
                    f"evaluate.judge.prompts: {judge['prompts']!r} must be alpaca_eval or one of finetune.tasks "
                    "with an instruction format (hh, messages, alpaca): its held-out test instructions"
                )
        if judge["reference"] == "alpaca_eval" and judge["prompts"] != "alpaca_eval":
            raise ConfigError("evaluate.judge.reference: alpaca_eval's reference outputs need prompts: alpaca_eval; "
                              "otherwise give a reference model ({repo, revision} or {path})")
    if not names:
        raise ConfigError("models: at least one model is required")


def explain_schema_error(config: dict, schema_path: str | Path) -> str:
    """A one-line account of the first schema violation: the key, what is wrong, what is allowed.

    Snakemake's validate() reports the same error with the whole sub-schema dumped; this names
    the key as a user writes it (`finetune.learning_rates[0]`).
    """
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return "config is valid"
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    key = key.lstrip(".") or "<top level>"
    kind, value, sub = error.validator, error.instance, error.schema
    if kind == "additionalProperties":
        allowed = sorted(sub.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else value
        return f"{key}: unknown key(s) {extra}; allowed keys: {allowed}"
    if kind in ("enum", "const"):
        allowed = sub.get("enum", [sub.get("const")])
        return f"{key}: {value!r} is not allowed; allowed: {allowed}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[kind]
        return f"{key}: {value!r} is out of range; must be {op} {error.validator_value}"
    if kind == "type":
        return f"{key}: {value!r} has the wrong type; expected {error.validator_value}"
    if kind in ("minItems", "minProperties"):
        return f"{key}: must have at least {error.validator_value} entr{'y' if error.validator_value == 1 else 'ies'}"
    if kind == "pattern":
        return f"{key}: {value!r} is not allowed; it must match {error.validator_value}"
    if kind == "oneOf":
        return f"{key}: {value!r} is not allowed; expected one of: " + "; ".join(
            json.dumps(sub_schema, default=str) for sub_schema in error.validator_value
        )
    if kind == "required":
        return f"{key}: {error.message}"
    return f"{key}: {error.message}"
