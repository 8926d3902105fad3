"""`overtrain plan`: the cost arithmetic behind the README's preset table."""

import pytest
from conftest import REPO

from overtrain import plan


@pytest.fixture
def micro():
    return plan.load_study(str(REPO / "configs" / "micro.yaml"), REPO / "Snakefile")


def test_training_and_evaluation_flops_follow_6N_and_2N(micro):
    jobs = {"pretrain": 2, "finetune": 3, "evaluate_checkpoint": 2, "figures": 1}
    r = plan.plan(micro, jobs, mfu=0.5, peak_tflops=100.0, eval_tokens=1000.0)
    n = r["parameters"][0]["parameters"]
    config = micro.config
    assert n == plan.synthetic_parameters(config, config["models"]["tiny"])
    rows = {row["rule"]: row for row in r["rules"]}
    ft = config["finetune"]
    assert ft["steps"] is None  # micro trains for epochs over the synthetic task's documents
    ft_tokens = ft["epochs"] * config["corpus"]["ft_train_docs"] * config["corpus"]["seq_len"]
    assert rows["finetune"]["tflop"] * 1e12 == pytest.approx(6 * n * ft_tokens * 3)
    # the base on its 6 tasks, each of the 2 perturbed variants on 1 (perturb.splits: [pretrain])
    variants = 1 + 2 * 1 / 6
    assert rows["evaluate_checkpoint"]["tflop"] * 1e12 == pytest.approx(2 * n * 1000 * variants * 2)
    assert rows["figures"]["tflop"] == 0 and r["total"]["jobs"] == 8
    # hours scale as 1 / (MFU · peak); the plan says which assumption it used
    r2 = plan.plan(micro, jobs, mfu=0.25, peak_tflops=100.0, eval_tokens=1000.0)
    assert r2["total"]["gpu_hours"] == pytest.approx(2 * r["total"]["gpu_hours"])
    assert r2["assumptions"]["mfu"] == 0.25
    assert "Plan for micro" in plan.table(r)


def test_parameters_are_read_from_cached_safetensors_headers(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, tmp_path / "m.safetensors")
    assert plan.header_parameters(tmp_path / "m.safetensors") == 17


def test_an_unknown_model_is_said_unknown_not_guessed(micro, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent")
    n, source, size = plan.hub_parameters("nobody/nothing", "main")
    assert (n, source, size) == (None, "unknown", None)


def test_the_sharpness_measures_are_counted(micro):
    jobs = {"evaluate_checkpoint": 2, "evaluate_finetuned": 3}
    off = {r["rule"]: r["tflop"] for r in plan.plan(micro, jobs, mfu=0.5, peak_tflops=100.0, eval_tokens=1000.0)["rules"]}
    micro.config["evaluate"]["sharpness"].update(probes=8, docs=10)
    on = {r["rule"]: r["tflop"] for r in plan.plan(micro, jobs, mfu=0.5, peak_tflops=100.0, eval_tokens=1000.0)["rules"]}
    n = plan.synthetic_parameters(micro.config, micro.config["models"]["tiny"])
    per_variant = 2 * n * 10 * micro.config["corpus"]["seq_len"] * (6 * 8 + 4)
    assert (on["evaluate_finetuned"] - off["evaluate_finetuned"]) * 1e12 == pytest.approx(3 * per_variant)
    assert (on["evaluate_checkpoint"] - off["evaluate_checkpoint"]) * 1e12 == pytest.approx(2 * per_variant)
