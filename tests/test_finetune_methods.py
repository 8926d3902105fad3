"""Fine-tuning methods: LoRA, the ℓ2 pull toward pretrained weights, epochs, learning jumps."""

import csv

import pytest
import torch
from conftest import tiny_finetune
from safetensors.torch import load_file

from overtrain import models
from overtrain.evaluation import curves
from overtrain.training import sft

FT = dict(lr=3e-3)
LORA = {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]}


@pytest.fixture(scope="module")
def setup(tiny_study):
    return tiny_study


def weights(path, name="model.safetensors"):
    return load_file(str(path / name))


def test_lora_trains_adapters_and_leaves_base_untouched(setup, tmp_path):
    d, paths = setup
    before = (d / "ckpt" / "model.safetensors").read_bytes()
    meta = tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "lora", steps=10, method="lora", lora=LORA, **FT)
    assert meta["method"] == "lora"
    assert (d / "ckpt" / "model.safetensors").read_bytes() == before
    assert (tmp_path / "lora" / "adapter_config.json").exists()
    assert not (tmp_path / "lora" / "model.safetensors").exists()
    adapter = weights(tmp_path / "lora", "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    merged, _ = models.load_variant(d / "ckpt", tmp_path / "lora")
    base, _ = models.load_variant(d / "ckpt")
    sd_m, sd_b = merged.state_dict(), base.state_dict()
    assert set(sd_m) == set(sd_b)
    changed = {k for k in sd_b if not torch.equal(sd_m[k], sd_b[k])}
    assert changed and all(any(t in k for t in LORA["target_modules"]) for k in changed)


def test_infinite_l2_keeps_pretrained_weights(setup, tmp_path):
    d, paths = setup
    tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "pinned", steps=8, l2=1e12, **FT)
    tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "mild", steps=8, l2=50.0, **FT)
    tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "free", steps=8, **FT)
    w0, pinned = weights(d / "ckpt"), weights(tmp_path / "pinned")
    assert all(torch.equal(w0[k], pinned[k]) for k in w0)

    def distance(w):
        return sum((w[k] - w0[k]).pow(2).sum().item() for k in w0) ** 0.5

    assert 0 < distance(weights(tmp_path / "mild")) < distance(weights(tmp_path / "free"))


def test_epochs_set_the_steps_and_the_log(setup, tmp_path):
    d, paths = setup
    meta = tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "ep", steps=None, epochs=2, **FT)
    assert meta["steps"] == 10 and meta["epochs"] == 2  # 40 examples, 8 per step
    rows = list(csv.DictReader(open(tmp_path / "ep" / "train_log.csv")))
    assert [float(r["epoch"]) for r in rows][::5] == [0.0, 1.0]
    assert len(curves.learning_jump_rows(tmp_path / "ep" / "train_log.csv", "synth_ft")) == 2
    with pytest.raises(ValueError, match="exactly one"):
        sft.finetune_steps(40, 8, steps=10, epochs=2)


def test_learning_jump_on_a_staircase():
    # 3 epochs of 20 steps: a slow decline inside epochs, a drop of 0.5 at each boundary
    losses = [3.0 - 0.01 * s - 0.5 * (s // 20) for s in range(60)]
    jumps = curves.epoch_jumps(losses, 20, window=2)
    assert [j["epoch"] for j in jumps] == [1, 2]
    for j in jumps:
        # windows of 2: trend drop = 0.02; at a boundary 0.02 + 0.5
        assert j["jump"] == pytest.approx(0.52)
        assert j["excess"] == pytest.approx(0.5)
    smooth = curves.epoch_jumps([3.0 - 0.01 * s for s in range(60)], 20, window=2)
    assert all(j["excess"] == pytest.approx(0.0, abs=1e-12) for j in smooth)
