"""A job killed with SIGKILL, or stopped with SIGTERM as a cluster stops it, and rerun ends
bit-identical to an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO
from conftest import TINY_ARCH as ARCH
from conftest import TINY_OPT as OPT
from safetensors.torch import load_file

from overtrain.training import loop

CALLS = {
    "pretrain": "pretrain.pretrain(D/'language.npz', D/'tok', OUT, pretrain.PretrainSpec(architecture={arch}, "
    "optimizer={opt}, batch_size=8, seq_len=32, seed=0, data_seed=1, save_every=25), budget_tokens=256*600)",
    "finetune": "finetune.finetune(D/'ckpt', D/'ft_train.jsonl', OUT, finetune.FinetuneSpec.flat(lr=1e-3, steps=600, "
    "batch_size=8, max_len=32, warmup_steps=5, schedule='cosine', weight_decay=0.0, grad_clip=1.0, seed=0, "
    "save_every=25))",
    # the first segment of a stable run (steps 0-480 of two budgets' branch points)
    "stable": "stable.train_segment(D/'language.npz', OUT, pretrain.PretrainSpec(architecture={arch}, optimizer={opt}, "
    "batch_size=8, seq_len=32, seed=0, data_seed=1, save_every=25), [256*600, 256*1200], 'tok153600')",
}


@pytest.fixture(scope="module")
def data(tiny_study):
    return tiny_study[0]


def launch(kind, d, out):
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from pathlib import Path\nfrom overtrain.training import finetune, pretrain, stable\n"
        f"D = Path({str(d)!r}); OUT = Path({str(out)!r})\n"
        + CALLS[kind].format(arch=ARCH, opt=OPT)
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def weights(out, kind):
    if kind == "stable":  # a segment's end state: model, optimizer, RNG
        return torch.load(out / "state.pt", weights_only=True)["model"]
    return load_file(str(out / "model.safetensors"))


@pytest.mark.e2e
@pytest.mark.parametrize("kind,sig", [("pretrain", signal.SIGKILL), ("stable", signal.SIGKILL),
                                      ("finetune", signal.SIGTERM)])
def test_a_killed_or_stopped_run_resumes_and_equals_uninterrupted(data, tmp_path, kind, sig):
    """SIGKILL loses the steps since the last periodic save (every 25 here); SIGTERM (a SLURM time
    limit or preemption) saves at the next step boundary and exits with 143, losing none."""
    killed = tmp_path / "killed"
    state = loop.resume_dir(killed) / "state.pt"
    p = launch(kind, data, killed)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if state.exists() and torch.load(state, weights_only=True)["step"] >= 100:
            break
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed: " + p.stdout.read()
    os.kill(p.pid, sig)
    out, _ = p.communicate(timeout=60)
    assert not killed.exists()  # nothing that looks complete
    step_at_kill = torch.load(state, weights_only=True)["step"]
    assert 100 <= step_at_kill < 480
    if sig == signal.SIGTERM:
        assert p.returncode == 143 and f"stopped by SIGTERM at step {step_at_kill}" in out, out

    rerun = launch(kind, data, killed)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert f"resumed at step {step_at_kill}" in out
    assert not loop.resume_dir(killed).exists()  # cleared once complete

    clean = launch(kind, data, tmp_path / "clean")
    out, _ = clean.communicate(timeout=300)
    assert clean.returncode == 0, out
    a, b = weights(killed, kind), weights(tmp_path / "clean", kind)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (killed / "train_log.csv").read_text() == (tmp_path / "clean" / "train_log.csv").read_text()


def test_a_stop_request_turns_sigterm_into_a_flag_and_restores_the_handler():
    from overtrain.training.preemption import Preempted, StopRequest

    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as request:
        assert not request.requested
        os.kill(os.getpid(), signal.SIGTERM)  # handled: this process lives on
        time.sleep(0.1)
        assert request.requested
    assert signal.getsignal(signal.SIGTERM) is before
    stopped = Preempted(42, "somewhere")
    assert stopped.code == 143 and "at step 42" in str(stopped)
