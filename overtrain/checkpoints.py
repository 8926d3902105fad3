"""Where checkpoints come from: our own pretraining (overtrain.train) or local HF directories."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from overtrain.atomic import atomic_directory, atomic_write_json

MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".model", ".txt", ".jinja")


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def link_local(source: str | Path, out_dir: str | Path, tokens: int) -> dict:
    """Make a checkpoint directory that symlinks a local HF model dir's files, plus meta.json.

    Linking instead of copying keeps multi-GB checkpoints in one place; the safetensors hashes
    in meta.json record exactly which weights were used.
    """
    from overtrain.models import require_safetensors

    source = Path(source).resolve()
    require_safetensors(source)
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
    files = [p for p in files if p.name != "meta.json"]
    meta = {
        "source": "local",
        "path": str(source),
        "tokens": int(tokens),
        "sha256": {p.name: sha256(p) for p in files if p.suffix == ".safetensors"},
    }
    with atomic_directory(out_dir) as tmp:
        for p in files:
            os.symlink(p, tmp / p.name)
        atomic_write_json(tmp / "meta.json", meta)
    return meta
