from _job import start

start(snakemake)

from overtrain import evaluate, models  # noqa: E402

w, p = snakemake.wildcards, snakemake.params
models.set_threads(snakemake.threads)
device, dtype = models.resolve_device(p.compute["device"], p.compute["dtype"])
data = {k: snakemake.input[k] for k in ("pretrain_heldout", "ft_heldout", "ft_val", "ft_mc") if k in snakemake.input.keys()}
evaluate.evaluate_checkpoint(
    dict(zip(p.variants, snakemake.output)),
    snakemake.input.checkpoint,
    {"model": w.model, "ckpt": w.ckpt},
    splits=p.splits,
    data_files=data,
    limit=p.limit,
    batch_size=p.batch_size,
    max_length=p.max_length,
    trust_remote_code=p.trust_remote_code,
    device=device,
    dtype=dtype,
)
