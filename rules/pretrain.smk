rule pretrain:
    input:
        language=CORPUS["language"],
        tokenizer=CORPUS["tokenizer"],
        stable=lambda w: (
            f"{R}/stable/{w.model}"
            if config["models"][w.model].get("branching")
            else []
        ),
    output:
        directory(CHECKPOINT),
    wildcard_constraints:
        model=models_with_source("pretrain"),
        ckpt=r"tok[0-9]+",
    params:
        code=code_version("corpus", "train", "models"),
        # without the budget list: adding a budget must not rerun the others
        model=lambda w: {
            k: v for k, v in config["models"][w.model].items() if k != "budgets"
        },
        seq_len=SEQ_LEN,
    log:
        f"{LOGS}/pretrain/{{model}}/{{ckpt}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{model}}/{{ckpt}}.tsv"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=lambda w, attempt: 60 * attempt,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/pretrain.py"


rule pretrain_stable:
    input:
        language=CORPUS["language"],
    output:
        directory(f"{R}/stable/{{model}}"),
    wildcard_constraints:
        model=models_with_source("pretrain"),
    params:
        code=code_version("corpus", "train", "models"),
        model=lambda w: config["models"][w.model],
        seq_len=SEQ_LEN,
    log:
        f"{LOGS}/pretrain_stable/{{model}}.log",
    benchmark:
        f"{BENCH}/pretrain_stable/{{model}}.tsv"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=lambda w, attempt: 120 * attempt,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/pretrain_stable.py"


rule local_checkpoint:
    input:
        lambda w: config["models"][w.model]["checkpoints"][w.ckpt]["path"],
    output:
        directory(CHECKPOINT),
    wildcard_constraints:
        model=models_with_source("local"),
    params:
        code=code_version("checkpoints", "models"),
        tokens=lambda w: config["models"][w.model]["checkpoints"][w.ckpt]["tokens"],
    log:
        f"{LOGS}/local_checkpoint/{{model}}/{{ckpt}}.log",
    benchmark:
        f"{BENCH}/local_checkpoint/{{model}}/{{ckpt}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/local_checkpoint.py"
