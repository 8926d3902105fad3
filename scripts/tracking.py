from _job import start

start(snakemake)

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from overtrain.analysis import trackers  # noqa: E402
from overtrain.atomic import atomic_directory  # noqa: E402

p = snakemake.params
root = Path(snakemake.input.curves).parent.parent  # results/<experiment>
seconds = trackers.job_seconds(root, list(zip(p.dirs, snakemake.input.benchmarks)))
runs = trackers.training_runs(pd.read_csv(snakemake.input.curves), seconds)
runs += trackers.evaluation_runs(pd.read_csv(snakemake.input.metrics, low_memory=False))
for tracker, out in snakemake.output.items():
    with atomic_directory(out) as tmp:
        if tracker == "tensorboard":
            trackers.write_tensorboard(runs, tmp)
        else:
            trackers.write_wandb(runs, tmp, project=p.project, group=p.experiment, config=p.study)
    print(f"{tracker}: {len(runs)} runs in {Path(out)}")
