import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)
from overtrain import checks, ids, provenance  # noqa: E402
from overtrain import config as grid  # noqa: E402
from overtrain.sources import checkpoints as sources  # noqa: E402
from overtrain.sources import data as ft_datasets  # noqa: E402

try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError:
    schema = Path(workflow.basedir, "schemas", "config.schema.yaml")
    raise WorkflowError(
        f"Invalid config: {checks.explain_schema_error(config, schema)}"
    ) from None
# Each fine-tuning task's dataset spec (its format decides its own evaluation sets).
FT_SPECS = {
    t: ft_datasets.task_spec(t, config["finetune"]["datasets"])
    for t in config["finetune"]["tasks"]
    if t in ft_datasets.TASKS or t in config["finetune"]["datasets"]
}
try:
    checks.check(config, known_ft_tasks=set(ft_datasets.TASKS), specs=FT_SPECS)
except grid.ConfigError as e:
    raise WorkflowError(f"Invalid config: {e}") from None

# Hub models: revisions (a selector resolved once) and their commits, pinned in
# results/<experiment>/checkpoints.lock on first resolution; every checkpoint's tokens now, so
# that a bad name fails before any job runs.
HUB_TOKENS = {}
HUB_COMMITS = {}
_hub = {n: m for n, m in config["models"].items() if m["source"] == "hub"}
if _hub:
    try:
        _resolved = sources.resolve_hub(
            _hub,
            f"results/{config['experiment']}/checkpoints.lock",
            refresh=config["revisions_lock"] == "refresh",
        )
    except (ValueError, sources.HubError) as e:
        _name = next(iter(_hub))
        raise WorkflowError(f"Invalid config: models.{_name}.revisions: {e}") from None
    for _name, _entry in _resolved.items():
        _m = config["models"][_name]
        _m["revisions"] = _entry["revisions"]
        try:
            for _rev in _m["revisions"]:
                HUB_TOKENS[(_name, _rev)] = sources.checkpoint_tokens(_rev, _m)
                HUB_COMMITS[(_name, _rev)] = _entry["commits"].get(_rev)
        except ValueError as e:
            raise WorkflowError(
                f"Invalid config: models.{_name}.revisions: {e}"
            ) from None

R = f"results/{config['experiment']}"
LOGS = f"{R}/logs"
BENCH = f"{R}/benchmarks"
THREADS = config["compute"]["threads_per_job"]
GPUS = config["compute"]["gpus_per_job"]
PROCESSES = config["compute"]["processes_per_job"]
# What a model job's numbers depend on (params: changing them reruns it). Memory, runtime and
# GPU count are scheduling settings (resources), so raising them after a timeout reruns nothing.
MODEL_JOB_PARAMS = {
    "device": config["compute"]["device"],
    "dtype": config["compute"]["dtype"],
    "threads": THREADS,
}
FINETUNE_NON_PARAMS = (
    "tasks",
    "methods",
    "learning_rates",
    "l2",
    "seeds",
    "datasets",
    "save_every",
    "lora",
)
SEQ_LEN = config["corpus"]["seq_len"]
SPLITS = grid.eval_splits(config, FT_SPECS)  # the base checkpoint and its perturbations


def finetuned_splits(w):
    """A fine-tune's evaluation tasks: its own val/test sets, the others' tests as ood."""
    return grid.eval_splits(config, FT_SPECS, w.task)


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
CORPUS["ft_val"] = f"{R}/corpus/ft_val.jsonl"
CORPUS_EVAL_DATA = (
    {k: CORPUS[k] for k in ("pretrain_heldout", "ft_heldout", "ft_val", "ft_mc")}
    if any(t.startswith("synth_") for t in SPLITS)
    else {}
)
REAL_FT_TASKS = [
    t
    for t in config["finetune"]["tasks"]
    if t != "synth_ft" and not grid.is_multimodal(t)
]


def eval_data(wildcards):
    """What an evaluation of the model reads: the corpus's evaluation files, and the prepared
    val/test sets of every fine-tuning task (rendered with this model's tokenizer)."""
    ft = {f"ft_{t}": f"{R}/ft_data/{wildcards.model}/{t}" for t in REAL_FT_TASKS}
    return {**CORPUS_EVAL_DATA, **ft}


