from _job import start

start(snakemake)

from overtrain.ids import parse_pretrain_ckpt  # noqa: E402
from overtrain.models import set_threads  # noqa: E402
from overtrain.sources.corpus import load_language  # noqa: E402
from overtrain.training import pretrain, stable  # noqa: E402

set_threads(1)
budget, seed = parse_pretrain_ckpt(snakemake.wildcards.ckpt)
spec = pretrain.PretrainSpec.from_config(snakemake.params.model, snakemake.params.seq_len, replicate=seed)
print(stable.save_snapshot(snakemake.input.segment, budget, snakemake.input.tokenizer, snakemake.output[0], spec,
                           load_language(snakemake.input.language).vocab_size, seed))
