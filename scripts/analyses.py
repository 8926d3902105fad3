from _job import start

start(snakemake)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from overtrain.analysis import analyses, tables  # noqa: E402

p = snakemake.params
computed = analyses.compute(pd.read_csv(snakemake.input.metrics),
                            [json.loads(Path(f).read_text()) for f in snakemake.input.connectivity],
                            p.select, p.bootstrap, p.min_effect, p.pairs)
for name, table in computed.items():
    tables.write_csv(table, snakemake.output[name])
    print(f"{name}: {len(table)} rows")
