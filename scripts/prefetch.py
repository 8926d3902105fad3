from _job import start

start(snakemake)

from overtrain.evaluation import prefetch  # noqa: E402

p = snakemake.params
record = prefetch.fetch(p.want, p.tasks, p.task_data, p.nltk_data, snakemake.output[0])
print(f"prefetched {prefetch.manifest_summary(snakemake.output[0])}: {record}")
