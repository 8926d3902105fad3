from _job import start

start(snakemake)

from overtrain import analysis  # noqa: E402

table = analysis.metrics_table(snakemake.input)
analysis.write_csv(table, snakemake.output[0])
print(f"{len(table)} rows from {len(snakemake.input)} evaluations")
