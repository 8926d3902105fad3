"""How a result was made: which of our modules a step's code runs (its import closure, hashed
into the step's code version), and the package versions every result records.

Snakemake's own code trigger sees only a rule's script, not the package it imports, so each
rule passes `code_digest(script)` as a param: editing any module the script reaches (directly,
through other package modules, or through a function-local import) changes the param and
reruns the rule. The same closure keys resume states (a resumed run never continues a state of
older code) and the fork server's preload list. The closure is read from the source with `ast`,
never by importing it (parse time: a few milliseconds, no torch). Imports only the standard
library.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import platform
from functools import lru_cache
from pathlib import Path

PACKAGE = "overtrain"
ROOT = Path(__file__).resolve().parent  # the package directory
# Modules whose edits cannot change a number or a byte of any output, so editing them reruns
# nothing: each with the reason. Everything else a step reaches is in its code version.
EXEMPT = {
    "overtrain.jobserver": "where a job's process starts (a warm fork or a fresh interpreter); the outputs are "
                           "the same bytes either way (tests/test_workflow.py::test_rerun_from_scratch_is_byte_identical)",
    "overtrain.offline": "whether a compute job may download: it reads the same prefetched files either way, or "
                         "fails naming the missing one (tests/test_prefetch.py)",
}
VERSIONED_PACKAGES = ("torch", "transformers", "tokenizers", "lm_eval", "datasets", "numpy")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of a module of the package ('overtrain.training.loop'), or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def _direct_imports(path: Path, root: Path) -> tuple[str, ...]:
    """Package modules and sibling scripts a file imports anywhere (function bodies included)."""
    tree = ast.parse(path.read_text(), str(path))
    is_module = root in path.parents
    here = _module_name(path, root) if is_module else None
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                if here is None:
                    continue
                package = here.split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append(base)
            found += [f"{base}.{a.name}" for a in node.names]  # `from overtrain import tables`
    out = []
    for name in found:
        if name.split(".")[0] == PACKAGE:
            out.append(name)
        elif not is_module and "." not in name and (path.parent / f"{name}.py").is_file():
            out.append(f"script:{path.parent / name}.py")  # a sibling helper of a script (_job)
    return tuple(dict.fromkeys(out))


def import_closure(entry: str | Path, root: Path = ROOT) -> list[str]:
    """Every module of the package that `entry` (a script path, or a module name such as
    'overtrain.training.finetune') runs when it runs, with the packages whose __init__ it
    executes; sorted. Exempt modules (EXEMPT) are left out."""
    root = Path(root).resolve()
    start = Path(entry) if not str(entry).startswith(PACKAGE) else module_file(str(entry), root)
    if start is None or not Path(start).is_file():
        raise FileNotFoundError(f"no such script or module of the package: {entry}")
    seen_files: set[Path] = set()
    modules: set[str] = set()
    todo = [Path(start).resolve()]
    if root in todo[0].parents:
        modules.add(_module_name(todo[0], root))
    while todo:
        path = todo.pop()
        if path in seen_files:
            continue
        seen_files.add(path)
        for name in _direct_imports(path, root):
            if name.startswith("script:"):
                todo.append(Path(name.removeprefix("script:")).resolve())
                continue
            parts = name.split(".")
            for k in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
                prefix = ".".join(parts[:k])
                file = module_file(prefix, root)
                if file is not None and prefix not in EXEMPT:
                    modules.add(prefix)
                    todo.append(file.resolve())
    return sorted(modules)


def code_digest(*entries: str | Path, root: Path = ROOT) -> str:
    """A hash of the source of every module the entries run (their import closure)."""
    h = hashlib.sha256()
    names = sorted(set().union(*(import_closure(e, root) for e in entries)))
    for name in names:
        h.update(name.encode() + b"\0" + module_file(name, root).read_bytes() + b"\0")
    return h.hexdigest()[:16]


def rule_scripts(rules_dir: Path = ROOT.parent / "rules") -> dict[str, Path]:
    """Each rule of the workflow that runs a script → that script, read from rules/*.smk."""
    import re

    out = {}
    for smk in sorted(Path(rules_dir).glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            name = re.search(r"^\s*rule (\w+):", block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            if name and script:
                out[name[1]] = (Path(rules_dir) / script[1]).resolve()
    return out


def model_rules(rules_dir: Path = ROOT.parent / "rules") -> list[str]:
    """The rules whose jobs may run a model: their scripts reach overtrain.models."""
    return sorted(rule for rule, script in rule_scripts(rules_dir).items() if "overtrain.models" in import_closure(script))


def package_modules(root: Path = ROOT) -> list[str]:
    """Every module of the package, by name."""
    root = Path(root).resolve()
    return sorted(_module_name(p, root) for p in root.rglob("*.py"))


def package_versions() -> dict[str, str]:
    """Versions recorded in every output's metadata, so a number can be traced to its stack."""
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
