rule theory:
    output:
        table=report(
            f"{R}/tables/theory.csv",
            caption="../report/table_theory.rst",
            category="Tables",
        ),
        png=report(
            f"{R}/figures/theory.png",
            caption="../report/theory.rst",
            category="Figures",
        ),
        pdf=report(
            f"{R}/figures/theory.pdf",
            caption="../report/theory.rst",
            category="Figures (PDF)",
        ),
    log:
        f"{LOGS}/theory.log",
    benchmark:
        f"{BENCH}/theory.tsv"
    localrule: True
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
