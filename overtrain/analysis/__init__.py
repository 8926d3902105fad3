"""Tidy tables, intervals, claims, findings and figures. pandas, numpy and matplotlib only: no torch, transformers or lm-eval."""
