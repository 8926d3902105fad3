from _job import start

start(snakemake)

from overtrain.training import pretrain  # noqa: E402

m = snakemake.params.model
if m["optimizer"]["schedule"] != "wsd":
    raise ValueError(f"models.{snakemake.wildcards.model}.branching needs optimizer.schedule: wsd")
spec = pretrain.PretrainSpec.from_config(m, snakemake.params.seq_len, replicate=int(snakemake.wildcards.seed),
                                         threads=snakemake.params.threads)
print(pretrain.pretrain_stable(snakemake.input.language, snakemake.output[0], spec, m["budgets"]))
