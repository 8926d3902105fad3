"""Shared start of every script: make the package importable, send output to the job's log."""

import os
import sys
from pathlib import Path

def start(snakemake) -> None:
    sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parent))
    from overtrain import jobserver

    returncode = jobserver.submit()  # a warm process ran it (local CPU runs), or None: run here
    if returncode is not None:
        sys.exit(returncode)
    if not snakemake.params.get("online"):  # a compute job: what it reads was fetched before it
        from overtrain.offline import offline

        offline(snakemake.params.get("nltk_data"))
    if snakemake.log:
        log = open(snakemake.log[0], "w", buffering=1)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # deterministic cuBLAS (torch.use_deterministic_algorithms needs it on CUDA; no effect on CPU)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # our own progress lines (step, loss, tokens/s, ETA) and lm-eval's request bars stay; the
    # per-load bars of transformers/huggingface_hub and datasets would drown them
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(snakemake.params.get("threads", snakemake.threads)))


def eval_data(snakemake) -> dict:
    """The files an evaluation reads besides the model (inputs named eval_data_<key>), by key."""
    prefix = "eval_data_"
    return {k.removeprefix(prefix): snakemake.input[k] for k in snakemake.input.keys() if k.startswith(prefix)}
