"""Models compared at equal tokens, end to end: a controlled model's stable checkpoints (its stable
run at each budget's tokens, no decay) beside its decayed ones, and a SAM-pretrained model against
a plain one, judged seed by seed."""

import json

import pandas as pd
import pytest
from conftest import LEAN, merge, snakemake, write_config
from safetensors.torch import load_file

PAIRS = merge(LEAN, {
    "experiment": "pairs",
    "models": {"tiny": {"seeds": [0, 1], "branching": True, "stable_checkpoints": True}},
    "perturb": {"gaussian": {"gammas": [0.5], "seeds": [0]}},
    "evaluate": {"sharpness": {"probes": 2}},
})
PAIRS["models"]["sam"] = merge(PAIRS["models"]["tiny"], {
    "branching": False, "stable_checkpoints": False, "optimizer": {"sam_rho": 0.05},
    "compare": {"with": "tiny", "factor": "sam"}})


@pytest.mark.e2e
def test_stable_checkpoints_and_a_sam_pair_are_judged_at_equal_tokens(tmp_path):
    cfg = write_config(tmp_path / "pairs.yaml", PAIRS)
    r = snakemake(tmp_path, cfg, "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    root = tmp_path / "results" / "pairs"
    # the stable run is a chain of segments: each branch point, then on to the largest budget
    assert sorted(p.name for p in (root / "stable" / "tiny" / "s1").iterdir()) == ["end", "tok16384", "tok8192"]
    stable, decayed = root / "checkpoints" / "tiny-stable" / "tok8192-s0", root / "checkpoints" / "tiny" / "tok8192-s0"
    meta, dmeta = (json.loads((p / "meta.json").read_text()) for p in (stable, decayed))
    assert meta["phase"] == "stable" and meta["tokens"] == dmeta["tokens"] == 8192
    a, b = load_file(str(stable / "model.safetensors")), load_file(str(decayed / "model.safetensors"))
    assert a.keys() == b.keys() and any(not a[k].equal(b[k]) for k in a)  # decayed ≠ stable at equal tokens
    metrics = pd.read_csv(root / "tables" / "metrics.csv")
    assert set(metrics["model"]) == {"tiny", "tiny-stable", "sam"}
    # the stable checkpoints are evaluated, perturbed and fine-tuned like any other
    s = metrics[metrics["model"] == "tiny-stable"]
    assert set(s["variant"]) == {"base", "perturbed", "finetuned"} and set(s["tokens"]) == {8192, 16384}
    gaps = pd.read_csv(root / "tables" / "contrasts.csv")
    assert set(gaps["model"]) == {"sam vs tiny", "tiny vs tiny-stable"}
    assert set(gaps["condition"]) == {"Gaussian noise γ=0.5", "forgetting, lr=0.001", "ln Hessian trace"}
    assert (gaps["n_seeds"] == 2).all() and len(gaps) == 2 * 3 * 2  # pairs × measures × budgets
    hyp = pd.read_csv(root / "tables" / "hypotheses.csv")
    pairs = hyp[hyp["model"].str.contains(" vs ")]
    assert set(pairs["hypothesis"]) == {"annealing raises the damage", "sam lowers the damage"}
    assert (pairs["n_seeds"] == 2).all() and pairs["effect"].notna().all()
    # the stable model has the per-model claims too (does sensitivity grow at a constant rate?)
    assert "progressive sensitivity to Gaussian noise" in set(hyp[hyp["model"] == "tiny-stable"]["hypothesis"])
    assert (root / "figures" / "pair_contrasts.png").stat().st_size > 10_000
