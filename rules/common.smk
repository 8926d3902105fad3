import glob
import math
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)
from overtrain import config as grid  # noqa: E402
from overtrain import ids, jobserver, provenance  # noqa: E402
from overtrain.analysis import catalog, verdict  # noqa: E402
from overtrain.evaluation import prefetch  # noqa: E402
from overtrain.study import SCHEMA, Study  # noqa: E402

# The config, validated by Snakemake against the schema (defaults filled), checked beyond it,
# hub revisions pinned; everything derived from it, once (overtrain.study). Bad input stops here,
# before any job, with the key and what is allowed.
try:
    STUDY = Study.load(
        config, workflow.basedir, lambda c: validate(c, schema=str(SCHEMA))
    )
except grid.ConfigError as e:
    raise WorkflowError(f"Invalid config: {e}") from None

R = STUDY.root

# Trackers are optional extras: a study that asks for one without it installed stops here (with
# --sdm conda the rule's own environment brings them).
TRACKING = [k for k in ("tensorboard", "wandb") if config["tracking"][k]]
for _tracker in TRACKING:
    if "conda" not in str(workflow.deployment_settings.deployment_method).lower():
        import importlib.util

        if importlib.util.find_spec(_tracker) is None:
            raise WorkflowError(
                f"Invalid config: tracking.{_tracker}: the {_tracker} package is not installed; "
                f'pip install -e ".[tracking]" (or set tracking.{_tracker}: false)'
            )

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
    "ft_val": f"{R}/corpus/ft_val.jsonl",
}
# What an evaluation reads besides the model, named eval_data_<key> (the job passes each file
# on by its key: overtrain.evaluation.tasks' data keys, and ft_<task> for a prepared dataset)
CORPUS_EVAL_DATA = {f"eval_data_{k}": CORPUS[k] for k in STUDY.corpus_eval_files}
SHARPNESS = config["evaluate"]["sharpness"]
if SHARPNESS[
    "probes"
]:  # its documents: the configured file, else the corpus's held-out text
    CORPUS_EVAL_DATA["eval_data_sharpness"] = (
        SHARPNESS["data"] or CORPUS["pretrain_heldout"]
    )


def eval_data(wildcards):
    """What an evaluation of the model reads: the corpus's evaluation files, and the prepared
    val/test sets of every fine-tuning task (rendered with this model's tokenizer)."""
    ft = {
        f"eval_data_ft_{t}": f"{R}/ft_data/{wildcards.model}/{t}"
        for t in STUDY.text_datasets
    }
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
    return (
        f"{R}/checkpoints/{wildcards.model}/{STUDY.first_checkpoint[wildcards.model]}"
    )


def model_setting(key):
    """A setting of the wildcard's model (models.<name>.<key>)."""
    return lambda w: config["models"][w.model][key]


def pretrain_spec(model, seed):
    """The pretraining spec of a controlled model's replicate (what the stable run's plan reads)."""
    from overtrain.training.pretrain import PretrainSpec

    m = config["models"][model]
    return PretrainSpec.from_config(m, config["corpus"]["seq_len"], replicate=seed)


def branch_point(w):
    """A WSD branch's stable state: the end of its budget's stable segment."""
    if not config["models"][w.model].get("branching"):
        return []
    budget, seed = ids.parse_pretrain_ckpt(w.ckpt)
    return f"{R}/stable/{w.model}/s{seed}/tok{budget}"


def previous_segment(w):
    """The stable segment a segment continues from (none for the first)."""
    from overtrain.training import stable

    m = config["models"][w.model]
    before = stable.previous_segment(
        pretrain_spec(w.model, int(w.seed)),
        m["budgets"],
        w.segment,
        m["stable_checkpoints"],
    )
    return f"{R}/stable/{w.model}/s{w.seed}/{before}" if before else []


def stable_snapshot_segment(w):
    """The stable segment during which the run passes a stable checkpoint's tokens."""
    from overtrain.training import stable

    parent = config["models"][w.model]["of"]
    budget, seed = ids.parse_pretrain_ckpt(w.ckpt)
    m = config["models"][parent]
    segment = stable.segment_holding(pretrain_spec(parent, seed), m["budgets"], budget)
    return f"{R}/stable/{parent}/s{seed}/{segment}"


def per_model(value_of):
    """A param that depends on the model: the value itself when every model of the study has
    the same one (Snakemake then evaluates nothing per job: planning a 10,000-job grid spends
    its time calling input and param functions), else a function of the wildcards."""
    values = {m: value_of(m) for m in config["models"]}
    if len({repr(v) for v in values.values()}) == 1:
        return next(iter(values.values()))
    return lambda w: values[w.model]


def per_task(value_of):
    """As per_model, for a param that depends on the fine-tuning task."""
    values = {t: value_of(t) for t in config["finetune"]["tasks"]}
    if len({repr(v) for v in values.values()}) == 1:
        return next(iter(values.values()))
    return lambda w: values[w.task]


trust_remote_code = per_model(STUDY.trust_remote_code)
eval_max_length = per_model(STUDY.eval_max_length)
train_max_length = per_model(STUDY.train_max_length)
finetuned_splits = per_task(STUDY.finetuned_splits)
connectivity_splits = per_task(STUDY.connectivity_splits)
# LoRA settings reach the LoRA fine-tunes only (they change no other run)
lora_settings = (
    (lambda w: config["finetune"]["lora"] if w.run.startswith("lora-") else None)
    if "lora" in config["finetune"]["methods"]
    else None
)


MM = config["multimodal"]
MM_DIR = f"{R}/multimodal"


