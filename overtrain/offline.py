"""A compute job runs offline: what it reads was fetched before it by a local rule
(overtrain.evaluation.prefetch, hub_checkpoint, judge_model, finetune_data, ...), so a resource
the fetch missed fails at once, naming it, instead of hanging on a node without network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

VARIABLES = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def nltk_search_path(nltk_dir: str | Path) -> None:
    """NLTK reads data from `nltk_dir` only (NLTK_DATA, and the search path if NLTK was imported
    before: a warm job's server imported it with its own environment)."""
    os.environ["NLTK_DATA"] = str(nltk_dir)
    if "nltk" in sys.modules:
        sys.modules["nltk"].data.path[:] = [str(nltk_dir)]


def offline(nltk_dir: str | Path | None = None) -> None:
    """Make this process a compute job: no download from the Hugging Face Hub (the variables, and
    the libraries' constants if they were imported before, as in a warm job) and NLTK data only
    from the study's prefetched copy."""
    os.environ.update(VARIABLES)
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        config = sys.modules["datasets"].config
        config.HF_HUB_OFFLINE = config.HF_DATASETS_OFFLINE = True
    if nltk_dir is not None:
        nltk_search_path(nltk_dir)
