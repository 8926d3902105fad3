from _job import start
from _model import eval_settings, model_job

start(snakemake)

from overtrain.config import own_val_task  # noqa: E402
from overtrain.evaluation import connectivity  # noqa: E402
from overtrain.evaluation.results import checkpoint_labels  # noqa: E402
from overtrain.ids import parse_group_id  # noqa: E402

w, p = snakemake.wildcards, snakemake.params
run = parse_group_id(w.group)
labels = {
    "model": w.model, "ckpt": w.ckpt, **checkpoint_labels(snakemake.input.checkpoint), "ft_task": w.task,
    "ft_method": run["method"], "lr": run["lr"], "l2": run["l2"],
}
device, dtype = model_job(snakemake)
connectivity.run(
    snakemake.input.checkpoint,
    dict(zip(p.seeds, snakemake.input.finetuned)),
    snakemake.output[0],
    labels,
    eval_settings(snakemake, device, dtype, p.splits),
    alphas=[i / (p.points - 1) for i in range(p.points)],
    select={**p.select, "task": own_val_task(w.task)} if p.select["task"] == "own" else p.select,
)
