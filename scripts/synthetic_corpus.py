from _job import start

start(snakemake)

from overtrain.sources import corpus  # noqa: E402

c = snakemake.params.corpus
lang = corpus.build_language(vocab=c["vocab"], topics=c["topics"], fanout=c["fanout"], shared=c["shared"],
                             zipf=c["zipf"], alpha=c["alpha"], ft_shift=c["ft_shift"], seed=c["seed"],
                             ft_task=c["ft_task"], ft_topics=c["ft_topics"])
paths = corpus.write_task_data(
    lang, snakemake.output.ft_train.rsplit("/", 1)[0], c["seq_len"], c["eval_docs"], c["ft_train_docs"], c["seed"]
)
print(f"fine-tuning task {lang.task} over {lang.n_topics} topics; wrote {sorted(paths)}")
