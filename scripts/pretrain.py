from _job import start

start(snakemake)

from overtrain import models, train  # noqa: E402

m = snakemake.params.model
models.set_threads(snakemake.threads)
meta = train.pretrain(
    snakemake.input.language,
    snakemake.input.tokenizer,
    snakemake.output[0],
    budget_tokens=int(snakemake.wildcards.ckpt.removeprefix("tok")),
    architecture={k: v for k, v in m["architecture"].items() if k != "family"},
    optimizer=m["optimizer"],
    batch_size=m["batch_size"],
    seq_len=snakemake.params.seq_len,
    seed=m["seed"],
    data_seed=m["data_seed"],
    save_every=m["save_every"],
    branch_from=(
        f"{snakemake.input.stable}/{snakemake.wildcards.ckpt}" if m["branching"] else None
    ),
)
print({k: meta[k] for k in ("tokens", "steps", "warmup_steps", "final_train_loss")})
