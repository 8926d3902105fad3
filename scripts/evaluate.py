from _job import start

start(snakemake)

from pathlib import Path  # noqa: E402

from overtrain import curves, evaluate, models  # noqa: E402
from overtrain.config import parse_run_id  # noqa: E402
from overtrain.perturb import parse_perturbation  # noqa: E402

w = snakemake.wildcards
labels = {"model": w.model, "ckpt": w.ckpt, "variant": "base"}
finetuned, perturbation, extra_rows = None, None, []
if "run" in w.keys():
    run = parse_run_id(w.run)
    labels.update(
        variant="finetuned",
        ft_task=w.task,
        ft_method=run["method"],
        lr=run["lr"],
        l2=run["l2"],
        seed=run["seed"],
    )
    finetuned = snakemake.input.finetuned
    extra_rows = curves.learning_jump_rows(Path(finetuned, "train_log.csv"), w.task)
elif "pert" in w.keys():
    perturbation = parse_perturbation(w.pert)
    labels.update(variant="perturbed", perturbation=perturbation["kind"])
    if perturbation["kind"] == "gaussian":
        labels.update(gamma=perturbation["gamma"], seed=perturbation["seed"])
    else:
        labels.update(bits=perturbation["bits"])
models.set_threads(snakemake.threads)
device, dtype = models.resolve_device(snakemake.params.compute["device"], snakemake.params.compute["dtype"])
data = {k: snakemake.input[k] for k in ("pretrain_heldout", "ft_heldout", "ft_val", "ft_mc") if k in snakemake.input.keys()}
evaluate.evaluate_variant(
    snakemake.output[0],
    snakemake.input.checkpoint,
    labels,
    finetuned_dir=finetuned,
    perturbation=perturbation,
    splits=snakemake.params.splits,
    data_files=data,
    limit=snakemake.params.limit,
    batch_size=snakemake.params.batch_size,
    max_length=snakemake.params.max_length,
    extra_rows=extra_rows,
    trust_remote_code=snakemake.params.trust_remote_code,
    device=device,
    dtype=dtype,
)
