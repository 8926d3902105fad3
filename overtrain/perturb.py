"""Weight perturbations, applied in memory at evaluation time.

Gaussian noise (Springer et al. 2025, §3.3): θ̃ = θ + ε with ε ~ N(0, γ²Σ), Σ the covariance of
the initialisation. With i.i.d. normal init of std σ_init this is θ + γ·σ_init·N(0, 1) on every
parameter that was drawn from that init: all weight matrices (token embeddings, attention and MLP
projections, LM head). Norm gains (initialised to 1, not drawn) and biases are left untouched.
σ_init is the model config's `initializer_range` (the std Hugging Face used to initialise it) or an
explicit value; the noise for seed s is the same on every run.

Round-to-nearest quantization (Kumar et al. 2024 find post-training quantization hurts more after
longer pretraining): the same weight matrices, symmetric, one scale per output channel (row),
scale = max|row| / (2^(bits-1) - 1); each weight moves by at most half a step.
"""

from __future__ import annotations

import re

GAUSSIAN_ID = re.compile(r"^gauss-g(?P<gamma>[0-9.e+-]+)-s(?P<seed>[0-9]+)$")
RTN_ID = re.compile(r"^rtn-int(?P<bits>[0-9]+)$")


def parse_perturbation(pert_id: str) -> dict:
    """'gauss-g0.1-s0' → gaussian γ=0.1 seed 0; 'rtn-int8' → 8-bit round-to-nearest."""
    if m := GAUSSIAN_ID.match(pert_id):
        return {"kind": "gaussian", "gamma": float(m["gamma"]), "seed": int(m["seed"])}
    if m := RTN_ID.match(pert_id):
        return {"kind": "rtn", "bits": int(m["bits"])}
    raise ValueError(
        f"unknown perturbation id {pert_id!r}; expected gauss-g<gamma>-s<seed> or rtn-int<bits>"
    )


def perturbed_parameter_names(model) -> list[str]:
    """Parameters drawn from the normal init: every tensor with ≥ 2 dimensions."""
    return [n for n, p in model.named_parameters() if p.dim() >= 2]


def gaussian_(model, gamma: float, seed: int, sigma_init: float | None = None) -> float:
    """Add γ·σ_init·N(0,1) noise to the weight matrices in place; returns the σ_init used."""
    import torch

    sigma = sigma_init if sigma_init is not None else model.config.initializer_range
    generator = torch.Generator().manual_seed(seed)
    names = set(perturbed_parameter_names(model))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in names:
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                p.add_(noise.to(device=p.device, dtype=p.dtype) * (gamma * sigma))
    return sigma


def quantize_rtn(weight, bits: int):
    """Symmetric round-to-nearest with one scale per row; returns the dequantized tensor."""
    import torch

    if not 2 <= bits <= 16:
        raise ValueError(f"bits={bits}: allowed 2..16")
    qmax = 2 ** (bits - 1) - 1
    w = weight.float()
    scale = w.abs().amax(dim=1, keepdim=True) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w / scale), -qmax, qmax)
    return (q * scale).to(weight.dtype)


def rtn_(model, bits: int) -> None:
    """Quantize every weight matrix in place (weights only, per output channel)."""
    import torch

    names = set(perturbed_parameter_names(model))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in names:
                p.copy_(quantize_rtn(p.reshape(p.shape[0], -1), bits).reshape(p.shape))


def apply(model, perturbation: dict) -> None:
    if perturbation["kind"] == "gaussian":
        gaussian_(model, perturbation["gamma"], perturbation["seed"], perturbation.get("sigma_init"))
    elif perturbation["kind"] == "rtn":
        rtn_(model, perturbation["bits"])
    else:
        raise ValueError(f"unknown perturbation kind {perturbation['kind']!r}; allowed: gaussian, rtn")
