"""Where checkpoints come from: our own pretraining (overtrain.train), local HF directories, or
revisions of a Hugging Face Hub repo."""

from __future__ import annotations

import hashlib
import os
import re
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


# ---------------------------------------------------------------------------------------------
# Hugging Face Hub revisions
# ---------------------------------------------------------------------------------------------

# Tokens per optimizer step of families whose branch names carry only the step.
TOKENS_PER_STEP = {"EleutherAI/pythia": 2_097_152}  # 1024 sequences × 2048 tokens
UNITS = {"M": 10**6, "B": 10**9, "T": 10**12}
# Files a checkpoint needs; pickled weights (*.bin, *.pt) are never downloaded.
HUB_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.json", "tokenizer*", "*.model", "*.txt", "*.jinja"]


class HubError(RuntimeError):
    """A Hub checkpoint that cannot be used; the message says what to do."""


def tokens_per_step_for(repo: str, configured: int | None) -> int | None:
    if configured:
        return configured
    return next((n for prefix, n in TOKENS_PER_STEP.items() if repo.startswith(prefix)), None)


def parse_tokens(revision: str, repo: str, tokens_per_step: int | None = None) -> int | None:
    """Pretraining tokens of a branch, from its name; None when the name does not say.

    OLMo `stepN-tokensXB`, `stage1-stepN-tokensXB`, `stage2-ingredientK-stepN-tokensXB` (stage-2
    tokens only: see parse_stage2), Pythia `stepN` (× 2,097,152), Amber `ckpt_NNN` and SmolLM2
    `step-N` (× the configured tokens_per_step; Amber's ckpt_i ends chunk i, so (i+1) ×).
    Names are parsed, never constructed: OLMo-1B and OLMo-1B-hf round tokens differently.
    """
    if m := re.search(r"(?:^|-)tokens(?P<n>\d+)(?P<unit>[MBT])$", revision):
        return int(m["n"]) * UNITS[m["unit"]]
    tps = tokens_per_step_for(repo, tokens_per_step)
    if tps is None:
        return None
    if m := re.fullmatch(r"step-?(?P<step>\d+)", revision):
        return int(m["step"]) * tps
    if m := re.fullmatch(r"ckpt_(?P<i>\d+)", revision):
        return (int(m["i"]) + 1) * tps
    return None


def checkpoint_tokens(revision: str, model: dict) -> int:
    """Tokens of a configured hub checkpoint: explicit `tokens`, else parsed from the name."""
    explicit = model.get("tokens", {}).get(revision)
    if explicit is not None:
        return int(explicit)
    tokens = parse_tokens(revision, model["repo"], model.get("tokens_per_step"))
    if tokens is None:
        raise ValueError(
            f"cannot tell the pretraining tokens of {model['repo']}@{revision} from its name; "
            "set tokens_per_step, or tokens: {" + revision + ": N}"
        )
    if revision.startswith("stage2"):
        base = model.get("stage2_base_tokens")
        if base is None:
            raise ValueError(
                f"{revision} counts only mid-training (stage 2) tokens; set stage2_base_tokens "
                "to the stage-1 tokens it starts from"
            )
        tokens += int(base)
    return tokens


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_revisions(repo: str) -> list[str]:
    """Branch names of `repo` that the local HF cache knows (its refs/)."""
    refs = hub_cache_dir() / f"models--{repo.replace('/', '--')}" / "refs"
    if not refs.is_dir():
        return []
    return sorted(str(p.relative_to(refs)) for p in refs.rglob("*") if p.is_file())


def list_revisions(repo: str) -> list[str]:
    """Branches of a Hub repo: from the Hub when reachable, else from the local cache."""
    from huggingface_hub import constants, list_repo_refs

    if not constants.HF_HUB_OFFLINE:
        try:
            return sorted(b.name for b in list_repo_refs(repo).branches)
        except Exception as e:  # unreachable Hub: fall back to the cache
            print(f"list_repo_refs({repo}) failed ({type(e).__name__}); using the local cache")
    cached = cached_revisions(repo)
    if not cached:
        raise HubError(
            f"{repo}: the Hub is unreachable and the local cache ({hub_cache_dir()}) holds no "
            f"revision of it. Pre-fill the cache on a machine with network (hf download {repo} "
            "--revision <branch>), point HF_HOME at it, or list revisions explicitly."
        )
    return cached


