"""The frozen vision tower of a LLaVA model: a tiny CLIP vision model trained once here to read
the synthetic images (overtrain.sources.images), or a Hub CLIP model; loaded from safetensors only.

Training names every cell's glyph from its patch token (a linear head on the last layer,
dropped afterwards): the patch features then carry what the picture shows, as a pretrained
CLIP's do for natural images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from overtrain.training.loop import IGNORE, learning_rate


@dataclass(frozen=True)
class VisionSpec:
    """A tiny CLIP vision model, trained once to read the synthetic images, then frozen."""

    hidden: int = 32
    layers: int = 2
    heads: int = 2
    intermediate: int = 64
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1


def image_processor(image_size: int):
    """CLIP's processor for our small images: no resize or crop, pixels to [-1, 1]."""
    from transformers import CLIPImageProcessor

    size = {"height": image_size, "width": image_size}
    return CLIPImageProcessor(do_resize=False, do_center_crop=False, do_rescale=True, rescale_factor=1 / 255,
                              do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3, do_convert_rgb=True,
                              size=size, crop_size=size)


def train_vision_encoder(lang, out_dir: str | Path, spec: VisionSpec, *, cells: int, cell: int, noise: float,
                         glyph_seed: int) -> dict:
    """Train a CLIP vision model to name each cell's token from its patch of freshly rendered
    images; save the model (safetensors) with its image processor."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from overtrain import integrity
    from overtrain.atomic import atomic_directory, atomic_write_json
    from overtrain.models import set_threads
    from overtrain.provenance import package_versions
    from overtrain.sources.images import glyph_bank, glyph_ids, grid_side, render, sentences, topic_colours

    set_threads(spec.threads)
    side = grid_side(cells)
    config = CLIPVisionConfig(hidden_size=spec.hidden, intermediate_size=spec.intermediate,
                              num_hidden_layers=spec.layers, num_attention_heads=spec.heads, image_size=side * cell,
                              patch_size=cell, num_channels=3)
    torch.manual_seed(spec.seed)
    model = CLIPVisionModel(config)
    n_glyphs = lang.n_words + lang.n_topics
    head = torch.nn.Linear(spec.hidden, n_glyphs)
    processor = image_processor(side * cell)
    bank, colours = glyph_bank(n_glyphs, cell, glyph_seed), topic_colours(lang.n_topics, glyph_seed)

    def batch(rng, n):
        topics, walks = sentences(lang, n, cells - 1, rng)
        glyphs = [glyph_ids(lang, t, w) for t, w in zip(topics.tolist(), walks)]
        images = [render(g, t, bank, colours, noise, rng) for g, t in zip(glyphs, topics.tolist())]
        target = torch.full((n, side * side), IGNORE)
        target[:, :cells] = torch.as_tensor(np.stack(glyphs))
        return processor(images=images, return_tensors="pt")["pixel_values"], target

    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=0.0)
    model.train()
    for step in range(spec.steps):
        pixels, target = batch(np.random.default_rng([spec.seed, step]), spec.batch_size)
        logits = head(model(pixel_values=pixels).last_hidden_state[:, 1:])
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, spec.steps, spec.lr, "cosine", 0)
        opt.step()
        if step % max(1, spec.steps // 10) == 0 or step == spec.steps - 1:
            print(f"[vision] step {step + 1}/{spec.steps} loss {loss.item():.3f}", flush=True)
    model.eval()
    with torch.no_grad():
        pixels, target = batch(np.random.default_rng([spec.seed, 10**6]), 512)
        predicted = head(model(pixel_values=pixels).last_hidden_state[:, 1:]).argmax(-1)
        seen = target != IGNORE
        accuracy = float((predicted == target)[seen].float().mean())
    meta = {"kind": "trained", **asdict(spec), "image_size": side * cell, "patch_size": cell, "cells": cells,
            "noise": noise, "glyph_seed": glyph_seed, "final_loss": loss.item(), "heldout_cell_accuracy": accuracy}
    print(f"[vision] held-out accuracy of reading a cell: {accuracy:.3f}", flush=True)
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        atomic_write_json(tmp / "meta.json", {**meta, "weights": integrity.record(tmp),
                                              "versions": package_versions()})
    return meta


def load_vision(vision_dir: str | Path, dtype: str = "float32"):
    """(vision model, image processor) from a directory: safetensors only, checked."""
    import torch
    from transformers import AutoImageProcessor, CLIPVisionModel

    from overtrain import integrity
    from overtrain.models import recorded_weights, require_safetensors

    require_safetensors(vision_dir)
    integrity.verify(vision_dir, recorded_weights(vision_dir))
    model = CLIPVisionModel.from_pretrained(str(vision_dir), use_safetensors=True, dtype=getattr(torch, dtype))
    return model.eval(), AutoImageProcessor.from_pretrained(str(vision_dir))