CHECKPOINT = f"{R}/checkpoints/{{model}}/{{ckpt}}"
FINETUNED = f"{R}/finetuned/{{model}}/{{ckpt}}/{{task}}/{{run}}"


def ft_data(wildcards):
    """What a fine-tune trains on: the corpus's task, or a prepared dataset's directory
    (train.jsonl, val.jsonl, test.jsonl, meta.json)."""
    if wildcards.task == "synth_ft":
        return CORPUS["ft_train"]
    return f"{R}/ft_data/{wildcards.model}/{wildcards.task}"


def first_checkpoint(wildcards):
    """Any checkpoint of the model: its tokenizer (and chat template) renders the data."""
    ckpt = next(c for m, c in grid.checkpoints(config) if m == wildcards.model)
    return f"{R}/checkpoints/{wildcards.model}/{ckpt}"


def model_setting(key, default=None):
    return lambda w: config["models"][w.model].get(key, default)


MM = config["multimodal"]
MM_DIR = f"{R}/multimodal"


def multimodal_data_inputs(wildcards):
    """synth_mm draws its pictures from the language; llava reads multimodal.data."""
    return {"language": CORPUS["language"]} if wildcards.task == "synth_mm" else {}


def llava_max_len(w):
    """Tokens of a LLaVA sequence (image positions included): the model's context."""
    if config["models"][w.model]["source"] == "pretrain":
        return SEQ_LEN
    return config["finetune"]["max_length"]


def eval_max_length(w):
    """Our tiny models know seq_len tokens; other models use their own context length."""
    return SEQ_LEN if config["models"][w.model]["source"] == "pretrain" else None


# The base checkpoint and its in-memory perturbations are evaluated by one job per checkpoint.
CHECKPOINT_VARIANTS = ["base"] + grid.perturbations(config, SPLITS)


def eval_files():
    """Every evaluation of the study: base, fine-tuned and perturbed variants."""
    out = []
    for model, ckpt in grid.checkpoints(config):
        d = f"{R}/evals/{model}/{ckpt}"
        out += [f"{d}/{variant}.json" for variant in CHECKPOINT_VARIANTS]
        out += [f"{d}/ft-{task}-{run}.json" for task, run in grid.grid_runs(config)]
        out += [
            f"{d}/mm-{task}-{run}.json" for task, run in grid.multimodal_runs(config)
        ]
    return out


JUDGE = config["evaluate"]["judge"] if config["evaluate"]["judge"]["enabled"] else {}


def judge_files():
    """Every judgment of the study (evaluate.judge): base and fine-tunes of each checkpoint."""
    return [
        f"{R}/judgments/{model}/{ckpt}/{variant}.json"
        for model, ckpt in grid.checkpoints(config)
        for variant in grid.judged_variants(config)
    ]


def judge_reference_inputs(wildcards):
    out = {}
    if isinstance(JUDGE.get("reference"), dict):
        out["reference_model"] = f"{R}/judge/models/reference"
    if JUDGE.get("prompts", "alpaca_eval") != "alpaca_eval":
        model = next(iter(config["models"]))
        out["prompts"] = f"{R}/ft_data/{model}/{JUDGE['prompts']}"
    return out


def generate_inputs(wildcards):
    """A fine-tune's directory for ft-<task>-<run> variants; nothing more for base."""
    v = wildcards.variant
    if v == "base":
        return {}
    task, run = re.fullmatch(r"ft-([A-Za-z0-9_]+)-(.*)", v).groups()
    return {
        "finetuned": f"{R}/finetuned/{wildcards.model}/{wildcards.ckpt}/{task}/{run}"
    }


def connectivity_files():
    out = []
    for model, ckpt in grid.checkpoints(config):
        for task, group, _seeds in grid.connectivity_groups(config):
            out.append(f"{R}/connectivity/{model}/{ckpt}/{task}/{group}.json")
    return out


def connectivity_splits(w):
    """The tasks evaluated along a path (and for soups), with the fine-tune's own val task when
    soups are ordered on it (analysis.select.task: own)."""
    splits = finetuned_splits(w)
    tasks = list(config["connectivity"]["tasks"])
    if (config["analysis"]["select"] or {}).get("task") == "own":
        tasks.append(grid.own_val_task(w.task))
    return {t: splits[t] for t in dict.fromkeys(tasks) if t in splits}


