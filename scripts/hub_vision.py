from _job import start

start(snakemake)

from overtrain.sources import checkpoints  # noqa: E402

v = snakemake.params.vision
meta = checkpoints.download_hub(v["repo"], v["revision"], snakemake.output[0], tokens=0)
print({k: meta[k] for k in ("repo", "revision", "commit")})
