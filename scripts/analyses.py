from _job import start

start(snakemake)


import pandas as pd  # noqa: E402

from overtrain.analysis import analyses, tables  # noqa: E402
from overtrain.evaluation.results import read_result  # noqa: E402

p = snakemake.params
computed = analyses.compute(pd.read_csv(snakemake.input.metrics),
                            [read_result(f) for f in snakemake.input.connectivity],
                            p.select, p.bootstrap, p.min_effect, p.pairs, p.beside, p.tolerance,
                            [(m, pd.read_csv(f)) for m, f in zip(p.stated_models, snakemake.input.stated)])
for name, table in computed.items():
    tables.write_csv(table, snakemake.output[name])
    print(f"{name}: {len(table)} rows")
