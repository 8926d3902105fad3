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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from overtrain.provenance import code_digest
from overtrain.training.loop import IGNORE, file_digest
from overtrain.training.sft import Encoded, encode_examples, replicate_seed
from overtrain.training.sft import collate as text_collate
from overtrain.training.supervised import TrainSettings, save_diverged, split_settings, supervised_run
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
    """One stage of the LLaVA recipe: `projector` (stage 1) or `full` (stage 2), with the shared
    training settings (stage 1 has no warmup unless its config says so)."""

    stage: str
    lr: float
    seed: int = 0
    train: TrainSettings = field(default_factory=lambda: TrainSettings(warmup_steps=0))
    max_len: int = 64
    feature_layer: int = -1
    select: str = "default"
    trust_remote_code: bool = False

    @classmethod
    def flat(cls, **settings) -> LlavaSpec:
        """From one flat set of keyword settings (a TrainSettings field goes to `train`)."""
        own, train = split_settings(settings, TrainSettings(warmup_steps=0))
        return cls(**own, train=train)


def build(checkpoint_dir, vision_dir, spec: LlavaSpec, projector_dir=None, finetuned_dir=None, dtype: str = "float32",
          seed: int | None = None):
    """(model, tokenizer, processor, image token id) of a checkpoint (or a stage-2 fine-tune),
    in `dtype`; the projector drawn from `seed` (default: the spec's) unless loaded."""
    from overtrain.models import load_model, load_tokenizer

    source = finetuned_dir or checkpoint_dir
    lm = load_model(source, trust_remote_code=spec.trust_remote_code, dtype=dtype)
    tokenizer = load_tokenizer(source, trust_remote_code=spec.trust_remote_code)
    image_id = add_image_token(lm, tokenizer)
    vision, processor = load_vision(vision_dir, dtype)  # overtrain.training.vision
    model = compose(lm, vision, image_id, spec.feature_layer, spec.select, spec.seed if seed is None else seed)
    if projector_dir is not None:
        load_projector(model, projector_dir)
    return model, tokenizer, processor, image_id


def train(checkpoint_dir: str | Path, vision_dir: str | Path, data_dir: str | Path, split: str,
          out_dir: str | Path, spec: LlavaSpec, projector_dir: str | Path | None = None) -> dict:
    """One stage on `split` of the data; saves the projector (stage 1) or the language model +
    projector (stage 2). A diverged stage 2 is saved as meta.json + train_log.csv, no weights.
    Float32 master weights (overtrain.training.loop), as every fine-tune."""
    import torch

    from overtrain import integrity
    from overtrain.atomic import atomic_directory, atomic_write_json
    from overtrain.models import save_model, set_threads
    from overtrain.provenance import package_versions
    from overtrain.sources.images import load_split

    if spec.stage not in ("projector", "full"):
        raise ValueError(f"unknown LLaVA stage {spec.stage!r}; allowed: projector, full")
    set_threads(spec.train.threads)
    seed = replicate_seed(spec.seed, checkpoint_dir)  # as text fine-tunes draw theirs
    model, tokenizer, processor, image_id = build(checkpoint_dir, vision_dir, spec, projector_dir, seed=seed)
    model.to(spec.train.device)
    for name, p in model.named_parameters():
        p.requires_grad = "multi_modal_projector" in name or (spec.stage == "full" and "vision_tower" not in name)
    examples = encode(tokenizer, load_split(data_dir, split), image_id,
                      n_image_tokens(model.config.vision_config, spec.select), spec.max_len)
    torch.manual_seed(seed)
    run = supervised_run(
        model, examples, lambda part: collate(examples, part, processor), out_dir, lr=spec.lr, order_seed=seed,
        settings=spec.train, label=f"llava {spec.stage} lr={spec.lr:g}",
        fingerprint_extra={"spec": {k: v for k, v in asdict(spec).items() if k != "train"},
                           "data": file_digest(Path(data_dir, f"{split}.parquet")),
                           "checkpoint": file_digest(Path(checkpoint_dir, "meta.json")),
                           "vision": file_digest(Path(vision_dir, "meta.json")),
                           "projector": file_digest(Path(projector_dir, "meta.json")) if projector_dir else None,
                           "code": code_digest(__file__)},
    )
    meta = {"method": "llava", "stage": spec.stage, "base_checkpoint": str(checkpoint_dir),
            "vision": str(vision_dir), "projector_from": str(projector_dir) if projector_dir else None,
            "data": str(data_dir), "split": split, "dropped_examples": examples.dropped, "lr": spec.lr,
            "seed": spec.seed, "feature_layer": spec.feature_layer, "select": spec.select, "image_token_id": image_id,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), **run.describe()}
    projector = {k: v.cpu() for k, v in projector_state(model).items()}
    llava = {"feature_layer": spec.feature_layer, "select": spec.select, "image_token_id": image_id}
    if run.diverged is not None:
        save_diverged(out_dir, meta, run)
    elif spec.stage == "projector":
        from safetensors.torch import save_file

        with atomic_directory(out_dir) as tmp:
            save_file(projector, str(tmp / PROJECTOR_FILE))
            atomic_write_json(tmp / LLAVA_FILE, llava)
            atomic_write_json(tmp / "meta.json", {**meta, "weights": integrity.record(tmp),
                                                  "versions": package_versions()})
            (tmp / "train_log.csv").write_text(run.log_text())
    else:
        lm = language_model(model.cpu(), model.config.text_config)
        save_model(lm, tokenizer, out_dir, {**meta, "saved_dtype": "float32"},
                   {"train_log.csv": run.log_text(), LLAVA_FILE: json.dumps(llava, indent=1)},
                   extra_tensors={PROJECTOR_FILE: projector})
    run.resume.clear()
    return meta
