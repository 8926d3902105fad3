"""Local jobs start in a warm process: a fork server that has already imported torch,
transformers, lm-eval, datasets, peft, pandas and matplotlib.

A model job's Python process spends ~5 s importing those before its first useful instruction
(transformers alone pulls in torch.distributed.tensor, dynamo and sympy); on the tiny default
that is most of a job's wall time. With the server, a job's own process (started by Snakemake
as usual) sends its script to the server and waits; the server forks a child that runs it and
reports the exit code. The child is a fresh copy of a process that imported libraries but ran
nothing, so each job still sets its own threads and seeds and the numbers are identical
(tested: byte-identical metrics.csv with and without). Only for local execution (on a cluster
each job has its own allocation) and CPU studies (a process that initialised CUDA cannot fork).

If the job's process dies (Snakemake kills it, or a SIGKILL), the server stops the child: SIGTERM
first, so a training job saves its resume state (overtrain.training.preemption), and SIGKILL
after GRACE seconds; a job never outlives the one Snakemake is waiting for by more than that. The
server exits when Snakemake does.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

GRACE = 20.0  # seconds a job has to save its state between SIGTERM and SIGKILL
ENV = "OVERTRAIN_JOBSERVER"  # the socket path, set for the jobs of a run that has a server
INSIDE = "OVERTRAIN_IN_JOBSERVER"  # set in a forked job: run, do not delegate again
LIBRARIES = ("torch", "transformers", "transformers.modeling_utils", "transformers.core_model_loading",
             "transformers.models.llama.modeling_llama", "scipy.io", "transformers.integrations.hub_kernels",
             "lm_eval", "lm_eval.models.huggingface", "lm_eval.evaluator", "lm_eval.tasks", "datasets", "peft",
             "pandas", "matplotlib.pyplot", "safetensors.torch", "scipy.optimize",
             "snakemake.script")  # a job script's preamble unpickles its `snakemake` object: ~0.1 s a job


def preload() -> list[str]:
    """What the server imports before forking jobs: the libraries, then every module of ours
    that a job script reaches (their import closures: nothing typed by hand), as the run's code
    stood when it started (as Snakemake's rules do)."""
    from overtrain.provenance import ROOT, import_closure

    ours = sorted(set().union(*(import_closure(s) for s in sorted((ROOT.parent / "scripts").glob("*.py")))))
    return list(LIBRARIES) + ours


def _send(conn: socket.socket, obj) -> None:
    data = json.dumps(obj).encode()
    conn.sendall(struct.pack("!I", len(data)) + data)


def _recv(conn: socket.socket):
    head = b""
    while len(head) < 4:
        chunk = conn.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (size,) = struct.unpack("!I", head)
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


def _run_job(request: dict, fds: list[int]) -> None:
    """In the forked child: become the job (its stdin/stdout/stderr, environment, directory,
    arguments) and run it."""
    import runpy
    import traceback

    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"], **{INSIDE: "1"})
    os.chdir(request["cwd"])
    sys.argv = request["argv"]
    code = 0
    try:
        runpy.run_path(request["argv"][0], run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _handle(conn: socket.socket) -> None:
    """In a handler child: fork the job, wait for it, or kill it when its client goes away."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _, fds, _, _ = socket.recv_fds(conn, 1, 3)  # the job process's stdin, stdout, stderr
    request = _recv(conn)
    if request is None or len(fds) != 3:
        os._exit(0)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_job(request, fds)
    for fd in fds:
        os.close(fd)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            _send(conn, {"returncode": os.waitstatus_to_exitcode(status)})
            os._exit(0)
        readable, _, _ = select.select([conn], [], [], 0.05)
        if readable and not conn.recv(1, socket.MSG_PEEK):  # the client is gone: so is the job
            _stop(pid)
            os._exit(0)


def _stop(pid: int) -> None:
    """SIGTERM to the job's process group; SIGKILL if it has not exited after GRACE seconds."""
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _warm_up() -> None:
    """Save and load a tiny model once: transformers builds its checkpoint-conversion map (~900
    regexes) and other caches on the first load of a process; forks inherit them. No torch op
    runs on more than one thread here, so no thread pool exists to be forked."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        LlamaForCausalLM(LlamaConfig(vocab_size=8, hidden_size=4, intermediate_size=8, num_hidden_layers=1,
                                     num_attention_heads=1, num_key_value_heads=1)).save_pretrained(tmp)
        AutoModelForCausalLM.from_pretrained(tmp)


def serve(path: str, parent: int) -> None:
    """Preload the libraries, then fork a handler per job until the parent process exits."""
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # never initialise CUDA here
    import importlib

    for name in preload():
        importlib.import_module(name)
    _warm_up()
    # The preloaded heap (~600k objects) moves to a permanent generation: a child's first full
    # collection would otherwise walk all of it, writing to every page (copy-on-write) — 0.4 s
    # of a 1.8 s evaluation job. What a job allocates itself is collected as usual.
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped automatically
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    server.bind(tmp)
    os.replace(tmp, path)  # the socket appears only when the server is ready
    server.listen(64)
    server.settimeout(1.0)
    try:
        while os.getppid() == parent:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            if os.fork() == 0:
                server.close()
                _handle(conn)
            conn.close()
    finally:
        Path(path).unlink(missing_ok=True)


def wanted(compute: dict, local: bool) -> bool:
    """Whether a run's jobs start in warm processes: compute.warm_jobs, local execution (a
    cluster job has its own allocation), inside no SLURM allocation, and a CPU study (a process
    that initialised CUDA cannot fork)."""
    gpu = compute["device"] == "cuda" or compute["gpus_per_job"] > 0
    return compute["warm_jobs"] and local and not gpu and "SLURM_JOB_ID" not in os.environ


def start(path: str | None = None) -> tuple[str, int]:
    """Start a server for this process's run (it exits with this process); returns its socket
    path (by default in a fresh private directory: a socket path must be short) and its pid."""
    import subprocess
    import tempfile

    path = path or str(Path(tempfile.mkdtemp(prefix="overtrain-jobs-")) / "jobs.sock")
    proc = subprocess.Popen([sys.executable, "-m", "overtrain.jobserver", path, str(os.getpid())],
                            cwd=str(Path(__file__).resolve().parents[1]), start_new_session=True)
    os.environ[ENV] = path
    return path, proc.pid


def submit(timeout: float = 120.0) -> int | None:
    """Run this job (sys.argv) in the server: its exit code, or None to run it here instead
    (no server for this run, or it did not come up)."""
    path = os.environ.get(ENV)
    if not path or os.environ.get(INSIDE):
        return None
    deadline = time.time() + timeout
    while not os.path.exists(path):  # still importing
        if time.time() > deadline:
            return None
        time.sleep(0.1)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    socket.send_fds(conn, [b"."], [0, 1, 2])  # the job writes where this process would
    _send(conn, {"argv": [os.path.abspath(sys.argv[0])] + sys.argv[1:], "cwd": os.getcwd(),
                 "env": dict(os.environ)})
    reply = _recv(conn)
    if reply is None:
        raise RuntimeError(f"the job server at {path} stopped while running this job")
    return reply["returncode"]


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
