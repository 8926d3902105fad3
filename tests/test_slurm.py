"""The lean micro study (conftest.LEAN) through a real SLURM cluster brought up on this machine (.ci/slurm.sh),
with the project's SLURM profile. CI sets OVERTRAIN_TEST_SLURM=1; it needs root and Debian's
slurm-wlm packages (installed by the script)."""

import os
import re
import subprocess
import sys
import time

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


PREEMPT_BUDGET = 512 * 3000  # 3000 steps of the micro model: long enough to be stopped midway


def test_a_requeued_training_job_resumes_where_sigterm_stopped_it(cluster, tmp_path, capsys):
    """Preemption as a cluster does it: `scontrol requeue` stops the running pretraining job
    (SIGTERM, then SIGKILL after KillWait) and queues it again under the same job id (the profile
    submits with --requeue). On SIGTERM the job saves its state, so the requeued run resumes at
    that step — with no periodic save configured, the state can only come from SIGTERM — and ends
    identical to an uninterrupted run."""
    study = {**LEAN, "experiment": "preempt",
             "models": {"tiny": {**LEAN["models"]["tiny"], "budgets": [PREEMPT_BUDGET], "save_every": 0}}}
    cfg = tmp_path / "preempt.yaml"
    cfg.write_text(yaml.safe_dump(study))
    target = f"results/preempt/checkpoints/tiny/tok{PREEMPT_BUDGET}-s0"
    log = tmp_path / "results" / "preempt" / "logs" / "pretrain" / "tiny" / f"tok{PREEMPT_BUDGET}-s0.log"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(cfg), "--profile", str(REPO / "profiles" / "slurm"), "--jobs", "2",
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2", target]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    jobid, deadline = None, time.time() + 600
    while jobid is None and time.time() < deadline and run.poll() is None:
        steps = re.findall(r"step (\d+)/3000", log.read_text()) if log.exists() else []
        if steps and int(steps[-1]) >= 300:
            jobs = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True).stdout
            jobid = next((line.split()[0] for line in jobs.splitlines() if "rule_pretrain" in line), None)
        time.sleep(0.2)
    assert jobid, "the pretraining job was not seen running midway"
    subprocess.run(["scontrol", "requeue", jobid], check=True)
    # SLURM holds a requeued job for a while (BeginTime); a real cluster would too. Release it.
    while run.poll() is None and time.time() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", jobid, "-o", "%T %r"], capture_output=True, text=True).stdout
        if "PENDING" in state and "BeginTime" in state:
            subprocess.run(["scontrol", "update", f"jobid={jobid}", "StartTime=now"], check=True)
            break
        time.sleep(0.5)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out[-6000:]
    resumed = re.search(r"resumed at step (\d+)", log.read_text())
    assert resumed and 300 <= int(resumed[1]) < 3000, log.read_text()[-3000:]
    # the same job, uninterrupted, on this machine
    local = tmp_path / "local"
    local.mkdir()
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                        str(local), "--configfile", str(cfg), "--cores", "2", target],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a = (tmp_path / target / "model.safetensors").read_bytes()
    assert a == (local / target / "model.safetensors").read_bytes()
    with capsys.disabled():
        print(f"\n[slurm] pretraining job {jobid} requeued at step ≥ 300 of 3000: it saved on SIGTERM, "
              f"resumed at step {resumed[1]}, and ended byte-identical to an uninterrupted run")
