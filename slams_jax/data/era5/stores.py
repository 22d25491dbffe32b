"""Sources of real data, read by day: one variable of a zarr store or netCDF file, or of a daily ChaosBench tree.

Stores are opened lazily: nothing is read until values are indexed, so a window of a multi-year archive costs
only its own bytes.

- :func:`open_store`: a zarr store (a directory, e.g. WeatherBench2's ``1959-2023_01_10-...zarr``) or a
  netCDF file.
- :func:`standardize`: dimension and coordinate names to ``time, level, latitude, longitude``, whatever their
  spelling in the store (the spellings of :mod:`slams_jax.coords`: ``lat``/``lon``,
  ``pressure_level``/``plev``/``isobaricInhPa``, ``valid_time``); a scalar ``time`` coordinate becomes a
  length-1 dimension. Latitude is put in north-to-south order (ERA5's own), longitude in ascending order in
  ``[0, 360)``.
- :func:`select`: one variable at the requested pressure levels (by value, in hPa), as ``(time, level,
  latitude, longitude)``; the errors name the store, the variable and what it has.
- :class:`StoreSource` (one store: WeatherBench2, CPC, NOAA OLR, any netCDF/zarr) and
  :class:`ChaosBenchSource` (one zarr per day): the days a source has (``days``), its grid and the daily
  states of any days (sub-daily values averaged, or the first one taken), ``(day, channel, latitude,
  longitude)``; :func:`open_source` picks one by layout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import xarray as xr

from slams_jax import coords
from slams_jax.errors import DataError, MissingFileError


def open_store(path: str | os.PathLike) -> xr.Dataset:
    """Open a zarr store or a netCDF file lazily (no values are read)."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"data store {p} does not exist")
    try:
        if p.is_dir() or p.suffix == ".zarr":
            return xr.open_zarr(p, chunks=None)
        return xr.open_dataset(p, chunks=None)
    except Exception as e:  # the backends raise many types for unreadable stores
        raise DataError(f"data store {p} could not be opened ({type(e).__name__}: {e})") from e


def standardize(ds: xr.Dataset, source: str = "store") -> xr.Dataset:
    """Canonical names ``time, level, latitude, longitude``, latitude north to south, longitude in [0, 360)."""
    renames = {}
    names = set(ds.dims) | set(ds.coords)
    for canonical in coords.ALIASES:
        found = coords.find(names, canonical)
        if found is not None and found != canonical:
            renames[found] = canonical
    ds = ds.rename(renames)
    for axis in ("latitude", "longitude"):
        if axis not in ds.dims:
            raise DataError(
                f"{source}: no {axis} dimension (looked for {list(coords.spellings(axis))}); its dims are {dict(ds.sizes)}"
            )
    if "time" in ds.coords and "time" not in ds.dims:
        ds = ds.expand_dims("time")
    lat = ds["latitude"].values
    if np.any(np.abs(lat) > 90):
        raise DataError(f"{source}: latitude values outside [-90, 90] (from {lat.min()} to {lat.max()})")
    if not (np.all(np.diff(lat) > 0) or np.all(np.diff(lat) < 0)):
        raise DataError(f"{source}: latitude is not strictly monotonic")
    if lat[0] < lat[-1]:
        ds = ds.isel(latitude=slice(None, None, -1))
    lon = ds["longitude"].values
    if np.any(lon < 0):
        ds = ds.assign_coords(longitude=np.mod(lon, 360.0))
    order = np.argsort(ds["longitude"].values, kind="stable")
    if np.any(np.diff(ds["longitude"].values[order]) <= 0):
        raise DataError(f"{source}: longitude has duplicated values (modulo 360)")
    if np.any(order != np.arange(order.size)):
        ds = ds.isel(longitude=order)
    return ds


def select(ds: xr.Dataset, variable: str, levels: Sequence[int | float] | None, source: str = "store") -> xr.DataArray:
    """``variable`` at ``levels`` (hPa, by value; ``None`` for a single-level field) as ``(time, [level,]
    latitude, longitude)``, from a :func:`standardize`-d dataset. Lazy."""
    if variable not in ds.data_vars:
        raise DataError(f"{source}: no variable {variable!r}; it has {sorted(ds.data_vars)}")
    da = ds[variable]
    expected = ("time", "level", "latitude", "longitude") if levels is not None else ("time", "latitude", "longitude")
    if levels is not None:
        if "level" not in da.dims:
            raise DataError(f"{source}: variable {variable!r} has no level dimension (dims {da.dims}); "
                            f"levels {list(levels)} were asked for")
        have = np.asarray(ds["level"].values, np.float64)
        missing = [lv for lv in levels if not np.any(np.isclose(have, lv))]
        if missing:
            raise DataError(f"{source}: variable {variable!r} lacks pressure levels {missing} hPa; "
                            f"it has {have.tolist()}")
        index = [int(np.flatnonzero(np.isclose(have, lv))[0]) for lv in levels]
        da = da.isel(level=index)
    extra = [d for d in da.dims if d not in expected]
    if extra:
        raise DataError(f"{source}: variable {variable!r} has dims {da.dims}; expected {expected} "
                        f"(select or drop {extra} first)")
    return da.transpose(*expected)


