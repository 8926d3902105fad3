"""Config → the grid of jobs, and the checks a JSON schema cannot express.

Imported by the Snakefile and by every script; imports nothing else from the package, so the
workflow can be planned without torch.
"""

from __future__ import annotations

import re
from pathlib import Path

SPLITS = ("id", "ood", "pretrain")
PRETRAIN_TASK = "synth_pretrain_ppl"


class ConfigError(ValueError):
    """A config value that is well-typed but unusable; the message names the key."""


def fmt(x: float | int) -> str:
    """The canonical text of a number in a file name: 0.001, 3e-05, 125000."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def run_id(lr: float, seed: int) -> str:
    return f"lr{fmt(float(lr))}-s{seed}"


def parse_run_id(run: str) -> tuple[float, int]:
    m = re.fullmatch(r"lr(?P<lr>[0-9.e+-]+)-s(?P<seed>[0-9]+)", run)
    if not m:
        raise ValueError(f"bad run id {run!r}; expected lr<lr>-s<seed>")
    return float(m["lr"]), int(m["seed"])


def gaussian_id(gamma: float, seed: int) -> str:
    return f"gauss-g{fmt(float(gamma))}-s{seed}"


def pretrain_ckpt_id(budget: int) -> str:
    return f"tok{budget}"


def checkpoints(config: dict) -> list[tuple[str, str]]:
    """(model, ckpt) pairs of every checkpoint in the study."""
    out = []
    for name, m in config["models"].items():
        if m["source"] == "pretrain":
            out += [(name, pretrain_ckpt_id(b)) for b in m["budgets"]]
        elif m["source"] == "local":
            out += [(name, ckpt) for ckpt in m["checkpoints"]]
    return out


def finetune_runs(config: dict) -> list[tuple[str, str]]:
    """(task, run) pairs fine-tuned from every checkpoint."""
    ft = config["finetune"]
    return [
        (task, run_id(lr, seed))
        for task in ft["tasks"]
        for lr in ft["learning_rates"]
        for seed in ft["seeds"]
    ]


def perturbations(config: dict) -> list[str]:
    g = config["perturb"]["gaussian"]
    return [gaussian_id(gamma, seed) for gamma in g["gammas"] for seed in g["seeds"]]


def eval_splits(config: dict) -> dict[str, str]:
    """Every evaluation task → its split (id | ood | pretrain)."""
    ev = config["evaluate"]
    out = {t: "id" for t in ev["id"]}
    for t in ev["ood"]:
        if t in out:
            raise ConfigError(f"evaluate: task {t!r} is listed in both 'id' and 'ood'")
        out[t] = "ood"
    if ev["pretrain_loss"]:
        out[PRETRAIN_TASK] = "pretrain"
    return out


def check(config: dict, basedir: str | Path = ".") -> None:
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
    eval_splits(config)
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
    if kind == "required":
        return f"{key}: {error.message}"
    return f"{key}: {error.message}"
