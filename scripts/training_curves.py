from _job import start

start(snakemake)

from pathlib import Path  # noqa: E402

from overtrain.analysis import tables, train_logs  # noqa: E402

root = Path(snakemake.output[0]).parent.parent  # results/<experiment>: tables/ is under it
curves = train_logs.read(root, list(snakemake.input))
tables.write_csv(curves, snakemake.output[0])
print(f"{len(curves)} logged steps from {len(snakemake.input)} training jobs")
