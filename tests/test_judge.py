"""The local judge: both orders of an LM judge, a reward-model judge, the length-controlled win
rate, generation for a prompt set."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from overtrain.evaluation import judge


@pytest.fixture(scope="module")
def tok(tiny_study):
    return AutoTokenizer.from_pretrained(tiny_study[0] / "tok")


def tiny(cls, tok, seed, **kw):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, **kw)
    return cls(cfg).eval()


def test_an_lm_judge_sees_both_orders(tok):
    lm = tiny(LlamaForCausalLM, tok, 0)
    p = judge.lm_preference(lm, tok, "w1 w2", "w3 w4", "w5")
    q = judge.lm_preference(lm, tok, "w1 w2", "w5", "w3 w4")
    assert 0 < p < 1 and p + q == pytest.approx(1.0, abs=1e-9)  # swapping who is who flips it exactly
    assert judge.lm_preference(lm, tok, "w1", "w3", "w3") == pytest.approx(0.5, abs=1e-9)  # ties are ties


def test_a_reward_model_judge(tok):
    rm = tiny(LlamaForSequenceClassification, tok, 1, num_labels=1)
    p = judge.reward_preference(rm, tok, "w1 w2", "w3 w4", "w5")
    q = judge.reward_preference(rm, tok, "w1 w2", "w5", "w3 w4")
    assert 0 < p < 1 and p + q == pytest.approx(1.0, abs=1e-9)


def test_length_control_removes_a_length_bias():
    rng = np.random.default_rng(0)
    n = 805
    ref_len = rng.integers(200, 800, n)
    model_len = (ref_len * rng.uniform(1.2, 2.2, n)).astype(int)  # the model writes ~1.7× longer
    quality = -0.4  # truly a bit worse than the reference
    bias = 1.5 * np.tanh((model_len - ref_len) / np.std(model_len - ref_len))
    pref = 1 / (1 + np.exp(-(quality + bias)))
    raw = judge.win_rate(pref.tolist())
    lc = judge.length_controlled_win_rate(pref.tolist(), model_len.tolist(), ref_len.tolist())
    assert raw > 60 and lc < raw - 10
    assert lc == pytest.approx(100 / (1 + np.exp(0.4)), abs=6)  # ≈ the true σ(quality)
    even = judge.length_controlled_win_rate([0.3] * 50, [100] * 50, [100] * 50)
    assert even == pytest.approx(30, abs=0.5)


def test_generate_gives_one_response_per_instruction(tok):
    lm = tiny(LlamaForCausalLM, tok, 2)
    out = judge.generate(lm, tok, ["w1 w2", "w3", "w4 w5 w6"], max_new_tokens=4, batch_size=2)
    assert len(out) == 3 and all(isinstance(x, str) for x in out)
    assert tok.padding_side == "right"  # restored
    rows = judge.judgment_rows([0.2, 0.8, 0.5], ["a", "bb", "ccc"], ["x", "y", "z"])
    assert {r["metric"]: r["value"] for r in rows}["win_rate"] == pytest.approx(50.0)
