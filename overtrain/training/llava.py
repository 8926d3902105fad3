"""LLaVA-style multimodal fine-tuning of a language checkpoint (Springer et al. 2025, §3.4.2).

A checkpoint becomes a vision-language model through transformers' LLaVA classes: a frozen
vision tower (a CLIP vision model: the hub's, or a tiny one trained here on the synthetic
images) → a two-layer projector → the language model, with an ``<image>`` token whose positions
take the projected patch features. The LLaVA recipe's two stages:

1. `projector`: only the projector trains, on captions (LLaVA-Pretrain's role; overtrain.sources.images
   says what a caption is in the synthetic language);
2. `full`: projector + language model train, on visual instructions (LLaVA-665K's role), at the
   learning rate of the study's grid.

A stage-2 fine-tune is saved as an ordinary causal LM directory (the language model, with the
``<image>`` row in its vocabulary) plus `projector.safetensors`, so every text evaluation of the
DAG (held-out pretraining loss, other tasks' tests) applies unchanged; overtrain.evaluation.multimodal
scores the image-conditioned tasks. The same training loop as every fine-tune (overtrain.training.loop).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from overtrain.provenance import code_digest
from overtrain.training.loop import (
    IGNORE,
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
from overtrain.training.sft import Encoded, batch_order, encode_examples, finetune_steps, replicate_seed, split_micro
from overtrain.training.sft import collate as text_collate
from overtrain.training.vision import load_vision

IMAGE_TOKEN = "<image>"
PROJECTOR_FILE = "projector.safetensors"
LLAVA_FILE = "llava.json"
# --- composing the vision-language model ---------------------------------------------------------

def add_image_token(lm, tokenizer) -> int:
    """Add ``<image>`` to the vocabulary (once); its embedding rows start at the mean of the others
    (deterministic; the input row is never used: image features replace it). Returns its id."""
    import torch
    from tokenizers import AddedToken

    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)])
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    old = lm.get_input_embeddings().weight.shape[0]
    if image_id >= old:
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            for emb in (lm.get_input_embeddings(), lm.get_output_embeddings()):
                emb.weight[old:] = emb.weight[:old].mean(0)
    return image_id


def n_image_tokens(vision_config, select: str) -> int:
    """Positions an image takes in the sequence: its patches (+ the class token with 'full')."""
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    return patches + (1 if select == "full" else 0)


def compose(lm, vision, image_token_id: int, feature_layer: int, select: str, seed: int = 0):
    """A LlavaForConditionalGeneration holding `lm` and `vision`; the projector drawn from `seed`."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(vision_config=vision.config, text_config=lm.config, image_token_id=image_token_id,
                         vision_feature_layer=feature_layer, vision_feature_select_strategy=select,
                         image_seq_length=n_image_tokens(vision.config, select), projector_hidden_act="gelu")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).to(next(lm.parameters()).dtype)
    # get_decoder / get_output_embeddings: the same for Llama, OLMo and GPT-NeoX (Pythia)
    model.model.language_model.load_state_dict(lm.get_decoder().state_dict())
    model.lm_head.load_state_dict(lm.get_output_embeddings().state_dict())
    model.model.vision_tower.load_state_dict(vision.state_dict())
    return model


def projector_state(model) -> dict:
    return {k: v.detach().contiguous() for k, v in model.model.multi_modal_projector.state_dict().items()}


def load_projector(model, directory: str | Path) -> None:
    from safetensors.torch import load_file

    from overtrain import integrity
    from overtrain.models import recorded_weights

    integrity.verify(directory, recorded_weights(directory))
    model.model.multi_modal_projector.load_state_dict(load_file(str(Path(directory, PROJECTOR_FILE))))


