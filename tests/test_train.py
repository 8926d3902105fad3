import csv
import json

import pytest
import torch
from conftest import TINY_OPT, tiny_finetune, tiny_spec
from safetensors.torch import load_file

from overtrain.training import pretrain, sft, stable

SPEC = tiny_spec(optimizer={**TINY_OPT, "warmup_steps": 100})


@pytest.fixture(scope="module")
def lang_files(tiny_study):
    return tiny_study


def weights(path):
    return load_file(str(path / "model.safetensors"))


def run_pretrain(d, out, budget, **kw):
    return pretrain.pretrain(d / "language.npz", d / "tok", out, SPEC, budget_tokens=budget, **kw)


def test_pretrain_is_deterministic_and_complete(lang_files, tmp_path):
    d, _ = lang_files
    meta = run_pretrain(d, tmp_path / "a", 256 * 30)
    run_pretrain(d, tmp_path / "b", 256 * 30)
    assert meta["steps"] == 30 and meta["tokens"] == 7680 and meta["warmup_steps"] == 3
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = list(csv.DictReader(open(tmp_path / "a" / "train_log.csv")))
    assert len(rows) == 30 and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    for f in ("config.json", "model.safetensors", "tokenizer.json", "meta.json"):
        assert (tmp_path / "a" / f).exists()


def stable_chain(d, root, budgets, snapshots=False, spec=SPEC):
    """Every segment of the stable run, each continuing from the one before (as the rules chain them)."""
    previous = None
    for segment in stable.segments(spec, budgets, snapshots):
        stable.train_segment(d / "language.npz", root / segment, spec, budgets, segment, previous, snapshots)
        previous = root / segment
    return root


def test_wsd_branch_equals_separate_run_for_the_smallest_budget(lang_files, tmp_path):
    d, _ = lang_files
    budgets = [256 * 20, 256 * 40]
    assert stable.segments(SPEC, budgets) == {"tok5120": 16, "tok10240": 32}
    chain = stable_chain(d, tmp_path / "stable", budgets)
    meta = run_pretrain(d, tmp_path / "branch", budgets[0], branch_from=chain / "tok5120")
    assert meta["branched_at_step"] == 16 and meta["warmup_steps"] == 2
    separate = run_pretrain(d, tmp_path / "separate", budgets[0])  # the same warmup: its own 10%
    assert separate["warmup_steps"] == 2
    wa, wb = weights(tmp_path / "branch"), weights(tmp_path / "separate")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the large budget branches from the same trajectory, with its own complete decay
    large = run_pretrain(d, tmp_path / "large", budgets[1], branch_from=chain / "tok10240")
    assert large["steps"] == 40 and large["branched_at_step"] == 32 and large["warmup_steps"] == 2


