from _job import start

start(snakemake)

from overtrain.evaluation.imported import import_results  # noqa: E402

print(import_results(snakemake.wildcards.model, snakemake.params.model, snakemake.params.splits, snakemake.output[0]))
