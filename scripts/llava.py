"""Both LLaVA stages: align_projector (stage 1) and finetune_llava (stage 2, a run of the grid)."""

from _job import model_job, start

start(snakemake)

from overtrain.ids import parse_run_id  # noqa: E402
from overtrain.training import llava  # noqa: E402

p, inp = snakemake.params, snakemake.input
device, dtype = model_job(snakemake)
common = dict(**p.llava, max_len=p.max_len, device=device, dtype=dtype, threads=p.threads,
              trust_remote_code=p.trust_remote_code)
if snakemake.rule == "align_projector":
    spec = llava.LlavaSpec(stage="projector", seed=0, **p.stage, **common)
    meta = llava.train(inp.checkpoint, inp.vision, inp.data, "captions", snakemake.output[0], spec)
else:
    run = parse_run_id(snakemake.wildcards.run)
    keys = ("steps", "epochs", "batch_size", "grad_accum", "warmup_steps", "schedule", "weight_decay", "grad_clip",
            "divergence_factor")
    ft = {k: p.finetune[k] for k in keys if k in p.finetune}
    spec = llava.LlavaSpec(stage="full", lr=run["lr"], seed=run["seed"], betas=tuple(p.finetune.get("betas", (0.9, 0.95))),
                                save_every=snakemake.config["finetune"]["save_every"], **ft, **common)
    meta = llava.train(inp.checkpoint, inp.vision, inp.data, "instruct", snakemake.output[0], spec,
                            projector_dir=inp.projector)
print({k: meta[k] for k in ("stage", "lr", "seed", "steps", "trainable", "final_train_loss", "diverged")})
