rule figures:
    input:
        **{name: f"{R}/tables/{name}.csv" for name in ANALYSIS_TABLES},
        metrics=METRICS,
        training_curves=TRAINING_CURVES,
    output:
        **{
            f"{name}_png": report(
                f"{R}/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in FIGURE_NAMES
        },
        **{
            f"{name}_pdf": report(
                f"{R}/figures/{name}.pdf",
                caption=f"../report/{name}.rst",
                category="Figures (PDF)",
            )
            for name in FIGURE_NAMES
        },
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCH}/figures.tsv"
    localrule: True
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("../scripts/figures.py"),
    script:
        "../scripts/figures.py"
