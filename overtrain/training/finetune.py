"""Supervised fine-tuning of one checkpoint: full or LoRA, with an optional ℓ2 pull toward the
pretrained weights, in one process or as N data-parallel processes (`python -m
overtrain.training.finetune <spec.json>` under torchrun, see overtrain.training.distributed).

A fine-tune whose loss diverges stops early and is still a result: its directory holds
meta.json (`diverged: true`, the reason, the step) and train_log.csv, but no weights.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from overtrain.provenance import code_digest
from overtrain.training.loop import file_digest, resume_dir
from overtrain.training.sft import collate, encode_examples, read_examples, replicate_seed
from overtrain.training.supervised import TrainSettings, save_diverged, split_settings, supervised_run

# Rounding the saved weights to the checkpoint's own 16-bit dtype is allowed only when it moves
# them by less than this fraction of what the run changed (else they are saved in float32).
SAVE_ROUNDING_TOLERANCE = 1e-3


@dataclass(frozen=True)
class FinetuneSpec:
    """One text fine-tune: the run (lr, seed, method, l2), the shared training settings, and
    what only text fine-tunes have (sequence length, LoRA, data parallelism)."""

    lr: float
    seed: int = 0
    method: str = "full"
    l2: float = 0.0
    train: TrainSettings = field(default_factory=TrainSettings)
    max_len: int = 1024
    lora: dict | None = None
    gradient_checkpointing: bool = False
    processes: int = 1
    parallel: str = "ddp"
    fsdp_no_sync: bool = False
    trust_remote_code: bool = False

    @classmethod
    def flat(cls, **settings) -> FinetuneSpec:
        """From one flat set of keyword settings (a TrainSettings field goes to `train`)."""
        own, train = split_settings(settings, TrainSettings())
        return cls(**own, train=train)

    @classmethod
    def from_config(cls, finetune: dict, run: dict, *, max_len: int, device: str, dtype: str, threads: int,
                    processes: int = 1, trust_remote_code: bool = False) -> FinetuneSpec:
        """From the config's `finetune` section and a parsed run id (lr, seed, method, l2)."""
        own = {f.name for f in fields(cls)} - {"train", "lr", "seed", "method", "l2", "lora"}
        return cls(**run, train=TrainSettings.from_config(finetune, device=device, dtype=dtype, threads=threads),
                   **{k: v for k, v in finetune.items() if k in own}, max_len=max_len, processes=processes,
                   trust_remote_code=trust_remote_code, lora=finetune.get("lora") if run["method"] == "lora" else None)

    @classmethod
    def from_dict(cls, d: dict) -> FinetuneSpec:
        """The inverse of dataclasses.asdict (the request a torchrun launch reads)."""
        train = {**d["train"], "betas": tuple(d["train"]["betas"])}
        return cls(**{**d, "train": TrainSettings(**train)})


