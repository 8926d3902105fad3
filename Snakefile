# overtrain: pretraining budget → fine-tuning → perturbation → evaluation → tables and figures.
# Run the embedded default with `snakemake --cores all`; see README.md.
from snakemake.utils import min_version

min_version("9.0")


# A --configfile that defines models is a complete study: the default is not merged under it.
if "models" not in config:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    model="|".join(re.escape(m) for m in config["models"]),
    ckpt=r"[A-Za-z0-9_.-]+",
    task=ids.TASK,
    run=ids.unnamed(ids.RUN_PATTERN),
    group=ids.unnamed(ids.GROUP_PATTERN, ("full", "lora")),
    variant=f"base|ft-{ids.TASK}-{ids.unnamed(ids.RUN_PATTERN)}",


include: "rules/corpus.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/multimodal.smk"
include: "rules/connectivity.smk"
include: "rules/judge.smk"
include: "rules/aggregate.smk"
include: "rules/theory.smk"
include: "rules/figures.smk"
include: "rules/tracking.smk"


# Bookkeeping and downloads (rules marked localrule) run where Snakemake runs: on SLURM the
# submit node, which has the network that compute nodes often lack.
rule all:
    default_target: True
    input:
        METRICS,
        TABLES,
        FIGURES,
        THEORY,
        FINDINGS,
        [f"{R}/tracking/{tracker}" for tracker in TRACKING],
    localrule: True


onstart:
    start_jobserver()


onsuccess:
    from overtrain.analysis.tables import diverged_summary

    print(diverged_summary(METRICS))
