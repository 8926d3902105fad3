"""Shared start of the scripts that run a model (a separate file from _job.py, so that the code
version of a bookkeeping rule does not cover overtrain.models)."""


def model_job(snakemake) -> tuple[str, str]:
    """Pin the configured threads and resolve (device, dtype) for a job that runs a model.

    A job that asked for a GPU (its gpu resource) and sees none fails here, with the reason.
    """
    from overtrain import models

    models.set_threads(snakemake.params.threads)
    return models.resolve_device(snakemake.params.device, snakemake.params.dtype, snakemake.resources.get("gpu", 0))


def eval_settings(snakemake, device: str, dtype: str, splits: dict, limit: int | None = None):
    """An evaluation job's settings, from its rule's params (limit: the rule's own by default)."""
    from _job import eval_data

    from overtrain.evaluation.evaluate import EvalSettings
    from overtrain.evaluation.sharpness import SharpnessSettings

    p = snakemake.params
    sharp = {k: v for k, v in (p.get("sharpness") or {}).items() if k != "data"}
    return EvalSettings(splits=splits, data_files=eval_data(snakemake), limit=p.limit if limit is None else limit,
                        batch_size=p.batch_size, max_length=p.max_length, task_data=p.task_data,
                        max_gen_toks=p.get("max_gen_toks"), device=device, dtype=dtype,
                        trust_remote_code=p.get("trust_remote_code", False), sharpness=SharpnessSettings(**sharp),
                        sharpness_task=p.get("sharpness_task", "pretrain"))


def finetune_labels(snakemake) -> dict:
    """A fine-tune's labels in metrics.csv, from its job's wildcards (model, ckpt, task, run)."""
    from overtrain.ids import finetuned_variant, parse_variant

    w = snakemake.wildcards
    return {"model": w.model, "ckpt": w.ckpt, **parse_variant(finetuned_variant(w.task, w.run))}
