EVAL_PARAMS = {
    "code": code_version("evaluate", "models", "perturb", "curves", "config"),
    "splits": SPLITS,
    "limit": config["evaluate"]["limit"],
    "batch_size": config["evaluate"]["batch_size"],
    "compute": config["compute"],
}


rule evaluate_base:
    input:
        unpack(lambda w: EVAL_DATA),
        checkpoint=CHECKPOINT,
    output:
        f"{R}/evals/{{model}}/{{ckpt}}/base.json",
    log:
        f"{LOGS}/evaluate/{{model}}/{{ckpt}}/base.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{ckpt}}/base.tsv"
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=lambda w, attempt: 30 * attempt,
        gpu=GPUS,
    params:
        **EVAL_PARAMS,
        max_length=eval_max_length,
        trust_remote_code=model_setting("trust_remote_code", False),
    script:
        "../scripts/evaluate.py"


rule evaluate_finetuned:
    input:
        unpack(lambda w: EVAL_DATA),
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
        runtime=lambda w, attempt: 30 * attempt,
        gpu=GPUS,
    params:
        **EVAL_PARAMS,
        max_length=eval_max_length,
        trust_remote_code=model_setting("trust_remote_code", False),
    script:
        "../scripts/evaluate.py"


rule evaluate_perturbed:
    input:
        unpack(lambda w: EVAL_DATA),
        checkpoint=CHECKPOINT,
    output:
        f"{R}/evals/{{model}}/{{ckpt}}/{{pert}}.json",
    log:
        f"{LOGS}/evaluate/{{model}}/{{ckpt}}/{{pert}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{ckpt}}/{{pert}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=lambda w, attempt: 30 * attempt,
        gpu=GPUS,
    params:
        **EVAL_PARAMS,
        max_length=eval_max_length,
        trust_remote_code=model_setting("trust_remote_code", False),
    script:
        "../scripts/evaluate.py"
