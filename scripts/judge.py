from _job import start
from _model import model_job

start(snakemake)

from overtrain.evaluation import judge  # noqa: E402

device, dtype = model_job(snakemake)
result = judge.judge_generations(
    snakemake.output[0],
    snakemake.input.generations,
    snakemake.input.checkpoint,
    reference_json=snakemake.input.reference,
    judge_dir=snakemake.input.judge,
    kind=snakemake.params.kind,
    device=device,
    dtype=dtype,
)
print({r["metric"]: r["value"] for r in result["rows"]})
