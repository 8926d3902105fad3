"""What a study will cost before anything runs: `overtrain plan --configfile <file>`.

Per rule and in total: jobs (Snakemake's own dry run), GPU-hours, download size and disk for
outputs. Compute is counted in FLOPs — training 6·N·tokens, evaluation and generation 2·N·tokens
— and turned into GPU-hours at a stated model-FLOPs utilisation (MFU) of a stated peak, both
overridable. N, the parameter count, comes from the weights' safetensors headers where the HF
cache has them, else the Hub's file metadata when it is reachable, else the model card's figure
(KNOWN_PARAMETERS), else it is reported unknown. Token counts are upper bounds where the data
decide them (every fine-tuning example as long as max_length; evaluation as stated by
--eval-tokens). No torch: it runs where the dry run does.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from overtrain.integrity import header_parameters
from overtrain.provenance import model_rules
from overtrain.sources.corpus import INSTRUCTION, SPECIALS
from overtrain.study import SCHEMA, Study, user_config

SNAKEFILE = Path(__file__).resolve().parents[1] / "Snakefile"
# Parameter counts from the model cards, for planning offline when nothing is cached.
KNOWN_PARAMETERS = {
    "allenai/OLMo-1B-hf": 1.18e9, "allenai/OLMo-1B": 1.18e9, "allenai/OLMo-2-0425-1B": 1.48e9,
    "allenai/OLMo-2-1124-7B": 7.3e9, "EleutherAI/pythia-160m": 1.62e8, "EleutherAI/pythia-410m": 4.05e8,
    "EleutherAI/pythia-1b": 1.01e9, "LLM360/Amber": 6.74e9,
}


def run_snakemake(workdir: str | Path, configfile: str | Path | None, *args: str, snakefile: Path = SNAKEFILE,
                  timeout: float | None = None) -> subprocess.CompletedProcess:
    """The workflow run as a user runs it, in `workdir` (its output captured): the one launcher of
    `overtrain plan`, the benchmarks and the tests."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir)]
    if configfile:
        cmd += ["--configfile", str(Path(configfile).resolve())]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=workdir, timeout=timeout)


def parse_job_stats(stdout: str) -> dict[str, int]:
    """Jobs per rule from the "Job stats" table Snakemake prints."""
    block = stdout.split("Job stats:")[1] if "Job stats:" in stdout else ""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", block.split("total")[0], re.M)}


def job_counts(configfile: str, snakefile: Path, workdir: str | None = None) -> dict[str, int]:
    """Jobs per rule from Snakemake's dry run (what would run from scratch in `workdir`)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        r = run_snakemake(workdir or tmp, configfile, "-n", "--quiet", "rules", snakefile=snakefile)
    if r.returncode != 0:
        raise SystemExit(r.stdout[-2000:] + r.stderr[-2000:])
    return parse_job_stats(r.stdout)


def hub_parameters(repo: str, revision: str) -> tuple[float | None, str, int | None]:
    """(parameters, where the number comes from, download bytes) of one Hub revision."""
    from overtrain.sources.checkpoints import cached_refs, hub_cache_dir

    commit = cached_refs(repo).get(revision)
    snap = hub_cache_dir() / f"models--{repo.replace('/', '--')}" / "snapshots" / (commit or "-")
    files = sorted(snap.glob("*.safetensors")) if commit else []
    if files:
        return (float(sum(header_parameters(f) for f in files)), "cached weights",
                sum(f.stat().st_size for f in files))
    try:
        from huggingface_hub import HfApi, constants

        if not constants.HF_HUB_OFFLINE:
            info = HfApi().model_info(repo, revision=revision, files_metadata=True)
            size = sum(s.size or 0 for s in info.siblings if s.rfilename.endswith(".safetensors"))
            params = getattr(getattr(info, "safetensors", None), "total", None)
            if params:
                return float(params), "Hub metadata", size
    except Exception:
        pass
    known = KNOWN_PARAMETERS.get(repo)
    return known, ("model card" if known else "unknown"), None


def synthetic_parameters(config: dict, model: dict) -> float:
    """The controlled study's tiny Llama: embeddings, untied head and blocks."""
    c, a = config["corpus"], model["architecture"]
    vocab = len(SPECIALS) + c["topics"] + c["vocab"] + len(INSTRUCTION.split())  # Language.token_strings
    h, f, layers = a["hidden"], a["intermediate"], a["layers"]
    return float(2 * vocab * h + layers * (4 * h * h + 3 * h * f + 2 * h) + h)


