from _job import start
from _model import model_job

start(snakemake)

from overtrain.sources import corpus  # noqa: E402
from overtrain.training import vision  # noqa: E402

p = snakemake.params
model_job(snakemake)
spec = {k: v for k, v in p.vision.items() if k != "source"}  # VisionSpec has the defaults
meta = vision.train_vision_encoder(
    corpus.load_language(snakemake.input.language),
    snakemake.output[0],
    vision.VisionSpec(**spec, threads=p.threads),
    cells=p.images["cells"],
    cell=p.images["cell"],
    noise=p.images["noise"],
    glyph_seed=p.images["seed"],
)
