"""The lean micro study (conftest.LEAN) through a real SLURM cluster brought up on this machine (.ci/slurm.sh),
with the project's SLURM profile. CI sets OVERTRAIN_TEST_SLURM=1; it needs root and Debian's
slurm-wlm packages (installed by the script)."""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import LEAN, REPO

pytestmark = pytest.mark.skipif(
    os.environ.get("OVERTRAIN_TEST_SLURM") != "1",
    reason="brings up a local SLURM cluster (root, apt): set OVERTRAIN_TEST_SLURM=1",
)


@pytest.fixture(scope="module")
def cluster():
    script = REPO / ".ci" / "slurm.sh"
    up = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    print(up.stdout)
    try:
        yield
    finally:
        down = subprocess.run(["bash", str(script), "stop"], capture_output=True, text=True, timeout=120)
        print(down.stdout, down.stderr)
        status = subprocess.run(["bash", str(script), "status"], capture_output=True, text=True)
        assert "up " not in status.stdout, status.stdout


def test_micro_study_through_slurm_with_a_resubmission(cluster, tmp_path, capsys):
    cfg = tmp_path / "lean.yaml"
    cfg.write_text(yaml.safe_dump(LEAN))
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(tmp_path), "--configfile", str(cfg),
        "--profile", str(REPO / "profiles" / "slurm"),
        "--jobs", "2",
        "--slurm-status-command", "squeue",  # this cluster keeps no accounting database
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs",
        # the corpus job gets too little memory on its first attempt: SLURM kills it and the
        # profile's retries resubmit it with the attempt-scaled request
        "--set-resources", "synthetic_corpus:mem_mb=120 if attempt == 1 else 3000",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    out = r.stdout + r.stderr
    print(out[-6000:])
    assert r.returncode == 0, out[-6000:]
    submissions = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    assert len(submissions) >= 10  # every job of the lean study but the local rules went through sbatch
    # the corpus job: killed by SLURM for exceeding 120 MB, resubmitted with 3000 MB
    logs = sorted((tmp_path / ".snakemake" / "slurm_logs" / "rule_synthetic_corpus").glob("*.log"),
                  key=lambda p: int(p.stem))
    assert len(logs) == 2, logs
    # SLURM's own account of the kill names the 120 MB limit (in bytes)
    assert re.search(r"exceeded memory limit \(\d+ > 125829120\)", logs[0].read_text())
    assert "mem_mb=3000," in logs[1].read_text()
    assert "Trying to restart job" in out
    df = pd.read_csv(tmp_path / "results" / "lean" / "tables" / "metrics.csv")
    assert sorted(df["tokens"].unique()) == [8192, 16384]
    with capsys.disabled():  # a short account in CI's log
        oom = next(line for line in logs[0].read_text().splitlines() if "exceeded memory limit" in line)
        print(f"\n[slurm] lean study: {len(submissions)} sbatch submissions, all jobs done; "
              f"{out.count('Finished jobid')} finished")
        print(f"[slurm] corpus job, attempt 1 (mem_mb=120): {oom.strip()}")
        print("[slurm] corpus job, attempt 2 (mem_mb=3000): resubmitted by --retries and finished")
