"""Weight files are checked before anything loads them; revisions are pinned to commits.

A safetensors file is 8 bytes of header length, a JSON header whose tensors' data offsets say
how long the data must be, then the data: a truncated copy (a partial download, a full disk, a
killed rsync) is caught by comparing the file's size with what its header promises, without
reading the data. Corruption inside the data is caught by the sha256 recorded when the file was
written or resolved (meta.json: `weights`), checked whenever the file's size or modification
time differs from what was recorded (a local checkpoint is a set of links to files that may
change), and on demand. Every message names the file and says what to do.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path


class DamagedWeights(RuntimeError):
    """A weight file that must not be loaded."""


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_safetensors(path: str | Path) -> None:
    """The file is a complete safetensors file: its size is what its header says."""
    path = Path(path)
    size = path.stat().st_size
    hint = "re-download or re-copy it (a partial transfer or a full disk truncates files)"
    if size < 8:
        raise DamagedWeights(f"{path}: {size} bytes, not a safetensors file; {hint}")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if 8 + n > size:
            raise DamagedWeights(f"{path}: truncated inside its header ({size} bytes, header needs {8 + n}); {hint}")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise DamagedWeights(f"{path}: its header is not valid JSON (corrupted); {hint}") from None
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if size != 8 + n + end:
        raise DamagedWeights(f"{path}: {size} bytes, but its header describes {8 + n + end}: "
                             f"{'truncated' if size < 8 + n + end else 'trailing bytes'}; {hint}")


def header_parameters(path: str | Path) -> int:
    """Parameters in a safetensors file, from its header alone."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    total = 0
    for name, tensor in header.items():
        if name != "__metadata__":
            size = 1
            for d in tensor["shape"]:
                size *= d
            total += size
    return total


def parameter_count(model_dir: str | Path) -> int:
    """Parameters of a model directory's weights (its safetensors headers)."""
    return sum(header_parameters(p) for p in weight_files(model_dir))


def weight_files(model_dir: str | Path) -> list[Path]:
    """A model directory's safetensors files: the shards its index lists, or every *.safetensors."""
    d = Path(model_dir)
    indexes = sorted(d.glob("*.safetensors.index.json"))
    files = set()
    for index in indexes:
        shards = set(json.loads(index.read_text())["weight_map"].values())
        missing = [s for s in sorted(shards) if not (d / s).exists()]
        if missing:
            raise DamagedWeights(f"{index}: lists shards that are missing: {missing}; re-download the checkpoint")
        files |= {d / s for s in shards}
    return sorted(files | set(d.glob("*.safetensors")))


def record(model_dir: str | Path) -> dict:
    """{file name: {sha256, size, mtime}} of a directory's weight files, after checking each."""
    out = {}
    for path in weight_files(model_dir):
        check_safetensors(path)
        st = path.stat()
        out[path.name] = {"sha256": sha256(path), "size": st.st_size, "mtime": st.st_mtime}
    return out


def verify(model_dir: str | Path, recorded: dict | None = None, full: bool = False) -> None:
    """Refuse damaged weights: every file's header and size; the sha256 of any file whose size or
    modification time changed since `recorded` (or of all of them, with `full`)."""
    for path in weight_files(model_dir):
        check_safetensors(path)
        want = (recorded or {}).get(path.name)
        if not want:
            continue
        st = path.stat()
        if full or st.st_size != want["size"] or abs(st.st_mtime - want["mtime"]) > 1e-6:
            if sha256(path) != want["sha256"]:
                raise DamagedWeights(f"{path}: its contents changed since they were recorded (sha256 "
                                     f"{want['sha256'][:12]}…); restore the original file, or rerun the job that "
                                     "made this checkpoint (delete its directory) to take the new one")


def require_space(directory: str | Path, needed: int, what: str) -> None:
    """Refuse early, with the numbers, when a download or save would not fit."""
    directory = Path(directory)
    while not directory.exists():
        directory = directory.parent
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise OSError(f"{what} needs about {_size(needed)} but {directory} has {_size(free)} free; "
                      "free space (or point results/ or HF_HOME elsewhere) and rerun")


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n / 1e3:.0f} kB"
