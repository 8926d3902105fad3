"""The benchmark command runs and reports (a smoke version; no pass/fail on seconds)."""

import json
import subprocess
import sys

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
    assert res["P2"]["pretrain_vs_bare"] > 0 and res["P2"]["flops_ratio"] > 0
    assert res["P4"]["jobs"] > 900
