"""Training: the one loop, pretraining, supervised fine-tuning (text and LLaVA), data parallelism and the vision tower."""
