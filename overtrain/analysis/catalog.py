"""The names of a study's figures and analysis tables, read from the code that makes them: the
figure functions registered in overtrain.analysis.plots (@figure) and the keys of the dict
overtrain.analysis.analyses.compute returns. Read with ast, so the workflow knows its outputs at
parse time without importing pandas or matplotlib; a new figure or table is a function there,
and nothing else to list."""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _tree(module: str) -> ast.Module:
    return ast.parse((HERE / f"{module}.py").read_text())


def figure_names() -> list[str]:
    """The functions of plots.py decorated with @figure(...), in the order of the file."""
    names = []
    for node in _tree("plots").body:
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and getattr(d.func, "id", None) == "figure" for d in node.decorator_list):
            names.append(node.name)
    return names


def table_names() -> list[str]:
    """The keys of the dict analyses.compute returns, in order."""
    for node in _tree("analyses").body:
        if isinstance(node, ast.FunctionDef) and node.name == "compute":
            returned = [n.value for n in ast.walk(node) if isinstance(n, ast.Return)]
            if len(returned) == 1 and isinstance(returned[0], ast.Dict):
                return [k.value for k in returned[0].keys]
    raise ValueError("overtrain/analysis/analyses.py: compute must return one dict literal of the tables")
