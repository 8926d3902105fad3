from _job import start

start(snakemake)

from pathlib import Path  # noqa: E402

from overtrain import curves, evaluate, models  # noqa: E402
from overtrain.config import parse_run_id  # noqa: E402

w, p = snakemake.wildcards, snakemake.params
run = parse_run_id(w.run)
labels = {
    "model": w.model,
    "ckpt": w.ckpt,
    "variant": "finetuned",
    "ft_task": w.task,
    "ft_method": run["method"],
    "lr": run["lr"],
    "l2": run["l2"],
    "seed": run["seed"],
}
models.set_threads(snakemake.threads)
device, dtype = models.resolve_device(p.compute["device"], p.compute["dtype"])
data = {k: snakemake.input[k] for k in ("pretrain_heldout", "ft_heldout", "ft_val", "ft_mc") if k in snakemake.input.keys()}
evaluate.evaluate_variant(
    snakemake.output[0],
    snakemake.input.checkpoint,
    labels,
    finetuned_dir=snakemake.input.finetuned,
    perturbation=None,
    splits=p.splits,
    data_files=data,
    limit=p.limit,
    batch_size=p.batch_size,
    max_length=p.max_length,
    extra_rows=curves.learning_jump_rows(Path(snakemake.input.finetuned, "train_log.csv"), w.task),
    trust_remote_code=p.trust_remote_code,
    device=device,
    dtype=dtype,
)
