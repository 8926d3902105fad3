"""Jobs in warm processes (overtrain.jobserver): exit codes and errors come back, a killed job
process takes its warm child with it, and the server leaves with its parent."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

from overtrain import jobserver

CLIENT = f"""
import sys, os, time
sys.path.insert(0, {str(REPO)!r})
from overtrain import jobserver
rc = jobserver.submit()
if rc is not None:
    sys.exit(rc)
# the job itself (runs in the warm process)
open(sys.argv[1], "w").write(str(os.getpid()))
if sys.argv[2] == "fail":
    raise ValueError("the job failed")
if sys.argv[2] == "sleep":
    time.sleep(60)
if sys.argv[2] == "term":  # a training job: on SIGTERM it saves its state, then exits
    import signal
    def saved(*_):
        open(sys.argv[1] + ".saved", "w").write("state")
        sys.exit(143)
    signal.signal(signal.SIGTERM, saved)
    time.sleep(60)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("server") / "jobs.sock")
    proc = subprocess.Popen([sys.executable, "-m", "overtrain.jobserver", path, str(os.getpid())], cwd=REPO)
    deadline = time.time() + 120
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.1)
    yield path
    proc.kill()
    proc.wait()


def client(tmp_path, path, mode):
    script = tmp_path / "job.py"
    script.write_text(CLIENT)
    env = dict(os.environ, **{jobserver.ENV: path})
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "pid"), mode], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return not open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    except (ProcessLookupError, FileNotFoundError):  # gone, or going between the two looks
        return False


def test_a_job_runs_in_the_warm_process_and_its_exit_code_comes_back(server, tmp_path):
    ok = client(tmp_path, server, "ok")
    assert ok.wait(60) == 0
    assert int((tmp_path / "pid").read_text()) != ok.pid  # it ran elsewhere: in a fork of the server
    bad = client(tmp_path, server, "fail")
    out, _ = bad.communicate(timeout=60)
    assert bad.returncode == 1 and "ValueError: the job failed" in out


def test_killing_the_job_process_kills_its_warm_child(server, tmp_path):
    job = client(tmp_path, server, "sleep")
    deadline = time.time() + 60
    while not (tmp_path / "pid").exists() and time.time() < deadline:
        time.sleep(0.05)
    child = int((tmp_path / "pid").read_text())
    assert alive(child)
    job.send_signal(signal.SIGKILL)
    job.wait()
    deadline = time.time() + 10
    while alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_a_warm_job_whose_process_is_killed_gets_sigterm_first(server, tmp_path):
    """So that a training job saves its resume state before it goes (then SIGKILL, after GRACE)."""
    job = client(tmp_path, server, "term")
    deadline = time.time() + 60
    while not (tmp_path / "pid").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # its handler is installed
    child = int((tmp_path / "pid").read_text())
    job.send_signal(signal.SIGKILL)
    job.wait()
    deadline = time.time() + 10
    while alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(child) and (tmp_path / "pid.saved").read_text() == "state"


def test_without_a_server_the_job_runs_in_its_own_process(tmp_path):
    job = client(tmp_path, "", "ok")
    assert job.wait(60) == 0 and int((tmp_path / "pid").read_text()) == job.pid


def test_the_server_leaves_with_its_parent(tmp_path):
    path = str(tmp_path / "orphan.sock")
    parent = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, %r); "
                               "from overtrain import jobserver; print(jobserver.start(%r)[1], flush=True); "
                               "time.sleep(300)" % (str(REPO), path)], stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    deadline = time.time() + 120
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.1)
    assert alive(server_pid)
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while alive(server_pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(server_pid) and not os.path.exists(path)


def test_warm_jobs_only_for_local_cpu_runs_outside_slurm(monkeypatch):
    cpu = {"warm_jobs": True, "device": "auto", "gpus_per_job": 0}
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert jobserver.wanted(cpu, local=True)
    assert not jobserver.wanted(cpu, local=False)  # a cluster executor: each job has its allocation
    assert not jobserver.wanted({**cpu, "warm_jobs": False}, local=True)
    assert not jobserver.wanted({**cpu, "gpus_per_job": 1}, local=True)  # CUDA cannot fork
    assert not jobserver.wanted({**cpu, "device": "cuda"}, local=True)
    monkeypatch.setenv("SLURM_JOB_ID", "7")  # Snakemake itself inside an allocation
    assert not jobserver.wanted(cpu, local=True)
