from _job import start
from _model import eval_settings, finetune_labels, model_job

start(snakemake)

from overtrain.evaluation import evaluate  # noqa: E402

device, dtype = model_job(snakemake)
evaluate.evaluate_finetuned(
    snakemake.output[0],
    snakemake.input.checkpoint,
    snakemake.input.finetuned,
    finetune_labels(snakemake),
    eval_settings(snakemake, device, dtype, snakemake.params.splits),
)
