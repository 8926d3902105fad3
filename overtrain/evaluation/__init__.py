"""Evaluation of model variants: lm-eval tasks and scoring, judged win rates, connectivity paths and soups, training-curve metrics."""
