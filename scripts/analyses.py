from _job import start

start(snakemake)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from overtrain.analysis import hypotheses, tables  # noqa: E402

metrics = pd.read_csv(snakemake.input.metrics)
select = snakemake.params.select
best = tables.best_learning_rates(metrics, select) if select else pd.DataFrame(columns=tables.RUN_KEYS + ["lr"])
trend = [
    {"model": m, "ft_task": t, "ft_method": meth, "l2": l2, "trend": tables.lr_trend(g["tokens"].tolist(), g["lr"].tolist())}
    for (m, t, meth, l2), g in best.groupby(["model", "ft_task", "ft_method", "l2"], dropna=False)
]
results = [json.loads(Path(p).read_text()) for p in snakemake.input.connectivity]
barriers, soups = tables.connectivity_tables(results)
n_boot = snakemake.params.bootstrap
tables = {
    "hypotheses": hypotheses.claims(metrics, best if select else None, barriers, n_boot, snakemake.params.min_effect),
    "pretrain_loss": tables.pretrain_loss_by_variant(metrics, n_boot),
    "best_lr": best,
    "lr_trend": pd.DataFrame(trend, columns=["model", "ft_task", "ft_method", "l2", "trend"]),
    "tuned": tables.tuned_metrics(metrics, best) if select else pd.DataFrame(columns=tables.METRIC_COLUMNS),
    "inflection": tables.inflection_table(metrics, best if select else None, n_boot),
    "finetune_gain": tables.finetune_gain(metrics),
    "barriers": barriers,
    "soups": soups,
}
for name, table in tables.items():
    tables.write_csv(table, snakemake.output[name])
    print(f"{name}: {len(table)} rows")
