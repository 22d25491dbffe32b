r"""Matching the times of an observation file to the states of the trajectory.

A file time :math:`t` is assigned to the trajectory state :math:`i^* = \arg\min_i |t - \tau_i|` nearest to it
when :math:`|t - \tau_{i^*}| \le \delta`, and dropped otherwise. The default tolerance :math:`\delta` is half
the smallest spacing of the state times :math:`\tau`, so two states never claim one file time; with a single
numeric state time it is a few float32 ulps (the stored times are exact up to that rounding), with a single
datetime it is zero. Numeric times are compared as float64, ``datetime64``/``timedelta64`` times as int64
nanoseconds (NaT never matches), and the two kinds may not be mixed.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slams_jax.errors import ObservationError


def where(source: Path | str) -> str:
    """A file as messages name it (``observation file '...'``); any other source (a table) as it is."""
    return f"observation file {str(source)!r}" if isinstance(source, Path) else str(source)


def time_kind(values: np.ndarray) -> str:
    """``"numeric"``, ``"datetime"``, ``"timedelta"`` or ``"other"``."""
    kind = np.asarray(values).dtype.kind
    return {"M": "datetime", "m": "timedelta", "i": "numeric", "u": "numeric", "f": "numeric"}.get(kind, "other")


def format_time(t: Any) -> str:
    t = np.asarray(t)
    if t.dtype.kind == "M":
        return str(np.datetime_as_string(t, unit="auto"))
    if t.dtype.kind == "m":  # "3 hours", not "10800000000000 nanoseconds"
        return str(pd.Timedelta(int(t.astype("timedelta64[ns]").astype(np.int64)), unit="ns"))
    return f"{float(t):g}"


def time_range(values: np.ndarray) -> str:
    values = np.asarray(values)
    if values.size == 0:
        return "no times"
    if values.dtype.kind in "Mm":
        values = values[~np.isnat(values)]
    elif values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return "no valid times"
    return f"[{format_time(values.min())}, {format_time(values.max())}] ({values.size} times)"


def _as_numbers(path: Path | str, values: np.ndarray, kind: str, what: str) -> np.ndarray:
    """Times as float64 (numeric) or float64 nanoseconds (datetime/timedelta), NaN for NaT."""
    values = np.asarray(values)
    if kind == "numeric":
        return values.astype(np.float64)
    if kind in ("datetime", "timedelta"):
        unit = "datetime64[ns]" if kind == "datetime" else "timedelta64[ns]"
        ns = values.astype(unit)
        out = ns.astype(np.int64).astype(np.float64)
        out[np.isnat(ns)] = np.nan
        return out
    raise ObservationError(
        f"{where(path)}: {what} of dtype {values.dtype} are not supported; expected numbers or "
        "datetime64 (a non-standard calendar decoded to cftime objects is not supported)"
    )


def _tolerance(path: Path | str, tolerance: Any, kind: str, times: np.ndarray) -> float:
    """The matching tolerance in the unit of :func:`_as_numbers`."""
    if tolerance is None:
        unique = np.unique(times[np.isfinite(times)])
        if unique.size >= 2:
            return float(np.min(np.diff(unique))) / 2.0
        if kind == "numeric" and unique.size:  # exact up to float32 rounding of the stored times
            return 4.0 * float(np.finfo(np.float32).eps) * max(1.0, abs(float(unique[0])))
        return 0.0
    if isinstance(tolerance, datetime.timedelta):
        tolerance = np.timedelta64(tolerance)
    is_delta = isinstance(tolerance, np.timedelta64) or np.asarray(tolerance).dtype.kind == "m"
    if kind == "numeric":
        if is_delta or not np.isscalar(tolerance) or isinstance(tolerance, (bool, np.bool_, str)):
            raise ObservationError(
                f"{where(path)}: time_tolerance={tolerance!r} must be a number for numeric times"
            )
        value = float(tolerance)
    else:
        if not is_delta:
            raise ObservationError(
                f"{where(path)}: time_tolerance={tolerance!r} must be a numpy.timedelta64 (or "
                f"datetime.timedelta) for {kind} times, e.g. numpy.timedelta64(3, 'h')"
            )
        value = float(np.asarray(tolerance).astype("timedelta64[ns]").astype(np.int64))
    if not (np.isfinite(value) and value >= 0):
        raise ObservationError(f"{where(path)}: time_tolerance={tolerance!r} must be >= 0")
    return value


def match_times(path: Path | str, file_times: Any, times: Any, tolerance: Any) -> np.ndarray:
    """Trajectory index matched by each file time, ``-1`` for none; an error if nothing matches.

    Args:
        path: The file (or, as text, the table), for messages.
        file_times: Times in the file ``(n,)``.
        times: Times of the trajectory states ``(time,)``.
        tolerance: Largest accepted ``|file time - state time|``, ``None`` for half the smallest spacing.

    Returns:
        ``(n,)`` int64 state indices.
    """
    file_times, times = np.atleast_1d(np.asarray(file_times)), np.atleast_1d(np.asarray(times))
    if times.ndim != 1 or times.size == 0:
        raise ObservationError(
            f"{where(path)}: times of the trajectory must be a non-empty 1-D array, got shape "
            f"{times.shape}"
        )
    file_kind, kind = time_kind(file_times), time_kind(times)
    if "other" not in (file_kind, kind) and file_kind != kind:
        raise ObservationError(
            f"{where(path)}: its times are {file_kind} ({file_times.dtype}) but the trajectory "
            f"times are {kind} ({times.dtype}); give both as numbers or both as datetime64"
        )
    state = _as_numbers(path, times, kind, "trajectory times")
    found = _as_numbers(path, file_times, file_kind, "file times")
    tol = _tolerance(path, tolerance, kind, state)
    distance = np.abs(found[:, None] - state[None, :])
    distance = np.where(np.isnan(distance), np.inf, distance)
    nearest = np.argmin(distance, axis=1) if state.size else np.zeros(found.shape, np.int64)
    ok = distance[np.arange(found.size), nearest] <= tol
    index = np.where(ok, nearest, -1).astype(np.int64)
    if not ok.any():
        tol_text = format_time(np.timedelta64(int(tol), "ns")) if kind != "numeric" else f"{tol:g}"
        raise ObservationError(
            f"{where(path)}: none of its times {time_range(file_times)} matches a trajectory "
            f"time {time_range(times)} within a tolerance of {tol_text}"
        )
    return index


__all__ = ["format_time", "match_times", "time_kind", "time_range", "where"]