def language_model(model, config):
    """The composed model's language model as a causal LM of the checkpoint's own class."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_config(config)
    lm.get_decoder().load_state_dict(model.model.language_model.state_dict())
    lm.get_output_embeddings().load_state_dict(model.lm_head.state_dict())
    return lm


# --- data ----------------------------------------------------------------------------------------

@dataclass
class ImageExamples(Encoded):
    """overtrain.training.sft's encoded examples with the image's positions after <bos>, and the images."""

    images: list = field(default_factory=list)


def encode(tokenizer, rows, image_token_id: int, n_image: int, max_len: int) -> ImageExamples:
    """`rows` (image, prompt, completion) → ids ``<bos> <image>×n prompt completion``, loss on the
    completion (prompts cut from the left, too-long responses dropped: overtrain.training.sft)."""
    rows = list(rows)
    enc = encode_examples(tokenizer, [(r["prompt"], r["completion"]) for r in rows], max_len - n_image)
    nb = 1 if tokenizer.bos_token_id is not None else 0
    image = [image_token_id] * n_image
    ids = [x[:nb] + image + x[nb:] for x in enc.ids]
    labels = [y[:nb] + [IGNORE] * n_image + y[nb:] for y in enc.labels]
    return ImageExamples(ids, labels, enc.pad_id, enc.truncated, enc.dropped, kept=enc.kept,
                         images=[rows[i]["image"] for i in enc.kept])


def collate(examples: ImageExamples, indices, processor) -> dict:
    """overtrain.training.sft's right-padded ids/labels/mask, and the images' pixel values."""
    pixels = processor(images=[examples.images[i] for i in indices], return_tensors="pt")["pixel_values"]
    return {**text_collate(examples, indices), "pixel_values": pixels}


# --- the two stages ------------------------------------------------------------------------------

@dataclass(frozen=True)
class LlavaSpec:
    """One stage of the LLaVA recipe: `projector` (stage 1) or `full` (stage 2)."""

    stage: str
    lr: float
    seed: int = 0
    steps: int | None = 60
    epochs: float | None = None
    batch_size: int = 16
    grad_accum: int = 1
    warmup_steps: int = 0
    schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.95)
    max_len: int = 64
    feature_layer: int = -1
    select: str = "default"
    divergence_factor: float = 3.0
    save_every: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    trust_remote_code: bool = False


def build(checkpoint_dir, vision_dir, spec: LlavaSpec, projector_dir=None, finetuned_dir=None):
    """(model, tokenizer, processor, image token id) of a checkpoint (or a stage-2 fine-tune)."""
    from overtrain.models import load_model, load_tokenizer

    source = finetuned_dir or checkpoint_dir
    lm = load_model(source, trust_remote_code=spec.trust_remote_code, dtype="float32")
    tokenizer = load_tokenizer(source, trust_remote_code=spec.trust_remote_code)
    image_id = add_image_token(lm, tokenizer)
    vision, processor = load_vision(vision_dir)  # overtrain.training.vision
    model = compose(lm, vision, image_id, spec.feature_layer, spec.select, spec.seed)
    if projector_dir is not None:
        load_projector(model, projector_dir)
    return model, tokenizer, processor, image_id


def train(checkpoint_dir: str | Path, vision_dir: str | Path, data_dir: str | Path, split: str,
          out_dir: str | Path, spec: LlavaSpec, projector_dir: str | Path | None = None) -> dict:
    """One stage on `split` of the data; saves the projector (stage 1) or the language model +
    projector (stage 2). A diverged stage 2 is saved as meta.json + train_log.csv, no weights."""
    import torch

    from overtrain import integrity
    from overtrain.atomic import atomic_directory, atomic_write_json
    from overtrain.models import save_model, set_threads
    from overtrain.provenance import package_versions
    from overtrain.sources.images import load_split

    if spec.stage not in ("projector", "full"):
        raise ValueError(f"unknown LLaVA stage {spec.stage!r}; allowed: projector, full")
    set_threads(spec.threads)
    precision = Precision(spec.device, spec.dtype)
    run_seed = spec.seed
    spec = replace(spec, seed=replicate_seed(spec.seed, checkpoint_dir))  # as text fine-tunes draw theirs
    model, tokenizer, processor, image_id = build(checkpoint_dir, vision_dir, spec, projector_dir)
    model.to(spec.device)
    for name, p in model.named_parameters():
        p.requires_grad = "multi_modal_projector" in name or (spec.stage == "full" and "vision_tower" not in name)
    rows = load_split(data_dir, split)
    examples = encode(tokenizer, rows, image_id, n_image_tokens(model.config.vision_config, spec.select),
                      spec.max_len)
    n = len(examples.ids)
    total = finetune_steps(n, spec.batch_size, spec.steps, spec.epochs)
    order = batch_order(examples.lengths, spec.batch_size, total, spec.seed)
    torch.manual_seed(spec.seed)
    warmup = warmup_steps_for(total, spec.warmup_steps) if spec.warmup_steps else 0
    opt = make_optimizer(model, spec.lr, spec.weight_decay, spec.betas)
    resume = Resume(resume_dir(out_dir), spec.save_every, fingerprint(
        spec={k: v for k, v in asdict(spec).items() if k not in ("save_every", "threads")},
        data=file_digest(Path(data_dir, f"{split}.parquet")), checkpoint=file_digest(Path(checkpoint_dir, "meta.json")),
        vision=file_digest(Path(vision_dir, "meta.json")),
        projector=file_digest(Path(projector_dir, "meta.json")) if projector_dir else None,
        code=code_digest(__file__)))
    log: list[dict] = []
    if spec.batch_size % spec.grad_accum:
        raise ValueError(f"batch_size={spec.batch_size} is not divisible by grad_accum={spec.grad_accum}")

    def micro_batches(step: int) -> list[dict]:
        return [collate(examples, part, processor) for part in split_micro(order[step], spec.grad_accum)]

    diverged = run_steps(model, opt, micro_batches,
                         lambda s: learning_rate(s, total, spec.lr, spec.schedule, warmup), 0, total,
                         grad_clip=spec.grad_clip, log=log, precision=precision, resume=resume,
                         guard=DivergenceGuard.for_run(spec.divergence_factor, total),
                         label=f"llava {spec.stage} lr={spec.lr:g}")
    for row in log:
        row["epoch"] = row["step"] * spec.batch_size / n
    meta = {"method": "llava", "stage": spec.stage, "base_checkpoint": str(checkpoint_dir),
            "vision": str(vision_dir), "projector_from": str(projector_dir) if projector_dir else None,
            "data": str(data_dir), "split": split, "n_examples": n, "dropped_examples": examples.dropped,
            "lr": spec.lr, "seed": run_seed, "order_seed": spec.seed, "steps": total, "epochs": total * spec.batch_size / n,
            "batch_size": spec.batch_size, "grad_accum": spec.grad_accum, "warmup_steps": warmup, "schedule": spec.schedule,
            "feature_layer": spec.feature_layer, "select": spec.select, "image_token_id": image_id,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            **precision.describe(), "threads": spec.threads,
            "final_train_loss": log[-1]["loss"] if log else None, "diverged": diverged is not None}
    log_text = log_csv(log, ["step", "epoch", "lr", "loss"])
    projector = {k: v.cpu() for k, v in projector_state(model).items()}
    llava = {"feature_layer": spec.feature_layer, "select": spec.select, "image_token_id": image_id}
    if diverged is not None:
        meta.update(diverged_reason=diverged, diverged_at_step=log[-1]["step"])
        with atomic_directory(out_dir) as tmp:
            atomic_write_json(tmp / "meta.json", {**meta, "versions": package_versions()})
            (tmp / "train_log.csv").write_text(log_text)
    elif spec.stage == "projector":
        from safetensors.torch import save_file

        with atomic_directory(out_dir) as tmp:
            save_file(projector, str(tmp / PROJECTOR_FILE))
            atomic_write_json(tmp / LLAVA_FILE, llava)
            atomic_write_json(tmp / "meta.json", {**meta, "weights": integrity.record(tmp),
                                                  "versions": package_versions()})
            (tmp / "train_log.csv").write_text(log_text)
    else:
        lm = language_model(model.cpu(), model.config.text_config)
        save_model(lm, tokenizer, out_dir, {**meta, "saved_dtype": "float32"},
                   {"train_log.csv": log_text, LLAVA_FILE: json.dumps(llava, indent=1)},
                   extra_tensors={PROJECTOR_FILE: projector})
    resume.clear()
    return meta
