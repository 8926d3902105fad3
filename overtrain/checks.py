"""The checks a JSON schema cannot express (cross-key constraints, paths), and a one-line account
of a schema violation: each error names the key as a user writes it and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path

from overtrain.config import MULTIMODAL_TASKS, ConfigError, eval_splits, is_multimodal, methods_for
from overtrain.ids import STABLE_SUFFIX


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
    sharp = config["evaluate"]["sharpness"]
    if sharp["probes"] and sharp["data"] is None and not any(m["source"] == "pretrain" for m in config["models"].values()):
        raise ConfigError("evaluate.sharpness.data: held-out pretraining documents are needed (a JSONL of {\"text\"} "
                          "rows); only a study with a pretrain model has the synthetic corpus's")
    if sharp["probes"] and sharp["data"] is not None and not Path(basedir, sharp["data"]).is_file():
        raise ConfigError(f"evaluate.sharpness.data: file {sharp['data']!r} does not exist")
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
    _check_pairs(config["models"])


def _check_pairs(models: dict) -> None:
    """Models compared at equal tokens (compare; stable_checkpoints) must be comparable."""
    for name, m in models.items():
        key = f"models.{name}"
        if m.get("stable_checkpoints"):
            if not m["branching"]:
                raise ConfigError(f"{key}.stable_checkpoints: the stable run's checkpoints need branching: true "
                                  "(optimizer.schedule wsd)")
            if f"{name}{STABLE_SUFFIX}" in models:
                raise ConfigError(f"{key}.stable_checkpoints: the companion model {name}{STABLE_SUFFIX} would replace "
                                  "a model of that name; rename it")
        if not m.get("compare"):
            continue
        other = m["compare"]["with"]
        if other == name or other not in models:
            raise ConfigError(f"{key}.compare.with: {other!r} is not another model of the study; models: "
                              f"{sorted(set(models) - {name})}")
        c = models[other]
        if m["compare"]["factor"] == "sam":
            if m["source"] != "pretrain" or c["source"] != "pretrain":
                raise ConfigError(f"{key}.compare: factor sam compares two models pretrained here (source pretrain)")
            if not (m["optimizer"]["sam_rho"] > 0 and c["optimizer"]["sam_rho"] == 0):
                raise ConfigError(f"{key}.compare: factor sam needs optimizer.sam_rho > 0 here and 0 in {other} "
                                  f"(they are {m['optimizer']['sam_rho']} and {c['optimizer']['sam_rho']})")
        if m["source"] == c["source"] == "pretrain" and (m["budgets"] != c["budgets"] or m["seeds"] != c["seeds"]):
            raise ConfigError(f"{key}.compare: budgets and seeds must equal {other}'s (a pair is compared at equal "
                              "tokens, seed by seed)")


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
