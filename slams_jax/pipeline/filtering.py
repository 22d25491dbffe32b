r"""Cycled assimilation (``config.assimilation.mode = "filter"``): each analysis sees the past only.

The analysis at state :math:`t` of a period of :math:`N` states is the state :math:`t` of a sample of
:math:`p(x_{s:s+L} \mid y_{\le t})`, a lag window of :math:`L` states starting at
:math:`s = \max(0, t - L + 1)`, conditioned on the observations of the window's states up to :math:`t`
only (as the twins' filter does). The :math:`N` cycles are sampled together
(:func:`slams_jax.posterior_sample_batch`), so they must share one structure: every observation is split
into one piece per slot of the window, ``TimeIndex((j,)) >> R`` with ``R`` the observation's operator after
its time selection, and a slot whose state is unobserved, or observed after :math:`t`, carries a
placeholder value with a noise standard deviation :data:`UNSEEN` times the observation's own, so it
informs nothing. This needs ``R`` to act on each time alone (channels, coarsening, points, stations,
saturation), which every observation kind except the moving satellite swath does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from slams_jax.errors import ConfigError
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Channels, Coarsen, Identity, Operator, Points, Saturate, TimeIndex, \
    TimeSubsample
from slams_jax.observation.operators.base import Compose, _steps
from slams_jax.observation.operators.stations import Stations

#: A placeholder's noise std, in units of its observation's largest std: its weight is ``1e-12`` of a real one.
UNSEEN = 1e6
# Operators that act on every time alone, so a piece of one time is the operator on that time.
_TIME_LOCAL = (Channels, Coarsen, Points, Stations, Saturate, Identity)


def _split(o: Observation, n_time: int) -> tuple[list[Operator], dict[int, int]]:
    """``(R, {absolute time: row of o.values})`` for ``o.operator = T >> R`` (``T`` its time selection)."""
    steps = list(_steps(o.operator))
    first = steps[0]
    if isinstance(first, TimeIndex):
        times, steps = list(first.indices), steps[1:]
    elif isinstance(first, TimeSubsample):
        times, steps = list(range(first.offset, n_time, first.every)), steps[1:]
    else:
        times = list(range(n_time))
    bad = [type(op).__name__ for op in steps if not isinstance(op, _TIME_LOCAL)]
    if bad:
        raise ConfigError(f"config.assimilation.mode='filter': observation {o.name!r} uses {bad[0]}, which does not "
                          "act on each time alone; assimilate it with mode='smoother'")
    if len(set(times)) != len(times):
        raise ConfigError(f"config.assimilation.mode='filter': observation {o.name!r} observes a time twice")
    return steps, {t: row for row, t in enumerate(times)}


def _piece(o: Observation, rest: list[Operator], slot: int, row: int | None) -> Observation:
    """Slot ``slot`` of a window: row ``row`` of ``o`` there, or a placeholder (``row`` None)."""
    op = TimeIndex((slot,)) if not rest else Compose((TimeIndex((slot,)), *rest))
    std = o.std_array()
    if row is None:
        values = np.zeros_like(o.values[:1])
        stds = np.full_like(std[:1], UNSEEN * float(std.max()))
    else:
        values, stds = o.values[row:row + 1], std[row:row + 1]
    return Observation(o.modality, op, values, np.array(stds), name=f"{o.name}[slot {slot}]")


def lag_windows(n_time: int, lag: int) -> np.ndarray:
    """The first state ``s`` of each cycle's window: ``max(0, t - lag + 1)`` for ``t < n_time``."""
    if not 1 <= lag <= n_time:
        raise ConfigError(f"config.assimilation.lag={lag}: expected between 1 and the window's {n_time} states")
    return np.maximum(0, np.arange(n_time) - lag + 1)


def cycle_problems(observations: Sequence[Observation], n_time: int, lag: int) -> list[list[Observation]]:
    """One list of observations per cycle ``t``, of the window ``[s_t, s_t + lag)``, seeing times ``<= t``.

    Args:
        observations: Observations of the whole period (``n_time`` states).
        n_time: States of the period.
        lag: States of each cycle's window.

    Returns:
        ``n_time`` problems of identical structure (see the module docstring).
    """
    split = [_split(o, n_time) for o in observations]
    problems = []
    for t, s in enumerate(lag_windows(n_time, lag)):
        problem = []
        for o, (rest, rows) in zip(observations, split):
            for slot in range(lag):
                k = s + slot
                problem.append(_piece(o, rest, slot, rows.get(k) if k <= t else None))
        problems.append(problem)
    return problems


def filter_analysis(windows: np.ndarray, n_time: int, lag: int) -> np.ndarray:
    """The analysis ``(member, time, ...)`` from the cycles' ensembles ``(cycle, member, lag, ...)``."""
    starts = lag_windows(n_time, lag)
    return np.stack([windows[t, :, t - s] for t, s in enumerate(starts)], axis=1)


__all__ = ["UNSEEN", "cycle_problems", "lag_windows", "filter_analysis"]
