rule theory:
    output:
        table=f"{R}/tables/theory.csv",
        png=report(
            f"{R}/figures/theory.png",
            caption="../report/theory.rst",
            category="Figures",
        ),
        pdf=f"{R}/figures/theory.pdf",
    log:
        f"{LOGS}/theory.log",
    benchmark:
        f"{BENCH}/theory.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("../scripts/theory.py"),
        theory=config["theory"],
    script:
        "../scripts/theory.py"
