from _job import start

start(snakemake)

from overtrain import models, train  # noqa: E402
from overtrain.config import parse_run_id  # noqa: E402

ft = snakemake.params.finetune
lr, seed = parse_run_id(snakemake.wildcards.run)
models.set_threads(snakemake.threads)
meta = train.finetune(
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    lr=lr,
    steps=ft["steps"],
    batch_size=ft["batch_size"],
    max_len=snakemake.params.max_len,
    warmup_steps=ft["warmup_steps"],
    schedule=ft["schedule"],
    weight_decay=ft["weight_decay"],
    grad_clip=ft["grad_clip"],
    seed=seed,
)
print({k: meta[k] for k in ("lr", "seed", "steps", "final_train_loss")})
