rule aggregate:
    input:
        eval_files(),
        connectivity_files(),
        judge_files(),
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
        code=code_version("analysis", "config"),
    script:
        "../scripts/aggregate.py"


rule analyses:
    input:
        metrics=METRICS,
        connectivity=connectivity_files(),
    output:
        **{
            name: report(
                f"{R}/tables/{name}.csv",
                caption=f"../report/table_{name}.rst",
                category="Tables",
            )
            for name in ANALYSIS_TABLES
        },
    log:
        f"{LOGS}/analyses.log",
    benchmark:
        f"{BENCH}/analyses.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("analysis"),
        select=config["analysis"]["select"],
        bootstrap=config["analysis"]["bootstrap"],
    script:
        "../scripts/analyses.py"
