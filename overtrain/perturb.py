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
from dataclasses import dataclass
from typing import Callable


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


# --- the registry: one entry per kind --------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """One kind of perturbation, and all the workflow needs of it: its variant ids (from its
    config section perturb.<section>), how an id parses and applies, the metrics.csv columns its
    rows carry, and how tables and claims name it. A new kind is one entry here, its section in
    the schema, and (if its parameter is new) a column of metrics.csv (a contract change)."""

    name: str  # the `perturbation` column
    section: str  # perturb.<section> in the config
    pattern: str  # its variant id, with named groups
    ids: Callable[[dict], list[str]]  # perturb.<section> → its variant ids
    settings: Callable[[dict], dict]  # the id's named groups → the settings apply() takes
    apply: Callable[[object, dict], None]  # in place, on a loaded model
    parameter: str  # the metrics.csv column its curves differ by
    label: Callable[[float], str]  # a condition in tables ("noise γ=0.1")
    claim: str  # progressive sensitivity to …
    claim_condition: Callable[[float], str]  # a condition in hypotheses.csv ("γ=0.1")
    source: str  # where the claim comes from

    def columns(self, settings: dict) -> dict:
        """Its rows' metrics.csv labels: the kind and its parameters (a seed where it has one)."""
        return {"perturbation": self.name, **{k: v for k, v in settings.items() if k != "kind"}}


def _fmt(x: float) -> str:
    return f"{float(x):g}"


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(name="gaussian", section="gaussian", pattern=r"gauss-g(?P<gamma>[0-9.e+-]+)-s(?P<seed>[0-9]+)",
             ids=lambda c: [f"gauss-g{_fmt(g)}-s{s}" for g in c["gammas"] for s in c["seeds"]],
             settings=lambda m: {"gamma": float(m["gamma"]), "seed": int(m["seed"])},
             apply=lambda model, s: gaussian_(model, s["gamma"], s["seed"], s.get("sigma_init")),
             parameter="gamma", label=lambda g: f"noise γ={g:g}", claim="Gaussian noise",
             claim_condition=lambda g: f"γ={g:g}", source="Springer et al. 2025 §3.3"),
        Kind(name="rtn", section="quantize", pattern=r"rtn-int(?P<bits>[0-9]+)",
             ids=lambda c: [f"rtn-int{b}" for b in c["bits"]],
             settings=lambda m: {"bits": int(m["bits"])},
             apply=lambda model, s: rtn_(model, s["bits"]),
             parameter="bits", label=lambda b: f"rtn int{int(b)}", claim="quantization",
             claim_condition=lambda b: f"RTN int{int(b)}", source="Springer et al. 2025 §3.3 (Kumar et al. 2024)"),
    )
}
ID_PATTERN = "|".join(k.pattern for k in KINDS.values())  # every perturbed variant id


def variant_ids(perturb: dict) -> list[str]:
    """The perturbed variants the config's `perturb` section asks for, kind by kind."""
    return [v for kind in KINDS.values() for v in kind.ids(perturb.get(kind.section) or {})]


def parse_perturbation(pert_id: str) -> dict:
    """'gauss-g0.1-s0' → {kind: gaussian, gamma: 0.1, seed: 0}; 'rtn-int8' → {kind: rtn, bits: 8}."""
    for kind in KINDS.values():
        if m := re.fullmatch(kind.pattern, pert_id):
            return {"kind": kind.name, **kind.settings(m.groupdict())}
    expected = " or ".join(re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", k.pattern) for k in KINDS.values())
    raise ValueError(f"unknown perturbation id {pert_id!r}; expected {expected}")


def variant_id(kind: str, settings: dict) -> str:
    """A kind's variant id for its settings ({gamma: 0.1, seed: 0} → 'gauss-g0.1-s0'): its pattern
    with each named group filled in, the inverse of parse_perturbation."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: _fmt(settings[m[1]]), KINDS[kind].pattern)


def apply(model, perturbation: dict) -> None:
    """Apply a parsed perturbation to `model` in place."""
    kind = KINDS.get(perturbation["kind"])
    if kind is None:
        raise ValueError(f"unknown perturbation kind {perturbation['kind']!r}; allowed: {', '.join(KINDS)}")
    kind.apply(model, perturbation)
