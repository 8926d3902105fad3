from _job import start

start(snakemake)

import pandas as pd  # noqa: E402

from overtrain.analysis import plots  # noqa: E402

i, out = snakemake.input, snakemake.output
metrics = pd.read_csv(i.metrics)
table = {name: pd.read_csv(i[name]) for name in ("best_lr", "tuned", "finetune_gain", "barriers", "soups")}


def both(name):
    return [out[f"{name}_png"], out[f"{name}_pdf"]]


plots.noise_pretrain_loss(metrics, both("noise_pretrain_loss"))
plots.finetune_pretrain_loss(metrics, both("finetune_pretrain_loss"))
plots.finetune_task_metric(metrics, both("finetune_task_metric"))
plots.quantization_pretrain_loss(metrics, both("quantization_pretrain_loss"))
plots.tuned_learning_rate(table["tuned"], table["best_lr"], both("tuned_learning_rate"))
plots.finetune_gain(table["finetune_gain"], metrics, both("finetune_gain"))
plots.prompt_sensitivity(metrics, both("prompt_sensitivity"))
plots.connectivity(table["barriers"], table["soups"], both("connectivity"))
