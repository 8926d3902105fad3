"""Sharpness: Hutchinson's estimate against the exact Hessian of a model small enough to form it,
and the SAM rise against a direct evaluation."""

import numpy as np
import pytest
import torch

from overtrain import models
from overtrain.evaluation import sharpness


@pytest.fixture(scope="module")
def tiny():
    model = models.make_llama(8, hidden=4, layers=1, heads=1, intermediate=8, max_len=16, init_std=0.5, seed=0).double()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 8, (3, 10), generator=g)
    batches = [{"input_ids": ids[:2], "attention_mask": torch.ones_like(ids[:2]), "labels": ids[:2]},
               {"input_ids": ids[2:], "attention_mask": torch.ones_like(ids[2:]), "labels": ids[2:]}]
    return model, batches


def exact_hessian(model, batches) -> tuple[torch.Tensor, list]:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    n_tokens = sum(int(b["labels"][:, 1:].numel()) for b in batches)

    def loss(theta):
        params, k = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            params[name] = theta[k:k + size].view(shape)
            k += size
        total = 0.0
        for b in batches:
            logits = torch.func.functional_call(model, params, (b["input_ids"],), {"use_cache": False}).logits
            total = total + torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1), b["labels"][:, 1:].flatten(), reduction="sum")
        return total / n_tokens

    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):  # the fused kernels have no second derivative
        return torch.autograd.functional.hessian(loss, flat), shapes


def test_hutchinson_probes_are_exact_quadratic_forms_and_average_to_the_trace(tiny):
    model, batches = tiny
    H, shapes = exact_hessian(model, batches)
    assert H.shape[0] < 400  # small enough to form
    probes = sharpness.hutchinson_trace(model, batches, probes=64, seed=3)
    # each probe is vᵀHv for the Rademacher v drawn from the seed: the same numbers as the exact H
    g = torch.Generator().manual_seed(3)
    for value in probes[:5]:
        v = torch.cat([(torch.randint(0, 2, s, generator=g) * 2 - 1).double().flatten() for s in shapes])
        assert value == pytest.approx(float(v @ H @ v), rel=1e-6, abs=1e-9)
    # their mean estimates tr(H) within the probes' own error (E[vᵀHv] = tr(H))
    trace, spread = float(torch.trace(H)), np.std(probes) / np.sqrt(len(probes))
    assert abs(np.mean(probes) - trace) < 4 * spread


def test_the_sam_rise_is_the_loss_one_ascent_step_of_size_rho_away(tiny):
    model, batches = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rise = sharpness.sam_rise(model, batches, rho=0.05)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # put back as it was
    n_tokens = sum(int(b["labels"][:, 1:].numel()) for b in batches)
    loss = sum(sharpness._loss_sum(model, b)[0] for b in batches) / n_tokens
    grads = torch.autograd.grad(loss, list(model.parameters()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            p.add_(g * 0.05 / norm)
        after = sum(sharpness._loss_sum(model, b)[0] for b in batches) / n_tokens
        for p, g in zip(model.parameters(), grads):
            p.sub_(g * 0.05 / norm)
    assert rise == pytest.approx(float(after - loss), rel=1e-5) and rise > 0  # float32 logits
    # to first order the rise is ρ‖g‖
    assert rise == pytest.approx(0.05 * float(norm), rel=0.1)


def test_sharpness_rows_of_a_checkpoint(tiny_study):
    d, paths = tiny_study
    model, tok = models.load_variant(d / "ckpt")
    settings = sharpness.SharpnessSettings(probes=4, rho=0.05, docs=8, seed=0)
    rows = sharpness.sharpness_rows(model, tok, paths["pretrain_heldout"], settings, "synth_pretrain_ppl", 32)
    got = {r["metric"]: r["value"] for r in rows}
    assert set(got) == {"hessian_trace", "hessian_trace_ci_low", "hessian_trace_ci_high", "sam_rise"}
    assert got["hessian_trace_ci_low"] <= got["hessian_trace"] <= got["hessian_trace_ci_high"]
    assert all(r["split"] == "pretrain" and r["eval_task"] == "synth_pretrain_ppl" for r in rows)
    again = sharpness.sharpness_rows(model, tok, paths["pretrain_heldout"], settings, "synth_pretrain_ppl", 32)
    assert again == rows  # deterministic


def test_the_base_checkpoint_is_measured_and_its_perturbations_are_not(tiny_study, tmp_path):
    """evaluate_checkpoint adds the sharpness rows to the base variant's result only."""
    import json

    from overtrain.evaluation import evaluate

    d, paths = tiny_study
    splits = {"synth_pretrain_ppl": "pretrain"}
    data = {"pretrain_heldout": paths["pretrain_heldout"], "sharpness": paths["pretrain_heldout"]}
    settings = evaluate.EvalSettings(splits, data, limit=8, batch_size=8, sharpness_task="synth_pretrain_ppl",
                                     sharpness=sharpness.SharpnessSettings(probes=2, docs=4))
    out = {v: tmp_path / f"{v}.json" for v in ("base", "gauss-g0.5-s0")}
    evaluate.evaluate_checkpoint(out, d / "ckpt", {"model": "m", "ckpt": "c"}, settings)
    metrics = {v: {r["metric"] for r in json.loads(p.read_text())["rows"]} for v, p in out.items()}
    assert {"hessian_trace", "sam_rise", "loss"} <= metrics["base"]
    assert "hessian_trace" not in metrics["gauss-g0.5-s0"] and "loss" in metrics["gauss-g0.5-s0"]