DAY = np.timedelta64(1, "D")


def _days(times) -> np.ndarray:
    return np.asarray(times).astype("datetime64[D]")


class StoreSource:
    """One variable of one store (WeatherBench2 ERA5, CPC, NOAA OLR, any netCDF or zarr), read by day."""

    def __init__(self, path: str | os.PathLike, variable: str, levels: Sequence[int | float] | None,
                 aggregation: str = "mean", name: str = ""):
        self.name = name or f"{path}:{variable}"
        self.da = select(standardize(open_store(path), str(path)), variable, levels, str(path))
        self.aggregation = aggregation
        day = _days(self.da["time"].values)
        self.days, counts = np.unique(day, return_counts=True)
        order = np.argsort(day, kind="stable")
        self._index = {d: order[np.searchsorted(day[order], d):][:c] for d, c in zip(self.days, counts)}
        self.latitude = self.da["latitude"].values
        self.longitude = self.da["longitude"].values
        self.channels = 1 if levels is None else len(levels)
        self.units = str(self.da.attrs.get("units", ""))

    def read(self, days: np.ndarray | Sequence[np.datetime64]) -> np.ndarray:
        """Daily states ``(len(days), channel, lat, lon)`` float32 (NaN where the source has no value)."""
        groups = [self._index[d] if self.aggregation == "mean" else self._index[d][:1] for d in days]
        flat = np.concatenate(groups)
        order = np.argsort(flat, kind="stable")  # read in storage order, once per time step
        values = np.empty((len(flat),) + self.da.shape[1:], np.float32)
        values[order] = np.asarray(self.da.isel(time=flat[order]).values, np.float32)
        out, start = [], 0
        for g in groups:
            chunk = values[start:start + len(g)]
            start += len(g)
            out.append(chunk.mean(0) if len(g) > 1 else chunk[0])
        out = np.stack(out)
        return out[:, None] if out.ndim == 3 else out


class ChaosBenchSource:
    """ChaosBench layout: a directory of one zarr store per day, named ``...YYYYMMDD.zarr``."""

    def __init__(self, directory: str | os.PathLike, variable: str, levels: Sequence[int | float] | None,
                 aggregation: str = "mean", name: str = ""):
        root = Path(directory)
        if not root.is_dir():
            raise MissingFileError(f"ChaosBench directory {root} does not exist")
        files = {}
        for f in sorted(root.glob("*.zarr")):
            m = re.search(r"(\d{8})$", f.stem)
            if m:
                files[np.datetime64(f"{m.group(1)[:4]}-{m.group(1)[4:6]}-{m.group(1)[6:]}", "D")] = f
        if not files:
            raise DataError(f"{root}: no daily zarr store named ...YYYYMMDD.zarr")
        self.name = name or f"{root}:{variable}"
        self.files, self.variable, self.levels, self.aggregation = files, variable, levels, aggregation
        self.days = np.array(sorted(files), dtype="datetime64[D]")
        first = self._open(self.days[0])
        self.latitude, self.longitude = first["latitude"].values, first["longitude"].values
        self.channels = 1 if levels is None else len(levels)
        self.units = str(first.attrs.get("units", ""))

    def _open(self, day) -> xr.DataArray:
        path = self.files[day]
        ds = standardize(open_store(path), str(path))
        if "time" not in ds.dims:
            ds = ds.expand_dims(time=[np.datetime64(day, "ns")])
        return select(ds, self.variable, self.levels, str(path))

    def read(self, days: np.ndarray | Sequence[np.datetime64]) -> np.ndarray:
        out = []
        for d in days:
            da = self._open(d)
            if da.shape[1:] != (self.channels,) * (da.ndim == 4) + (len(self.latitude), len(self.longitude)):
                raise DataError(f"{self.files[d]}: grid {da.shape[-2:]} differs from the first day's "
                                f"{(len(self.latitude), len(self.longitude))}")
            v = np.asarray(da.values if self.aggregation == "mean" else da.isel(time=slice(0, 1)).values, np.float32)
            v = v.mean(0)
            out.append(v[None] if v.ndim == 2 else v)
        return np.stack(out)


def open_source(layout: str, path: str, variable: str, levels, aggregation: str, name: str) -> "Source":
    """The source of one variable: a :class:`ChaosBenchSource` for ``layout == "chaosbench"``, else a
    :class:`StoreSource` (``levels`` ``None`` for a single-level field; ``name`` is used in messages)."""
    if layout == "chaosbench":
        return ChaosBenchSource(path, variable, levels, aggregation, name)
    return StoreSource(path, variable, levels, aggregation, name)


Source = Union[StoreSource, ChaosBenchSource]

__all__ = ["DAY", "open_store", "standardize", "select", "StoreSource", "ChaosBenchSource", "Source", "open_source"]
