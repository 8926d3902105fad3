from _job import start

start(snakemake)

from overtrain.sources import checkpoints  # noqa: E402

meta = checkpoints.link_local(snakemake.input[0], snakemake.output[0], tokens=snakemake.params.tokens)
print(meta)
