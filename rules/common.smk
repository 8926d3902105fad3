import hashlib
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)
from overtrain import config as grid  # noqa: E402

try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError:
    schema = Path(workflow.basedir, "schemas", "config.schema.yaml")
    raise WorkflowError(
        f"Invalid config: {grid.explain_schema_error(config, schema)}"
    ) from None
try:
    grid.check(config)
except grid.ConfigError as e:
    raise WorkflowError(f"Invalid config: {e}") from None

R = f"results/{config['experiment']}"
LOGS = f"{R}/logs"
BENCH = f"{R}/benchmarks"
THREADS = config["compute"]["threads_per_job"]
SEQ_LEN = config["corpus"]["seq_len"]
SPLITS = grid.eval_splits(config)


def models_with_source(source):
    names = [n for n, m in config["models"].items() if m["source"] == source]
    # An empty alternation would match the empty string; (?!) never matches.
    return "|".join(re.escape(n) for n in names) or "(?!)"


CORPUS = {
    "language": f"{R}/corpus/language.npz",
    "tokenizer": f"{R}/corpus/tokenizer",
    "pretrain_heldout": f"{R}/corpus/pretrain_heldout.jsonl",
    "ft_heldout": f"{R}/corpus/ft_heldout.jsonl",
    "ft_mc": f"{R}/corpus/ft_mc.jsonl",
    "ft_train": f"{R}/corpus/ft_train.jsonl",
}
EVAL_DATA = {k: CORPUS[k] for k in ("pretrain_heldout", "ft_heldout", "ft_mc")}
FT_DATA = {"synth_ft": CORPUS["ft_train"]}

CHECKPOINT = f"{R}/checkpoints/{{model}}/{{ckpt}}"
FINETUNED = f"{R}/finetuned/{{model}}/{{ckpt}}/{{task}}/{{run}}"


def eval_files():
    """Every evaluation of the study: base, fine-tuned and perturbed variants."""
    out = []
    for model, ckpt in grid.checkpoints(config):
        d = f"{R}/evals/{model}/{ckpt}"
        out.append(f"{d}/base.json")
        out += [f"{d}/ft-{task}-{run}.json" for task, run in grid.finetune_runs(config)]
        out += [f"{d}/{pert}.json" for pert in grid.perturbations(config)]
    return out


METRICS = f"{R}/tables/metrics.csv"
FIGURE_NAMES = ["noise_pretrain_loss", "finetune_pretrain_loss", "finetune_task_metric"]
FIGURES = [
    f"{R}/figures/{name}.{ext}" for name in FIGURE_NAMES for ext in ("png", "pdf")
]


def code_version(*modules):
    """Hash of the package modules a step imports; as a param, editing them reruns the step.

    (Snakemake code triggers see only the script, not the package it imports.)
    """
    h = hashlib.sha256()
    for name in ("atomic", "config") + modules:
        h.update(Path(workflow.basedir, "overtrain", f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


def model_resources(wildcards, attempt):
    return 2000 * attempt
