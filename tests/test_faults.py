"""Faults a long cluster study meets, each injected for real: damaged weight files, revisions
that move, two runs at once, a disk that fills up. Each shows its message and the recovery."""

import json
import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import LEAN, REPO, snakemake, write_config
from test_hub import REPO_ID, REVISIONS, fill_cache, hf_home  # noqa: F401

from overtrain import integrity, models
from overtrain.sources import checkpoints


@pytest.fixture
def saved(tmp_path, tiny_study):
    """A local checkpoint directory (a copy of the tiny study's)."""
    src = tmp_path / "src"
    shutil.copytree(tiny_study[0] / "ckpt", src)
    return src


def truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return data


def test_a_truncated_local_checkpoint_is_refused_when_first_touched(saved, tmp_path):
    original = truncate(saved / "model.safetensors")
    with pytest.raises(integrity.DamagedWeights, match=r"src/model.safetensors: .*truncated.*re-download or re-copy"):
        checkpoints.link_local(saved, tmp_path / "ckpt", tokens=1)
    assert not (tmp_path / "ckpt").exists()
    (saved / "model.safetensors").write_bytes(original)  # recovery: the file restored
    assert checkpoints.link_local(saved, tmp_path / "ckpt", tokens=1)["weights"]["model.safetensors"]["sha256"]


