rule synthetic_corpus:
    output:
        language=CORPUS["language"],
        tokenizer=directory(CORPUS["tokenizer"]),
        pretrain_heldout=CORPUS["pretrain_heldout"],
        ft_heldout=CORPUS["ft_heldout"],
        ft_val=CORPUS["ft_val"],
        ft_mc=CORPUS["ft_mc"],
        ft_train=CORPUS["ft_train"],
    log:
        f"{LOGS}/synthetic_corpus.log",
    benchmark:
        f"{BENCH}/synthetic_corpus.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=model_resources,
        runtime=10,
    params:
        code=code_version("../scripts/synthetic_corpus.py"),
        corpus=config["corpus"],
    script:
        "../scripts/synthetic_corpus.py"
