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
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from overtrain.provenance import code_digest
from overtrain.training.loop import (
    DivergenceGuard,
    Precision,
    Resume,
    file_digest,
    fingerprint,
    learning_rate,
    log_csv,
    make_optimizer,
    resume_dir,
    run_steps,
    warmup_steps_for,
)
from overtrain.training.sft import (
    batch_order,
    collate,
    encode_examples,
    finetune_steps,
    read_examples,
    replicate_seed,
    split_micro,
)

# Rounding the saved weights to the checkpoint's own 16-bit dtype is allowed only when it moves
# them by less than this fraction of what the run changed (else they are saved in float32).
SAVE_ROUNDING_TOLERANCE = 1e-3


@dataclass(frozen=True)
class FinetuneSpec:
    """One fine-tune: the run (lr, seed, method, l2) and the config's finetune/compute settings."""

    lr: float
    seed: int = 0
    method: str = "full"
    l2: float = 0.0
    steps: int | None = 60
    epochs: float | None = None
    batch_size: int = 16
    grad_accum: int = 1
    max_len: int = 1024
    warmup_steps: int = 20
    schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.95)
    lora: dict | None = None
    save_every: int = 0
    group_by_length: bool = True
    divergence_factor: float = 3.0
    gradient_checkpointing: bool = False
    processes: int = 1
    parallel: str = "ddp"
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    trust_remote_code: bool = False

    @classmethod
    def from_config(cls, finetune: dict, run: dict, *, max_len: int, device: str, dtype: str, threads: int,
                    processes: int = 1, trust_remote_code: bool = False) -> FinetuneSpec:
        """From the config's `finetune` section and a parsed run id (lr, seed, method, l2)."""
        keys = {f.name for f in fields(cls)}
        settings = {k: v for k, v in finetune.items() if k in keys}
        settings["betas"] = tuple(settings.get("betas", (0.9, 0.95)))
        return cls(**{**settings, **run, "max_len": max_len, "device": device, "dtype": dtype, "threads": threads,
                      "processes": processes, "trust_remote_code": trust_remote_code,
                      "lora": finetune.get("lora") if run["method"] == "lora" else None})


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
    import os

    import torch

    from overtrain.atomic import atomic_directory, atomic_write_json
    from overtrain.models import load_variant, save_model, set_threads
    from overtrain.provenance import package_versions
    from overtrain.training.distributed import Group, unwrap

    set_threads(spec.threads)
    dist = Group.from_env(spec.device) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    device = dist.device if dist else spec.device
    precision = Precision(device, spec.dtype)
    main = dist is None or dist.is_main
    world, rank = (dist.world, dist.rank) if dist else (1, 0)
    if spec.batch_size % (world * spec.grad_accum):
        raise ValueError(f"finetune.batch_size={spec.batch_size} is not divisible by processes × grad_accum = "
                         f"{world} × {spec.grad_accum}")
    # master weights in float32 whatever the checkpoint's dtype: see overtrain.training.loop
    model, tokenizer = load_variant(checkpoint_dir, trust_remote_code=spec.trust_remote_code, device=device,
                                    dtype="float32")
    data_meta = {}
    if Path(train_jsonl).is_dir():  # a prepared dataset: train.jsonl beside val/test and meta.json
        data_meta = json.loads(Path(train_jsonl, "meta.json").read_text())
        train_jsonl = Path(train_jsonl, "train.jsonl")
    encoded = encode_examples(tokenizer, read_examples(train_jsonl), spec.max_len)
    n = len(encoded.ids)
    total = finetune_steps(n, spec.batch_size, spec.steps, spec.epochs)
    seed = replicate_seed(spec.seed, checkpoint_dir)
    order = batch_order(encoded.lengths, spec.batch_size, total, seed, spec.group_by_length)
    torch.manual_seed(seed)
    if spec.method == "lora":
        model = add_lora(model, spec.lora)
    elif spec.method != "full":
        raise ValueError(f"unknown fine-tuning method {spec.method!r}; allowed: full, lora")
    if spec.gradient_checkpointing:
        unwrap(model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if dist is not None:
        model = dist.wrap(model, spec.parallel, spec.dtype)
    trainable = [p for p in model.parameters() if p.requires_grad]
    after_step = anchor_pull(trainable, [p.detach().clone() for p in trainable], spec.l2) if spec.l2 > 0 else None

    def micro_batches(step: int) -> list[dict]:
        mine = split_micro(order[step], world)[rank]
        return [collate(encoded, part) for part in split_micro(mine, spec.grad_accum)]

    warmup = warmup_steps_for(total, spec.warmup_steps) if spec.warmup_steps else 0
    opt = make_optimizer(model, spec.lr, spec.weight_decay, spec.betas)
    resume = Resume(
        resume_dir(out_dir),
        spec.save_every,
        fingerprint(spec={k: v for k, v in asdict(spec).items() if k not in ("save_every", "threads")},
                    world=world, data=file_digest(train_jsonl),
                    checkpoint=file_digest(Path(checkpoint_dir, "meta.json")),
                    code=code_digest(__file__)),
    )
    log: list[dict] = []
    diverged = run_steps(
        model, opt, micro_batches, lambda s: learning_rate(s, total, spec.lr, spec.schedule, warmup), 0, total,
        grad_clip=spec.grad_clip, log=log, precision=precision, resume=resume, after_step=after_step,
        guard=DivergenceGuard.for_run(spec.divergence_factor, total), dist=dist, label=f"finetune lr={spec.lr:g}",
    )
    for row in log:
        row["epoch"] = row["step"] * spec.batch_size / n
    meta = {
        "base_checkpoint": str(checkpoint_dir),
        "train_file": str(train_jsonl),
        "data": data_meta,
        "n_examples": n,
        "truncated_prompts": encoded.truncated,
        "dropped_examples": encoded.dropped,
        "method": spec.method,
        "lora": spec.lora,
        "l2": spec.l2,
        "lr": spec.lr,
        "steps": total,
        "epochs": total * spec.batch_size / n,
        "batch_size": spec.batch_size,
        "grad_accum": spec.grad_accum,
        "max_length": spec.max_len,
        "warmup_steps": warmup,
        "schedule": spec.schedule,
        "weight_decay": spec.weight_decay,
        "seed": spec.seed,
        "order_seed": seed,
        "processes": world,
        "parallel": spec.parallel if world > 1 else None,
        "gradient_checkpointing": spec.gradient_checkpointing,
        "group_by_length": spec.group_by_length,
        **precision.describe(),
        "threads": spec.threads,
        "final_train_loss": log[-1]["loss"] if log else None,
        "diverged": diverged is not None,
    }
    log_text = log_csv(log, ["step", "epoch", "lr", "loss"])
    if diverged is not None:
        meta.update(diverged_reason=diverged, diverged_at_step=log[-1]["step"])
        if main:
            with atomic_directory(out_dir) as tmp:
                atomic_write_json(tmp / "meta.json", {**meta, "versions": package_versions()})
                (tmp / "train_log.csv").write_text(log_text)
    elif spec.method == "lora":
        if main:
            save_model(unwrap(model), tokenizer, out_dir, {**meta, "saved_dtype": "float32"}, {"train_log.csv": log_text})
    else:
        state = dist.full_model_state(model) if dist else unwrap(model).state_dict()
        if main:
            saved_dtype, ratio = save_dtype_for(state, checkpoint_dir)
            if saved_dtype != "float32":
                state = {k: v.to(getattr(torch, saved_dtype)) if v.is_floating_point() else v for k, v in state.items()}
            meta.update(saved_dtype=saved_dtype, save_rounding_ratio=ratio)
            save_model(unwrap(model), tokenizer, out_dir, meta, {"train_log.csv": log_text}, state_dict=state)
    if main:
        resume.clear()
    if dist is not None:
        dist.barrier()
        dist.close()
    return meta


def main(argv: list[str]) -> None:
    """`python -m overtrain.training.finetune <request.json>`: one process of a torchrun launch."""
    request = json.loads(Path(argv[0]).read_text())
    spec = request["spec"]
    spec["betas"] = tuple(spec["betas"])
    finetune(request["checkpoint"], request["data"], request["out"], FinetuneSpec(**spec))


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
