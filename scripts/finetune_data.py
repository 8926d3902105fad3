from _job import start

start(snakemake)

from overtrain import data  # noqa: E402

n = data.prepare(
    snakemake.params.spec,
    snakemake.input.tokenizer,
    snakemake.output[0],
    n_examples=snakemake.params.n_examples,
    seed=snakemake.params.seed,
)
print(f"{n} examples of {snakemake.wildcards.task} for {snakemake.wildcards.model}")
