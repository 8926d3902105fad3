"""Every result JSON of an evaluation job is written here, and says how it was made: the labels
of what was measured, a status, the package versions, and for a result a model computed, where
and how that model ran (device, dtype, batch size, threads; the GPU's name). CPU-float32 and
GPU-bfloat16 numbers of one model must never mix unseen: overtrain.analysis.tables refuses it."""

from __future__ import annotations

import json
import math
from pathlib import Path

NON_FINITE = "non_finite"  # JSON pointer → "inf" | "-inf" | "nan", for each value written as null


def checkpoint_labels(checkpoint_dir: str | Path) -> dict:
    """What every result of a checkpoint carries: its pretraining tokens, its parameters (what
    tokens per parameter divide by) and, for the controlled study, its pretraining replicate."""
    from overtrain.integrity import parameter_count

    meta = json.loads(Path(checkpoint_dir, "meta.json").read_text())
    parameters = meta.get("n_parameters") or parameter_count(checkpoint_dir)
    return {"tokens": meta["tokens"], "parameters": parameters, "pretrain_seed": meta.get("pretrain_seed")}


def runtime_info(model, batch_size: int | str | None) -> dict:
    """Where and how a model ran: its parameters' device and dtype, the batch size, the threads."""
    import torch

    param = next(model.parameters())
    info = {"device": str(param.device), "dtype": str(param.dtype).removeprefix("torch."),
            "batch_size": batch_size, "threads": torch.get_num_threads()}
    if param.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(param.device)
    return info


def write_result(out_json: str | Path, labels: dict, status: str, *, model=None, batch_size: int | str | None = None,
                 **content) -> dict:
    """Write {labels, status, content, versions, runtime (given the model)} atomically; returns it."""
    from overtrain.atomic import atomic_write_json
    from overtrain.provenance import package_versions

    result = {**labels, "status": status, **content, "versions": package_versions()}
    if model is not None:
        result["runtime"] = runtime_info(model, batch_size)
    atomic_write_json(out_json, strict(result))
    return result


def strict(obj) -> dict:
    """`obj` as strict JSON (RFC 8259 has no NaN or Infinity): every non-finite number becomes null
    and obj[NON_FINITE] says, by JSON pointer, what it was (an exploded model's loss is inf, a
    diverged one's NaN): read_result restores them, so metrics.csv shows them as before."""
    found: dict[str, str] = {}

    def walk(x, pointer: str):
        if isinstance(x, float) and not math.isfinite(x):
            found[pointer] = "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
            return None
        if isinstance(x, dict):
            return {k: walk(v, f"{pointer}/{str(k).replace('~', '~0').replace('/', '~1')}") for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v, f"{pointer}/{i}") for i, v in enumerate(x)]
        return x

    out = walk(obj, "")
    if found:
        out[NON_FINITE] = found
    return out


def read_result(path: str | Path) -> dict:
    """A result JSON, strictly parsed, with its non-finite numbers restored (see strict)."""
    def refuse(constant: str):
        raise ValueError(f"{path}: {constant} is not JSON; results are written strictly (overtrain.evaluation.results)")

    result = json.loads(Path(path).read_text(), parse_constant=refuse)
    for pointer, what in result.pop(NON_FINITE, {}).items():
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        node = result
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = float(what)
    return result
