"""The paper's theory in its simplest form: a two-layer (diagonal) linear network that learns
features one at a time.

Model: f(x) = Σ_i a_i b_i x_i with x ~ N(0, I), so the loss of a target s is
L(w; s) = ½ Σ_i (w_i − s_i)², w_i = a_i b_i. Pretraining targets s_i = s_1 · i^(−decay): from a
small balanced init (a = b = √init), gradient flow learns feature i around time
log(s_i / init) / (2 s_i) — strong features first, the long tail later (incremental learning).
The learned features have large weights, and large weights are what makes the network sensitive:
- Gaussian noise γ on a and b costs, in expectation, γ² Σ_i (a_i² + b_i²) + d γ⁴ on top of the
  loss, and a learned feature carries a_i² + b_i² ≈ 2 s_i;
- fine-tuning on a misaligned task (the tail features at (1 + shift)× their pretraining strength)
  moves each weight at a speed ∝ |a_i| + |b_i|: features that pretraining made large are
  rewritten within the fine-tuning budget, unlearned ones barely move, and rewriting a tail
  feature costs the pretraining loss more than leaving it unlearned.
For weak tail features the gain from learning them (s_i² / 2) is smaller than the sensitivity they
add, so the pretraining loss *after* a perturbation or a fixed fine-tune is lowest at an interior
pretraining time τ — the inflection. An ℓ2 pull toward the pretrained weights (strength λ) delays it
but leaves the fine-tuning task less well learned.

Everything is plain numpy gradient descent (small steps ≈ gradient flow), seconds on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Setup:
    n_features: int = 24
    strongest: float = 1.0
    decay: float = 1.5  # s_i = strongest · i^(-decay)
    init: float = 1e-6  # a_i = b_i = √init at the start
    shared: int = 4  # the fine-tuning task keeps the strongest `shared` features as they are
    shift: float = 2.0  # and asks for (1 + shift) × the others
    lr: float = 0.05  # gradient-descent step (small enough to follow the flow)


def pretrain_targets(setup: Setup) -> np.ndarray:
    return setup.strongest * np.arange(1, setup.n_features + 1, dtype=float) ** -setup.decay


def finetune_targets(setup: Setup) -> np.ndarray:
    """Misaligned task: the strongest features as in pretraining, the tail (1 + shift)× larger."""
    s = pretrain_targets(setup).copy()
    s[setup.shared :] *= 1.0 + setup.shift
    return s


def loss(a: np.ndarray, b: np.ndarray, target: np.ndarray) -> float:
    return float(0.5 * np.sum((a * b - target) ** 2))


def logistic_flow(target: np.ndarray, init: float, t: float) -> np.ndarray:
    """Closed form of w_i = a_i b_i under gradient flow from a = b = √init (balanced):
    dw/dt = 2 w (s − w) ⇒ w(t) = s / (1 + (s / init − 1) e^(−2 s t)), for s > 0."""
    return target / (1.0 + (target / init - 1.0) * np.exp(-2.0 * target * t))


def gradient_descent(
    a: np.ndarray,
    b: np.ndarray,
    target: np.ndarray,
    steps: int,
    lr: float,
    anchor: tuple[np.ndarray, np.ndarray] | None = None,
    l2: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """GD on ½‖ab − s‖² (+ ½λ‖(a, b) − anchor‖² when l2 > 0)."""
    a, b = a.copy(), b.copy()
    for _ in range(steps):
        r = a * b - target
        ga, gb = r * b, r * a
        if l2 > 0 and anchor is not None:
            ga = ga + l2 * (a - anchor[0])
            gb = gb + l2 * (b - anchor[1])
        a, b = a - lr * ga, b - lr * gb
    return a, b


def pretrain(setup: Setup, tau: float) -> tuple[np.ndarray, np.ndarray]:
    start = np.full(setup.n_features, np.sqrt(setup.init))
    return gradient_descent(start, start, pretrain_targets(setup), int(round(tau / setup.lr)), setup.lr)


def expected_noise_loss(a: np.ndarray, b: np.ndarray, target: np.ndarray, gamma: float) -> float:
    """E over a' = a + γξ, b' = b + γζ (ξ, ζ ~ N(0, 1)) of the loss: exact for this model."""
    return loss(a, b, target) + 0.5 * gamma**2 * float(np.sum(a**2 + b**2)) + 0.5 * len(a) * gamma**4


def simulate(
    setup: Setup,
    taus: list[float],
    gammas: list[float],
    finetune_time: float,
    l2s: list[float],
) -> list[dict]:
    """Tidy rows (tau, condition, parameter, pretrain_loss, finetune_loss) for every τ."""
    s_pt, s_ft = pretrain_targets(setup), finetune_targets(setup)
    steps_ft = int(round(finetune_time / setup.lr))
    rows = []
    for tau in taus:
        a, b = pretrain(setup, tau)
        rows.append(
            {"tau": tau, "condition": "base", "parameter": None,
             "pretrain_loss": loss(a, b, s_pt), "finetune_loss": loss(a, b, s_ft)}
        )
        for gamma in gammas:
            rows.append(
                {"tau": tau, "condition": "noise", "parameter": gamma,
                 "pretrain_loss": expected_noise_loss(a, b, s_pt, gamma), "finetune_loss": None}
            )
        for l2 in l2s:
            fa, fb = gradient_descent(a, b, s_ft, steps_ft, setup.lr, anchor=(a, b), l2=l2)
            rows.append(
                {"tau": tau, "condition": "finetune", "parameter": l2,
                 "pretrain_loss": loss(fa, fb, s_pt), "finetune_loss": loss(fa, fb, s_ft)}
            )
    return rows
