rule tracking:
    input:
        curves=TRAINING_CURVES,
        metrics=METRICS,
        benchmarks=[bench for _, bench in TRACKED],
    output:
        **{tracker: directory(f"{R}/tracking/{tracker}") for tracker in TRACKING},
    log:
        f"{LOGS}/tracking.log",
    benchmark:
        f"{BENCH}/tracking.tsv"
    localrule: True
    conda:
        "../envs/tracking.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_version("../scripts/tracking.py"),
        dirs=[d for d, _ in TRACKED],
        project=config["tracking"]["wandb_project"] or config["experiment"],
        experiment=config["experiment"],
        study=config,
    script:
        "../scripts/tracking.py"
