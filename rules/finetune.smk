rule finetune_data:
    input:
        tokenizer=first_checkpoint,
    output:
        f"{R}/ft_data/{{model}}/{{task}}.jsonl",
    log:
        f"{LOGS}/finetune_data/{{model}}/{{task}}.log",
    benchmark:
        f"{BENCH}/finetune_data/{{model}}/{{task}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=lambda w, attempt: 4000 * attempt,
        runtime=model_runtime,
    params:
        code=code_version("data", "models"),
        spec=lambda w: ft_datasets.task_spec(w.task, config["finetune"]["datasets"]),
        n_examples=config["finetune"]["n_examples"],
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
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
        gpu=GPUS,
    params:
        code=code_version("train", "models", "config"),
        # the grid keys (tasks, methods, learning rates, l2, seeds) are wildcards: growing the
        # grid must not rerun the fine-tunes already done
        finetune={
            k: v
            for k, v in config["finetune"].items()
            if k
            not in ("tasks", "methods", "learning_rates", "l2", "seeds", "datasets")
        },
        max_len=lambda w: (
            SEQ_LEN
            if config["models"][w.model]["source"] == "pretrain"
            else config["finetune"]["max_length"]
        ),
        trust_remote_code=model_setting("trust_remote_code", False),
        compute=config["compute"],
    script:
        "../scripts/finetune.py"
