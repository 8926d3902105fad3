# What evaluation downloads (lm-eval tasks' datasets, NLTK data, AlpacaEval prompts), fetched
# once by a local rule before any evaluation job: compute jobs run offline (scripts/_job.py).
PREFETCH = prefetch.wanted(
    list(STUDY.splits), config["evaluate"]["task_data"], config["evaluate"]["judge"]
)
PREFETCHED = f"{R}/prefetch/manifest.json" if prefetch.needed(PREFETCH) else []
NLTK_DATA = f"{R}/prefetch/nltk_data" if PREFETCH["nltk"] else None

EVAL_PARAMS = {
    "nltk_data": NLTK_DATA,
    "limit": config["evaluate"]["limit"],
    "batch_size": config["evaluate"]["batch_size"],
    "task_data": config["evaluate"]["task_data"],
    "max_gen_toks": config["evaluate"]["max_gen_toks"],
    "sharpness": SHARPNESS if SHARPNESS["probes"] else None,
    "sharpness_task": config["evaluate"]["pretrain_task"],
    **MODEL_JOB_PARAMS,
}


if PREFETCHED:

    rule prefetch:
        output:
            PREFETCHED,
        log:
            f"{LOGS}/prefetch.log",
        benchmark:
            f"{BENCH}/prefetch.tsv"
        localrule: True
        conda:
            "../envs/torch.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            online=True,
            code=code_version("../scripts/prefetch.py"),
            want=PREFETCH,
            tasks=list(STUDY.splits),
            task_data=config["evaluate"]["task_data"],
            nltk_data=f"{R}/prefetch/nltk_data",
        script:
            "../scripts/prefetch.py"


rule import_results:
    """A model whose rows come from evaluations done elsewhere (source results)."""
    input:
        lambda w: [t["path"] for t in config["models"][w.model]["tables"]]
        + [
            f
            for e in config["models"][w.model]["lm_eval"]
            for f in sorted(glob.glob(e["path"]))
        ],
    output:
        f"{R}/evals/{{model}}/imported.json",
    log:
        f"{LOGS}/import_results/{{model}}.log",
    benchmark:
        f"{BENCH}/import_results/{{model}}.tsv"
    wildcard_constraints:
        model=models_with_source("results"),
    localrule: True
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("../scripts/import_results.py"),
        model=lambda w: config["models"][w.model],
        splits=STUDY.splits,
    script:
        "../scripts/import_results.py"


rule evaluate_checkpoint:
    input:
        unpack(eval_data),
        # ancient: a refetch (the same files) reruns no evaluation
        prefetched=ancient(PREFETCHED) if PREFETCHED else [],
        checkpoint=CHECKPOINT,
    output:
        [
            f"{R}/evals/{{model}}/{{ckpt}}/{variant}.json"
            for variant in STUDY.checkpoint_variants
        ],
    log:
        f"{LOGS}/evaluate/{{model}}/{{ckpt}}/checkpoint.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{ckpt}}/checkpoint.tsv"
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=evaluation_runtime,
        gpu=GPUS,
    params:
        **EVAL_PARAMS,
        code=code_version("../scripts/evaluate_checkpoint.py"),
        splits=STUDY.splits,
        variants=STUDY.checkpoint_variants,
        perturbed_tasks=list(STUDY.perturbed_splits),
        max_length=eval_max_length,
        trust_remote_code=trust_remote_code,
    script:
        "../scripts/evaluate_checkpoint.py"


rule evaluate_finetuned:
    input:
        unpack(eval_data),
        # ancient: a refetch (the same files) reruns no evaluation
        prefetched=ancient(PREFETCHED) if PREFETCHED else [],
        checkpoint=CHECKPOINT,
        finetuned=FINETUNED,
    output:
        f"{R}/evals/{{model}}/{{ckpt}}/ft-{{task}}-{{run}}.json",
    log:
        f"{LOGS}/evaluate/{{model}}/{{ckpt}}/ft-{{task}}-{{run}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{ckpt}}/ft-{{task}}-{{run}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
        gpu=GPUS,
    params:
        **EVAL_PARAMS,
        code=code_version("../scripts/evaluate.py"),
        splits=finetuned_splits,
        max_length=eval_max_length,
        trust_remote_code=trust_remote_code,
    script:
        "../scripts/evaluate.py"
