"""The studies' analyses on hand-computed cases."""

import numpy as np
import pandas as pd
import pytest
import torch

from overtrain.analysis import tables, theory
from overtrain.evaluation import connectivity


def test_barrier_of_known_curves():
    # a loss path 1.0 → 1.6 (middle) → 1.2: max 1.6 − mean of ends 1.1 = 0.5
    assert connectivity.barrier([1.0, 1.3, 1.6, 1.4, 1.2], higher_is_better=False) == pytest.approx(0.5)
    # an accuracy path 0.8 → 0.5 → 0.7: mean of ends 0.75 − min 0.5 = 0.25
    assert connectivity.barrier([0.8, 0.5, 0.7], higher_is_better=True) == pytest.approx(0.25)
    # a path no worse than its ends inside (a convex loss path) has no barrier
    assert connectivity.barrier([1.0, 0.9, 1.0], higher_is_better=False) == pytest.approx(0.0)


def test_interpolation_average_and_distance():
    a = {"w": torch.zeros(2, 2), "n": torch.tensor([1])}
    b = {"w": torch.ones(2, 2), "n": torch.tensor([2])}
    mid = connectivity.interpolate(a, b, 0.25)
    assert torch.allclose(mid["w"], torch.full((2, 2), 0.25)) and mid["n"].item() == 1
    assert torch.allclose(connectivity.average([a, b])["w"], torch.full((2, 2), 0.5))
    assert connectivity.l2_distance(a, b) == pytest.approx(2.0)


def test_greedy_soup_order_and_acceptance():
    # scores of single ingredients: 2 is best, then 0, then 1; soup scores by member set
    scores = {(0,): 0.70, (1,): 0.60, (2,): 0.80, (0, 2): 0.82, (0, 1, 2): 0.75, (1, 2): 0.9}

    def score(subset):
        return scores[tuple(sorted(subset))]

    calls = []

    def tracking(subset):
        calls.append(tuple(subset))
        return score(subset)

    assert connectivity.greedy_soup(["a", "b", "c"], tracking, higher_is_better=True) == [2, 0]
    # tried in order of their own scores: 2, then 0 (kept: 0.82 ≥ 0.80), then 1 (dropped: 0.75)
    assert calls[3:] == [(2,), (2, 0), (2, 0, 1)]
    losses = {(0,): 1.0, (1,): 2.0, (0, 1): 0.9}
    assert connectivity.greedy_soup([0, 1], lambda s: losses[tuple(sorted(s))], higher_is_better=False) == [0, 1]


def u_curve(tokens, seeds, center, noise=0.0, rng=None):
    rows = []
    for s in seeds:
        for t in tokens:
            value = (np.log2(t) - np.log2(center)) ** 2 + (rng.normal(0, noise) if rng is not None else 0)
            rows.append({"tokens": t, "seed": s, "value": value})
    return pd.DataFrame(rows)


def test_inflection_of_a_known_u_shape():
    tokens = [1e5, 2e5, 4e5, 8e5, 1.6e6, 3.2e6]
    res = tables.inflection(u_curve(tokens, [0, 1, 2], 8e5), higher_is_better=False, n_boot=200)
    assert res["t_star"] == 8e5 and res["interior"]
    assert res["ci_low"] == res["ci_high"] == 8e5  # identical seeds: no uncertainty
    noisy = u_curve(tokens, range(8), 8e5, noise=0.8, rng=np.random.default_rng(0))
    res = tables.inflection(noisy, higher_is_better=False, n_boot=500)
    assert res["ci_low"] <= res["t_star"] <= res["ci_high"] and res["n_seeds"] == 8
    assert res["ci_low"] < res["ci_high"]  # noise gives a real interval
    mono = pd.DataFrame({"tokens": tokens, "seed": 0, "value": -np.log(tokens)})
    assert tables.inflection(mono, higher_is_better=False)["interior"] is False


@pytest.mark.parametrize(
    "lrs,trend",
    [
        ([1e-3] * 4, "constant"),
        ([1e-3, 1e-3, 3e-4, 3e-4], "slowly decreasing"),
        ([1e-2, 1e-3, 3e-4, 1e-4], "quickly decreasing"),
        ([1e-4, 3e-4, 3e-4, 1e-3], "slowly increasing"),
    ],
)
def test_learning_rate_trend_classes(lrs, trend):
    assert tables.lr_trend([1e5, 1e6, 1e7, 1e8], lrs) == trend


