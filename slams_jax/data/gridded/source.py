"""One gridded source: some variables of a dataset's files on one regular time axis, read lazily.

A variable is named ``name`` (a field without levels), ``name@level``
(one level of a variable with a level dimension, by value: ``temperature@850``), optionally with the
channel's own name in front, ``t850=temperature@850``. Several variables are stacked as channels, in
order; their channel names are the aliases, else ``name`` or ``name`` followed by the level
(``temperature850``).

The states lie on a regular time axis of step ``cadence``: the files' own step (the most common spacing of
their times) when ``cadence`` is empty, else a resampling such as ``6h`` or ``1D``. A state at ``t`` is
the value at ``t`` (``instant``) or the mean of the file's values in ``[t, t + cadence)`` (``mean``); a
state with no value behind it is missing (:meth:`GriddedSource.present`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from slams_jax.data.gridded.files import open_files
from slams_jax.data.settings import period_end
from slams_jax.errors import ConfigError, DataError

_SPEC = re.compile(r"^\s*(?:(?P<alias>[^=@\s]+)\s*=\s*)?(?P<name>[^=@\s]+)\s*(?:@\s*(?P<level>[-+0-9.eE]+))?\s*$")


@dataclasses.dataclass(frozen=True)
class Variable:
    """One channel: a variable of the files, at one level or without levels, under a channel name."""

    channel: str
    name: str
    level: float | None = None


def parse_variables(specs: Sequence[str], what: str) -> tuple[Variable, ...]:
    """``("t850=temperature@850", "t2m")`` -> :class:`Variable` s; ``what`` names the option in errors."""
    if isinstance(specs, str) or not specs:
        raise ConfigError(f"{what}={specs!r}: expected a non-empty list of variable names (name, name@level or "
                          "channel=name@level)")
    out = []
    for i, spec in enumerate(specs):
        m = _SPEC.match(str(spec))
        if m is None:
            raise ConfigError(f"{what}[{i}]={spec!r}: expected name, name@level or channel=name@level")
        level = None if m["level"] is None else float(m["level"])
        channel = m["alias"] or (m["name"] if level is None else f"{m['name']}{level:g}")
        out.append(Variable(channel, m["name"], level))
    names = [v.channel for v in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{what}: channel names {names} repeat; give them distinct aliases (alias=name@level)")
    return tuple(out)


def parse_cadence(cadence: str, what: str) -> np.timedelta64 | None:
    """``"6h"`` -> 6 hours (``None`` for ``""``: the files' own step)."""
    if not cadence:
        return None
    try:
        step = pd.Timedelta(cadence)
    except ValueError as e:
        raise ConfigError(f"{what}={cadence!r}: not a duration such as '1h', '6h' or '1D' ({e})") from None
    if step <= pd.Timedelta(0):
        raise ConfigError(f"{what}={cadence!r}: expected a positive duration")
    return np.timedelta64(step.value, "ns")


def _field(ds: xr.Dataset, v: Variable, where: str) -> xr.DataArray:
    """``v`` as ``(time, latitude, longitude)``, lazily."""
    if v.name not in ds.data_vars:
        raise DataError(f"{where}: no variable {v.name!r}; it has {sorted(map(str, ds.data_vars))}")
    da = ds[v.name]
    if v.level is not None:
        if "level" not in da.dims:
            raise DataError(f"{where}: variable {v.name!r} has no level dimension (dims {da.dims}); drop "
                            f"'@{v.level:g}' from its name")
        have = np.asarray(ds["level"].values, np.float64)
        hit = np.flatnonzero(np.isclose(have, v.level))
        if not hit.size:
            raise DataError(f"{where}: variable {v.name!r} has no level {v.level:g}; its levels are {have.tolist()}")
        da = da.isel(level=int(hit[0]))
    elif "level" in da.dims:
        if da.sizes["level"] != 1:
            raise DataError(f"{where}: variable {v.name!r} has {da.sizes['level']} levels "
                            f"{np.asarray(ds['level'].values).tolist()}; name one as {v.name}@LEVEL")
        da = da.isel(level=0)
    extra = [d for d in da.dims if d not in ("time", "latitude", "longitude")]
    if extra:
        raise DataError(f"{where}: variable {v.name!r} has dims {da.dims}; expected (time, [level,] latitude, "
                        f"longitude); select or drop {extra} first")
    return da.transpose("time", "latitude", "longitude")


class GriddedSource:
    """Some variables of a dataset on a regular time axis (see the module docstring).

    Attributes:
        name: How the source is named in messages.
        channels: Channel names, in order.
        units: Units of each channel (the files' ``units`` attributes).
        latitude, longitude: The grid in the file's own order and values (float64).
        coordinates: ``{role: (name, values, attrs)}`` of ``time``, ``latitude``, ``longitude`` as the first file
            spells and stores them (its names, dtype and CF attributes, for the outputs).
        times: Every time the files hold, ascending (``datetime64[ns]``).
        step: The state spacing (``timedelta64[ns]``; ``None`` for files of one time without a cadence).
    """

    def __init__(self, path: str | os.PathLike | xr.Dataset, variables: Sequence[str], cadence: str = "",
                 aggregation: str = "instant", name: str = "config.data"):
        self.name, self.aggregation = name, aggregation
        self.variables = parse_variables(variables, f"{name}.variables")
        self.channels = tuple(v.channel for v in self.variables)
        files = open_files(path, f"{name}.path")
        self._fields, times, owner = [], [], []
        for k, (where, ds, spelled) in enumerate(files):
            fields = [_field(ds, v, f"{name}.path: {where}") for v in self.variables]
            if k == 0:
                self.latitude = np.asarray(ds["latitude"].values, np.float64)
                self.longitude = np.asarray(ds["longitude"].values, np.float64)
                self.units = tuple(str(f.attrs.get("units", "")) for f in fields)
                self.coordinates = {role: (spelled[role], ds[role].values, dict(ds[role].attrs))
                                    for role in ("time", "latitude", "longitude")}
            elif (ds.sizes["latitude"], ds.sizes["longitude"]) != (self.latitude.size, self.longitude.size) or not (
                    np.allclose(ds["latitude"].values, self.latitude) and np.allclose(ds["longitude"].values,
                                                                                       self.longitude)):
                raise DataError(f"{where}: its grid differs from that of {files[0][0]}")
            self._fields.append(fields)
            t = np.asarray(ds["time"].values)
            if not np.issubdtype(t.dtype, np.datetime64):
                raise DataError(f"{where}: its times are {t.dtype}, not numpy dates: decode CF times (units 'hours "
                                "since ...'), convert a non-standard calendar (ds.convert_calendar('standard')) or "
                                "drop a time zone (UTC) first")
            times.append(t.astype("datetime64[ns]"))
            owner.append(np.stack([np.full(t.size, k), np.arange(t.size)], 1))
        times, owner = np.concatenate(times), np.concatenate(owner)
        order = np.argsort(times, kind="stable")
        self.times, self._owner = times[order], owner[order]
        dup = np.flatnonzero(np.diff(self.times) == np.timedelta64(0))
        if dup.size:
            a, b = self._owner[dup[0]][0], self._owner[dup[0] + 1][0]
            raise DataError(f"{name}.path: time {self.times[dup[0]]} appears twice (in {files[a][0]} and {files[b][0]})")
        self.native = _native_step(self.times)
        self.step = parse_cadence(cadence, f"{name}.cadence") or self.native  # None: one time, no spacing known
        # a mean state needs every value of its bin: as many as the files' step fits in the state's
        self._per_bin = 1
        if aggregation == "mean" and self.step is not None and self.native is not None and self.step > self.native:
            self._per_bin = int(self.step // self.native)

    def axis(self, first: str, last: str) -> np.ndarray:
        """The state times from ``first`` to ``last`` (dates or date-times, inclusive; a date alone runs to the
        end of its day), on this source's step, starting at ``first`` (or, at the files' own cadence, at
        the first file time from ``first`` on)."""
        if self.step is None:
            raise DataError(f"{self.name}.path holds one time ({self.times[0]}); set {self.name}.cadence to say the "
                            "state spacing")
        lo, hi = np.datetime64(first, "ns"), period_end(last)
        if hi < lo:
            return np.zeros(0, "datetime64[ns]")
        # the files' phase, the same for every split (an hourly file at hh:30 gives states at hh:30)
        start = lo + (self.times[0] - lo) % self.step
        return np.arange(start, hi + np.timedelta64(1, "ns"), self.step)

    def _rows(self, t: np.datetime64) -> np.ndarray:
        """Positions in :attr:`times` behind the state at ``t``."""
        if self.aggregation == "mean" and self.step is not None:
            lo, hi = np.searchsorted(self.times, [t, t + self.step])
            return np.arange(lo, hi)
        i = np.searchsorted(self.times, t)
        return np.arange(i, i + 1) if i < self.times.size and self.times[i] == t else np.arange(0)

    def present(self, times: np.ndarray) -> np.ndarray:
        """Whether each state time has a value behind it (a mean state: every value of its bin)."""
        return np.asarray([self._rows(t).size >= self._per_bin for t in times], bool)

    def read(self, times: np.ndarray) -> np.ndarray:
        """States ``(len(times), channel, latitude, longitude)`` float32 (NaN where the files have no value)."""
        if not len(times):
            return np.zeros((0, len(self.channels), self.latitude.size, self.longitude.size), np.float32)
        rows = [self._rows(t) for t in times]
        missing = [str(t) for t, r in zip(times, rows) if not r.size]
        if missing:
            raise DataError(f"{self.name}: no data at {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        flat = np.unique(np.concatenate(rows))
        values = np.empty((flat.size, len(self.channels), self.latitude.size, self.longitude.size), np.float32)
        owner = self._owner[flat]
        for f in np.unique(owner[:, 0]):  # one read per file and variable, in storage order
            sel = np.flatnonzero(owner[:, 0] == f)
            for c, field in enumerate(self._fields[f]):
                values[sel, c] = np.asarray(field.isel(time=owner[sel, 1]).values, np.float32)
        where = {r: i for i, r in enumerate(flat)}
        return np.stack([values[[where[r] for r in rs]].mean(0) for rs in rows])


def _native_step(times: np.ndarray) -> np.timedelta64 | None:
    """The most common spacing of the files' times (None for a single time)."""
    if times.size < 2:
        return None
    gaps, counts = np.unique(np.diff(times), return_counts=True)
    return gaps[np.argmax(counts)]


__all__ = ["Variable", "GriddedSource", "parse_variables", "parse_cadence"]
