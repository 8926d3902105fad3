from _job import start
from _model import model_job

start(snakemake)

from overtrain.evaluation import judge  # noqa: E402

p = snakemake.params
device, dtype = model_job(snakemake)
prompts = judge.prompt_set(p.prompts, p.n_prompts, snakemake.input.get("prompts"))
reference = snakemake.input.get("reference_model")
result = judge.reference_outputs(
    prompts,
    snakemake.output[0],
    reference_dir=reference,
    max_new_tokens=p.max_new_tokens,
    batch_size=p.batch_size,
    device=device,
    dtype=dtype,
    label=str(p.reference),
)
print(f"{len(result['outputs'])} reference responses ({result['reference']})")
