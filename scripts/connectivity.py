from _job import eval_data, start
from _model import model_job

start(snakemake)

from overtrain.config import own_val_task  # noqa: E402
from overtrain.evaluation import connectivity  # noqa: E402
from overtrain.evaluation.evaluate import checkpoint_labels  # noqa: E402
from overtrain.ids import parse_group_id  # noqa: E402

w, p = snakemake.wildcards, snakemake.params
run = parse_group_id(w.group)
labels = {
    "model": w.model, "ckpt": w.ckpt, **checkpoint_labels(snakemake.input.checkpoint), "ft_task": w.task,
    "ft_method": run["method"], "lr": run["lr"], "l2": run["l2"],
}
device, dtype = model_job(snakemake)
n = p.alphas
connectivity.run(
    snakemake.input.checkpoint,
    dict(zip(p.seeds, snakemake.input.finetuned)),
    snakemake.output[0],
    labels,
    alphas=[i / (n - 1) for i in range(n)],
    splits=p.splits,
    data_files=eval_data(snakemake),
    select={**p.select, "task": own_val_task(w.task)} if p.select["task"] == "own" else p.select,
    limit=p.limit,
    batch_size=p.batch_size,
    max_length=p.max_length,
    task_data=p.task_data,
    device=device,
    dtype=dtype,
)