def connectivity_inputs(wildcards):
    seeds = config["connectivity"]["seeds"]
    d = f"{R}/finetuned/{wildcards.model}/{wildcards.ckpt}/{wildcards.task}"
    return [f"{d}/{wildcards.group}-s{s}" for s in seeds]


METRICS = f"{R}/tables/metrics.csv"
FIGURE_NAMES = [
    "noise_pretrain_loss",
    "finetune_pretrain_loss",
    "finetune_task_metric",
    "quantization_pretrain_loss",
    "tuned_learning_rate",
    "finetune_gain",
    "prompt_sensitivity",
    "connectivity",
]
FIGURES = [
    f"{R}/figures/{name}.{ext}" for name in FIGURE_NAMES for ext in ("png", "pdf")
]
ANALYSIS_TABLES = [
    "hypotheses",
    "pretrain_loss",
    "best_lr",
    "lr_trend",
    "tuned",
    "inflection",
    "finetune_gain",
    "barriers",
    "soups",
]
TABLES = [f"{R}/tables/{name}.csv" for name in ANALYSIS_TABLES]
FINDINGS = f"{R}/findings.md"
# the command that runs this study: the default, or the preset of the same name (a param: it
# must not depend on how a run was invoked)
STUDY_COMMAND = "snakemake --cores all" + (
    ""
    if config["experiment"] == "default"
    else (
        f" --configfile configs/{config['experiment']}.yaml"
        if Path(workflow.basedir, "configs", f"{config['experiment']}.yaml").exists()
        else " --configfile <the config of this experiment>"
    )
)
# replicates of the study: pretraining seeds of the controlled study, else fine-tuning seeds
REPLICATES = max(
    [
        len(m.get("seeds", [0]))
        for m in config["models"].values()
        if m["source"] == "pretrain"
    ]
    or [len(config["finetune"]["seeds"])]
)
THEORY = (
    [f"{R}/tables/theory.csv", f"{R}/figures/theory.png", f"{R}/figures/theory.pdf"]
    if config["theory"]["enabled"]
    else []
)


def code_version(script):
    """The code a step runs, as a param: the import closure of its script over the package,
    hashed (overtrain.provenance), so editing any module the script reaches reruns the step.
    The argument is the path of the step's own script (a test checks that they agree).
    """
    return provenance.code_digest(Path(workflow.basedir, "rules", script).resolve())


def model_resources(wildcards, attempt):
    """Memory of a model job; a resubmitted job (--retries) asks for more."""
    return config["compute"]["mem_mb"] * attempt


def model_runtime(wildcards, attempt):
    """Minutes of a model job; a resubmitted job (--retries) asks for more."""
    return config["compute"]["runtime"] * attempt


def start_jobserver():
    """Local CPU runs: jobs start in warm processes (overtrain.jobserver), not fresh ones."""
    compute = config["compute"]
    gpu = compute["device"] == "cuda" or compute["gpus_per_job"] > 0
    if (
        not compute["warm_jobs"]
        or gpu
        or not workflow.local_exec
        or "SLURM_JOB_ID" in os.environ
    ):
        return
    import tempfile

    from overtrain import jobserver

    path = tempfile.mktemp(
        prefix="overtrain-jobs-", suffix=".sock"
    )  # short: a socket path
    jobserver.start(path)
    print(f"Jobs start in warm processes (compute.warm_jobs; server socket {path}).")


def diverged_summary(metrics_csv):
    """The study log's account of fine-tunes that diverged (recorded, not evaluated)."""
    import csv

    if not Path(metrics_csv).exists():
        return ""
    with open(metrics_csv) as f:
        runs = [
            f"{r['model']} {r['ckpt']} {r['ft_task']} {r['ft_method']} lr={r['lr']} seed={r['seed']}"
            for r in csv.DictReader(f)
            if r["metric"] == "diverged" and float(r["value"]) > 0
        ]
    if not runs:
        return "No fine-tune diverged."
    return (
        f"{len(runs)} fine-tune(s) diverged (stopped early, not evaluated; never chosen as best lr):\n  "
        + "\n  ".join(runs)
    )
