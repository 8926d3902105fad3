"""Multi-GPU fine-tuning, tested through its CPU analogue: 2 processes on gloo (torchrun), DDP and
FSDP2, against one process on the same global batch and data order."""

import json

import pandas as pd
import pytest
from safetensors.torch import load_file

from overtrain.training import finetune


@pytest.fixture(scope="module")
def study(tiny_study):
    return tiny_study


def spec(**changes):
    settings = {"lr": 3e-3, "steps": 8, "batch_size": 8, "max_len": 32, "warmup_steps": 2, "seed": 0,
                "grad_clip": 1.0, "threads": 1, **changes}
    return finetune.FinetuneSpec.flat(**settings)


@pytest.fixture(scope="module")
def single(study, tmp_path_factory):
    d, paths = study
    out = tmp_path_factory.mktemp("single") / "ft"
    finetune.run(d / "ckpt", paths["ft_train"], out, spec())
    return out


@pytest.mark.parametrize("settings", [
    {"parallel": "ddp", "gradient_checkpointing": True},
    {"parallel": "fsdp"},
    {"parallel": "fsdp", "fsdp_no_sync": True},
], ids=["ddp-checkpointing", "fsdp", "fsdp-no-sync"])
def test_two_processes_with_accumulation_match_one(study, single, tmp_path, settings):
    """2 processes × 2 micro-batches per step make the updates of 1 process with whole batches: DDP
    (with gradient checkpointing), FSDP2 syncing every micro-batch, and FSDP2 skipping the
    reduce-scatter of the non-final one (finetune.fsdp_no_sync); rank 0 saves the whole model."""
    d, paths = study
    out = tmp_path / "ft"
    meta = finetune.run(d / "ckpt", paths["ft_train"], out, spec(processes=2, grad_accum=2, **settings))
    assert meta["processes"] == 2 and meta["parallel"] == settings["parallel"]
    one = pd.read_csv(single / "train_log.csv")
    two = pd.read_csv(out / "train_log.csv")
    assert len(two) == len(one) == 8
    assert ((two["loss"] - one["loss"]).abs() / one["loss"]).max() < 1e-3
    a, b = load_file(str(single / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # the saved model is the whole model, gathered from the shards
        assert float((a[k] - b[k]).norm() / a[k].norm()) < 1e-3, k
    assert json.loads((out / "meta.json").read_text())["processes"] == 2
    assert not list(tmp_path.glob("*.request.json"))


COUNT_COLLECTIVES = r'''
import json, sys
import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from overtrain import models
from overtrain.training.distributed import Group
from overtrain.training.loop import make_optimizer, run_steps

group = Group.from_env("cpu")
counts = {}
for micro in (1, 2):  # micro-batches per step
    model = group.wrap(models.make_llama(32, hidden=8, layers=1, heads=2, intermediate=16, max_len=8, init_std=0.1,
                                         seed=0), "ddp", "float32")
    n = {"gradient all-reduces": 0, "sums": 0}

    def hook(state, bucket):
        n["gradient all-reduces"] += 1
        return default_hooks.allreduce_hook(state, bucket)

    model.register_comm_hook(None, hook)
    all_sum = group.all_sum

    def counted_sum(t):
        n["sums"] += 1
        return all_sum(t)

    group.all_sum = counted_sum

    def micro_batches(step):
        ids = torch.randint(0, 32, (8, 8), generator=torch.Generator().manual_seed(100 * step + group.rank))
        return [{"input_ids": part, "labels": part} for part in ids.chunk(micro)]

    run_steps(model, make_optimizer(model, 1e-3, 0.0, (0.9, 0.95)), micro_batches, lambda s: 1e-3, 0, 3,
              grad_clip=1.0, log=[], group=group)
    group.all_sum = all_sum
    counts[micro] = n
if group.is_main:
    json.dump(counts, open(sys.argv[1], "w"))
group.close()
'''


def test_gradients_are_synchronised_once_per_step_whatever_the_accumulation(tmp_path):
    """DDP on 2 gloo processes: with 2 micro-batches per step the gradients are all-reduced as
    often as with 1 (no_sync on the non-final one), and the loop's token and loss sums are two
    collectives per step."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    script = tmp_path / "count.py"
    script.write_text(COUNT_COLLECTIVES)
    out = tmp_path / "counts.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = json.loads(out.read_text())
    one, two = counts["1"], counts["2"]
    assert one["gradient all-reduces"] >= 3  # at least one bucket per step, 3 steps
    assert two["gradient all-reduces"] == one["gradient all-reduces"]
    assert one["sums"] == two["sums"] == 2 * 3

