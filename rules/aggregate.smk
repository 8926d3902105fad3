rule aggregate:
    input:
        eval_files(),
    output:
        report(
            METRICS,
            caption="../report/metrics.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/aggregate.log",
    benchmark:
        f"{BENCH}/aggregate.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("analysis"),
    script:
        "../scripts/aggregate.py"
