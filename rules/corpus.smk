rule synthetic_corpus:
    output:
        language=CORPUS["language"],
        tokenizer=directory(CORPUS["tokenizer"]),
        pretrain_heldout=CORPUS["pretrain_heldout"],
        ft_heldout=CORPUS["ft_heldout"],
        ft_mc=CORPUS["ft_mc"],
        ft_train=CORPUS["ft_train"],
    params:
        code=code_version("corpus"),
        corpus=config["corpus"],
    log:
        f"{LOGS}/synthetic_corpus.log",
    benchmark:
        f"{BENCH}/synthetic_corpus.tsv"
    threads: 1
    resources:
        mem_mb=model_resources,
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/synthetic_corpus.py"
