from _job import start
from _model import model_job

start(snakemake)

from overtrain.evaluation import multimodal  # noqa: E402
from overtrain.ids import parse_run_id  # noqa: E402

w, p, inp = snakemake.wildcards, snakemake.params, snakemake.input
run = parse_run_id(w.run)
device, _dtype = model_job(snakemake)
multimodal.evaluate(
    snakemake.output[0],
    inp.checkpoint,
    inp.vision,
    inp.finetuned,
    inp.data,
    {"model": w.model, "ckpt": w.ckpt, "variant": "finetuned", "ft_task": w.task, "ft_method": run["method"],
     "lr": run["lr"], "l2": run["l2"], "seed": run["seed"]},
    task=w.task,
    limit=p.limit,
    batch_size=p.batch_size,
    max_len=p.max_len,
    device=device,
    trust_remote_code=p.trust_remote_code,
    benchmarks=p.benchmarks,
    benchmark_include=p.benchmark_include,
)
