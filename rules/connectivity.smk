rule connectivity:
    input:
        unpack(eval_data),
        checkpoint=CHECKPOINT,
        finetuned=connectivity_inputs,
    output:
        f"{R}/connectivity/{{model}}/{{ckpt}}/{{task}}/{{group}}.json",
    log:
        f"{LOGS}/connectivity/{{model}}/{{ckpt}}/{{task}}/{{group}}.log",
    benchmark:
        f"{BENCH}/connectivity/{{model}}/{{ckpt}}/{{task}}/{{group}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
        gpu=GPUS,
    params:
        **MODEL_JOB_PARAMS,
        code=code_version("connectivity", "evaluate", "lm", "models", "config"),
        seeds=config["connectivity"]["seeds"],
        alphas=config["connectivity"]["alphas"],
        splits=connectivity_splits,
        select=config["analysis"]["select"],
        limit=config["connectivity"]["limit"],
        batch_size=config["evaluate"]["batch_size"],
        task_data=config["evaluate"]["task_data"],
        max_length=eval_max_length,
    script:
        "../scripts/connectivity.py"
