from _job import start
from _model import model_job

start(snakemake)

from overtrain.ids import parse_run_id  # noqa: E402
from overtrain.training import finetune  # noqa: E402

p = snakemake.params
device, dtype = model_job(snakemake)
ft = {**p.finetune, "lora": p.lora, "save_every": snakemake.config["finetune"]["save_every"]}
spec = finetune.FinetuneSpec.from_config(
    ft,
    parse_run_id(snakemake.wildcards.run),
    max_len=p.max_len,
    device=device,
    dtype=dtype,
    threads=p.threads,
    processes=p.processes,
    trust_remote_code=p.trust_remote_code,
)
meta = finetune.run(snakemake.input.checkpoint, snakemake.input.data, snakemake.output[0], spec)
print({k: meta[k] for k in ("method", "lr", "l2", "seed", "steps", "final_train_loss", "diverged")})