def test_stable_segments_make_the_continuous_run_and_its_snapshots(lang_files, tmp_path):
    """A chain of segments ends where the same stable run cut at other points ends, and the stable
    checkpoint at a budget's tokens is that run's model after those tokens."""
    from overtrain.sources.corpus import load_language

    d, _ = lang_files
    budgets = [256 * 20, 256 * 40]
    assert stable.segments(SPEC, budgets, snapshots=True) == {"tok5120": 16, "tok10240": 32, "end": 40}
    assert stable.segment_holding(SPEC, budgets, 5120) == "tok10240"  # step 20 lies in (16, 32]
    assert stable.segment_holding(SPEC, budgets, 10240) == "end"
    chain = stable_chain(d, tmp_path / "chain", budgets, snapshots=True)
    assert sorted(p.name for p in chain.iterdir()) == ["end", "tok10240", "tok5120"]
    assert json.loads((chain / "tok10240" / "meta.json").read_text())["snapshots"] == [5120]
    steps = [int(r["step"]) for p in ("tok5120", "tok10240", "end") for r in csv.DictReader(open(chain / p / "train_log.csv"))]
    assert steps == list(range(40))
    # the same run (the same warmup) cut once, at step 16, and then at 40
    other = stable_chain(d, tmp_path / "other", [256 * 20, 256 * 50])
    a = torch.load(chain / "end" / "state.pt", weights_only=True)
    b = torch.load(other / "tok12800" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 40 and a["warmup_steps"] == b["warmup_steps"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # the snapshot at 5120 tokens (20 steps) is the run's model after step 20
    vocab = load_language(d / "language.npz").vocab_size
    stable.save_snapshot(chain / "tok10240", 5120, d / "tok", tmp_path / "ckpt", SPEC, vocab, 0)
    early = stable_chain(d, tmp_path / "early", [256 * 20, 256 * 25])  # its second segment ends at step 20
    ref = torch.load(early / "tok6400" / "state.pt", weights_only=True)
    assert ref["step"] == 20
    snap = weights(tmp_path / "ckpt")
    assert all(torch.equal(snap[k], ref["model"][k]) for k in snap)
    assert json.loads((tmp_path / "ckpt" / "meta.json").read_text())["phase"] == "stable"
    # a segment refuses a previous state that does not end where it starts
    with pytest.raises(ValueError, match="needs the previous segment"):
        stable.train_segment(d / "language.npz", tmp_path / "x", SPEC, budgets, "tok10240")


def test_finetune_deterministic_over_steps(lang_files, tmp_path):
    d, paths = lang_files
    run_pretrain(d, tmp_path / "ckpt", 256 * 10)
    for out, seed in (("f1", 0), ("f2", 0), ("f3", 1)):
        tiny_finetune(tmp_path / "ckpt", paths["ft_train"], tmp_path / out, seed=seed)
    w1, w2, w3 = (weights(tmp_path / f) for f in ("f1", "f2", "f3"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)
    rows = list(csv.DictReader(open(tmp_path / "f1" / "train_log.csv")))
    assert [r["step"] for r in rows] == [str(i) for i in range(12)]
    assert float(rows[5]["epoch"]) == pytest.approx(1.0)  # 40 examples, 8 per step
    assert {"step", "epoch", "lr", "loss"} <= set(rows[0])


def test_prompt_tokens_carry_no_loss(lang_files):
    d, _ = lang_files
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d / "tok")
    enc = sft.encode_examples(tok, [("<ft> w1", "w2 w3"), ("", "<ft> w4")], 8)
    batch = sft.collate(enc, [0, 1])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids[0, :5].tolist() == [1, 4, tok.convert_tokens_to_ids("w1"), tok.convert_tokens_to_ids("w2"), tok.convert_tokens_to_ids("w3")]
    assert labels[0, :5].tolist()[:3] == [-100, -100, -100] and labels[0, 3] != -100
    assert labels[1, 0] == -100 and labels[1, 1] == 4
    assert mask[1].tolist() == [1, 1, 1, 0, 0]
    assert ids.shape[1] == 5  # as wide as the longest example of the batch, not max_len


def test_sharpness_aware_pretraining_descends_the_worst_point_of_a_ball(lang_files, tmp_path):
    """optimizer.sam_rho: each step's gradient is taken at θ + ρ·g/‖g‖ (one ascent step) and
    applied at θ; deterministic, and a different run from plain AdamW."""
    from overtrain.training import loop

    d, _ = lang_files
    sam = tiny_spec(optimizer={**TINY_OPT, "sam_rho": 0.05})
    a = pretrain.pretrain(d / "language.npz", d / "tok", tmp_path / "a", sam, budget_tokens=256 * 10)
    pretrain.pretrain(d / "language.npz", d / "tok", tmp_path / "b", sam, budget_tokens=256 * 10)
    plain = pretrain.pretrain(d / "language.npz", d / "tok", tmp_path / "c", tiny_spec(), budget_tokens=256 * 10)
    wa, wb, wc = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a["final_train_loss"] != plain["final_train_loss"]
    # one step by hand: the update is AdamW's on the gradient at the ascended point
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = torch.optim.SGD([w], lr=0.1)

    def backward():
        loss = (w ** 4).sum()
        loss.backward()
        return float(loss)

    backward()
    g = w.grad.clone()
    loop.sam_ascent([w], 0.1, backward, opt)
    point = torch.tensor([1.0, -2.0]) + 0.1 * g / g.norm()
    assert torch.allclose(w.grad, 4 * point ** 3) and torch.allclose(w.detach(), torch.tensor([1.0, -2.0]))
