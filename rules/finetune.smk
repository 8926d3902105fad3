rule finetune_data:
    input:
        tokenizer=first_checkpoint,
    output:
        directory(f"{R}/ft_data/{{model}}/{{task}}"),
    log:
        f"{LOGS}/finetune_data/{{model}}/{{task}}.log",
    benchmark:
        f"{BENCH}/finetune_data/{{model}}/{{task}}.tsv"
    localrule: True
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: 4000 * attempt,
        runtime=model_runtime,
    params:
        online=True,
        code=code_version("../scripts/finetune_data.py"),
        spec=lambda w: STUDY.specs[w.task],
        n_examples=config["finetune"]["n_examples"],
        n_val=config["finetune"]["n_val"],
        n_test=config["finetune"]["n_test"],
        skip_bad_rows=config["finetune"]["skip_bad_rows"],
        seed=config["finetune"]["sample_seed"],
    script:
        "../scripts/finetune_data.py"


rule finetune:
    input:
        checkpoint=CHECKPOINT,
        data=ft_data,
    output:
        directory(FINETUNED),
    log:
        f"{LOGS}/finetune/{{model}}/{{ckpt}}/{{task}}/{{run}}.log",
    benchmark:
        f"{BENCH}/finetune/{{model}}/{{ckpt}}/{{task}}/{{run}}.tsv"
    wildcard_constraints:
        run=ids.unnamed(ids.RUN_PATTERN, ("full", "lora")),
    conda:
        "../envs/torch.yaml"
    threads: THREADS * PROCESSES
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
        gpu=GPUS * PROCESSES,
        # SLURM: one task per process and GPU (--ntasks-per-gpu=1, --cpus-per-gpu); without
        # GPUs one task with every process's threads
        tasks=PROCESSES if GPUS else 1,
        tasks_per_gpu=1,
        cpus_per_gpu=THREADS,
    params:
        **MODEL_JOB_PARAMS,
        code=code_version("../scripts/finetune.py"),
        # the grid keys (tasks, methods, learning rates, l2, seeds) are wildcards: growing the
        # grid must not rerun the fine-tunes already done; save_every and lora settings only
        # matter where they act (resume; lora runs), so they are read where they are used
        finetune={
            k: v for k, v in config["finetune"].items() if k not in FINETUNE_NON_PARAMS
        },
        lora=lora_settings,
        max_len=train_max_length,
        trust_remote_code=trust_remote_code,
        processes=PROCESSES,
    script:
        "../scripts/finetune.py"