def test_best_learning_rate_uses_validation_mean_over_seeds():
    rows = []
    for lr, vals in {1e-3: [1.0, 1.4], 3e-3: [1.1, 1.1]}.items():
        for seed, v in enumerate(vals):
            rows.append({"model": "m", "ckpt": "c", "tokens": 10, "variant": "finetuned", "ft_task": "t",
                         "ft_method": "full", "l2": 0.0, "lr": lr, "seed": seed, "eval_task": "synth_ft_val_ppl",
                         "split": "val", "metric": "loss", "value": v})
            rows.append({**rows[-1], "eval_task": "synth_ft_ppl", "split": "id", "value": 9 - v})
    df = pd.DataFrame(rows)
    best = tables.best_learning_rates(df, {"task": "synth_ft_val_ppl", "metric": "loss", "higher_is_better": False})
    assert best["lr"].tolist() == [3e-3]  # mean 1.1 < 1.2; the id split does not decide
    tuned = tables.tuned_metrics(df.reindex(columns=tables.METRIC_COLUMNS), best)
    assert set(tuned["lr"]) == {3e-3}


def test_theory_gradient_flow_matches_its_closed_form():
    setup = theory.Setup(n_features=6, lr=0.002)
    a, b = theory.pretrain(setup, tau=30.0)
    closed = theory.logistic_flow(theory.pretrain_targets(setup), setup.init, 30.0)
    np.testing.assert_allclose(a * b, closed, rtol=0.03, atol=1e-9)


def test_theory_limits():
    setup = theory.Setup(n_features=8)
    s = theory.pretrain_targets(setup)
    a, b = theory.pretrain(setup, tau=1e4)  # long pretraining learns every feature
    np.testing.assert_allclose(a * b, s, rtol=1e-3)
    assert theory.loss(a, b, s) < 1e-8
    # the expected noise loss is exact: compare with a Monte-Carlo estimate
    rng = np.random.default_rng(0)
    gamma = 0.1
    mc = np.mean([theory.loss(a + gamma * rng.standard_normal(8), b + gamma * rng.standard_normal(8), s)
                  for _ in range(20000)])
    assert theory.expected_noise_loss(a, b, s, gamma) == pytest.approx(mc, rel=0.02)
    # λ → ∞ keeps the pretrained weights: the pretraining loss after fine-tuning tends to the
    # base loss as λ grows (up to lr·λ = 1, the largest stable pull for gradient descent)
    s_ft = theory.finetune_targets(setup)
    damage = [
        theory.loss(*theory.gradient_descent(a, b, s_ft, 400, setup.lr, anchor=(a, b), l2=l2), s)
        - theory.loss(a, b, s)
        for l2 in (0.0, 1.0, 5.0, 1 / setup.lr)
    ]
    assert all(x > y for x, y in zip(damage, damage[1:]))
    assert damage[-1] < 0.05 * damage[0]


def test_theory_shows_the_inflection():
    rows = pd.DataFrame(theory.simulate(theory.Setup(), list(np.geomspace(2, 5000, 14)), [0.1, 0.2], 20, [0.0, 1.0]))
    ft = rows[(rows["condition"] == "finetune") & (rows["parameter"] == 0.0)]
    i = int(np.argmin(ft["pretrain_loss"].to_numpy()))
    assert 0 < i < len(ft) - 1  # unregularised fine-tuning: lowest at an interior τ
    assert ft["pretrain_loss"].iloc[-1] > ft["pretrain_loss"].iloc[i] * 1.5
    noise = rows[(rows["condition"] == "noise") & (rows["parameter"] == 0.2)]
    base = rows[rows["condition"] == "base"]
    increase = noise["pretrain_loss"].to_numpy() - base["pretrain_loss"].to_numpy()
    assert np.all(np.diff(increase) >= -1e-12)  # progressive sensitivity
    reg = rows[(rows["condition"] == "finetune") & (rows["parameter"] == 1.0)]
    assert reg["finetune_loss"].iloc[-1] > ft["finetune_loss"].iloc[-1]  # regularisation costs the FT task


def test_linear_barrier_of_a_straight_path_with_unequal_ends_is_zero():
    alphas = [0, 0.25, 0.5, 0.75, 1]
    straight = [1.0, 1.25, 1.5, 1.75, 2.0]
    assert connectivity.linear_barrier(straight, alphas, higher_is_better=False) == pytest.approx(0.0)
    assert connectivity.barrier(straight, higher_is_better=False) == pytest.approx(0.5)  # Frankle's: ends' spread
    bump = [1.0, 1.5, 2.0, 1.75, 2.0]
    assert connectivity.linear_barrier(bump, alphas, higher_is_better=False) == pytest.approx(0.5)
