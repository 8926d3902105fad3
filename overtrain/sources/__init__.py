"""Where models and data come from: the synthetic language, fine-tuning datasets, checkpoints (pretrained here, local or Hub revisions) and images."""
