"""The settings of the sweeps and the order they run in.

A :class:`Setting` is one point of a sweep: how the state is observed. The sweeps vary one factor at a
time about a reference: the coarsening factor r at a fixed noise, the noise std at a fixed r, the gap g of a
regular lattice of points at a fixed noise. Every key of a setting derives from its place in
:func:`study_settings`'s list, so :func:`run_order` may reorder them without changing a number.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from slams_jax.studies.ablation.settings import StudySettings, check_order


@dataclasses.dataclass(frozen=True)
class Setting:
    """One point of a sweep: how the state is observed.

    Attributes:
        sweep: The sweep it belongs to (``coarsen``, ``noise``, ``gap``).
        severity: The swept factor's value (r, the noise std or g).
        coarsen: Block-mean factor of the state (1: full resolution).
        gap: Gap of the regular lattice of observed points (0: the coarsened field instead).
        std: Noise std relative to the state's climatological std, per channel.
    """

    sweep: str
    severity: int | float
    coarsen: int = 1
    gap: int = 0
    std: float = 0.1

    @property
    def label(self) -> str:
        return f"{self.sweep}={self.severity:g}"


def study_settings(study: StudySettings) -> list[Setting]:
    """The settings of ``study.sweeps``, in order: r at ``coarsen_std``, noise at ``noise_coarsen``, gap at
    ``gap_std``."""
    out = []
    for sweep in study.sweeps:
        if sweep == "coarsen":
            out += [Setting("coarsen", r, coarsen=r, std=study.coarsen_std) for r in study.coarsen]
        elif sweep == "noise":
            out += [Setting("noise", s, coarsen=study.noise_coarsen, std=s) for s in study.noise]
        else:
            out += [Setting("gap", g, gap=g, std=study.gap_std) for g in study.gap]
    return out


def _ends_first(n: int) -> list[int]:
    """Indices ``0..n-1`` ends first, then recursively the middles: 5 -> [0, 4, 2, 1, 3]."""
    order, spans = [], [(0, n - 1)]
    for i in (0, n - 1):
        if 0 <= i < n and i not in order:
            order.append(i)
    while spans:
        nxt = []
        for lo, hi in spans:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                order.append(mid)
                nxt += [(lo, mid), (mid, hi)]
        spans = nxt
    return order


def run_order(settings: Sequence[Setting], order: str) -> list[int]:
    """The order in which the study runs its settings (indices into ``settings``).

    ``sweeps``: as listed. ``spread``: round-robin over the sweeps, each from its two ends inwards, so a study
    stopped early (a CPU with a time limit) has covered every sweep's range; the results are the same,
    because every observation and sampling key derives from the setting's place in the list, not the order.
    """
    check_order(order)
    if order == "sweeps":
        return list(range(len(settings)))
    per_sweep: dict[str, list[int]] = {}
    for i, st in enumerate(settings):
        per_sweep.setdefault(st.sweep, []).append(i)
    queues = [[idx[j] for j in _ends_first(len(idx))] for idx in per_sweep.values()]
    out = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


__all__ = ["Setting", "study_settings", "run_order"]
