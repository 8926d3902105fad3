"""Evaluations done elsewhere, as this study's evaluation results (a model with source results).

Two kinds of input: a published table (a CSV with one row per evaluation, whose id column names
the checkpoint and, for a fine-tune, its task and learning rate: config regular expressions map
it) and lm-eval's own output files (`lm_eval --output_path`: one checkpoint each, named by the
revision in its model_args). Both become rows of the metrics.csv contract, written as one result
JSON (overtrain.evaluation.results), so every analysis, claim, figure and the findings run on
them as on rows our jobs wrote. A bad file or field is refused naming it.
"""

from __future__ import annotations

import csv
import glob
import json
import re
from pathlib import Path

from overtrain.evaluation.results import write_result
from overtrain.evaluation.tasks import tidy_results

ROW_LABELS = ("ckpt", "tokens", "parameters", "pretrain_seed", "variant", "ft_task", "ft_method", "lr", "seed")


def _tokens(groups: dict, where: str, tokens_per_step: int | None) -> int:
    if groups.get("tokens") is not None:
        return int(groups["tokens"])
    if groups.get("step") is None:
        raise ValueError(f"{where}: the pattern gives neither a step nor tokens (named groups step or tokens)")
    if tokens_per_step is None:
        raise ValueError(f"{where}: a step needs tokens_per_step (the model's tokens per optimizer step)")
    return int(groups["step"]) * tokens_per_step


def table_rows(table: dict, tokens_per_step: int | None, parameters: int | None, basedir: str | Path = ".") -> tuple[list[dict], int]:
    """The rows of one published table (models.<name>.tables[i]) and how many of its lines no
    pattern matched."""
    path = Path(basedir, table["path"])
    if not path.is_file():
        raise FileNotFoundError(f"{table['path']}: no such published table")
    patterns = {variant: re.compile(p) for variant, p in table["patterns"].items()}
    own = table.get("own", {})
    own_tasks = set(own.values())
    rows, unmatched = [], 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        for column in (table["id_column"], table["eval_task_column"], table["value_column"]):
            if column not in (reader.fieldnames or []):
                raise ValueError(f"{table['path']}: no column {column!r}; it has {reader.fieldnames}")
        for line, record in enumerate(reader, start=2):
            name = record[table["id_column"]]
            match = next(((v, m) for v, p in patterns.items() if (m := p.fullmatch(name))), None)
            if match is None:
                unmatched += 1
                continue
            variant, m = match
            groups = m.groupdict()
            where = f"{table['path']}:{line} ({name})"
            published_task = record[table["eval_task_column"]]
            task = table.get("eval_task_names", {}).get(published_task, published_task)
            try:
                value = float(record[table["value_column"]])
            except ValueError:
                raise ValueError(f"{where}: {table['value_column']} {record[table['value_column']]!r} is not a number") from None
            tokens = _tokens(groups, where, tokens_per_step)
            row = {"ckpt": f"step{groups['step']}" if groups.get("step") is not None else f"tok{tokens}",
                   "tokens": tokens, "parameters": parameters, "pretrain_seed": 0, "variant": variant,
                   "eval_task": task,
                   "metric": table.get("metric_by_task", {}).get(published_task, table.get("metric", "acc")),
                   "value": value}
            if variant == "finetuned":
                if groups.get("ft_task") is None or groups.get("lr") is None:
                    raise ValueError(f"{where}: a fine-tune's pattern must name ft_task and lr")
                row.update(ft_task=table.get("ft_task_names", {}).get(groups["ft_task"], groups["ft_task"]),
                           ft_method="full", lr=float(groups["lr"]), l2=0.0, seed=int(groups.get("seed") or 0))
                row["split"] = "id" if own.get(groups["ft_task"]) == published_task else "ood"
            else:
                row["split"] = "id" if published_task in own_tasks else "ood"
            rows.append(row)
    return rows, unmatched


def lm_eval_rows(entry: dict, model: dict, splits: dict[str, str], parameters: int | None,
                 basedir: str | Path = ".") -> list[dict]:
    """The rows of lm-eval output files (models.<name>.lm_eval[i]): every task of each file, its
    split from `splits` (evaluate.id / evaluate.val) or ood."""
    from overtrain.sources.checkpoints import checkpoint_tokens

    files = sorted(glob.glob(str(Path(basedir, entry["path"])))) or []
    if not files:
        raise FileNotFoundError(f"{entry['path']}: no lm-eval output file matches")
    rows = []
    for file in files:
        result = json.loads(Path(file).read_text())
        if not isinstance(result.get("results"), dict):
            raise ValueError(f"{file}: not an lm-eval output file (no 'results' object)")
        args = (result.get("config") or {}).get("model_args") or ""
        if isinstance(args, dict):
            revision = args.get("revision")
        else:
            found = re.search(r"(?:^|,)revision=([^,]+)", args)
            revision = found[1] if found else None
        ckpt = entry.get("ckpt") or revision
        if ckpt is None:
            raise ValueError(f"{file}: its model_args name no revision; give models.<name>.lm_eval[].ckpt")
        tokens = entry.get("tokens")
        if tokens is None:
            try:
                tokens = checkpoint_tokens(ckpt, {"repo": "lm-eval output", **model})
            except ValueError as e:
                raise ValueError(f"{file}: {e} (or give models.<name>.lm_eval[].tokens)") from None
        tasks = {t: splits.get(t, "ood") for t in result["results"]}
        rows += [{"ckpt": ckpt, "tokens": int(tokens), "parameters": parameters, "pretrain_seed": 0,
                  "variant": "base", **r} for r in tidy_results(result["results"], tasks)]
    return rows


def import_results(model_name: str, model: dict, splits: dict[str, str], out_json: str | Path,
                   basedir: str | Path = ".") -> dict:
    """Every row of a results model, written as one result JSON (the aggregate rule reads it
    like an evaluation job's); returns what was read."""
    rows, unmatched, sources = [], 0, []
    for table in model.get("tables", []):
        got, skipped = table_rows(table, model.get("tokens_per_step"), model.get("parameters"), basedir)
        rows += got
        unmatched += skipped
        sources.append({"table": table["path"], "rows": len(got), "unmatched": skipped})
    for entry in model.get("lm_eval", []):
        got = lm_eval_rows(entry, model, splits, model.get("parameters"), basedir)
        rows += got
        sources.append({"lm_eval": entry["path"], "rows": len(got)})
    if not rows:
        raise ValueError(f"models.{model_name}: its tables and lm-eval files gave no rows")
    write_result(out_json, {"model": model_name}, "imported", rows=rows, imported_from=sources)
    return {"rows": len(rows), "unmatched": unmatched, "sources": sources}
