from _job import eval_data, start
from _model import model_job

start(snakemake)

from overtrain.evaluation import evaluate  # noqa: E402

w, p = snakemake.wildcards, snakemake.params
device, dtype = model_job(snakemake)
evaluate.evaluate_checkpoint(
    dict(zip(p.variants, snakemake.output)),
    snakemake.input.checkpoint,
    {"model": w.model, "ckpt": w.ckpt},
    splits=p.splits,
    data_files=eval_data(snakemake),
    limit=p.limit,
    batch_size=p.batch_size,
    max_length=p.max_length,
    task_data=p.task_data,
    max_gen_toks=p.max_gen_toks,
    perturbed_tasks=p.perturbed_tasks,
    trust_remote_code=p.trust_remote_code,
    device=device,
    dtype=dtype,
)
