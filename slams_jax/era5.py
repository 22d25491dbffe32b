"""Reading ERA5-like stores through xarray: dimension names, variables and pressure levels by value.

The first piece of the real-data loader (the rest, the timestamp alignment of modalities and the prepared
training store, follows with the real-data issue). Stores are opened lazily: nothing is read until values
are indexed, so a window of a multi-year archive costs only its own bytes.

- :func:`open_store`: a zarr store (a directory, e.g. WeatherBench2's ``1959-2023_01_10-...zarr``) or a
  netCDF file.
- :func:`standardize`: dimension and coordinate names to ``time, level, latitude, longitude``, whatever
  their spelling in the store (``lat``/``lon``, ``pressure_level``/``plev``/``isobaricInhPa``,
  ``valid_time``); a scalar ``time`` coordinate becomes a length-1 dimension. Latitude is put in
  north-to-south order (ERA5's own), longitude in ascending order in ``[0, 360)``.
- :func:`select`: one variable at the requested pressure levels (by value, in hPa), as ``(time, level,
  latitude, longitude)``; the errors name the store, the variable and what it has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

ALIASES = {
    "time": ("time", "valid_time", "date"),
    "level": ("level", "pressure_level", "plev", "isobaricInhPa", "lev"),
    "latitude": ("latitude", "lat"),
    "longitude": ("longitude", "lon"),
}


class DataError(ValueError):
    """A data store does not have what the config asks for; the message names the store and the field."""


def open_store(path: str | os.PathLike) -> xr.Dataset:
    """Open a zarr store or a netCDF file lazily (no values are read)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data store {p} does not exist")
    try:
        if p.is_dir() or p.suffix == ".zarr":
            return xr.open_zarr(p, chunks=None)
        return xr.open_dataset(p, chunks=None)
    except Exception as e:  # the backends raise many types for unreadable stores
        raise DataError(f"data store {p} could not be opened ({type(e).__name__}: {e})") from e


def _find(ds: xr.Dataset, canonical: str) -> str | None:
    names = set(ds.dims) | set(ds.coords)
    return next((a for a in ALIASES[canonical] if a in names), None)


def standardize(ds: xr.Dataset, source: str = "store") -> xr.Dataset:
    """Canonical names ``time, level, latitude, longitude``, latitude north to south, longitude in [0, 360)."""
    renames = {}
    for canonical in ALIASES:
        found = _find(ds, canonical)
        if found is not None and found != canonical:
            renames[found] = canonical
    ds = ds.rename(renames)
    for axis in ("latitude", "longitude"):
        if axis not in ds.dims:
            raise DataError(
                f"{source}: no {axis} dimension (looked for {list(ALIASES[axis])}); its dims are {dict(ds.sizes)}"
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


def select(ds: xr.Dataset, variable: str, levels: Sequence[float] | None, source: str = "store") -> xr.DataArray:
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


__all__ = ["ALIASES", "DataError", "open_store", "standardize", "select"]
