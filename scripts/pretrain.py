from _job import start

start(snakemake)

from overtrain.ids import parse_pretrain_ckpt  # noqa: E402
from overtrain.training import pretrain  # noqa: E402

m = snakemake.params.model
budget, seed = parse_pretrain_ckpt(snakemake.wildcards.ckpt)
# save_every is read from the config, not a param: where a run saves its resume state changes no number
save_every = snakemake.config["models"][snakemake.wildcards.model]["save_every"]
spec = pretrain.PretrainSpec.from_config(m, snakemake.params.seq_len, replicate=seed, threads=snakemake.params.threads,
                                         save_every=save_every)
meta = pretrain.pretrain(
    snakemake.input.language,
    snakemake.input.tokenizer,
    snakemake.output[0],
    spec,
    budget_tokens=budget,
    branch_from=snakemake.input.stable if m["branching"] else None,
    pretrain_seed=seed,
)
print({k: meta[k] for k in ("tokens", "steps", "warmup_steps", "final_train_loss")})
