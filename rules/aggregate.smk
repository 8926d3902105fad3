rule aggregate:
    input:
        eval_files(),
    output:
        report(
            METRICS,
            caption="../report/metrics.rst",
            category="Tables",
        ),
    params:
        code=code_version("analysis"),
    log:
        f"{LOGS}/aggregate.log",
    benchmark:
        f"{BENCH}/aggregate.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/aggregate.py"
