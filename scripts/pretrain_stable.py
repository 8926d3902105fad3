from _job import start

start(snakemake)

from overtrain import models, train  # noqa: E402

m = snakemake.params.model
if m["optimizer"]["schedule"] != "wsd":
    raise ValueError(f"models.{snakemake.wildcards.model}.branching needs optimizer.schedule: wsd")
models.set_threads(snakemake.threads)
info = train.pretrain_stable(
    snakemake.input.language,
    snakemake.output[0],
    budgets=m["budgets"],
    architecture={k: v for k, v in m["architecture"].items() if k != "family"},
    optimizer=m["optimizer"],
    batch_size=m["batch_size"],
    seq_len=snakemake.params.seq_len,
    seed=m["seed"],
    data_seed=m["data_seed"],
)
print(info)
