from _job import start

start(snakemake)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from overtrain.analysis import plots, tables, theory  # noqa: E402

t = snakemake.params.theory
setup = theory.Setup(n_features=t["n_features"], decay=t["decay"], shared=t["shared"], shift=t["shift"])
taus = np.geomspace(t["taus"][0], t["taus"][1], t["points"]).tolist()
table = pd.DataFrame(theory.simulate(setup, taus, t["gammas"], t["finetune_time"], t["l2"]))
tables.write_csv(table, snakemake.output.table)
plots.theory(table, [snakemake.output.png, snakemake.output.pdf])
