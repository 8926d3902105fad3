rule pretrain:
    input:
        language=CORPUS["language"],
        tokenizer=CORPUS["tokenizer"],
        stable=branch_point,
    output:
        directory(CHECKPOINT),
    log:
        f"{LOGS}/pretrain/{{model}}/{{ckpt}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{model}}/{{ckpt}}.tsv"
    wildcard_constraints:
        model=models_with_source("pretrain"),
        ckpt=ids.unnamed(ids.CKPT_PATTERN),
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
    params:
        code=code_version("../scripts/pretrain.py"),
        # without the budget and seed lists (adding one must not rerun the others) and
        # save_every (where the run saves its resume state changes no number)
        model=lambda w: {
            k: v
            for k, v in config["models"][w.model].items()
            if k not in ("budgets", "seeds", "save_every")
        },
        seq_len=config["corpus"]["seq_len"],
        threads=THREADS,
    script:
        "../scripts/pretrain.py"


rule pretrain_stable:
    input:
        language=CORPUS["language"],
        previous=previous_segment,
    output:
        directory(f"{R}/stable/{{model}}/s{{seed}}/{{segment}}"),
    log:
        f"{LOGS}/pretrain_stable/{{model}}/s{{seed}}/{{segment}}.log",
    benchmark:
        f"{BENCH}/pretrain_stable/{{model}}/s{{seed}}/{{segment}}.tsv"
    wildcard_constraints:
        model=models_with_source("pretrain"),
        segment=r"tok[0-9]+|end",
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
    params:
        code=code_version("../scripts/pretrain_stable.py"),
        model=lambda w: {
            k: v
            for k, v in config["models"][w.model].items()
            if k not in ("seeds", "save_every")
        },
        seq_len=config["corpus"]["seq_len"],
        threads=THREADS,
    script:
        "../scripts/pretrain_stable.py"


rule stable_checkpoint:
    input:
        segment=stable_snapshot_segment,
        language=CORPUS["language"],
        tokenizer=CORPUS["tokenizer"],
    output:
        directory(CHECKPOINT),
    log:
        f"{LOGS}/stable_checkpoint/{{model}}/{{ckpt}}.log",
    benchmark:
        f"{BENCH}/stable_checkpoint/{{model}}/{{ckpt}}.tsv"
    wildcard_constraints:
        model=models_with_source("stable"),
        ckpt=ids.unnamed(ids.CKPT_PATTERN),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=model_resources,
        runtime=10,
    params:
        code=code_version("../scripts/stable_checkpoint.py"),
        model=lambda w: config["models"][config["models"][w.model]["of"]],
        seq_len=config["corpus"]["seq_len"],
    script:
        "../scripts/stable_checkpoint.py"


rule local_checkpoint:
    input:
        lambda w: config["models"][w.model]["checkpoints"][w.ckpt]["path"],
    output:
        directory(CHECKPOINT),
    log:
        f"{LOGS}/local_checkpoint/{{model}}/{{ckpt}}.log",
    benchmark:
        f"{BENCH}/local_checkpoint/{{model}}/{{ckpt}}.tsv"
    wildcard_constraints:
        model=models_with_source("local"),
    localrule: True
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("../scripts/local_checkpoint.py"),
        tokens=lambda w: config["models"][w.model]["checkpoints"][w.ckpt]["tokens"],
    script:
        "../scripts/local_checkpoint.py"


rule hub_checkpoint:
    output:
        directory(CHECKPOINT),
    log:
        f"{LOGS}/hub_checkpoint/{{model}}/{{ckpt}}.log",
    benchmark:
        f"{BENCH}/hub_checkpoint/{{model}}/{{ckpt}}.tsv"
    wildcard_constraints:
        model=models_with_source("hub"),
    localrule: True
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=model_runtime,
    params:
        online=True,
        code=code_version("../scripts/hub_checkpoint.py"),
        repo=model_setting("repo"),
        tokens=lambda w: STUDY.hub_tokens[(w.model, w.ckpt)],
        # the lock's pin: a new pin (revisions_lock: refresh) redoes the checkpoint
        commit=lambda w: STUDY.hub_commits[(w.model, w.ckpt)],
        trust_remote_code=trust_remote_code,
    script:
        "../scripts/hub_checkpoint.py"
