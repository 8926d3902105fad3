"""Shared start of the scripts that run a model (a separate file from _job.py, so that the code
version of a bookkeeping rule does not cover overtrain.models)."""


def model_job(snakemake) -> tuple[str, str]:
    """Pin the configured threads and resolve (device, dtype) for a job that runs a model.

    A job that asked for a GPU (its gpu resource) and sees none fails here, with the reason.
    """
    from overtrain import models

    models.set_threads(snakemake.params.threads)
    return models.resolve_device(snakemake.params.device, snakemake.params.dtype, snakemake.resources.get("gpu", 0))
