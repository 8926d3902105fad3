"""Two studies side by side (`overtrain compare A B`): two machines, two configs, before and after
a change. Each is a results directory (results/<experiment>, or a run directory holding one);
compared are what they concluded: every claim's effect, interval and verdict, which verdicts
changed and by how much the effect moved, and the chosen learning rates and T* that differ.
pandas only."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

CLAIM_KEYS = ["model", "hypothesis", "condition"]
LR_KEYS = ["model", "ft_task", "ft_method", "l2", "tokens", "pretrain_seed"]
T_STAR_KEYS = ["model", "condition", "eval_task", "metric"]


def tables_dir(path: str | Path) -> Path:
    """The tables/ of a study: `path` itself, its tables/, or the one results/<experiment>/tables
    under it."""
    path = Path(path)
    for candidate in (path, path / "tables"):
        if (candidate / "hypotheses.csv").is_file():
            return candidate
    found = sorted(path.glob("results/*/tables/hypotheses.csv"))
    if len(found) == 1:
        return found[0].parent
    raise FileNotFoundError(f"{path}: no study's tables/hypotheses.csv here"
                            + (f" (several: {[str(f.parent) for f in found]}; name one)" if found else ""))


def claims(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Every claim of either study with both effects, intervals and verdicts (suffixes _a, _b),
    whether its verdict changed and by how much its effect moved (b − a)."""
    cols = CLAIM_KEYS + ["effect", "ci_low", "ci_high", "n_seeds", "verdict", "min_effect"]
    both = a[cols].merge(b[cols], on=CLAIM_KEYS, how="outer", suffixes=("_a", "_b"), indicator=True)
    both["in"] = both.pop("_merge").map({"both": "both", "left_only": "a only", "right_only": "b only"})
    both["changed"] = (both["in"] == "both") & (both["verdict_a"] != both["verdict_b"])
    both["effect_change"] = both["effect_b"] - both["effect_a"]
    return both


def _differing(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    if a.empty or b.empty:
        return pd.DataFrame(columns=keys + [f"{value}_a", f"{value}_b"])
    keys = [k for k in keys if k in a and k in b]
    both = a[keys + [value]].merge(b[keys + [value]], on=keys, suffixes=("_a", "_b"))
    return both[both[f"{value}_a"] != both[f"{value}_b"]]


def compare(a: str | Path, b: str | Path) -> dict:
    """What two studies concluded, side by side (see the module docstring)."""
    da, db = tables_dir(a), tables_dir(b)
    read = lambda d, name: pd.read_csv(d / f"{name}.csv") if (d / f"{name}.csv").is_file() else pd.DataFrame()  # noqa: E731
    side = claims(read(da, "hypotheses"), read(db, "hypotheses"))
    measured = side[side["effect_a"].notna() | side["effect_b"].notna()]
    return {
        "a": str(da), "b": str(db),
        "claims": int((measured["in"] == "both").sum()),
        "only_one": int((measured["in"] != "both").sum()),
        "changed": measured[measured["changed"]].to_dict("records"),
        "rows": measured.to_dict("records"),
        "learning_rates": _differing(read(da, "best_lr"), read(db, "best_lr"), LR_KEYS, "lr").to_dict("records"),
        "t_star": _differing(read(da, "inflection"), read(db, "inflection"), T_STAR_KEYS, "t_star").to_dict("records"),
    }


def _cell(r: dict, k: str) -> str:
    if r[f"effect_{k}"] != r[f"effect_{k}"]:  # NaN: not measured there
        return "—"
    return f"{r[f'effect_{k}']:.3g} [{r[f'ci_low_{k}']:.3g}, {r[f'ci_high_{k}']:.3g}] {r[f'verdict_{k}']}"


def markdown(result: dict) -> str:
    lines = [f"A: {result['a']}", f"B: {result['b']}", "",
             f"{result['claims']} claims measured in both; verdicts that differ: **{len(result['changed'])}**"
             + (f"; {result['only_one']} measured in one study only (— in the other)." if result["only_one"] else "."),
             "",
             "| model | claim | condition | A | B | effect B − A |", "|---|---|---|---|---|---|"]
    for r in sorted(result["rows"], key=lambda r: (not r["changed"], r["model"], r["hypothesis"])):
        mark = " **changed**" if r["changed"] else ""
        change = "" if r["effect_change"] != r["effect_change"] else f"{r['effect_change']:+.3g}"
        lines.append(f"| {r['model']} | {r['hypothesis']}{mark} | {r['condition']} | {_cell(r, 'a')} | {_cell(r, 'b')} "
                     f"| {change} |")
    lines += ["", f"Chosen learning rates that differ: {len(result['learning_rates'])}."]
    lines += [f"- {r['model']} {r.get('ft_task', '')} at {r['tokens']:g} tokens (seed {r.get('pretrain_seed')}): "
              f"{r['lr_a']:g} → {r['lr_b']:g}" for r in result["learning_rates"]]
    lines += ["", f"T* that differ: {len(result['t_star'])}."]
    lines += [f"- {r['model']} {r['condition']} {r['eval_task']} ({r['metric']}): {r['t_star_a']:g} → {r['t_star_b']:g}"
              for r in result["t_star"]]
    return "\n".join(lines)


def main(a: str, b: str, as_json: bool = False) -> int:
    result = compare(a, b)
    print(json.dumps(result, indent=1, default=str) if as_json else markdown(result))
    return 0
