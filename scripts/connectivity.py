from _job import start

start(snakemake)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from overtrain import connectivity, models  # noqa: E402
from overtrain.config import parse_run_id  # noqa: E402

w, p = snakemake.wildcards, snakemake.params
run = parse_run_id(f"{w.group}-s0")
tokens = json.loads(Path(snakemake.input.checkpoint, "meta.json").read_text())["tokens"]
labels = {
    "model": w.model, "ckpt": w.ckpt, "tokens": tokens, "ft_task": w.task,
    "ft_method": run["method"], "lr": run["lr"], "l2": run["l2"],
}
models.set_threads(snakemake.threads)
device, dtype = models.resolve_device(p.compute["device"], p.compute["dtype"])
data = {k: snakemake.input[k] for k in ("pretrain_heldout", "ft_heldout", "ft_val", "ft_mc") if k in snakemake.input.keys()}
n = p.alphas
connectivity.run(
    snakemake.input.checkpoint,
    dict(zip(p.seeds, snakemake.input.finetuned)),
    snakemake.output[0],
    labels,
    alphas=[i / (n - 1) for i in range(n)],
    splits=p.splits,
    data_files=data,
    select=p.select or {"task": next(iter(p.splits)), "metric": "loss", "higher_is_better": False},
    limit=p.limit,
    batch_size=p.batch_size,
    max_length=p.max_length,
    device=device,
    dtype=dtype,
)
