from _job import start

start(snakemake)

import pandas as pd  # noqa: E402

from overtrain import plots  # noqa: E402

metrics = pd.read_csv(snakemake.input[0])
out = snakemake.output
plots.noise_pretrain_loss(metrics, [out.noise_pretrain_loss_png, out.noise_pretrain_loss_pdf])
plots.finetune_pretrain_loss(metrics, [out.finetune_pretrain_loss_png, out.finetune_pretrain_loss_pdf])
plots.finetune_task_metric(metrics, [out.finetune_task_metric_png, out.finetune_task_metric_pdf])
