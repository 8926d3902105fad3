"""Sharpness of a model variant on held-out pretraining text: the mechanism Springer et al. and
their group's follow-up (Watts et al. 2026) link to catastrophic overtraining. Two measures, as
rows of metrics.csv (split pretrain):

- `hessian_trace`: a Hutchinson estimate of tr(H), H the Hessian of the token-mean loss over the
  parameters: the mean of vᵀHv over `probes` Rademacher vectors v (Hessian-vector products
  through autograd, no Hessian is formed), with its own 95% interval over the probes
  (`hessian_trace_ci_low`, `_ci_high`);
- `sam_rise`: the worst-case loss rise in a ρ-ball, to first order (one SAM ascent step, as the
  critical-sharpness literature measures it): L(θ + ρ·g/‖g‖) − L(θ), g the gradient, ρ absolute
  (like the Gaussian noise's γ·σ_init, a fixed size of change).

Deterministic: the probes are drawn from `seed`; the documents are the first `docs` of the file.
The model is put back as it was.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from overtrain.training.loop import IGNORE


@dataclass(frozen=True)
class SharpnessSettings:
    """evaluate.sharpness: probes (0: off), ρ, how many documents, the probes' seed, batch size."""

    probes: int = 0
    rho: float = 0.05
    docs: int = 32
    seed: int = 0
    batch_size: int = 16

    @property
    def enabled(self) -> bool:
        return self.probes > 0


def read_documents(path: str | Path, n: int) -> list[str]:
    """The first `n` documents of a JSONL file of {"text"} rows."""
    docs = []
    with open(path) as f:
        for line in f:
            if line.strip():
                docs.append(json.loads(line)["text"])
            if len(docs) == n:
                break
    if not docs:
        raise ValueError(f"{path}: no documents for the sharpness measures")
    return docs


def _batches(tokenizer, docs: list[str], batch_size: int, max_length: int | None, device) -> list[dict]:
    """Right-padded batches with labels (IGNORE on padding): each document after the model's
    <bos>, as pretraining saw it, cut to `max_length` tokens."""
    import torch

    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = [(bos + tokenizer(d, add_special_tokens=False)["input_ids"])[:max_length] for d in docs]
    out = []
    for start in range(0, len(ids), batch_size):
        rows = ids[start:start + batch_size]
        width = max(len(r) for r in rows)
        input_ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            input_ids[k, :len(r)] = torch.tensor(r)
            mask[k, :len(r)] = 1
        out.append({"input_ids": input_ids.to(device), "attention_mask": mask.to(device),
                    "labels": input_ids.masked_fill(mask == 0, IGNORE).to(device)})
    return out


def _loss_sum(model, batch: dict):
    """Summed next-token loss of a batch (float32 logits) and its token count."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    target = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten(), ignore_index=IGNORE,
                           reduction="sum")
    return loss, int((target != IGNORE).sum())


def hutchinson_trace(model, batches: list[dict], probes: int, seed: int) -> list[float]:
    """vᵀHv for each of `probes` Rademacher vectors v (H: the Hessian of the token-mean loss)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    params = [p for p in model.parameters() if p.requires_grad]
    n_tokens = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    generator = torch.Generator().manual_seed(seed)
    values = []
    # the fused attention kernels have no second derivative: the plain (math) one does
    with sdpa_kernel([SDPBackend.MATH]):
        for _ in range(probes):
            values.append(_probe(model, params, batches, n_tokens, generator))
    return values


def _probe(model, params: list, batches: list[dict], n_tokens: int, generator) -> float:
    """vᵀHv for one Rademacher v drawn from `generator`."""
    import torch

    vs = [(torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p.device, p.dtype) for p in params]
    total = 0.0
    for b in batches:  # vᵀHv is linear in the loss: summed over batches, then normalised
        loss, _ = _loss_sum(model, b)
        grads = torch.autograd.grad(loss / n_tokens, params, create_graph=True)
        hv = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vs)), params)
        total += float(sum((h * v).sum() for h, v in zip(hv, vs)))
    return total


def sam_rise(model, batches: list[dict], rho: float) -> float:
    """L(θ + ρ·g/‖g‖) − L(θ) for the token-mean loss; θ restored afterwards."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    n_tokens = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    model.zero_grad(set_to_none=True)
    before = 0.0
    for b in batches:
        loss, _ = _loss_sum(model, b)
        (loss / n_tokens).backward()
        before += float(loss.detach()) / n_tokens
    grads = [p.grad.detach().clone() for p in params]
    model.zero_grad(set_to_none=True)
    norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads)) or 1.0
    saved = [p.detach().to("cpu", copy=True) for p in params]  # restored bit for bit, off the device
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(g * (rho / norm))
        after = sum(float(_loss_sum(model, b)[0]) for b in batches) / n_tokens
        for p, s in zip(params, saved):
            p.copy_(s)
    return after - before


def sharpness_rows(model, tokenizer, documents: str | Path, settings: SharpnessSettings, task: str,
                   max_length: int | None = None) -> list[dict]:
    """The variant's sharpness rows (split pretrain) on the first `settings.docs` documents."""
    import numpy as np
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # no dropout: the same function the evaluation scores
    for p in model.parameters():
        p.requires_grad_(True)
    batches = _batches(tokenizer, read_documents(documents, settings.docs), settings.batch_size, max_length, device)
    with torch.enable_grad():
        probes = hutchinson_trace(model, batches, settings.probes, settings.seed)
        rise = sam_rise(model, batches, settings.rho)
    model.train(was_training)
    values = np.asarray(probes)
    rng = np.random.default_rng(settings.seed)
    boot = values[rng.integers(0, len(values), (1000, len(values)))].mean(axis=1) if len(values) > 1 else values
    lo, hi = (float(q) for q in np.percentile(boot, [2.5, 97.5]))
    row = {"eval_task": task, "split": "pretrain"}
    return [{**row, "metric": "hessian_trace", "value": float(values.mean())},
            {**row, "metric": "hessian_trace_ci_low", "value": lo},
            {**row, "metric": "hessian_trace_ci_high", "value": hi},
            {**row, "metric": "sam_rise", "value": float(rise)}]