def prefetch_downloads(study: Study) -> list[dict]:
    """What the prefetch rule downloads before any compute job (overtrain.evaluation.prefetch),
    with the size the Hub or NLTK's index gives for each (None offline); the prefetch manifest
    records the bytes actually fetched. Kept out of the totals, which stay the same offline."""
    from overtrain.evaluation import prefetch

    ev = study.config["evaluate"]
    want = prefetch.wanted(list(study.splits), ev["task_data"], ev["judge"])
    size = {k: (None if v is None else v / 1e9) for k, v in prefetch.sizes(want).items()}
    out = [{"what": f"lm-eval task {t}: its dataset", "size_gb": size[f"task:{t}"]} for t in want["tasks"]]
    out += [{"what": f"NLTK {r}", "size_gb": size[f"nltk:{r}"]} for r in want["nltk"]]
    if want["alpaca_eval"]:
        out.append({"what": "AlpacaEval prompts and reference outputs ({}/{})".format(*prefetch.ALPACA_EVAL),
                    "size_gb": size["alpaca_eval"]})
    return out


def plan(study: Study, jobs: dict[str, int], *, mfu: float, peak_tflops: float,
         eval_tokens: float | None) -> dict:
    """Cost per rule and in total (see the module docstring). `eval_tokens` per evaluated
    variant; None: the synthetic tasks' own size, else 5e5."""
    config = study.config
    ft, ev, compute = config["finetune"], config["evaluate"], config["compute"]
    rows: dict[str, dict] = {rule: {"jobs": n, "flops": 0.0, "download_bytes": 0.0, "disk_bytes": 0.0}
                             for rule, n in jobs.items()}
    notes, params = [], []
    for name, m in config["models"].items():
        if m["source"] == "pretrain":
            n = synthetic_parameters(config, m)
            params.append((name, n, "architecture"))
            seeds, budgets = len(m.get("seeds") or [0]), m["budgets"]
            passes = 2 if m["optimizer"]["sam_rho"] > 0 else 1  # SAM: a second forward and backward per step
            if m.get("branching") and "pretrain_stable" in rows:
                # one constant-LR run to the last branch point (to the largest budget when it keeps
                # stable checkpoints), then each budget's decay
                decay = m["optimizer"]["decay_fraction"]
                stable = 1 if m["stable_checkpoints"] else 1 - decay
                rows["pretrain_stable"]["flops"] += 6 * n * passes * seeds * stable * max(budgets)
                rows["pretrain"]["flops"] += 6 * n * passes * seeds * decay * sum(budgets)
            elif "pretrain" in rows:
                rows["pretrain"]["flops"] += 6 * n * passes * seeds * sum(budgets)
            if "pretrain" in rows:  # float32 checkpoints
                rows["pretrain"]["disk_bytes"] += 4 * n * seeds * len(budgets)
            continue
        if m["source"] == "stable":  # the stable run's states: pretrained by its model's jobs
            n = synthetic_parameters(config, config["models"][m["of"]])
            params.append((name, n, "architecture"))
            if "stable_checkpoint" in rows:
                rows["stable_checkpoint"]["disk_bytes"] += 4 * n * rows["stable_checkpoint"]["jobs"]
            continue
        if m["source"] == "results":  # rows read from files: no model job, nothing to count
            params.append((name, m["parameters"], "config" if m["parameters"] else "not needed (no model job)"))
            continue
        revisions = m["revisions"] if isinstance(m["revisions"], list) else []
        counts = [hub_parameters(m["repo"], r) for r in revisions] if m["source"] == "hub" else []
        n = next((c[0] for c in counts if c[0]), None)
        source = next((c[1] for c in counts if c[0]), "unknown")
        params.append((name, n, source))
        if m["source"] == "hub" and "hub_checkpoint" in rows:
            dtype_bytes = 2  # released checkpoints are 16-bit
            rows["hub_checkpoint"]["download_bytes"] += sum(
                c[2] if c[2] is not None else (c[0] or 0) * dtype_bytes for c in counts)
    n_model = max((p[1] or 0) for p in params) if params else 0
    if any(p[1] is None and not p[2].startswith("not needed") for p in params):
        notes.append("parameters unknown for " + ", ".join(p[0] for p in params if p[1] is None)
                     + ": their compute is not counted (fill the HF cache or reach the Hub)")
    # fine-tuning: every example as long as max_length (an upper bound), epochs or steps
    synthetic = all(study.ours(name) for name in config["models"])
    max_len = config["corpus"]["seq_len"] if synthetic else ft["max_length"]
    n_examples = config["corpus"]["ft_train_docs"] if synthetic else ft["n_examples"]
    steps_tokens = (ft["steps"] * ft["batch_size"] if ft["steps"] else ft["epochs"] * n_examples) * max_len
    if "finetune" in rows:
        rows["finetune"]["flops"] += 6 * n_model * steps_tokens * rows["finetune"]["jobs"]
        saved = n_model * (4 if "full" in ft["methods"] else 0.02)  # float32 fine-tunes; LoRA adapters
        rows["finetune"]["disk_bytes"] += saved * rows["finetune"]["jobs"]
    # LLaVA: both stages back-propagate through the language model (an upper bound for stage 1),
    # sequences as long as max_length; the evaluation scores its sets once (4 choices for mc)
    mm = config.get("multimodal", {})
    if "align_projector" in rows:
        stage1 = mm["stage1"]["steps"] * mm["stage1"]["batch_size"] * max_len
        rows["align_projector"]["flops"] += 6 * n_model * stage1 * rows["align_projector"]["jobs"]
    if "finetune_llava" in rows:  # its examples are the visual instructions
        data = mm.get("data") or {}
        n_instruct = data["instruct"]["n"] if "instruct" in data else mm["n"]["instruct"]
        llava_tokens = (ft["steps"] * ft["batch_size"] if ft["steps"] else ft["epochs"] * n_instruct) * max_len
        rows["finetune_llava"]["flops"] += 6 * n_model * llava_tokens * rows["finetune_llava"]["jobs"]
        rows["finetune_llava"]["disk_bytes"] += 4 * n_model * rows["finetune_llava"]["jobs"]
    if "evaluate_multimodal" in rows:
        data = mm.get("data") or {}
        n_rows = (data["n_val"] + data["n_test"] if "instruct" in data
                  else sum(mm["n"][k] for k in ("val", "test", "transcribe")) + 4 * mm["n"]["mc"])
        n_rows += len(mm["benchmarks"]) * (ev["limit"] or 1000)
        rows["evaluate_multimodal"]["flops"] += 2 * n_model * n_rows * max_len * rows["evaluate_multimodal"]["jobs"]
    # evaluation: per evaluated variant, eval_tokens tokens through the model
    if eval_tokens is None:  # the synthetic tasks' size is known: limit documents of seq_len tokens
        if synthetic:
            tasks = len(ev["val"]) + len(ev["id"]) + len(ev["ood"]) + ev["pretrain_loss"] + 2 * ev["prompt_variants"]
            eval_tokens = ev["limit"] * config["corpus"]["seq_len"] * tasks
        else:
            eval_tokens = 5e5
    # a perturbed variant is scored on perturb.splits' share of the tasks
    variants = {"evaluate_checkpoint": study.checkpoint_evaluations,
                "evaluate_finetuned": 1, "connectivity": config["connectivity"]["points"] + 2}
    for rule, k in variants.items():
        if rule in rows:
            rows[rule]["flops"] += 2 * n_model * eval_tokens * k * rows[rule]["jobs"]
    sharp = ev["sharpness"]
    if sharp["probes"]:  # per base and fine-tune: a Hessian-vector product ≈ 6 forward passes, SAM ≈ 4
        tokens = sharp["docs"] * (config["corpus"]["seq_len"] if synthetic else ft["max_length"])
        for rule in ("evaluate_checkpoint", "evaluate_finetuned"):
            if rule in rows:
                rows[rule]["flops"] += 2 * n_model * tokens * (6 * sharp["probes"] + 4) * rows[rule]["jobs"]
    judge = ev["judge"]
    if judge["enabled"]:
        gen_tokens = judge["n_prompts"] * (judge["max_new_tokens"] + 256)
        for rule in ("generate", "judge_reference"):
            if rule in rows:
                rows[rule]["flops"] += 2 * n_model * gen_tokens * rows[rule]["jobs"]
        if "judge" in rows:
            notes.append("the judge model's own compute is not counted (its size is the judge's)")
    per_gpu_flops = peak_tflops * 1e12 * mfu
    total = {"jobs": 0, "gpu_hours": 0.0, "download_gb": 0.0, "disk_gb": 0.0}
    out_rows = []
    gpu_jobs = compute["device"] == "cuda" or compute["gpus_per_job"] > 0
    for rule, r in sorted(rows.items()):
        hours = r["flops"] / per_gpu_flops / 3600 if rule in model_rules() else 0.0
        row = {"rule": rule, "jobs": r["jobs"], "tflop": r["flops"] / 1e12,
               ("gpu_hours" if gpu_jobs else "device_hours"): hours,
               "download_gb": r["download_bytes"] / 1e9, "disk_gb": r["disk_bytes"] / 1e9}
        out_rows.append(row)
        total["jobs"] += r["jobs"]
        total["gpu_hours"] += hours
        total["download_gb"] += row["download_gb"]
        total["disk_gb"] += row["disk_gb"]
    return {"experiment": config["experiment"], "parameters": [{"model": p[0], "parameters": p[1], "source": p[2]}
                                                                for p in params],
            "prefetch": prefetch_downloads(study),
            "assumptions": {"mfu": mfu, "peak_tflops": peak_tflops, "eval_tokens_per_variant": eval_tokens,
                            "finetune_tokens_per_job": steps_tokens},
            "rules": out_rows, "total": total, "notes": notes}


