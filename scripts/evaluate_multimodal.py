from _job import start
from _model import finetune_labels, model_job

start(snakemake)

from overtrain.evaluation import multimodal  # noqa: E402

p, inp = snakemake.params, snakemake.input
device, dtype = model_job(snakemake)
multimodal.evaluate(
    snakemake.output[0],
    inp.checkpoint,
    inp.vision,
    inp.finetuned,
    inp.data,
    finetune_labels(snakemake),
    task=snakemake.wildcards.task,
    limit=p.limit,
    batch_size=p.batch_size,
    max_len=p.max_len,
    device=device,
    dtype=dtype,
    trust_remote_code=p.trust_remote_code,
    benchmarks=p.benchmarks,
    benchmark_include=p.benchmark_include,
)
