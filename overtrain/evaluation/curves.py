"""Metrics of a training curve (the per-step log of a fine-tune), kept apart from the analyses
so that the evaluation jobs that compute them do not depend on the analysis code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def epoch_jumps(losses: list[float], steps_per_epoch: float, window: int | None = None) -> list[dict]:
    """The drop of training loss at each epoch boundary, against the drop inside epochs.

    jump_e = mean(loss over the last m steps of epoch e) − mean(loss over the first m steps of
    epoch e+1), m ≈ 5% of an epoch (≥ 1). The same difference of adjacent m-step windows taken
    inside epochs gives the ordinary trend; `excess` = jump − that trend (the fast.ai "learning
    jump" is a large positive excess).
    """
    loss = np.asarray(losses, dtype=float)
    m = window or max(1, int(round(0.05 * steps_per_epoch)))
    boundaries = [
        int(round(e * steps_per_epoch)) for e in range(1, int(len(loss) // steps_per_epoch) + 1)
    ]
    boundaries = [b for b in boundaries if m <= b <= len(loss) - m]
    if not boundaries:
        return []

    def drop(t: int) -> float:
        return float(loss[t - m : t].mean() - loss[t : t + m].mean())

    inside = [t for t in range(m, len(loss) - m + 1) if all(abs(t - b) >= m for b in boundaries)]
    trend = float(np.mean([drop(t) for t in inside])) if inside else 0.0
    return [
        {"epoch": e + 1, "jump": drop(b), "excess": drop(b) - trend}
        for e, b in enumerate(boundaries)
    ]


def learning_jump_rows(train_log_csv: str | Path, task: str) -> list[dict]:
    """Evaluation-style rows (split ft_train) for each epoch boundary of a fine-tune's log."""
    log = pd.read_csv(train_log_csv)
    if len(log) < 2 or log["epoch"].iloc[1] <= 0:
        return []
    steps_per_epoch = 1.0 / float(log["epoch"].iloc[1] - log["epoch"].iloc[0])
    rows = []
    for j in epoch_jumps(log["loss"].tolist(), steps_per_epoch):
        for name in ("jump", "excess"):
            rows.append(
                {
                    "eval_task": task,
                    "split": "ft_train",
                    "metric": f"epoch{j['epoch']}_loss_{name}",
                    "value": j[name],
                }
            )
    return rows
