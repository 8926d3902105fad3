rule finetune:
    input:
        checkpoint=CHECKPOINT,
        data=lambda w: FT_DATA[w.task],
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
        runtime=lambda w, attempt: 30 * attempt,
    params:
        code=code_version("train", "models", "corpus"),
        # the grid keys (tasks, learning rates, seeds) are wildcards: growing the grid
        # must not rerun the fine-tunes already done
        finetune={
            k: v
            for k, v in config["finetune"].items()
            if k not in ("tasks", "methods", "learning_rates", "l2", "seeds")
        },
        max_len=SEQ_LEN,
    script:
        "../scripts/finetune.py"
