"""Shared start of every script: make the package importable, send output to the job's log."""

import os
import sys
from pathlib import Path


def start(snakemake) -> None:
    sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parent))
    if snakemake.log:
        log = open(snakemake.log[0], "w", buffering=1)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", str(snakemake.threads))
