"""Means with 95% bootstrap intervals over replicates, and the findings page that prints them."""

import numpy as np
import pandas as pd
import pytest

from overtrain.analysis import findings, intervals
from overtrain.analysis.verdict import rule


def rows(values_by_replicate: dict, tokens=(100, 200), **labels) -> pd.DataFrame:
    return pd.DataFrame([{"tokens": t, "pretrain_seed": r, "seed": 0, "value": v, **labels}
                         for r, values in values_by_replicate.items() for t, v in zip(tokens, values)])


def test_a_replicate_is_a_pretraining_seed_when_there_are_several_else_the_run_seed():
    several = rows({0: [1, 2], 1: [1, 2]})
    assert list(intervals.replicate_ids(several)) == [0, 0, 1, 1]
    one = pd.DataFrame({"pretrain_seed": [0, 0], "seed": [3, 4], "value": [1.0, 2.0]})
    assert list(intervals.replicate_ids(one)) == [3, 4]


def test_with_three_replicates_the_interval_of_a_mean_is_their_range():
    s = intervals.summarize(rows({0: [1.0, 5.0], 1: [2.0, 5.0], 2: [4.0, 5.0]}), ["tokens"], n_boot=2000)
    first = s.iloc[0]
    assert first["mean"] == pytest.approx(7 / 3) and first["n"] == 3
    assert 1.0 <= first["ci_low"] < 2.0 < first["ci_high"] <= 4.0  # inside the replicates' range
    assert s.iloc[1][["mean", "ci_low", "ci_high"]].tolist() == [5.0, 5.0, 5.0]  # they agree: no spread


def test_one_replicate_has_no_interval_and_a_non_finite_one_stays_visible():
    s = intervals.summarize(rows({0: [1.0, 2.0]}), ["tokens"])
    assert (s["ci_low"] == s["mean"]).all() and (s["n"] == 1).all()
    s = intervals.summarize(rows({0: [1.0, 2.0], 1: [np.inf, 2.5], 2: [1.5, 3.0]}), ["tokens"])
    assert np.isinf(s.iloc[0]["mean"])  # a diverged replicate makes the mean non-finite: what it is
    assert np.isfinite(s.iloc[0]["ci_low"]) and s.iloc[0]["ci_high"] <= 1.5  # the spread of those that trained


def test_curves_drop_a_replicate_that_misses_a_budget():
    d = rows({0: [1.0, 2.0], 1: [1.5, 2.5]})
    d = d[~((d["pretrain_seed"] == 1) & (d["tokens"] == 200))]
    wide = intervals.curves(d)
    assert list(wide.columns) == [0] and list(wide.index) == [100, 200]


def test_the_findings_page_states_the_rule_and_prints_every_number_with_its_interval():
    hyp = pd.DataFrame([
        {"model": "m", "hypothesis": "h1", "source": "s", "condition": "γ=0.1", "effect": 0.05, "ci_low": 0.03,
         "ci_high": 0.07, "min_effect": 0.01, "n_seeds": 3, "verdict": "supported", "statistic": "slope"},
        {"model": "m", "hypothesis": "h2", "source": "s", "condition": "not measured: off", "effect": np.nan,
         "ci_low": np.nan, "ci_high": np.nan, "min_effect": np.nan, "n_seeds": 0, "verdict": "inconclusive",
         "statistic": ""},
    ])
    pt = pd.DataFrame([{"model": "m", "tokens": 125000, "condition": c, "value": v, "ci_low": v - 0.1,
                        "ci_high": v + 0.1, "n": 3} for c, v in (("base", 2.0), ("noise γ=0.1", 2.5))])
    best = pd.DataFrame([{"model": "m", "ft_task": "t", "tokens": 125000, "lr": 1e-3}] * 3)
    infl = pd.DataFrame([{"model": "m", "condition": "noise γ=0.1", "eval_task": "p", "metric": "loss",
                          "t_star": 500000.0, "ci_low": 250000.0, "ci_high": 500000.0, "interior": True,
                          "n_seeds": 3}])
    page = findings.render(experiment="x", command="snakemake --cores all", code="abc", replicates=3,
                           hypotheses=hyp, pretrain_loss=pt, best_lr=best, inflection=infl)
    assert rule(0.01) in page  # the rule the code applies, with its δ
    assert "| h1 | γ=0.1 | 0.05 [0.03, 0.07] | 3 | **supported** | s |" in page
    assert "not measured: off" in page and "| 125K | 2 [1.9, 2.1] | 2.5 [2.4, 2.6] |" in page
    assert "0.001 ×3" in page and "500K [250K, 500K] | yes" in page
    # with several models (a pair's claims among them) each claim says whose it is
    pair = hyp.iloc[:1].assign(model="a vs b")
    page = findings.render(experiment="x", command="c", code="abc", replicates=3, hypotheses=pd.concat([hyp, pair]),
                           pretrain_loss=pt, best_lr=best, inflection=infl)
    assert "| `a vs b` | h1 | γ=0.1 | 0.05 [0.03, 0.07] |" in page and "| `m` | h1 |" in page
    table = findings.verdict_table(hyp)
    assert list(table["verdict"]) == ["supported", "inconclusive"] and table["effect [95% CI]"][1] == "–"
