"""Preemption: a training job told to stop (SIGTERM: a SLURM time limit, preemption, scancel,
`kill`) saves its resume state at the next step boundary and exits, instead of losing the steps
since its last periodic save.

A cluster sends SIGTERM and, KillWait seconds later (SLURM's default 30 s; GraceTime for
preemption), SIGKILL: a step and one state save must fit in that window, which they do for any
model whose step takes seconds. The job then fails with exit status 143 (128 + SIGTERM), the
workflow's retries resubmit it, and the next attempt resumes at the saved step
(overtrain.training.loop.Resume): a resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import signal
import threading

EXIT_STATUS = 143  # 128 + SIGTERM, what a shell reports for a job SIGTERM stopped


class Preempted(SystemExit):
    """The job stopped on SIGTERM after saving its state at `step`."""

    def __init__(self, step: int, where: str):
        super().__init__(EXIT_STATUS)
        self.step, self.where = step, where

    def __str__(self) -> str:
        return f"stopped by SIGTERM at step {self.step}; resume state saved in {self.where}"


class StopRequest:
    """While active (a context manager), SIGTERM sets a flag instead of killing the process; the
    loop checks it at each step boundary. Off the main thread (where Python cannot take signals)
    it does nothing and the default action stays."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        print("SIGTERM received: saving the resume state at the end of this step", flush=True)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
