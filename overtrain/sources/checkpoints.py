"""Where checkpoints come from: our own pretraining (overtrain.training.pretrain), local HF directories, or
revisions of a Hugging Face Hub repo."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from overtrain.atomic import atomic_directory, atomic_write_json

MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".model", ".txt", ".jinja")


def link_local(source: str | Path, out_dir: str | Path, tokens: int) -> dict:
    """Make a checkpoint directory that symlinks a local HF model dir's files, plus meta.json.

    Linking instead of copying keeps multi-GB checkpoints in one place; the safetensors hashes
    in meta.json record exactly which weights were used.
    """
    from overtrain import integrity
    from overtrain.models import require_safetensors

    source = Path(source).resolve()
    require_safetensors(source)
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
    files = [p for p in files if p.name != "meta.json"]
    meta = {
        "source": "local",
        "path": str(source),
        "tokens": int(tokens),
        # refused here if damaged; later loads check that the linked files did not change
        "weights": integrity.record(source),
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


def cached_refs(repo: str) -> dict[str, str]:
    """Branch → commit of `repo` as the local HF cache knows them (its refs/)."""
    refs = hub_cache_dir() / f"models--{repo.replace('/', '--')}" / "refs"
    if not refs.is_dir():
        return {}
    return {str(p.relative_to(refs)): p.read_text().strip() for p in sorted(refs.rglob("*")) if p.is_file()}


def ref_commits(repo: str) -> dict[str, str]:
    """Branch → commit of a Hub repo: from the Hub when reachable, else from the local cache."""
    from huggingface_hub import constants, list_repo_refs

    if not constants.HF_HUB_OFFLINE:
        try:
            return {b.name: b.target_commit for b in list_repo_refs(repo).branches}
        except Exception as e:  # unreachable Hub: fall back to the cache
            print(f"list_repo_refs({repo}) failed ({type(e).__name__}); using the local cache")
    cached = cached_refs(repo)
    if not cached:
        raise HubError(
            f"{repo}: the Hub is unreachable and the local cache ({hub_cache_dir()}) holds no "
            f"revision of it. Pre-fill the cache on a machine with network (hf download {repo} "
            "--revision <branch>), point HF_HOME at it, or list revisions explicitly."
        )
    return cached


def resolve_hub(models: dict, lock_path: str | Path, refresh: bool = False) -> dict:
    """Every hub model's revisions and their commits, pinned in a lock file.

    The lock (written on first resolution) fixes which revisions a selector chose and which
    commit each revision is, so a rerun months later uses the same weights and planning makes no
    network call. A model whose `repo` or `revisions` setting changed is resolved again; a
    revision not yet resolvable (offline, not cached) stays unpinned until it is. `refresh`
    resolves everything again. Returns {model: {repo, spec, revisions, commits}}.
    """
    path = Path(lock_path)
    lock = json.loads(path.read_text()) if path.exists() and not refresh else {}
    out = {}
    for name, m in models.items():
        entry = lock.get(name)
        if entry and entry["repo"] == m["repo"] and entry["spec"] == m["revisions"]:
            entry = {**entry, "commits": dict(entry["commits"])}
            if not all(entry["commits"].values()):  # pin what has become resolvable
                known = _known_refs(m["repo"])
                entry["commits"] = {r: c or known.get(r) for r, c in entry["commits"].items()}
        else:
            if isinstance(m["revisions"], dict):
                refs = ref_commits(m["repo"])
                revisions = select_revisions(m, sorted(refs))
            else:
                refs, revisions = _known_refs(m["repo"]), list(m["revisions"])
            entry = {"repo": m["repo"], "spec": m["revisions"], "revisions": revisions,
                     "commits": {r: refs.get(r) for r in revisions}}
        out[name] = entry
    if out != {k: lock.get(k) for k in out} and any(c for e in out.values() for c in e["commits"].values()):
        atomic_write_json(path, {**lock, **out})
    return out


def _known_refs(repo: str) -> dict[str, str]:
    try:
        return ref_commits(repo)
    except HubError:
        return {}


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
    repo: str, revision: str, out_dir: str | Path, tokens: int, trust_remote_code: bool = False,
    commit: str | None = None,
) -> dict:
    """Fetch one revision (safetensors, config, tokenizer only) into the HF cache and make a
    checkpoint directory of links to it, with meta.json recording the commit and each weight
    file's sha256 (a cached file whose contents differ from its blob's sha256, or whose size is
    not what its header says, is refused).

    With `commit` (the lock's pin) that commit is fetched, and a branch that has since moved or
    disappeared is reported with both shas.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from overtrain import integrity

    drift = None
    if commit:
        now = _known_refs(repo).get(revision)
        if now != commit:
            drift = {"locked": commit, "now": now}
            print(f"{repo}@{revision}: " + ("no longer exists" if now is None else f"now points to commit {now}")
                  + f"; the lock pins commit {commit}, which is used. To take the new commit, set "
                  "revisions_lock: refresh (or delete results/<experiment>/checkpoints.lock) and rerun.")
    try:
        snapshot = Path(snapshot_download(repo, revision=commit or revision, allow_patterns=HUB_PATTERNS))
    except LocalEntryNotFoundError as e:
        pinned = f" (locked commit {commit})" if commit else ""
        raise HubError(
            f"{repo} revision {revision}{pinned} is not in the local Hugging Face cache ({hub_cache_dir()}) "
            f"and the Hub is unreachable. Pre-fill the cache where there is network: "
            f"`hf download {repo} --revision {commit or revision} --include '*.safetensors' '*.json' "
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
    weights = integrity.record(snapshot)
    for name, w in weights.items():  # LFS blobs are named by their sha256
        blob = (snapshot / name).resolve().name
        if re.fullmatch(r"[0-9a-f]{64}", blob) and blob != w["sha256"]:
            raise integrity.DamagedWeights(
                f"{snapshot / name}: its contents do not match its cache blob's sha256 ({blob[:12]}…): corrupted in "
                f"the cache; delete it and download again (hf download {repo} --revision {revision} --force-download)")
    meta = {
        "source": "hub",
        "repo": repo,
        "revision": revision,
        "commit": snapshot.name,
        "revision_drift": drift,
        "tokens": int(tokens),
        "trust_remote_code": trust_remote_code,
        "weights": weights,
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
