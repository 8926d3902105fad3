from _job import start

start(snakemake)

from overtrain.analysis import tables  # noqa: E402

table = tables.metrics_table(snakemake.input)
tables.write_csv(table, snakemake.output[0])
print(f"{len(table)} rows from {len(snakemake.input)} evaluations")
