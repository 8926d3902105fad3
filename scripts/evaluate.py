from _job import eval_data, start
from _model import model_job

start(snakemake)

from overtrain.evaluation import evaluate  # noqa: E402
from overtrain.ids import parse_run_id  # noqa: E402

w, p = snakemake.wildcards, snakemake.params
run = parse_run_id(w.run)
device, dtype = model_job(snakemake)
evaluate.evaluate_finetuned(
    snakemake.output[0],
    snakemake.input.checkpoint,
    snakemake.input.finetuned,
    {"model": w.model, "ckpt": w.ckpt, "variant": "finetuned", "ft_task": w.task, "ft_method": run["method"],
     "lr": run["lr"], "l2": run["l2"], "seed": run["seed"]},
    splits=p.splits,
    data_files=eval_data(snakemake),
    limit=p.limit,
    batch_size=p.batch_size,
    max_length=p.max_length,
    task_data=p.task_data,
    max_gen_toks=p.max_gen_toks,
    trust_remote_code=p.trust_remote_code,
    device=device,
    dtype=dtype,
)
