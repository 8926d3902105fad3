from _job import start

start(snakemake)

import pandas as pd  # noqa: E402

from overtrain.analysis import plots  # noqa: E402

i, out = snakemake.input, snakemake.output
plots.draw_all({name: pd.read_csv(path) for name, path in i.items()}, lambda name: [out[f"{name}_png"], out[f"{name}_pdf"]])
