"""``results.jsonl``: one row per (setting, window, method, channel), appended and synced as the study goes,
so a killed study resumes where it stopped; and ``examples.npz``, the fields drawn in the maps."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from slams_jax.studies.ablation.data import StudyData
from slams_jax.studies.ablation.methods import METRICS, score_rows
from slams_jax.studies.ablation.sweeps import Setting


def read_results(path: Path) -> list[dict]:
    """Rows of ``results.jsonl``; a line cut by a kill is dropped."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


class Recorder:
    """The rows and example fields of a study's workdir: what is done, and every new result as it comes.

    Args:
        workdir: The study's directory (``results.jsonl``, ``examples.npz``).
        data: The study's data (truths, windows, channel names, area weights).
        example_setting: Label of the setting whose window 0 is kept for the maps.
        log: Where one line per result goes.
    """

    def __init__(self, workdir: Path, data: StudyData, example_setting: str, log: Callable[[str], None]):
        self.path = workdir / "results.jsonl"
        self.examples_path = workdir / "examples.npz"
        self.data, self.example_setting, self.log = data, example_setting, log
        self.rows = read_results(self.path)
        self.done = {(r["window"], r["sweep"], r["severity"], r["method"]) for r in self.rows}
        self.examples: dict[str, np.ndarray] = dict(np.load(self.examples_path)) if self.examples_path.exists() else {}
        self._out: Any = None

    def __enter__(self) -> "Recorder":
        self._out = self.path.open("a")
        return self

    def __exit__(self, *exc) -> None:
        self._out.close()
        self._out = None

    def is_example(self, setting: Setting, window: int) -> bool:
        return setting.label == self.example_setting and window == 0

    def keep_example(self, fields: Mapping[str, Any]) -> None:
        """Store fields of the maps; written at once, so a killed study keeps the maps of what it ran."""
        self.examples.update(fields)
        tmp = self.examples_path.with_name(f"examples.tmp{os.getpid()}.npz")
        np.savez(tmp, **self.examples)
        os.replace(tmp, self.examples_path)

    def record(self, setting: Setting, w: int, m: str, ens: Any, error: str, seconds: float) -> None:
        """Score ensemble ``ens`` (``None``: failed, with ``error``) of method ``m`` on window ``w``; write
        its rows (per channel and ``all``) to ``results.jsonl`` and log a line."""
        data = self.data
        if ens is None:
            scores = {c: {k: float("nan") for k in METRICS} for c in data.variables + ("all",)}
        else:
            scores = score_rows(ens, data.truths[w][data.state], data.variables, data.weights)
            if self.is_example(setting, w):
                self.keep_example({m: ens.mean(0)})
        traj, start = data.windows[w]
        for channel, sc in scores.items():
            row = {"sweep": setting.sweep, "severity": setting.severity, "method": m, "window": w,
                   "trajectory": traj, "start": start, "channel": channel, **sc,
                   "members": int(ens.shape[0]) if ens is not None else 0, "seconds": seconds, "error": error}
            self.rows.append(row)
            self._out.write(json.dumps(row) + "\n")
        self._out.flush()
        os.fsync(self._out.fileno())
        self.log(f"{setting.label:12s} window {w} {m:24s} RMSE {scores['all']['rmse']:.4f} "
                 f"CRPS {scores['all']['crps']:.4f} {seconds:6.1f} s" + (f"  FAILED: {error}" if error else ""))


__all__ = ["read_results", "Recorder"]
