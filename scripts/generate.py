from _job import start
from _model import model_job

start(snakemake)

from overtrain.evaluation import judge  # noqa: E402
from overtrain.ids import parse_variant  # noqa: E402

w, p = snakemake.wildcards, snakemake.params
device, dtype = model_job(snakemake)
judge.generate_variant(
    snakemake.output[0],
    snakemake.input.checkpoint,
    snakemake.input.get("finetuned"),
    {"model": w.model, "ckpt": w.ckpt, **parse_variant(w.variant)},
    reference_json=snakemake.input.reference,
    max_new_tokens=p.max_new_tokens,
    batch_size=p.batch_size,
    device=device,
    dtype=dtype,
    trust_remote_code=p.trust_remote_code,
)