def test_a_linked_file_that_changes_later_is_refused_at_load(saved, tmp_path):
    checkpoints.link_local(saved, tmp_path / "ckpt", tokens=1)
    data = bytearray((saved / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in the data: the header still agrees
    (saved / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(integrity.DamagedWeights, match="contents changed since they were recorded"):
        models.load_variant(tmp_path / "ckpt")
    data[-5] ^= 0xFF
    (saved / "model.safetensors").write_bytes(bytes(data))
    models.load_variant(tmp_path / "ckpt")  # restored: loads (the sha256 matches again)


def test_our_own_truncated_output_is_never_loaded(tiny_study, tmp_path):
    from conftest import tiny_finetune

    d, paths = tiny_study
    tiny_finetune(d / "ckpt", paths["ft_train"], tmp_path / "ft", steps=2)
    assert json.loads((tmp_path / "ft" / "meta.json").read_text())["weights"]["model.safetensors"]["size"] > 0
    truncate(tmp_path / "ft" / "model.safetensors")
    with pytest.raises(integrity.DamagedWeights, match="ft/model.safetensors: .*truncated"):
        models.load_variant(d / "ckpt", tmp_path / "ft")


def test_a_full_disk_is_refused_before_a_save_with_the_numbers(tmp_path):
    with pytest.raises(OSError, match=r"saving x needs about 1000000\.00 TB but .* free; free space"):
        integrity.require_space(tmp_path, 10**18, "saving x")


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    """Results on shared storage stay readable by the group: not mkstemp's 0600 / mkdtemp's 0700."""
    from overtrain.atomic import atomic_directory, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_directory(tmp_path / "d") as d:
            (d / "f").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_revisions_are_pinned_and_a_moved_or_deleted_branch_is_reported(hf_home, tmp_path, capsys):  # noqa: F811
    root = fill_cache(hf_home, REPO_ID, REVISIONS)
    lock = tmp_path / "checkpoints.lock"
    model = {"repo": REPO_ID, "revisions": {"count": 2}}
    first = checkpoints.resolve_hub({"m": model}, lock)["m"]
    assert first["revisions"] == ["step1000-tokens4B", "step3000-tokens13B"]
    pinned = first["commits"]["step3000-tokens13B"]
    assert json.loads(lock.read_text())["m"]["commits"]["step3000-tokens13B"] == pinned
    # the branch moves to a new commit (as a re-upload on the Hub would)
    moved = "f" * 40
    shutil.copytree(root / "snapshots" / pinned, root / "snapshots" / moved)
    (root / "refs" / "step3000-tokens13B").write_text(moved)
    again = checkpoints.resolve_hub({"m": model}, lock)["m"]
    assert again["commits"]["step3000-tokens13B"] == pinned  # the lock holds
    meta = checkpoints.download_hub(REPO_ID, "step3000-tokens13B", tmp_path / "c", tokens=1, commit=pinned)
    out = capsys.readouterr().out
    assert meta["commit"] == pinned and meta["revision_drift"] == {"locked": pinned, "now": moved}
    assert f"now points to commit {moved}; the lock pins commit {pinned}" in out
    (root / "refs" / "step3000-tokens13B").unlink()  # the branch is deleted
    checkpoints.download_hub(REPO_ID, "step3000-tokens13B", tmp_path / "d", tokens=1, commit=pinned)
    assert "step3000-tokens13B: no longer exists; the lock pins commit" in capsys.readouterr().out
    (root / "refs" / "step3000-tokens13B").write_text(moved)
    refreshed = checkpoints.resolve_hub({"m": model}, lock, refresh=True)["m"]
    assert refreshed["commits"]["step3000-tokens13B"] == moved  # revisions_lock: refresh takes the new one


def test_a_corrupted_cache_blob_is_refused(hf_home, tmp_path):  # noqa: F811
    root = fill_cache(hf_home, REPO_ID, {"step1000-tokens4B": 0})
    commit = (root / "refs" / "step1000-tokens4B").read_text()
    snap = root / "snapshots" / commit
    data = (snap / "model.safetensors").read_bytes()
    blobs = root / "blobs"
    blobs.mkdir()
    blob = blobs / integrity.sha256(snap / "model.safetensors")
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # stored under the sha256 of the good bytes
    (snap / "model.safetensors").unlink()
    (snap / "model.safetensors").symlink_to(blob)
    with pytest.raises(integrity.DamagedWeights, match="do not match its cache blob's sha256.*--force-download"):
        checkpoints.download_hub(REPO_ID, "step1000-tokens4B", tmp_path / "c", tokens=1)


@pytest.mark.e2e
def test_two_runs_at_once(tmp_path, lean_run):
    """Same experiment twice: the second is refused. Two experiments in one directory at the
    same time: both complete, each equal to a run alone."""
    a = write_config(tmp_path / "a.yaml", LEAN)
    b = write_config(tmp_path / "b.yaml", {**LEAN, "experiment": "lean_b"})
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--cores", "1", "--configfile"]
    first = subprocess.Popen(cmd + [str(a)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(3)
    same = snakemake(tmp_path, a, "--cores", "1")
    assert same.returncode != 0 and "cannot be locked" in same.stdout + same.stderr
    other = subprocess.Popen(cmd + [str(b)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_a, out_b = first.communicate(timeout=900)[0], other.communicate(timeout=900)[0]
    assert first.returncode == 0, out_a[-3000:]
    assert other.returncode == 0, out_b[-3000:]
    alone = (lean_run[0] / "results/lean/tables/metrics.csv").read_bytes()
    assert (tmp_path / "results/lean/tables/metrics.csv").read_bytes() == alone
    both = pd.read_csv(tmp_path / "results/lean_b/tables/metrics.csv")
    assert both.equals(pd.read_csv(lean_run[0] / "results/lean/tables/metrics.csv"))


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root; CI runs as root)")
def test_a_disk_that_fills_up_mid_run_then_the_rerun_equals_a_clean_run(tmp_path, lean_run):
    work = tmp_path / "small"
    work.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1150k", "tmpfs", str(work)], check=True)
    try:
        cfg = write_config(work / "lean.yaml", LEAN)
        full = snakemake(work, cfg, "--cores", "2")
        assert full.returncode != 0
        said = full.stdout + full.stderr
        # refused before writing (the save's size against the free space), or a write that failed
        assert "free; free space" in said or "No space left on device" in said, said[-3000:]
        assert not (work / "results/lean/tables/metrics.csv").exists()
        subprocess.run(["mount", "-o", "remount,size=64m", str(work)], check=True)  # space freed
        again = snakemake(work, cfg, "--cores", "2")
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        clean = (lean_run[0] / "results/lean/tables/metrics.csv").read_bytes()
        assert (work / "results/lean/tables/metrics.csv").read_bytes() == clean
    finally:
        subprocess.run(["umount", "-l", str(work)], check=False)
