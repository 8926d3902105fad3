"""A job killed with SIGKILL and rerun ends bit-identical to an uninterrupted run."""

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
}


@pytest.fixture(scope="module")
def data(tiny_study):
    return tiny_study[0]


def launch(kind, d, out):
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from pathlib import Path\nfrom overtrain.training import finetune, pretrain\n"
        f"D = Path({str(d)!r}); OUT = Path({str(out)!r})\n"
        + CALLS[kind].format(arch=ARCH, opt=OPT)
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["pretrain", "finetune"])
def test_sigkill_then_rerun_equals_uninterrupted(data, tmp_path, kind):
    killed = tmp_path / "killed"
    state = loop.resume_dir(killed) / "state.pt"
    p = launch(kind, data, killed)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if state.exists() and torch.load(state, weights_only=True)["step"] >= 100:
            break
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed: " + p.stdout.read()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not killed.exists()  # nothing that looks complete
    step_at_kill = torch.load(state, weights_only=True)["step"]
    assert 100 <= step_at_kill < 600

    rerun = launch(kind, data, killed)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert f"resumed at step {step_at_kill}" in out
    assert not loop.resume_dir(killed).exists()  # cleared once complete

    clean = launch(kind, data, tmp_path / "clean")
    out, _ = clean.communicate(timeout=300)
    assert clean.returncode == 0, out
    a, b = load_file(str(killed / "model.safetensors")), load_file(str(tmp_path / "clean" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (killed / "train_log.csv").read_text() == (tmp_path / "clean" / "train_log.csv").read_text()
