from _job import start

start(snakemake)

from overtrain.sources import corpus  # noqa: E402

lang = corpus.build_language(**snakemake.params.corpus)
corpus.build_tokenizer(lang, snakemake.output.tokenizer)
corpus.save_language(lang, snakemake.output.language)
print(f"language: vocab {lang.vocab_size}, {lang.n_topics} topics")
