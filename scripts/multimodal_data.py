from _job import start

start(snakemake)

from overtrain.sources import corpus, images  # noqa: E402

p = snakemake.params.data
if snakemake.wildcards.task == "llava":  # LLaVA conversations with images, through datasets
    meta = images.import_conversations(snakemake.output[0], snakemake.params.sources, p["seed"])
else:  # synth_mm: pictures of the synthetic language
    meta = images.write_data(
        corpus.load_language(snakemake.input.language),
        snakemake.output[0],
        p["n"],
        cells=p["cells"],
        continuation=p["continuation"],
        noise=p["noise"],
        cell=p["cell"],
        seed=p["seed"],
    )
print(meta)
