"""Long and awkward examples, gradient accumulation over variable-length data, length-grouped
batches, and fine-tunes that diverge."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import tiny_finetune
from transformers import AutoTokenizer

from overtrain import models
from overtrain.training import loop, sft


@pytest.fixture(scope="module")
def study(tiny_study):
    return tiny_study


@pytest.fixture(scope="module")
def tok(study):
    return AutoTokenizer.from_pretrained(study[0] / "tok")


def words(n, start=0):
    return " ".join(f"w{(start + i) % 64}" for i in range(n))


def test_long_examples_keep_their_response_and_lose_the_prompt_start(tok):
    examples = [
        (words(20), words(3, 40)),  # too long: the prompt is cut from the left
        ("", words(40)),  # the response alone does not fit: dropped
        (words(2), words(2, 50)),  # fits
    ]
    enc = sft.encode_examples(tok, examples, max_len=10)
    assert enc.truncated == 1 and enc.dropped == 1 and len(enc.ids) == 2
    first = tok.convert_ids_to_tokens(enc.ids[0])
    assert len(first) == 10 and first[0] == "<bos>"
    assert first[-3:] == words(3, 40).split()  # the whole response
    assert first[1:7] == words(20).split()[-6:]  # the end of the prompt
    assert sum(label != -100 for label in enc.labels[0]) == 3


def test_a_literal_bos_in_the_prompt_is_not_doubled(tok):
    enc = sft.encode_examples(tok, [("<bos> " + words(2), words(1, 9))], max_len=16)
    assert tok.convert_ids_to_tokens(enc.ids[0]).count("<bos>") == 1


def variable_length_examples(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return [(words(int(rng.integers(1, 12)), i), words(int(rng.integers(1, 15)), 3 * i)) for i in range(n)]


def one_step(study, tok, micro_splits):
    """Gradients of one step over 8 variable-length examples split into micro-batches."""
    model, _ = models.load_variant(study[0] / "ckpt")
    enc = sft.encode_examples(tok, variable_length_examples(), max_len=32)
    idx = list(range(8))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # the weight change is the gradient itself
    grads = {}

    def micro_batches(step):
        return [sft.collate(enc, part) for part in sft.split_micro(idx, micro_splits)]

    def keep_grads(lr):
        grads.update({n: before[n] - p.detach() for n, p in model.named_parameters()})

    log = []
    loop.run_steps(model, opt, micro_batches, lambda s: 1.0, 0, 1, grad_clip=0.0, log=log, after_step=keep_grads)
    return grads, log[0]["loss"]


def test_grad_accumulation_makes_the_same_update_on_variable_length_data(study, tok):
    enc = sft.encode_examples(tok, variable_length_examples(), max_len=32)
    targets = [sum(y != -100 for y in enc.labels[i]) for i in range(8)]
    assert len(set(targets)) > 3  # the examples really differ in length
    w1, loss1 = one_step(study, tok, 1)
    for k in (2, 4, 8):
        wk, lossk = one_step(study, tok, k)
        assert lossk == pytest.approx(loss1, rel=1e-5)
        for name in w1:  # relative to the tensor's gradient norm (float32 sums differ in order)
            assert float((wk[name] - w1[name]).norm() / w1[name].norm()) < 1e-5, (k, name)


def test_a_micro_batch_without_labelled_tokens_gives_no_nan(study, tok):
    model, _ = models.load_variant(study[0] / "ckpt")
    enc = sft.encode_examples(tok, [(words(3), words(2, 7)), (words(4), words(3, 9))], max_len=16)
    empty = sft.collate(enc, [0])
    empty["labels"][:] = -100
    full = sft.collate(enc, [1])
    opt = loop.make_optimizer(model, 1e-3, 0.0, (0.9, 0.95))
    log = []
    assert loop.run_steps(model, opt, lambda s: [empty, full], lambda s: 1e-3, 0, 2, grad_clip=1.0, log=log) is None
    assert all(np.isfinite(r["loss"]) for r in log)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_length_grouped_batches_cover_every_example_each_epoch():
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(4, 1, 64).astype(int) + 1
    order = sft.batch_order(lengths.tolist(), batch_size=8, total_steps=16, seed=3)  # 2 epochs
    assert order.shape == (16, 8)
    for epoch in (order[:8], order[8:]):
        assert Counter(epoch.flatten().tolist()) == Counter(range(64))
    padded = lambda o: sum(len(b) * lengths[b].max() for b in o)  # noqa: E731
    plain = sft.batch_order(lengths.tolist(), 8, 16, 3, group_by_length=False)
    assert padded(order) < 0.75 * padded(plain)  # far less padding
    assert np.array_equal(order, sft.batch_order(lengths.tolist(), 8, 16, 3))  # a pure function of the seed


def test_the_guard_flags_non_finite_and_exploding_losses():
    guard = loop.DivergenceGuard(factor=3.0, window=2)
    log = [{"step": 0, "loss": 2.0}, {"step": 1, "loss": 2.1}]
    assert guard.check(log, 1.0) is None
    assert "exploded" in guard.check(log + [{"step": 2, "loss": 20.0}], 1.0)
    assert "non-finite" in guard.check([{"step": 0, "loss": float("nan")}], 1.0)
    assert "non-finite" in guard.check(log, float("inf"))
    assert loop.DivergenceGuard(0.0, 2).check(log + [{"step": 2, "loss": 1e6}], 1.0) is None


def test_a_diverging_fine_tune_stops_early_and_is_recorded(study, tmp_path):
    d, paths = study
    meta = tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "boom", lr=50.0, steps=40, warmup_steps=0)
    assert meta["diverged"] is True and meta["diverged_at_step"] < 39
    saved = json.loads((tmp_path / "boom" / "meta.json").read_text())
    assert saved["diverged"] and "diverged_reason" in saved
    assert not list((tmp_path / "boom").glob("*.safetensors"))  # never loaded or evaluated as a model
    assert (tmp_path / "boom" / "train_log.csv").exists()
    calm = tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "calm", lr=1e-3, steps=40)
    assert calm["diverged"] is False


def test_each_pretraining_replicate_is_fine_tuned_with_its_own_data_order(tmp_path):
    """A replicate repeats the whole pipeline: checkpoints of different pretraining seeds get
    different fine-tuning orders from the same run seed; a checkpoint without a pretraining seed
    (hub, local) uses the run seed itself; and the draw is a pure function of both."""
    dirs = {}
    for name, meta in {"s0": {"pretrain_seed": 0}, "s1": {"pretrain_seed": 1}, "hub": {"tokens": 10}}.items():
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        (dirs[name] / "meta.json").write_text(json.dumps(meta))
    seeds = {name: sft.replicate_seed(0, d) for name, d in dirs.items()}
    assert seeds["hub"] == 0 and sft.replicate_seed(3, dirs["hub"]) == 3
    assert seeds["s0"] != seeds["s1"] and sft.replicate_seed(0, dirs["s0"]) == seeds["s0"]
    assert sft.replicate_seed(1, dirs["s0"]) not in (seeds["s0"], seeds["s1"])  # a second fine-tuning seed
    orders = {name: sft.batch_order([8] * 40, 8, 10, s) for name, s in seeds.items()}
    assert not np.array_equal(orders["s0"], orders["s1"])
