"""The benchmark command runs and reports (a smoke version; no pass/fail on seconds)."""

import json
import subprocess
import sys

import pytest
from conftest import REPO


def test_benchmark_smoke_writes_the_table(tmp_path):
    out = tmp_path / "results.md"
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--only", "P2,P4", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    assert "## P2" in text and "## P4" in text and "vs bare PyTorch" in text
    res = json.loads(out.with_suffix(".json").read_text())
    # the loop trains at a positive rate, below the matmul peak; the smoke grid's size is its config's
    assert 0 < res["P2"]["flops_ratio"] < 1 and res["P2"]["tokens_per_s"]["bare"] > 0
    assert res["P2"]["pretrain_vs_bare"] > 0.2  # at most 5× slower than a bare PyTorch loop, even loaded
    budgets, lrs, seeds = 4, 12, 10  # p4_dry_run(1000)'s grid: per budget a pretraining job, an evaluation
    assert res["P4"]["jobs"] >= budgets * (2 + 2 * lrs * seeds)  # and each fine-tune with its evaluation


def test_p7_names_the_claim_closest_to_changing_its_verdict():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import verdicts

    assert verdicts.margin("supported", 0.05, 0.2, 0.01) == pytest.approx(0.04)
    assert verdicts.margin("not supported", -0.3, -0.011, 0.01) == pytest.approx(0.001)
    assert verdicts.margin("inconclusive", -0.002, 0.003, 0.01) == pytest.approx(0.012)  # to not supported: 0.013
    row = dict(model="m", min_effect_1=0.01, effect_1=0.1, ci_low_1=0.05, ci_high_1=0.2, verdict_1="supported",
               effect_2=0.1, ci_low_2=0.05, ci_high_2=0.2, verdict_2="supported")
    near = {**row, "hypothesis": "near", "condition": "lr=1", "ci_low_2": 0.012}
    unmeasured = {**row, "hypothesis": "none", "condition": "not measured", "effect_1": float("nan"),
                  "effect_2": float("nan"), "ci_low_1": float("nan")}
    discrete = {**row, "hypothesis": "T* order", "condition": "y", "min_effect_1": 0.0, "ci_low_1": 0.0}
    text = verdicts.closest_call({"rows": [{**row, "hypothesis": "far", "condition": "x"}, near, unmeasured, discrete]})
    assert text.startswith("Closest call: *near* (lr=1) at 2 threads") and "moved by 0.002" in text
