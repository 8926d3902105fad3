EVAL_PARAMS = {
    "limit": config["evaluate"]["limit"],
    "batch_size": config["evaluate"]["batch_size"],
    "task_data": config["evaluate"]["task_data"],
    "max_gen_toks": config["evaluate"]["max_gen_toks"],
    "sharpness": SHARPNESS if SHARPNESS["probes"] else None,
    "sharpness_task": config["evaluate"]["pretrain_task"],
    **MODEL_JOB_PARAMS,
}


rule evaluate_checkpoint:
    input:
        unpack(eval_data),
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
