import pytest
import torch

from overtrain import models, perturb


def tiny(seed=0):
    return models.make_llama(40, hidden=32, layers=2, heads=4, intermediate=64, max_len=16, init_std=0.1, seed=seed)


def test_noise_statistics_and_scope():
    base, noisy = tiny(), tiny()
    sigma = perturb.gaussian_(noisy, gamma=0.5, seed=3)
    assert sigma == pytest.approx(0.1)  # the config's initializer_range
    changed = set(perturb.perturbed_parameter_names(noisy))
    assert "model.embed_tokens.weight" in changed and "lm_head.weight" in changed
    for (name, p0), (_, p1) in zip(base.named_parameters(), noisy.named_parameters()):
        diff = (p1 - p0).detach().flatten()
        if name in changed:
            z = diff / (0.5 * 0.1)
            assert abs(z.mean().item()) < 0.1
            assert z.std().item() == pytest.approx(1.0, rel=0.1)
        else:  # norm gains are not drawn from the init and stay untouched
            assert p0.dim() == 1 and torch.equal(p0, p1)


def test_noise_is_deterministic_per_seed():
    a, b, c = tiny(), tiny(), tiny()
    perturb.gaussian_(a, 0.2, seed=1)
    perturb.gaussian_(b, 0.2, seed=1)
    perturb.gaussian_(c, 0.2, seed=2)
    wa, wb, wc = (m.lm_head.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_explicit_sigma_and_ids():
    a, b = tiny(), tiny()
    perturb.apply(b, {"kind": "gaussian", "gamma": 1.0, "seed": 0, "sigma_init": 0.02})
    d = (b.lm_head.weight - a.lm_head.weight).std().item()
    assert d == pytest.approx(0.02, rel=0.1)
    assert perturb.parse_perturbation("gauss-g0.1-s3") == {"kind": "gaussian", "gamma": 0.1, "seed": 3}
    ids = perturb.variant_ids({"gaussian": {"gammas": [0.1], "seeds": [3]}, "quantize": {"bits": [4]}})
    assert ids == ["gauss-g0.1-s3", "rtn-int4"]
    assert [perturb.parse_perturbation(v)["kind"] for v in ids] == list(perturb.KINDS)
    with pytest.raises(ValueError, match="expected"):
        perturb.parse_perturbation("noise-0.1")


@pytest.mark.parametrize("bits", [8, 4])
def test_rtn_error_within_half_a_step(bits):
    torch.manual_seed(0)
    w = torch.randn(16, 40) * torch.linspace(0.1, 3.0, 16)[:, None]
    q = perturb.quantize_rtn(w, bits)
    qmax = 2 ** (bits - 1) - 1
    step = w.abs().amax(dim=1, keepdim=True) / qmax
    assert torch.all((q - w).abs() <= step / 2 + 1e-6)
    levels = torch.round(q / step)
    assert all(len(torch.unique(row)) <= 2 * qmax + 1 for row in levels)
    assert torch.allclose(levels, torch.round(levels))  # values sit on the per-row grid
    assert not torch.equal(q, w)


def test_rtn_model_in_place_and_scope():
    base, quant = tiny(), tiny()
    perturb.apply(quant, perturb.parse_perturbation("rtn-int4"))
    changed = set(perturb.perturbed_parameter_names(quant))
    for (name, p0), (_, p1) in zip(base.named_parameters(), quant.named_parameters()):
        if name in changed:
            assert not torch.equal(p0, p1)
            step = p0.abs().amax(dim=1, keepdim=True) / 7
            assert torch.all((p1 - p0).abs() <= step / 2 + 1e-6)
        else:
            assert torch.equal(p0, p1)
    assert perturb.parse_perturbation("rtn-int8") == {"kind": "rtn", "bits": 8}


def micro_config():
    from conftest import REPO

    from overtrain import plan

    return plan.load_study(str(REPO / "configs" / "micro.yaml"), REPO / "Snakefile").config


def test_perturbed_variants_exist_only_where_their_splits_are_evaluated():
    """perturb.splits (default [pretrain]: what the analyses read) picks a checkpoint's tasks for
    its perturbed variants; with none of them evaluated, no perturbed variant is made (the study
    completes without them: the figures say so)."""
    from overtrain.config import eval_splits, perturbations, perturbed_splits

    cfg = micro_config()
    assert cfg["perturb"]["splits"] == ["pretrain"]
    assert perturbed_splits(cfg, eval_splits(cfg)) == {"synth_pretrain_ppl": "pretrain"}
    assert perturbations(cfg) == ["gauss-g0.5-s0", "rtn-int8"]
    cfg["perturb"]["splits"] = ["pretrain", "id"]
    assert set(perturbed_splits(cfg, eval_splits(cfg))) == {
        "synth_pretrain_ppl", "synth_ft_ppl", "synth_ft_mc", "synth_ft_mc_instruct", "synth_ft_mc_raw"}
    cfg["perturb"]["splits"] = ["pretrain"]
    cfg["evaluate"]["pretrain_loss"] = False
    assert perturbations(cfg) == []


def test_connectivity_only_seeds_are_fine_tuned_but_not_in_the_evaluated_grid():
    """The extra fine-tuning seed connectivity needs (micro: seed 1 at lr 1e-3) is trained, and
    scored by the connectivity job; the grid's evaluation keeps one set of seeds for every rate."""
    from overtrain.config import finetune_runs, grid_runs, judged_variants

    cfg = micro_config()
    assert grid_runs(cfg) == [("synth_ft", "full-lr0.001-s0")]
    assert finetune_runs(cfg) == [("synth_ft", "full-lr0.001-s0"), ("synth_ft", "full-lr0.001-s1")]
    cfg["evaluate"]["judge"]["enabled"] = True
    assert judged_variants(cfg) == ["base", "ft-synth_ft-full-lr0.001-s0"]


def test_a_variant_id_is_made_from_its_settings_as_it_parses():
    from overtrain.perturb import parse_perturbation, variant_id

    for pert in ("gauss-g0.1-s0", "gauss-g0.05-s3", "rtn-int4"):
        settings = parse_perturbation(pert)
        assert variant_id(settings["kind"], settings) == pert
    assert variant_id("gaussian", {"gamma": 0.2, "seed": 1.0}) == "gauss-g0.2-s1"  # metrics.csv's float seeds
