"""Both LLaVA stages: align_projector (stage 1) and finetune_llava (stage 2, a run of the grid)."""

from _job import start
from _model import model_job

start(snakemake)

from overtrain.ids import parse_run_id  # noqa: E402
from overtrain.training import llava  # noqa: E402
from overtrain.training.supervised import TrainSettings  # noqa: E402

p, inp = snakemake.params, snakemake.input
device, dtype = model_job(snakemake)
common = dict(**p.llava, max_len=p.max_len, trust_remote_code=p.trust_remote_code)
compute = dict(device=device, dtype=dtype, threads=p.threads)
if snakemake.rule == "align_projector":
    train = TrainSettings.from_config(p.stage, **compute)
    spec = llava.LlavaSpec(stage="projector", lr=p.stage["lr"], seed=0, train=train, **common)
    meta = llava.train(inp.checkpoint, inp.vision, inp.data, "captions", snakemake.output[0], spec)
else:
    run = parse_run_id(snakemake.wildcards.run)
    train = TrainSettings.from_config(p.finetune, save_every=snakemake.config["finetune"]["save_every"], **compute)
    spec = llava.LlavaSpec(stage="full", lr=run["lr"], seed=run["seed"], train=train, **common)
    meta = llava.train(inp.checkpoint, inp.vision, inp.data, "instruct", snakemake.output[0], spec,
                       projector_dir=inp.projector)
print({k: meta[k] for k in ("stage", "lr", "seed", "steps", "trainable", "final_train_loss", "diverged")})
