# The synthetic language in two steps: its pretraining topics (and tokenizer), which pretraining
# reads, and the evaluation and fine-tuning data, so that a change of the fine-tuning task
# (corpus.ft_*) or of the evaluation sizes reruns no pretraining.
LANGUAGE_KEYS = ("vocab", "topics", "fanout", "shared", "zipf", "alpha", "seed")


rule language:
    output:
        language=CORPUS["language"],
        tokenizer=directory(CORPUS["tokenizer"]),
    log:
        f"{LOGS}/language.log",
    benchmark:
        f"{BENCH}/language.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=model_resources,
        runtime=10,
    params:
        code=code_version("../scripts/language.py"),
        corpus={k: config["corpus"][k] for k in LANGUAGE_KEYS},
    script:
        "../scripts/language.py"


rule synthetic_corpus:
    output:
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
