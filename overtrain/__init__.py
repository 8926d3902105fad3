"""overtrain: how the amount of pretraining changes what fine-tuning can do."""

__version__ = "0.1.0"
