from _job import start

start(snakemake)

from pathlib import Path  # noqa: E402

from overtrain.training import pretrain, stable  # noqa: E402

m, w = snakemake.params.model, snakemake.wildcards
if m["optimizer"]["schedule"] != "wsd":
    raise ValueError(f"models.{w.model}.branching needs optimizer.schedule: wsd")
save_every = snakemake.config["models"][w.model]["save_every"]  # where a run saves changes no number
spec = pretrain.PretrainSpec.from_config(m, snakemake.params.seq_len, replicate=int(w.seed),
                                         threads=snakemake.params.threads, save_every=save_every)
previous = snakemake.input.get("previous")
print(stable.train_segment(snakemake.input.language, snakemake.output[0], spec, m["budgets"], w.segment,
                           Path(previous) if previous else None, m["stable_checkpoints"]))
