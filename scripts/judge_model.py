from _job import start

start(snakemake)

from overtrain.sources import checkpoints  # noqa: E402

source = snakemake.params.source
if "path" in source:
    meta = checkpoints.link_local(source["path"], snakemake.output[0], tokens=0)
else:
    meta = checkpoints.download_hub(source["repo"], source.get("revision", "main"), snakemake.output[0], tokens=0)
print(meta)
