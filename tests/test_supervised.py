"""One supervised run for text and LLaVA fine-tuning: its settings built once from the config,
the run itself on a single-process group, and the result writer every evaluation goes through."""

import json
from dataclasses import asdict
from importlib.metadata import version

import pytest
import torch

from overtrain import models
from overtrain.evaluation import results
from overtrain.training import sft
from overtrain.training.distributed import Group
from overtrain.training.finetune import FinetuneSpec
from overtrain.training.supervised import TrainSettings, split_settings, supervised_run


def test_settings_are_read_once_from_the_config_and_keyed_by_what_changes_a_run():
    finetune = {"steps": 40, "batch_size": 16, "warmup_steps": 20, "learning_rates": [1e-3], "tasks": ["x"],
                "save_every": 5, "lora": {"rank": 4}}
    s = TrainSettings.from_config(finetune, device="cpu", dtype="bfloat16", threads=2)
    assert (s.steps, s.batch_size, s.dtype, s.threads, s.save_every) == (40, 16, "bfloat16", 2, 5)
    assert s.betas == (0.9, 0.95)  # fixed: not a config key
    assert "save_every" not in s.identity() and "threads" not in s.identity() and s.identity()["steps"] == 40
    own, train = split_settings({"lr": 1e-3, "max_len": 32, "steps": 7}, TrainSettings(warmup_steps=0))
    assert own == {"lr": 1e-3, "max_len": 32} and train.steps == 7 and train.warmup_steps == 0
    spec = FinetuneSpec.from_config({**finetune, "gradient_checkpointing": True, "fsdp_no_sync": True},
                                    {"method": "lora", "lr": 3e-4, "l2": 0.0, "seed": 1}, max_len=64, device="cpu",
                                    dtype="float32", threads=1)
    assert spec.lora == {"rank": 4} and spec.gradient_checkpointing and spec.fsdp_no_sync and spec.train.steps == 40
    assert FinetuneSpec.from_dict(json.loads(json.dumps(asdict(spec)))) == spec  # a torchrun request


def test_a_group_of_one_process_is_the_identity():
    g = Group()
    t = torch.tensor([1.0, 2.0])
    assert g.is_main and g.world == 1 and g.all_sum(t) is t
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    assert g.wrap(model, "ddp", "float32") is model
    with g.sync(model, last=False):  # nothing to hold back
        pass
    state = g.train_state(model, opt)
    g.load_train_state(model, opt, state)
    assert set(g.full_model_state(model)) == {"weight", "bias"}


def test_a_supervised_run_trains_every_example_once_per_epoch(tiny_study, tmp_path):
    d, paths = tiny_study
    model, tok = models.load_variant(d / "ckpt")
    encoded = sft.encode_examples(tok, sft.read_examples(paths["ft_train"]), 32)
    n = len(encoded.ids)
    settings = TrainSettings(steps=None, epochs=2, batch_size=8, warmup_steps=2)
    run = supervised_run(model, encoded, lambda part: sft.collate(encoded, part), tmp_path / "out", lr=1e-3,
                         order_seed=0, settings=settings, fingerprint_extra={"data": "x"})
    assert run.steps == -(-2 * n // 8) and len(run.log) == run.steps and run.diverged is None
    assert run.log[0]["epoch"] == 0 and run.log[-1]["epoch"] == pytest.approx((run.steps - 1) * 8 / n)
    meta = run.describe()
    assert meta["n_examples"] == n and meta["epochs"] == pytest.approx(run.steps * 8 / n) and not meta["diverged"]
    assert run.log_text().splitlines()[0] == "step,epoch,lr,loss,grad_norm"
    assert all(0 < r["grad_norm"] < float("inf") for r in run.log)  # before clipping: what the trackers show


def test_every_result_says_how_it_was_made(tmp_path):
    model = torch.nn.Linear(2, 2).to(torch.bfloat16)
    r = results.write_result(tmp_path / "r.json", {"model": "m"}, "ok", model=model, batch_size=8, rows=[])
    back = json.loads((tmp_path / "r.json").read_text())
    assert back == r and back["runtime"]["dtype"] == "bfloat16" and back["runtime"]["device"] == "cpu"
    assert back["runtime"]["batch_size"] == 8 and back["versions"]["torch"] == version("torch")
    plain = results.write_result(tmp_path / "p.json", {"model": "m"}, "diverged", rows=[])
    assert "runtime" not in plain and plain["status"] == "diverged" and "python" in plain["versions"]