def multimodal_data_inputs(wildcards):
    """synth_mm draws its pictures from the language; llava reads multimodal.data."""
    return {"language": CORPUS["language"]} if wildcards.task == "synth_mm" else {}


def eval_files():
    """Every evaluation of the study: base, fine-tuned and perturbed variants."""
    out = []
    for model, ckpt in STUDY.checkpoints:
        d = f"{R}/evals/{model}/{ckpt}"
        out += [f"{d}/{variant}.json" for variant in STUDY.checkpoint_variants]
        out += [
            f"{d}/{ids.finetuned_variant(task, run)}.json"
            for task, run in STUDY.grid_runs
        ]
        out += [f"{d}/mm-{task}-{run}.json" for task, run in STUDY.multimodal_runs]
    # evaluations done elsewhere (source results), one file per model
    out += [
        f"{R}/evals/{m}/imported.json"
        for m in config["models"]
        if STUDY.source_of(m) == "results"
    ]
    return out


JUDGE = config["evaluate"]["judge"] if config["evaluate"]["judge"]["enabled"] else {}


def judge_files():
    """Every judgment of the study (evaluate.judge): base and fine-tunes of each checkpoint."""
    return [
        f"{R}/judgments/{model}/{ckpt}/{variant}.json"
        for model, ckpt in STUDY.checkpoints
        for variant in STUDY.judged_variants
    ]


def judge_reference_inputs(wildcards):
    out = {}
    if isinstance(JUDGE.get("reference"), dict):
        out["reference_model"] = f"{R}/judge/models/reference"
    if JUDGE.get("prompts") != "alpaca_eval":
        model = next(iter(config["models"]))
        out["prompts"] = f"{R}/ft_data/{model}/{JUDGE['prompts']}"
    if PREFETCH[
        "alpaca_eval"
    ]:  # the prompts and reference outputs, fetched by the prefetch rule
        out["prefetched"] = ancient(PREFETCHED)
    return out


def generate_inputs(wildcards):
    """A fine-tune's directory for ft-<task>-<run> variants; nothing more for base."""
    v = ids.parse_variant(wildcards.variant)
    if v["variant"] == "base":
        return {}
    run = ids.run_id(v["lr"], v["seed"], v["ft_method"], v["l2"])
    return {
        "finetuned": f"{R}/finetuned/{wildcards.model}/{wildcards.ckpt}/{v['ft_task']}/{run}"
    }


def connectivity_files():
    out = []
    for model, ckpt in STUDY.checkpoints:
        for task, group, _seeds in STUDY.connectivity_groups:
            out.append(f"{R}/connectivity/{model}/{ckpt}/{task}/{group}.json")
    return out


def connectivity_inputs(wildcards):
    seeds = config["connectivity"]["seeds"]
    d = f"{R}/finetuned/{wildcards.model}/{wildcards.ckpt}/{wildcards.task}"
    return [f"{d}/{wildcards.group}-s{s}" for s in seeds]


def training_jobs():
    """Every training job of the study: (its output directory, its Snakemake benchmark, or None
    for a checkpoint that is fetched, not trained). Their train logs are the training curves;
    the directories name the tracked runs (overtrain.analysis.train_logs.path_labels).
    """
    from overtrain.training import stable

    out = []
    for model, ckpt in STUDY.checkpoints:
        if STUDY.source_of(model) == "results":
            continue
        trained = STUDY.source_of(model) == "pretrain"
        out.append(
            (
                f"{R}/checkpoints/{model}/{ckpt}",
                f"{BENCH}/pretrain/{model}/{ckpt}.tsv" if trained else None,
            )
        )
        out += [
            (
                f"{R}/finetuned/{model}/{ckpt}/{task}/{run}",
                f"{BENCH}/finetune/{model}/{ckpt}/{task}/{run}.tsv",
            )
            for task, run in STUDY.grid_runs
        ]
    for model, m in config["models"].items():
        if m["source"] != "pretrain" or not m.get("branching"):
            continue
        for seed in m["seeds"]:
            spec = pretrain_spec(model, seed)
            out += [
                (
                    f"{R}/stable/{model}/s{seed}/{segment}",
                    f"{BENCH}/pretrain_stable/{model}/s{seed}/{segment}.tsv",
                )
                for segment in stable.segments(
                    spec, m["budgets"], m["stable_checkpoints"]
                )
            ]
    return out


TRAINING_JOBS = training_jobs()


METRICS = f"{R}/tables/metrics.csv"
TRAINING_CURVES = f"{R}/tables/training_curves.csv"


# the trained jobs' benchmarks, for the tracked runs' throughput (rule tracking)
TRACKED = [(d, bench) for d, bench in TRAINING_JOBS if bench] if TRACKING else []
# what the figures and analyses rules write: read from the code that makes them
FIGURE_NAMES = catalog.figure_names()
FIGURES = [
    f"{R}/figures/{name}.{ext}" for name in FIGURE_NAMES for ext in ("png", "pdf")
]
ANALYSIS_TABLES = catalog.table_names()
TABLES = [f"{R}/tables/{name}.csv" for name in ANALYSIS_TABLES]
FINDINGS = f"{R}/findings.md"
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


def evaluation_runtime(wildcards, attempt):
    """Minutes of a checkpoint's evaluation job: the base on every task and each perturbation
    on its share of them (overtrain.study), as many model runtimes."""
    return math.ceil(model_runtime(wildcards, attempt) * STUDY.checkpoint_evaluations)


def start_jobserver():
    """Local CPU runs: jobs start in warm processes (overtrain.jobserver), not fresh ones."""
    if jobserver.wanted(config["compute"], workflow.local_exec):
        path, _ = jobserver.start()
        print(
            f"Jobs start in warm processes (compute.warm_jobs; server socket {path})."
        )