def add_lora(model, lora: dict):
    """Wrap `model` with LoRA adapters (peft); only the adapters train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"], target_modules=list(lora["target_modules"]),
                        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def anchor_pull(params: list, anchor: list, strength: float):
    """The ℓ2 pull toward the pretrained weights, applied decoupled after each step (as AdamW
    applies weight decay; Adam would normalise an ℓ2 term in the loss away):
    θ ← θ₀ + (1 − lr·λ)(θ − θ₀), clipped at θ₀, in float32. λ → ∞ keeps θ = θ₀."""
    import torch

    def pull(lr: float) -> None:
        keep = max(0.0, 1.0 - lr * strength)
        with torch.no_grad():
            for p, theta0 in zip(params, anchor):
                p.copy_(theta0 + keep * (p - theta0))

    return pull


def _checkpoint_dtype(checkpoint_dir: str | Path) -> str:
    config = json.loads(Path(checkpoint_dir, "config.json").read_text())
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def save_dtype_for(state: dict, checkpoint_dir: str | Path) -> tuple[str, float]:
    """float32, or the checkpoint's own 16-bit dtype when rounding to it keeps what the run
    learned (moves the weights by < SAVE_ROUNDING_TOLERANCE × ‖θ − θ₀‖). Returns (dtype, ratio)."""
    import torch
    from safetensors import safe_open

    own = _checkpoint_dtype(checkpoint_dir)
    if own not in ("bfloat16", "float16"):
        return "float32", 0.0
    target = getattr(torch, own)
    moved = rounded = 0.0
    for path in sorted(Path(checkpoint_dir).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                if name not in state:
                    continue
                theta, theta0 = state[name].double(), f.get_tensor(name).double()
                moved += float((theta - theta0).pow(2).sum())
                rounded += float((theta.to(target).double() - theta).pow(2).sum())
    ratio = math.sqrt(rounded / moved) if moved > 0 else 0.0
    return (own if ratio < SAVE_ROUNDING_TOLERANCE else "float32"), ratio


def finetune(checkpoint_dir: str | Path, train_jsonl: str | Path, out_dir: str | Path, spec: FinetuneSpec) -> dict:
    """Fine-tune for a fixed number of steps (or epochs); the data order is drawn from `spec.seed`
    and the checkpoint's pretraining replicate (overtrain.training.sft.replicate_seed).

    Examples are visited in a fresh permutation per epoch (length-grouped batches), so `epoch`
    in the log is exact up to the grouping window. Under torchrun (WORLD_SIZE > 1) this is one
    process of a data-parallel run and only rank 0 writes.
    """
    import torch

    from overtrain.models import load_variant, save_model, set_threads
    from overtrain.training.distributed import Group, unwrap

    set_threads(spec.train.threads)
    group = Group.from_env(spec.train.device)
    # master weights in float32 whatever the checkpoint's dtype: see overtrain.training.loop
    model, tokenizer = load_variant(checkpoint_dir, trust_remote_code=spec.trust_remote_code, device=group.device,
                                    dtype="float32")
    data_meta = {}
    if Path(train_jsonl).is_dir():  # a prepared dataset: train.jsonl beside val/test and meta.json
        data_meta = json.loads(Path(train_jsonl, "meta.json").read_text())
        train_jsonl = Path(train_jsonl, "train.jsonl")
    encoded = encode_examples(tokenizer, read_examples(train_jsonl), spec.max_len)
    seed = replicate_seed(spec.seed, checkpoint_dir)
    torch.manual_seed(seed)
    if spec.method == "lora":
        model = add_lora(model, spec.lora)
    elif spec.method != "full":
        raise ValueError(f"unknown fine-tuning method {spec.method!r}; allowed: full, lora")
    if spec.gradient_checkpointing:
        unwrap(model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = group.wrap(model, spec.parallel, spec.train.dtype, spec.fsdp_no_sync)
    trainable = [p for p in model.parameters() if p.requires_grad]
    after_step = anchor_pull(trainable, [p.detach().clone() for p in trainable], spec.l2) if spec.l2 > 0 else None
    run = supervised_run(
        model, encoded, lambda part: collate(encoded, part), out_dir, lr=spec.lr, order_seed=seed, settings=spec.train,
        group=group, after_step=after_step, label=f"finetune lr={spec.lr:g}",
        fingerprint_extra={"spec": {k: v for k, v in asdict(spec).items() if k != "train"},
                           "data": file_digest(train_jsonl), "checkpoint": file_digest(Path(checkpoint_dir, "meta.json")),
                           "code": code_digest(__file__)},
    )
    meta = {
        "base_checkpoint": str(checkpoint_dir),
        "train_file": str(train_jsonl),
        "data": data_meta,
        "truncated_prompts": encoded.truncated,
        "dropped_examples": encoded.dropped,
        "method": spec.method,
        "lora": spec.lora,
        "l2": spec.l2,
        "lr": spec.lr,
        "seed": spec.seed,
        "max_length": spec.max_len,
        "processes": group.world,
        "parallel": spec.parallel if group.world > 1 else None,
        "gradient_checkpointing": spec.gradient_checkpointing,
        **run.describe(),
    }
    if run.diverged is not None:
        if group.is_main:
            save_diverged(out_dir, meta, run)
    elif spec.method == "lora":
        if group.is_main:
            save_model(unwrap(model), tokenizer, out_dir, {**meta, "saved_dtype": "float32"},
                       {"train_log.csv": run.log_text()})
    else:
        state = group.full_model_state(model)
        if group.is_main:
            saved_dtype, ratio = save_dtype_for(state, checkpoint_dir)
            if saved_dtype != "float32":
                state = {k: v.to(getattr(torch, saved_dtype)) if v.is_floating_point() else v for k, v in state.items()}
            meta.update(saved_dtype=saved_dtype, save_rounding_ratio=ratio)
            save_model(unwrap(model), tokenizer, out_dir, meta, {"train_log.csv": run.log_text()}, state_dict=state)
    if group.is_main:
        run.resume.clear()
    group.barrier()
    group.close()
    return meta


def main(argv: list[str]) -> None:
    """`python -m overtrain.training.finetune <request.json>`: one process of a torchrun launch."""
    request = json.loads(Path(argv[0]).read_text())
    finetune(request["checkpoint"], request["data"], request["out"], FinetuneSpec.from_dict(request["spec"]))


def run(checkpoint_dir: str | Path, train_jsonl: str | Path, out_dir: str | Path, spec: FinetuneSpec) -> dict:
    """Fine-tune in this process, or launch `spec.processes` data-parallel processes."""
    if spec.processes <= 1:
        return finetune(checkpoint_dir, train_jsonl, out_dir, spec)
    from overtrain.atomic import atomic_write_json
    from overtrain.training.distributed import launch

    request = Path(str(resume_dir(out_dir)) + ".request.json")
    atomic_write_json(request, {"checkpoint": str(checkpoint_dir), "data": str(train_jsonl), "out": str(out_dir),
                                "spec": asdict(spec)})
    try:
        launch("overtrain.training.finetune", [str(request)], spec.processes)
    finally:
        request.unlink(missing_ok=True)
    return json.loads(Path(out_dir, "meta.json").read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
