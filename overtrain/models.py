"""Building, saving and loading the models every stage works on.

All stages load a model variant the same way (`load_variant`): a checkpoint directory, optionally
replaced by a fine-tuned directory, optionally perturbed in memory. Weights come from
safetensors only and remote code stays off unless the caller opts in.
"""

from __future__ import annotations

import json
from pathlib import Path

from overtrain.atomic import atomic_directory, atomic_write_json
from overtrain.provenance import package_versions


def set_threads(threads: int) -> None:
    """Pin intra-op threads: the same seed and thread count give bit-identical results on CPU."""
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def make_llama(
    vocab_size: int,
    hidden: int,
    layers: int,
    heads: int,
    intermediate: int,
    max_len: int,
    init_std: float,
    seed: int,
    bos_id: int = 1,
    eos_id: int = 2,
    pad_id: int = 0,
):
    """A freshly initialised Llama-family causal LM with untied embeddings."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_len,
        tie_word_embeddings=False,
        initializer_range=init_std,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def save_model(
    model,
    tokenizer,
    out_dir: str | Path,
    meta: dict,
    extra_files: dict[str, str] | None = None,
    state_dict: dict | None = None,
    extra_tensors: dict[str, dict] | None = None,
) -> None:
    """Save model (safetensors) + tokenizer + meta.json (+ text files) into `out_dir`, atomically.

    `state_dict` replaces the model's own tensors (a gathered FSDP state, or a dtype-cast copy);
    `extra_tensors` are further safetensors files beside it (a LLaVA projector).
    meta.json records each weight file's sha256, size and time (checked by every later load);
    a save that would not fit on the disk is refused before it starts.
    """
    from overtrain import integrity

    tensors = state_dict.values() if state_dict is not None else model.state_dict().values()
    needed = sum(t.numel() * t.element_size() for t in tensors if hasattr(t, "numel"))
    integrity.require_space(Path(out_dir).parent, int(needed * 1.1) + (1 << 20), f"saving {out_dir}")
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        for name, tensors in (extra_tensors or {}).items():
            from safetensors.torch import save_file

            save_file(tensors, str(tmp / name))
        weights = integrity.record(tmp)
        atomic_write_json(tmp / "meta.json", {**meta, "weights": weights, "versions": package_versions()})
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)


def require_safetensors(model_dir: str | Path) -> None:
    """Refuse directories that only carry pickled weights: unpickling can run arbitrary code."""
    d = Path(model_dir)
    if any(d.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in d.glob("*.bin")) + sorted(p.name for p in d.glob("*.pt"))
    raise ValueError(
        f"{d}: no *.safetensors weights found"
        + (f" (only pickled files {pickled})" if pickled else "")
        + ". overtrain loads weights from safetensors only; convert the checkpoint to "
        "safetensors (e.g. save_pretrained(safe_serialization=True)) before using it."
    )


def recorded_weights(model_dir: str | Path) -> dict | None:
    """The weight files' sha256/size/time that meta.json recorded when the directory was made."""
    meta = Path(model_dir, "meta.json")
    return json.loads(meta.read_text()).get("weights") if meta.exists() else None


def load_model(model_dir: str | Path, trust_remote_code: bool = False, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM

    from overtrain import integrity

    require_safetensors(model_dir)
    integrity.verify(model_dir, recorded_weights(model_dir))
    return AutoModelForCausalLM.from_pretrained(
        str(model_dir),
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
        dtype=getattr(torch, dtype),
    )


def load_tokenizer(model_dir: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)


class NoGPUError(RuntimeError):
    """A job meant for a GPU found none: never fall back to a CPU run of a large model."""


def resolve_device(device: str = "auto", dtype: str = "auto", gpus: int = 0) -> tuple[str, str]:
    """auto → CUDA (bfloat16) when a GPU is visible, else CPU (float32).

    A job that asks for a GPU (`device: cuda`, or `auto` with `gpus_per_job > 0`) and sees none
    fails with a clear message instead of running for days on the CPU.
    """
    import os

    import torch

    has_gpu = torch.cuda.is_available()
    if device == "cuda" or (device == "auto" and gpus > 0):
        if not has_gpu:
            raise NoGPUError(
                f"compute.device={device!r} (gpus_per_job={gpus}) but this job sees no GPU "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}). Check the "
                "job's GPU request (the SLURM gpu resource, drivers), or set compute.device: cpu to run on the CPU."
            )
        device = "cuda"
    elif device == "auto":
        device = "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    return device, dtype


def load_variant(
    checkpoint_dir: str | Path,
    finetuned_dir: str | Path | None = None,
    perturbation: dict | None = None,
    trust_remote_code: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
):
    """The one way to get (model, tokenizer) for a variant.

    `perturbation` is applied in memory (see overtrain.perturb.apply), so perturbed copies are
    never written: at OLMo scale each copy would be gigabytes.
    """
    source = finetuned_dir or checkpoint_dir
    if finetuned_dir is not None and Path(finetuned_dir, "adapter_config.json").exists():
        # A LoRA fine-tune stores only its adapter: rebuild base + adapter and merge in float32
        # (merging into bf16 weights would round a small ΔW away), then cast.
        import torch
        from peft import PeftModel

        from overtrain import integrity

        require_safetensors(finetuned_dir)
        integrity.verify(finetuned_dir, recorded_weights(finetuned_dir))
        base = load_model(checkpoint_dir, trust_remote_code=trust_remote_code, dtype="float32")
        model = PeftModel.from_pretrained(base, str(finetuned_dir)).merge_and_unload().to(getattr(torch, dtype))
    else:
        model = load_model(source, trust_remote_code=trust_remote_code, dtype=dtype)
    model.to(device)
    tokenizer = load_tokenizer(source, trust_remote_code=trust_remote_code)
    if perturbation:
        from overtrain.perturb import apply

        apply(model, perturbation)
    model.eval()
    return model, tokenizer


def n_parameters(model, non_embedding: bool = False) -> int:
    total = sum(p.numel() for p in model.parameters())
    if non_embedding:
        total -= model.get_input_embeddings().weight.numel()
        total -= model.get_output_embeddings().weight.numel()
    return total
