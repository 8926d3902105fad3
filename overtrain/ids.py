"""The ids in the workflow's paths and wildcards, with their parsers: a fine-tuning run
(`full-lr0.001-s0`), a connectivity group (a run without its seed), a pretraining checkpoint
(`tok125000-s0`) and a variant's evaluation (`base`, `ft-<task>-<run>`, or a perturbation id
from overtrain.perturb's registry). The Snakefile's wildcard constraints are these patterns.
Standard library only."""

from __future__ import annotations

import re

METHODS = ("full", "lora", "llava")
NUMBER = r"[0-9.e+-]+"
TASK = r"[A-Za-z0-9_]+"
GROUP_PATTERN = rf"(?P<method>{'|'.join(METHODS)})-lr(?P<lr>{NUMBER}?)(?:-l2(?P<l2>{NUMBER}?))?"
RUN_PATTERN = rf"{GROUP_PATTERN}-s(?P<seed>[0-9]+)"
CKPT_PATTERN = r"tok(?P<budget>[0-9]+)-s(?P<seed>[0-9]+)"
STABLE_SUFFIX = "-stable"  # the companion model of a controlled model's stable checkpoints


def unnamed(pattern: str, methods: tuple[str, ...] = METHODS) -> str:
    """A pattern without its group names (Snakemake's wildcard constraints take plain regexes),
    for some of the methods: `unnamed(RUN_PATTERN, ('full', 'lora'))`."""
    plain = re.sub(r"\(\?P<\w+>", "(", pattern)
    return plain.replace(f"({'|'.join(METHODS)})", f"({'|'.join(methods)})")


def fmt(x: float | int) -> str:
    """The canonical text of a number in a file name: 0.001, 3e-05, 125000."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def group_id(lr: float, method: str = "full", l2: float = 0.0) -> str:
    """'full-lr0.001' (an ℓ2 pull adds '-l2<λ>'): the fine-tunes of one setting, every seed."""
    reg = f"-l2{fmt(float(l2))}" if l2 else ""
    return f"{method}-lr{fmt(float(lr))}{reg}"


def run_id(lr: float, seed: int, method: str = "full", l2: float = 0.0) -> str:
    """'full-lr0.001-s0': one fine-tune, its group and its seed."""
    return f"{group_id(lr, method, l2)}-s{seed}"


def _settings(m: re.Match) -> dict:
    return {"method": m["method"], "lr": float(m["lr"]), "l2": float(m["l2"]) if m["l2"] else 0.0}


def parse_group_id(group: str) -> dict:
    """'full-lr0.001-l210' → {method, lr, l2}."""
    m = re.fullmatch(GROUP_PATTERN, group)
    if not m:
        raise ValueError(f"bad group id {group!r}; expected <{'|'.join(METHODS)}>-lr<lr>[-l2<λ>]")
    return _settings(m)


def parse_run_id(run: str) -> dict:
    """'full-lr0.001-s0' → {method, lr, l2, seed}."""
    m = re.fullmatch(RUN_PATTERN, run)
    if not m:
        raise ValueError(f"bad run id {run!r}; expected <{'|'.join(METHODS)}>-lr<lr>[-l2<λ>]-s<seed>")
    return {**_settings(m), "seed": int(m["seed"])}


def pretrain_ckpt_id(budget: int, seed: int = 0) -> str:
    """'tok125000-s0': a pretraining budget and its pretraining seed (a replicate of the study)."""
    return f"tok{budget}-s{seed}"


def parse_pretrain_ckpt(ckpt: str) -> tuple[int, int]:
    """'tok125000-s2' → (125000, 2)."""
    m = re.fullmatch(CKPT_PATTERN, ckpt)
    if not m:
        raise ValueError(f"bad pretraining checkpoint id {ckpt!r}; expected tok<budget>-s<seed>")
    return int(m["budget"]), int(m["seed"])


def finetuned_variant(task: str, run: str) -> str:
    """'ft-synth_ft-full-lr0.001-s0': a fine-tune's evaluation (and judgment) id."""
    return f"ft-{task}-{run}"


def parse_variant(variant: str) -> dict:
    """'base' or 'ft-<task>-<run>' (a fine-tune) → its labels in metrics.csv."""
    if variant == "base":
        return {"variant": "base"}
    m = re.fullmatch(rf"ft-(?P<task>{TASK})-(?P<run>{unnamed(RUN_PATTERN)})", variant)
    if not m:
        raise ValueError(f"bad variant {variant!r}; expected base or ft-<task>-<run>")
    run = parse_run_id(m["run"])
    return {"variant": "finetuned", "ft_task": m["task"], "ft_method": run["method"], "lr": run["lr"],
            "l2": run["l2"], "seed": run["seed"]}
