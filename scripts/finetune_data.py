from _job import start

start(snakemake)

from overtrain.sources import data  # noqa: E402

p = snakemake.params
meta = data.prepare(
    p.spec,
    snakemake.input.tokenizer,
    snakemake.output[0],
    n_examples=p.n_examples,
    seed=p.seed,
    n_val=p.n_val,
    n_test=p.n_test,
    skip_bad_rows=p.skip_bad_rows,
)
print(f"{snakemake.wildcards.task} for {snakemake.wildcards.model}: {meta}")