def load_study(configfile: str, snakefile: Path) -> Study:
    """The study as the workflow sees it (overtrain.study: the same merge with the default
    config, Snakemake's schema validation, checks and the lock-aware hub resolution)."""
    from snakemake.utils import validate

    root = snakefile.resolve().parent
    config = user_config(configfile, root)
    return Study.load(config, root, lambda c: validate(c, str(SCHEMA)))


def table(result: dict) -> str:
    hours_key = next(k for k in result["rules"][0] if k.endswith("hours")) if result["rules"] else "gpu_hours"
    lines = [f"Plan for {result['experiment']}: " + ", ".join(
        f"{p['model']} N={p['parameters'] / 1e6:.1f}M ({p['source']})" if p["parameters"] else f"{p['model']} N=?"
        for p in result["parameters"]),
        f"assumptions: MFU {result['assumptions']['mfu']:g} of {result['assumptions']['peak_tflops']:g} TFLOP/s; "
        f"{result['assumptions']['eval_tokens_per_variant']:.3g} evaluation tokens per variant; "
        f"{result['assumptions']['finetune_tokens_per_job']:.3g} fine-tuning tokens per job (upper bound)", "",
        f"{'rule':22}{'jobs':>6}{'TFLOP':>12}{hours_key.replace('_', ' '):>26}{'download GB':>13}{'disk GB':>10}"]
    for r in result["rules"]:
        lines.append(f"{r['rule']:22}{r['jobs']:>6}{r['tflop']:>12.3g}{r[hours_key]:>26.3g}"
                     f"{r['download_gb']:>13.3g}{r['disk_gb']:>10.3g}")
    t = result["total"]
    lines.append(f"{'total':22}{t['jobs']:>6}{'':>12}{t['gpu_hours']:>26.3g}{t['download_gb']:>13.3g}{t['disk_gb']:>10.3g}")
    lines += [f"prefetch (a local rule, before any compute job): {d['what']}"
              + (f", {d['size_gb']:.3g} GB" if d["size_gb"] is not None
                 else " (size unknown offline: in the manifest once fetched)")
              for d in result.get("prefetch", [])]
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="overtrain", description="overtrain's command line")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="cost of a study before it runs", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", default="config.yaml")
    p.add_argument("--snakefile", default=str(SNAKEFILE))
    p.add_argument("--mfu", type=float, default=0.3, help="model-FLOPs utilisation reached (default 0.3)")
    p.add_argument("--peak-tflops", type=float, default=312.0, help="device peak (default: A100 dense bf16)")
    p.add_argument("--eval-tokens", type=float, default=None,
                   help="tokens per evaluated variant (default: the synthetic tasks' size, else 5e5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c = sub.add_parser("compare", help="two studies' claims, chosen learning rates and T* side by side",
                       description="Two results directories (results/<experiment>, or run directories holding one): "
                                   "every claim's effect, interval and verdict in both, which changed, and the chosen "
                                   "learning rates and T* that differ.")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    a = ap.parse_args(argv)
    if a.command == "compare":
        from overtrain.analysis import compare

        sys.exit(compare.main(a.a, a.b, a.json))
    snakefile = Path(a.snakefile)
    study = load_study(a.configfile, snakefile)
    result = plan(study, job_counts(a.configfile, snakefile), mfu=a.mfu, peak_tflops=a.peak_tflops,
                  eval_tokens=a.eval_tokens)
    print(json.dumps(result, indent=1) if a.json else table(result))


if __name__ == "__main__":
    main()
