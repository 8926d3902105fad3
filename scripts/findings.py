from _job import start

start(snakemake)

import pandas as pd  # noqa: E402

from overtrain.analysis import findings  # noqa: E402
from overtrain.atomic import atomic_write_text  # noqa: E402

i, p = snakemake.input, snakemake.params
text = findings.render(
    experiment=p.experiment,
    command=p.command,
    code=p.code,
    replicates=p.replicates,
    **{name: pd.read_csv(i[name]) for name in ("hypotheses", "pretrain_loss", "best_lr", "inflection", "published")},
)
atomic_write_text(snakemake.output.page, text + "\n")
verdicts = findings.verdict_table(pd.read_csv(i.hypotheses))
atomic_write_text(snakemake.output.verdicts, verdicts.to_csv(index=False, lineterminator="\n"))
print(text)
