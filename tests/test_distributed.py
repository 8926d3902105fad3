"""Multi-GPU fine-tuning, tested through its CPU analogue: 2 processes on gloo (torchrun), DDP and
FSDP2, against one process on the same global batch and data order."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from overtrain.training import finetune


@pytest.fixture(scope="module")
def study(tiny_study):
    return tiny_study


def spec(**changes):
    settings = {"lr": 3e-3, "steps": 8, "batch_size": 8, "max_len": 32, "warmup_steps": 2, "seed": 0,
                "grad_clip": 1.0, "threads": 1, **changes}
    return finetune.FinetuneSpec(**settings)


@pytest.fixture(scope="module")
def single(study, tmp_path_factory):
    d, paths = study
    out = tmp_path_factory.mktemp("single") / "ft"
    finetune.run(d / "ckpt", paths["ft_train"], out, spec())
    return out


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one(study, single, tmp_path, parallel):
    d, paths = study
    out = tmp_path / "ft"
    meta = finetune.run(d / "ckpt", paths["ft_train"], out, spec(processes=2, parallel=parallel))
    assert meta["processes"] == 2 and meta["parallel"] == parallel
    one = pd.read_csv(single / "train_log.csv")
    two = pd.read_csv(out / "train_log.csv")
    assert len(two) == len(one) == 8
    rel = ((two["loss"] - one["loss"]).abs() / one["loss"]).max()
    assert rel < 1e-3, rel
    a, b = load_file(str(single / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # the saved model is the whole model, gathered from the shards
        assert float((a[k] - b[k]).norm() / a[k].norm()) < 1e-3, k
    assert json.loads((out / "meta.json").read_text())["processes"] == 2
    assert not list(tmp_path.glob("*.request.json"))


def test_two_process_run_with_gradient_checkpointing_and_accumulation(study, single, tmp_path):
    d, paths = study
    out = tmp_path / "ft"
    finetune.run(d / "ckpt", paths["ft_train"], out,
                 spec(processes=2, parallel="ddp", grad_accum=2, gradient_checkpointing=True))
    one = pd.read_csv(single / "train_log.csv")
    two = pd.read_csv(out / "train_log.csv")
    assert ((two["loss"] - one["loss"]).abs() / one["loss"]).max() < 1e-3
    assert torch.isfinite(torch.tensor(two["loss"].to_numpy())).all()
