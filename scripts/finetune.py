from _job import start

start(snakemake)

from overtrain import models, train  # noqa: E402
from overtrain.config import parse_run_id  # noqa: E402

ft = snakemake.params.finetune
run = parse_run_id(snakemake.wildcards.run)
models.set_threads(snakemake.threads)
device, dtype = models.resolve_device(snakemake.params.compute["device"], snakemake.params.compute["dtype"])
meta = train.finetune(
    snakemake.input.checkpoint,
    snakemake.input.data,
    snakemake.output[0],
    lr=run["lr"],
    seed=run["seed"],
    method=run["method"],
    l2=run["l2"],
    lora=ft["lora"],
    steps=ft["steps"],
    epochs=ft["epochs"],
    batch_size=ft["batch_size"],
    max_len=snakemake.params.max_len,
    warmup_steps=ft["warmup_steps"],
    schedule=ft["schedule"],
    weight_decay=ft["weight_decay"],
    grad_clip=ft["grad_clip"],
    save_every=ft["save_every"],
    grad_accum=ft["grad_accum"],
    trust_remote_code=snakemake.params.trust_remote_code,
    device=device,
    dtype=dtype,
)
print({k: meta[k] for k in ("method", "lr", "l2", "seed", "steps", "final_train_loss")})
