"""The claims' statistics and verdicts on tables whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from overtrain.analysis import hypotheses, statistics
from overtrain.analysis.tables import METRIC_COLUMNS
from overtrain.analysis.verdict import MIN_EFFECT, verdict

TOKENS = [1e5, 2e5, 4e5, 8e5, 1.6e6, 3.2e6]


def rows(values_by_seed: dict, **labels) -> list[dict]:
    base = {c: None for c in METRIC_COLUMNS}
    out = []
    for seed, values in values_by_seed.items():
        for t, v in zip(TOKENS, values):
            out.append({**base, "model": "m", "ckpt": f"tok{int(t)}-s{seed}", "tokens": int(t), "pretrain_seed": seed,
                        "split": "pretrain", "metric": "loss", "eval_task": "p", "value": v, **labels})
    return out


def table(base: dict, noisy: dict) -> pd.DataFrame:
    df = pd.DataFrame(rows(base, variant="base") + rows(noisy, variant="perturbed", perturbation="gaussian",
                                                          gamma=0.1, seed=0), columns=METRIC_COLUMNS)
    return df.astype({"gamma": "float64", "lr": "float64", "l2": "float64"})


def claim(df, name):
    out = hypotheses.claims(df, n_boot=300)
    return out[out["hypothesis"] == name].iloc[0]


BASE = {s: [3.0 - 0.3 * i + 0.01 * s for i in range(6)] for s in range(3)}


def test_growing_sensitivity_is_supported_and_shrinking_is_not():
    growing = {s: [BASE[s][i] + 0.05 * 2**i + 0.01 * s for i in range(6)] for s in range(3)}
    row = claim(table(BASE, growing), "progressive sensitivity to Gaussian noise")
    assert row["verdict"] == "supported" and row["ci_low"] > 0 and row["n_seeds"] == 3
    shrinking = {s: [BASE[s][i] + 1.0 / 2**i for i in range(6)] for s in range(3)}
    assert claim(table(BASE, shrinking), "progressive sensitivity to Gaussian noise")["verdict"] == "not supported"


def test_replicates_that_disagree_are_inconclusive_and_one_replicate_is_never_enough():
    mixed = {0: [BASE[0][i] + 0.1 * i for i in range(6)], 1: [BASE[1][i] - 0.1 * i for i in range(6)],
             2: [BASE[2][i] + 0.0 for i in range(6)]}
    assert claim(table(BASE, mixed), "progressive sensitivity to Gaussian noise")["verdict"] == "inconclusive"
    one = {0: [BASE[0][i] + 0.05 * 2**i for i in range(6)]}
    row = claim(table({0: BASE[0]}, one), "progressive sensitivity to Gaussian noise")
    assert row["verdict"] == "inconclusive" and row["n_seeds"] == 1 and row["effect"] > 0


def test_an_interior_minimum_is_an_interior_t_star():
    u = {s: [(np.log2(t) - np.log2(4e5)) ** 2 * 0.1 + 1 + 0.01 * s for t in TOKENS] for s in range(3)}
    row = claim(table(BASE, u), "interior T* of the pretraining loss under Gaussian noise")
    assert row["verdict"] == "supported" and row["effect"] == pytest.approx(min(u[0][0], u[0][-1]) - 1.0, abs=0.02)
    mono = {s: [2.0 - 0.1 * i for i in range(6)] for s in range(3)}
    assert claim(table(BASE, mono), "interior T* of the pretraining loss under Gaussian noise")["verdict"] == "not supported"


def test_a_claim_row_says_what_was_not_measured_and_names_the_method():
    from overtrain.analysis.evidence import COLUMNS, l2_suffix, method_prefix, not_measured

    row = not_measured("h", "s", "off")
    assert set(row) == set(COLUMNS) and row["condition"] == "not measured: off" and row["verdict"] == "inconclusive"
    assert method_prefix("full") == "" and method_prefix("lora") == "lora, "
    assert l2_suffix(0.0) == "" and l2_suffix(30.0) == ", λ=30"


def test_what_a_study_did_not_measure_is_said():
    out = hypotheses.claims(table(BASE, BASE), n_boot=50)
    missing = out[out["condition"].str.startswith("not measured")]
    assert {"larger γ → earlier T*", "ℓ2 toward the pretrained weights delays T*",
            "training loss drops at epoch boundaries (learning jumps)"} <= set(missing["hypothesis"])
    assert (missing["verdict"] == "inconclusive").all()
    assert list(out.columns) == ["model"] + hypotheses.COLUMNS


def test_earlier_t_star_statistic():
    x = np.array(TOKENS)
    small = (np.log2(x) - np.log2(8e5)) ** 2
    large = (np.log2(x) - np.log2(2e5)) ** 2
    assert statistics.earlier(x, small, large) == pytest.approx(2.0)
    assert verdict(0.1, 0.5, 3) == "supported"
    assert verdict(-0.5, 0.0, 3) == "not supported"
    assert verdict(-0.1, 0.2, 3) == "inconclusive"
    assert verdict(0.1, 0.5, 1) == "inconclusive"


def test_degradation_past_T_star_is_signed():
    """Still improving at the largest budget is evidence against the claim (an interval below 0),
    not a degenerate [0, 0]; a minimum before the end is evidence for it."""
    x = np.array(TOKENS)
    improving = np.array([3.0, 2.5, 2.2, 2.0, 1.9, 1.85])
    assert statistics.end_worse(x, improving) == pytest.approx(-0.05)
    degraded = np.array([3.0, 2.5, 2.2, 2.0, 2.1, 2.3])
    assert statistics.end_worse(x, degraded) == pytest.approx(0.3)
    assert verdict(-0.08, -0.02, 3) == "not supported"
    assert verdict(-0.08, 0.02, 3) == "inconclusive"


def test_an_effect_below_the_margin_is_inconclusive_whichever_way_float_rounding_moves_it():
    """Every seed shows the claimed sign by a hair (0.002 nats per doubling, below δ = 0.01): the
    verdict is inconclusive, and stays so when one seed's rounding moves it across 0, which
    without the margin turns "supported" into "inconclusive"."""
    hair = {s: [BASE[s][i] + 0.002 * i + 0.0005 * s for i in range(6)] for s in range(3)}
    moved = {**hair, 0: [BASE[0][i] - 0.0005 * i for i in range(6)]}
    for noisy in (hair, moved):
        row = claim(table(BASE, noisy), "progressive sensitivity to Gaussian noise")
        assert row["verdict"] == "inconclusive" and row["min_effect"] == MIN_EFFECT
    strict = hypotheses.claims(table(BASE, hair), n_boot=300, min_effect=0.0)
    assert strict[strict["hypothesis"] == "progressive sensitivity to Gaussian noise"].iloc[0]["verdict"] == "supported"
    loose = hypotheses.claims(table(BASE, moved), n_boot=300, min_effect=0.0)
    assert loose[loose["hypothesis"] == "progressive sensitivity to Gaussian noise"].iloc[0]["verdict"] == "inconclusive"
    assert verdict(0.005, 0.02, 3, 0.01) == "inconclusive"
    assert verdict(0.011, 0.02, 3, 0.01) == "supported"
    assert verdict(-0.05, -0.01, 3, 0.01) == "not supported"
    assert verdict(-0.05, -0.009, 3, 0.01) == "inconclusive"


def test_claims_on_t_star_location_count_any_shift():
    noisy = {s: [(np.log2(t) - np.log2(8e5)) ** 2 * 0.1 + 1 + 0.01 * s for t in TOKENS] for s in range(3)}
    df = table(BASE, noisy)
    louder = df[df["variant"] == "perturbed"].assign(gamma=0.2, value=[
        (np.log2(t) - np.log2(2e5)) ** 2 * 0.1 + 1.5 + 0.01 * s for s in range(3) for t in TOKENS])
    row = claim(pd.concat([df, louder], ignore_index=True), "larger γ → earlier T*")
    assert row["min_effect"] == 0.0 and row["effect"] == pytest.approx(2.0) and row["verdict"] == "supported"


def test_a_best_budget_effect_is_cross_fitted_so_noise_does_not_pass_for_an_effect():
    """On flat curves of pure noise the best earlier budget is best by its noise: measured on the
    same curves, 'largest − best earlier' is biased upward; each replicate measured at the T* the
    others chose is not."""
    rng = np.random.default_rng(0)
    x = np.array(TOKENS)
    plain, fitted = [], []
    for _ in range(400):
        values = rng.normal(0.0, 0.05, (len(TOKENS), 5))  # budgets × replicates, no effect
        plain.append(statistics.end_worse(x, values.mean(axis=1)))
        fitted.append(statistics.end_worse.cross_fitted(x, values).mean())
    assert np.mean(plain) > 0.02  # the best of 5 noisy budgets
    assert abs(np.mean(fitted)) < 0.005
    # a real degradation is still found, at the T* the others choose
    real = np.stack([[1.0, 0.8, 0.7, 0.6, 0.8, 0.9]] * 3, axis=1) + np.array([0.0, 0.01, 0.02])
    assert statistics.end_worse.cross_fitted(x, real) == pytest.approx([0.3, 0.3, 0.3])


def test_sharpness_claims_read_the_sharpness_rows():
    trace = {s: [10.0 * 1.5**i + s for i in range(6)] for s in range(3)}  # +50% per doubling
    df = table(BASE, {s: [BASE[s][i] + 0.05 * 2**i for i in range(6)] for s in range(3)})
    sharp = pd.DataFrame(rows(trace, variant="base", metric="hessian_trace"), columns=METRIC_COLUMNS)
    out = hypotheses.claims(pd.concat([df, sharp.astype(df.dtypes.to_dict())]), n_boot=300)
    grows = out[out["hypothesis"] == "sharpness grows with pretraining tokens"].iloc[0]
    assert grows["verdict"] == "supported" and grows["effect"] == pytest.approx(np.log(1.5), rel=0.05)
    predicts = out[out["hypothesis"] == "sharpness predicts noise sensitivity and forgetting across checkpoints"]
    assert predicts.iloc[0]["effect"] == pytest.approx(1.0) and predicts.iloc[0]["verdict"] == "supported"
    none = hypotheses.claims(df, n_boot=50)
    assert none[none["hypothesis"] == "sharpness grows with pretraining tokens"].iloc[0]["condition"].startswith(
        "not measured")


def test_a_pair_is_judged_on_the_paired_gap_signed_by_its_factor():
    """Annealed checkpoints that noise damages more than the stable ones at equal tokens support
    'annealing raises the damage'; SAM claims the opposite sign; a pair without a shared measure
    says so."""
    from overtrain.analysis import contrasts

    more = {s: [BASE[s][i] + 0.2 + 0.01 * s for i in range(6)] for s in range(3)}
    less = {s: [BASE[s][i] + 0.05 for i in range(6)] for s in range(3)}
    annealed, stable = table(BASE, more).assign(model="tiny"), table(BASE, less).assign(model="tiny-stable")
    df = pd.concat([annealed, stable], ignore_index=True)
    out = contrasts.claims(df, [{"factor": "annealing", "treatment": "tiny", "control": "tiny-stable"},
                                {"factor": "sam", "treatment": "tiny", "control": "tiny-stable"}], n_boot=300)
    assert list(out.columns) == ["model"] + hypotheses.COLUMNS
    anneal, sam = out.iloc[0], out.iloc[1]
    assert anneal["model"] == "tiny vs tiny-stable" and anneal["condition"] == "Gaussian noise γ=0.1"
    assert anneal["hypothesis"] == "annealing raises the damage" and "equal tokens" in anneal["statistic"]
    assert anneal["effect"] == pytest.approx(0.16, abs=1e-9) and anneal["verdict"] == "supported"
    assert sam["effect"] == pytest.approx(-0.16, abs=1e-9) and sam["verdict"] == "not supported"
    # hub revisions pair as compare.match names them: here each annealed checkpoint with the stable
    # one of the next budget (tokens differ), the gap then is the one against that checkpoint
    shifted = {f"tok{int(t)}-s{s}": f"tok{int(TOKENS[i + 1])}-s{s}" for i, t in enumerate(TOKENS[:-1]) for s in range(3)}
    rising = table(BASE, {s: [BASE[s][i] + 0.05 * i for i in range(6)] for s in range(3)}).assign(model="tiny-stable")
    df = pd.concat([annealed, rising], ignore_index=True)
    matched = contrasts.claims(df, [{"factor": "annealing", "treatment": "tiny", "control": "tiny-stable",
                                     "match": shifted}], n_boot=300).iloc[0]
    expected = np.mean([0.2 + 0.01 * s - 0.05 * (i + 1) for s in range(3) for i in range(5)])
    assert matched["effect"] == pytest.approx(expected) and "matched checkpoints" in matched["statistic"]
    gaps = contrasts.gap_table(df, [{"factor": "annealing", "treatment": "tiny", "control": "tiny-stable",
                                     "match": shifted}], n_boot=100)
    assert sorted(gaps["tokens"]) == TOKENS[:-1] and (gaps["n_seeds"] == 3).all()
    alone = contrasts.claims(annealed[annealed["variant"] == "base"].assign(model="a").pipe(
        lambda a: pd.concat([a, a.assign(model="b")])), [{"factor": "sam", "treatment": "a", "control": "b"}])
    assert alone.iloc[0]["condition"].startswith("not measured") and alone.iloc[0]["verdict"] == "inconclusive"


def test_the_headline_is_judged_per_fine_tuning_setting_never_pooled():
    """A rate is tuned per setting (method, ℓ2): plain fine-tunes that degrade past T* beside
    ℓ2-pulled ones that keep improving are two verdicts, not one averaged into "inconclusive"."""
    from overtrain.analysis.tables import by_setting, inflection_table

    plain = {s: [3.0, 2.0, 1.5, 1.4, 1.6, 1.8] for s in range(3)}  # degrades by 0.4 past T* = 8e5
    pulled = {s: [3.2, 2.2, 1.7, 1.6, 1.4, 1.2] for s in range(3)}  # keeps improving
    ft = {"variant": "finetuned", "ft_task": "t", "ft_method": "full", "lr": 1e-3, "seed": 0, "split": "id",
          "eval_task": "t_test"}
    df = pd.DataFrame(rows(BASE, variant="base") + rows(plain, **ft, l2=0.0) + rows(pulled, **ft, l2=30.0),
                      columns=METRIC_COLUMNS).astype({"gamma": "float64", "lr": "float64", "l2": "float64"})
    fts = df[df["variant"] == "finetuned"]
    best = fts[["model", "ckpt", "tokens", "ft_task", "ft_method", "l2", "lr"]].drop_duplicates()
    out = hypotheses.claims(df, best, n_boot=200)
    headline = out[out["hypothesis"] == "the in-distribution metric at the tuned learning rate degrades past T*"]
    by_condition = headline.set_index("condition")
    assert set(by_condition.index) == {"t_test (loss)", "t_test (loss), λ=30"}
    assert by_condition.loc["t_test (loss)", "verdict"] == "supported"
    assert by_condition.loc["t_test (loss)", "effect"] == pytest.approx(0.4)
    assert by_condition.loc["t_test (loss), λ=30", "verdict"] == "not supported"
    tuned = inflection_table(df, best, n_boot=50).set_index("condition")
    assert tuned.loc["tuned lr (id)", "t_star"] == 8e5 and tuned.loc["tuned lr l2=30 (id)", "t_star"] == 3.2e6
    # rows without a method or ℓ2 (hub fine-tunes) are plain full fine-tuning, not dropped
    keys = [k for k, _ in by_setting(fts.assign(ft_method=None, l2=np.nan), "eval_task")]
    assert keys == [("full", 0.0, "t_test")]
