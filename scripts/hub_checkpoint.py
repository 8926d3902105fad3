from _job import start

start(snakemake)

from overtrain.sources import checkpoints  # noqa: E402

meta = checkpoints.download_hub(
    snakemake.params.repo,
    snakemake.wildcards.ckpt,
    snakemake.output[0],
    tokens=snakemake.params.tokens,
    trust_remote_code=snakemake.params.trust_remote_code,
    commit=snakemake.params.commit,
)
print(meta)
