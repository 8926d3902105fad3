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
    localrule: True
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("../scripts/aggregate.py"),
    script:
        "../scripts/aggregate.py"


rule training_curves:
    input:
        [d for d, _ in TRAINING_JOBS],
    output:
        report(
            TRAINING_CURVES,
            caption="../report/table_training_curves.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/training_curves.log",
    benchmark:
        f"{BENCH}/training_curves.tsv"
    localrule: True
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("../scripts/training_curves.py"),
    script:
        "../scripts/training_curves.py"


rule analyses:
    input:
        metrics=METRICS,
        connectivity=connectivity_files(),
        stated=[e["path"] for e in config["analysis"]["stated_changes"]],
    output:
        **{
            name: report(
                f"{R}/tables/{name}.csv",
                caption=f"../report/table_{name}.rst",
                category="1. Findings" if name == "hypotheses" else "Tables",
            )
            for name in ANALYSIS_TABLES
        },
    log:
        f"{LOGS}/analyses.log",
    benchmark:
        f"{BENCH}/analyses.tsv"
    localrule: True
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("../scripts/analyses.py"),
        select=config["analysis"]["select"],
        bootstrap=config["analysis"]["bootstrap"],
        min_effect=config["analysis"]["min_effect"],
        verdict_rule=verdict.rule(config["analysis"]["min_effect"]),
        pairs=STUDY.pairs,
        beside=STUDY.published_beside,
        tolerance=config["analysis"]["published_tolerance"],
        stated_models=[e["model"] for e in config["analysis"]["stated_changes"]],
    script:
        "../scripts/analyses.py"


rule findings:
    input:
        **{
            name: f"{R}/tables/{name}.csv"
            for name in (
                "hypotheses",
                "pretrain_loss",
                "best_lr",
                "inflection",
                "published",
            )
        },
    output:
        page=report(
            FINDINGS,
            caption="../report/findings.rst",
            category="1. Findings",
        ),
        # the verdicts the report's first page shows (report/workflow.rst)
        verdicts=f"{R}/verdicts.csv",
    log:
        f"{LOGS}/findings.log",
    benchmark:
        f"{BENCH}/findings.tsv"
    localrule: True
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("../scripts/findings.py"),
        experiment=config["experiment"],
        replicates=STUDY.replicates,
        command=STUDY.command,
        verdict_rule=verdict.rule(config["analysis"]["min_effect"]),
    script:
        "../scripts/findings.py"


# what `publish` copies: the default's findings and headline figure to docs/, another
# experiment's findings and its fine-tuning, T* and (where it compares models) pair figures to
# docs/<experiment>/
PUBLISHED = (
    {"findings.md": "findings.md", "headline.png": "figures/noise_pretrain_loss.png"}
    if config["experiment"] == "default"
    else {
        "findings.md": "findings.md",
        **{
            f"{name}.png": f"figures/{name}.png"
            for name in (
                "finetune_task_metric",
                "finetune_pretrain_loss",
                "t_star_vs_learning_rate",
            )
            + (("pair_contrasts",) if STUDY.pairs else ())
        },
    }
)
PUBLISH_DIR = (
    "docs" if config["experiment"] == "default" else f"docs/{config['experiment']}"
)


rule publish:
    """`snakemake --cores all publish`: the run's findings and figures into docs/, which the
    README links (nothing there is typed by hand)."""
    input:
        [f"{R}/{source}" for source in PUBLISHED.values()],
    output:
        [f"{PUBLISH_DIR}/{name}" for name in PUBLISHED],
    log:
        f"{LOGS}/publish.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        pairs=" ".join(
            f"{R}/{source}={PUBLISH_DIR}/{name}" for name, source in PUBLISHED.items()
        ),
    shell:
        "for pair in {params.pairs}; do cp ${{pair%%=*}} ${{pair#*=}}; done 2> {log}"
