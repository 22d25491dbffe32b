"""A one-line progress report of a sampling run, written between its compiled chunks of steps."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``label: step k/N, n trajectories, 12 s`` on ``stream`` (rewritten in place on a terminal).

    Args:
        steps: Steps of the run.
        trajectories: Trajectories integrated together (members x problems).
        label: What is being sampled.
        stream: Where to write (default standard error).
    """

    def __init__(self, steps: int, trajectories: int, label: str = "sampling", stream: TextIO | None = None):
        self.steps, self.trajectories, self.label = steps, trajectories, label
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self, done: int) -> str:
        elapsed = time.perf_counter() - self.start
        return f"{self.label}: step {done}/{self.steps}, {self.trajectories} trajectories, {elapsed:.0f} s"

    def update(self, done: int) -> None:
        """Report ``done`` steps of :attr:`steps`."""
        if self.terminal:
            self.stream.write("\r" + self.line(done) + ("\n" if done >= self.steps else ""))
        else:
            self.stream.write(self.line(done) + "\n")
        self.stream.flush()

    def close(self, done: int) -> None:
        """End the report after ``done`` steps (a run stopped early ends its line too)."""
        if self.terminal and done < self.steps:
            self.stream.write("\n")
            self.stream.flush()


__all__ = ["Progress"]
