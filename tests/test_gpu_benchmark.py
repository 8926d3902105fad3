"""benchmarks/gpu.py, the first command on a cluster, run here on the CPU: a tiny random model
from a test-filled HF cache under a revision ref, fine-tuned and evaluated offline."""

import json
import subprocess
import sys

from conftest import REPO
from test_hub import REPO_ID, REVISIONS, fill_cache, hf_home, run_env  # noqa: F401


def test_gpu_benchmark_runs_on_cpu_from_the_hub_cache(hf_home, tmp_path):  # noqa: F811
    fill_cache(hf_home, REPO_ID, REVISIONS)
    out = tmp_path / "gpu.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--repo", REPO_ID, "--revision", "step2000-tokens8B",
         "--device", "cpu", "--dtype", "bfloat16", "--steps", "3", "--batch-size", "4", "--seq-len", "16",
         "--eval-docs", "8", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, env=run_env(hf_home), timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "fine-tune" in r.stdout and "MFU" in r.stdout and "peak memory" in r.stdout
    res = json.loads(out.read_text())
    assert res["source"] == f"{REPO_ID}@step2000-tokens8B" and res["compute_dtype"] == "bfloat16"
    assert res["train"]["tokens_per_s"] > 0 and 0 < res["train"]["mfu"] < 1
    assert res["eval"]["tokens_per_s"] > 0 and res["peak_memory_gb"] > 0
    assert res["peak_source"].startswith("measured")
