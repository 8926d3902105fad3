import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The tests never touch the network: everything they evaluate is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

MICRO = {
    "experiment": "micro",
    "corpus": {"topics": 8, "eval_docs": 32, "ft_train_docs": 32, "seq_len": 32},
    "models": {
        "tiny": {
            "source": "pretrain",
            "architecture": {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32},
            "budgets": [8192, 16384],
            "batch_size": 16,
            "optimizer": {"warmup_steps": 4},
        }
    },
    "finetune": {"learning_rates": [1.0e-3], "steps": None, "epochs": 2, "batch_size": 8, "warmup_steps": 2},
    "perturb": {"gaussian": {"gammas": [0.5], "seeds": [0]}, "quantize": {"bits": [8]}},
    "evaluate": {"limit": 16, "batch_size": 16},
}


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def snakemake(workdir: Path, configfile: Path, *args: str, timeout: int = 600):
    """Run the repo's workflow in `workdir` with `configfile`; returns the CompletedProcess."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)


@pytest.fixture
def micro_config():
    import copy

    return copy.deepcopy(MICRO)