def select_revisions(model: dict, available: list[str]) -> list[str]:
    """`count` revisions evenly spaced in tokens within [min_tokens, max_tokens]."""
    spec = model["revisions"]
    tokens = {}
    for rev in available:
        if spec.get("prefix") and not rev.startswith(spec["prefix"]):
            continue
        try:
            tokens[rev] = checkpoint_tokens(rev, model)
        except ValueError:
            continue
    lo, hi = spec.get("min_tokens", 0), spec.get("max_tokens", float("inf"))
    pool = sorted((t, r) for r, t in tokens.items() if lo <= t <= hi)
    if not pool:
        raise HubError(f"{model['repo']}: no revision with parsable tokens in [{lo}, {hi}]")
    count = min(spec["count"], len(pool))
    if count == 1:
        return [pool[-1][1]]
    first, last = pool[0][0], pool[-1][0]
    chosen: list[str] = []
    for k in range(count):
        target = first + (last - first) * k / (count - 1)
        t, rev = min((p for p in pool if p[1] not in chosen), key=lambda p: abs(p[0] - target))
        chosen.append(rev)
    return sorted(chosen, key=lambda r: tokens[r])


def download_hub(
    repo: str, revision: str, out_dir: str | Path, tokens: int, trust_remote_code: bool = False
) -> dict:
    """Fetch one revision (safetensors, config, tokenizer only) into the HF cache and make a
    checkpoint directory of links to it, with meta.json recording the resolved commit sha."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(repo, revision=revision, allow_patterns=HUB_PATTERNS))
    except LocalEntryNotFoundError as e:
        raise HubError(
            f"{repo} revision {revision} is not in the local Hugging Face cache ({hub_cache_dir()}) "
            f"and the Hub is unreachable. Pre-fill the cache where there is network: "
            f"`hf download {repo} --revision {revision} --include '*.safetensors' '*.json' "
            f"'tokenizer*'`, then set HF_HOME to that cache (HF_HUB_OFFLINE=1 for offline runs)."
        ) from e
    if not any(snapshot.glob("*.safetensors")):
        raise HubError(
            f"{repo}@{revision} has no safetensors weights ({_repo_weight_files(repo, revision)}). "
            "overtrain loads weights from safetensors only and never unpickles downloaded files; "
            "there is no opt-in for pickled weights (models.<name>.trust_remote_code only allows a "
            "repo's own model code). Use a revision with *.safetensors, or convert the weights "
            "yourself and use `source: local`."
        )
    meta = {
        "source": "hub",
        "repo": repo,
        "revision": revision,
        "commit": snapshot.name,
        "tokens": int(tokens),
        "trust_remote_code": trust_remote_code,
    }
    files = sorted(p for p in snapshot.iterdir() if p.is_file())
    with atomic_directory(out_dir) as tmp:
        for p in files:
            os.symlink(p.resolve(), tmp / p.name)
        atomic_write_json(tmp / "meta.json", meta)
    return meta


def _repo_weight_files(repo: str, revision: str) -> str:
    """What the repo ships instead, for the error message (best effort, offline-safe)."""
    try:
        from huggingface_hub import list_repo_files

        files = list_repo_files(repo, revision=revision)
    except Exception:
        snap = hub_cache_dir() / f"models--{repo.replace('/', '--')}" / "snapshots"
        files = [p.name for p in snap.rglob("*") if p.is_file()] if snap.is_dir() else []
    weights = sorted(f for f in files if f.endswith((".bin", ".pt", ".pth", ".ckpt")))
    return f"it ships {weights}" if weights else "no weight files found"
