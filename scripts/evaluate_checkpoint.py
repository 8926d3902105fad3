from _job import start
from _model import eval_settings, model_job

start(snakemake)

from overtrain.evaluation import evaluate  # noqa: E402

w, p = snakemake.wildcards, snakemake.params
device, dtype = model_job(snakemake)
evaluate.evaluate_checkpoint(
    dict(zip(p.variants, snakemake.output)),
    snakemake.input.checkpoint,
    {"model": w.model, "ckpt": w.ckpt},
    eval_settings(snakemake, device, dtype, p.splits),
    perturbed_tasks=p.perturbed_tasks,
)
