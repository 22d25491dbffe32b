"""The files of a gridded dataset: one netCDF file, one zarr store, a glob of them, or an in-memory xarray.

:func:`open_files` turns ``config.data.path`` into a list of lazily opened datasets (nothing is read until
values are indexed) with canonical names (:func:`standardize`): ``time``, ``level``, ``latitude``,
``longitude``, whatever their spelling in the file (:mod:`slams_jax.coords`). The grid is kept in the
file's own order: latitude may run north to south or south to north, longitude may be in ``[0, 360)`` or
``[-180, 180)`` and may cross the prime meridian or the antimeridian; nothing is sorted or wrapped, so the
neighbours of a cell stay its neighbours.

A path is read as:

- an existing netCDF file (``.nc``, ``.nc4``, ``.h5``...) or zarr store (a directory with zarr metadata, or
  a name ending in ``.zarr``);
- a directory of such files or stores (all of them, in name order: e.g. ChaosBench's one zarr per day);
- a glob pattern (``/data/era5/2021-*.nc``).

A file without a time coordinate takes its time from a ``YYYYMMDD`` stamp at the end of its name (one store
per day, as ChaosBench writes them).
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import numpy as np
import xarray as xr

from slams_jax import coords
from slams_jax.errors import DataError, MissingFileError

_NETCDF = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")
_ZARR_MARKERS = (".zgroup", ".zarray", "zarr.json", ".zmetadata")


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or (path.is_dir() and any((path / m).exists() for m in _ZARR_MARKERS))


def _paths(path: str) -> list[Path]:
    """The files and stores ``path`` names (see the module docstring), in name order."""
    p = Path(path)
    if p.exists():
        if p.is_file() or _is_zarr(p):
            return [p]
        found = sorted(q for q in p.iterdir() if _is_zarr(q) or (q.is_file() and q.suffix.lower() in _NETCDF))
        if not found:
            raise DataError(f"config.data.path={path!r}: the directory holds no netCDF file or zarr store")
        return found
    if glob.has_magic(path):
        found = sorted(Path(q) for q in glob.glob(path))
        if not found:
            raise MissingFileError(f"config.data.path={path!r}: the pattern matches no file")
        return found
    raise MissingFileError(f"config.data.path={path!r}: no such file, store or directory")


def open_store(path: str | os.PathLike) -> xr.Dataset:
    """One zarr store or netCDF file, opened lazily (no values are read)."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"data store {p} does not exist")
    try:
        if _is_zarr(p) or p.is_dir():
            return xr.open_zarr(p, chunks=None)
        return xr.open_dataset(p, chunks=None)
    except Exception as e:  # the backends raise many types for unreadable stores
        raise DataError(f"data store {p} could not be opened ({type(e).__name__}: {e})") from e


def _stamp(name: str) -> np.datetime64 | None:
    """The date of a name ending in exactly 8 digits ``YYYYMMDD`` (not 10: ``YYYYMMDDHH`` is not a day)."""
    m = re.search(r"(?<!\d)(\d{4})(\d{2})(\d{2})$", name)
    if m is None:
        return None
    try:
        return np.datetime64(f"{m.group(1)}-{m.group(2)}-{m.group(3)}", "ns")
    except ValueError:
        return None


def unwrap_longitude(lon: np.ndarray) -> np.ndarray:
    """Longitudes made continuous across a 0/360 or -180/180 seam (``[350, 355, 0, 5] -> [350, 355, 360, 365]``)."""
    return np.unwrap(np.asarray(lon, np.float64), period=360.0)


def coordinate_names(ds: xr.Dataset) -> dict[str, str]:
    """How the file spells ``time``, ``latitude`` and ``longitude`` (the canonical name when absent)."""
    names = set(ds.dims) | set(ds.coords)
    return {role: coords.find(names, role) or role for role in ("time", "latitude", "longitude")}


def standardize(ds: xr.Dataset, where: str) -> xr.Dataset:
    """Canonical names ``time, level, latitude, longitude``; the grid checked, never reordered.

    Args:
        ds: A dataset as opened.
        where: The file's name, for the messages.

    Returns:
        The dataset renamed, with a length-1 ``time`` dimension where it had a scalar time (or a date
        stamp in its name, see the module docstring).
    """
    names = set(ds.dims) | set(ds.coords)
    renames = {}
    for canonical in coords.ALIASES:
        found = coords.find(names, canonical)
        if found is not None and found != canonical:
            renames[found] = canonical
    ds = ds.rename(renames)
    for axis in ("latitude", "longitude"):
        if axis not in ds.dims:
            raise DataError(f"{where}: no {axis} dimension (looked for {list(coords.spellings(axis))}); "
                            f"its dims are {dict(ds.sizes)}")
    if "time" in ds.coords and "time" not in ds.dims:
        ds = ds.expand_dims("time")
    elif "time" not in ds.coords:
        stamp = _stamp(Path(where).stem)
        if stamp is None:
            raise DataError(f"{where}: no time coordinate (looked for {list(coords.spellings('time'))}) and no "
                            "YYYYMMDD date at the end of its name")
        ds = ds.expand_dims(time=[stamp]) if "time" not in ds.dims else ds.assign_coords(time=[stamp])
    lat = np.asarray(ds["latitude"].values, np.float64)
    if np.any(np.abs(lat) > 90):
        raise DataError(f"{where}: latitude values outside [-90, 90] (from {lat.min()} to {lat.max()})")
    if lat.size > 1 and not (np.all(np.diff(lat) > 0) or np.all(np.diff(lat) < 0)):
        raise DataError(f"{where}: latitude is not strictly monotonic")
    lon = unwrap_longitude(ds["longitude"].values)
    if lon.size > 1 and not (np.all(np.diff(lon) > 0) or np.all(np.diff(lon) < 0)):
        raise DataError(f"{where}: longitude is not strictly monotonic (modulo 360)")
    if lon.size > 1 and abs(lon[-1] - lon[0]) >= 360:
        raise DataError(f"{where}: longitude spans {abs(lon[-1] - lon[0])} degrees: a longitude appears twice "
                        "(e.g. both 0 and 360); drop the repeated column")
    return ds


def open_files(path: str | os.PathLike | xr.Dataset,
               what: str = "config.data.path") -> list[tuple[str, xr.Dataset, dict[str, str]]]:
    """``[(name, dataset, spellings)]``: every file of ``path`` opened lazily and :func:`standardize`-d, with how
    it spelled its coordinates (:func:`coordinate_names`, so outputs can use the file's names again).

    Args:
        path: A file, store, directory or glob (see the module docstring), or an ``xarray.Dataset``.
        what: How the path is named in messages.
    """
    if isinstance(path, xr.Dataset):
        return [("<xarray.Dataset>", standardize(path, f"{what} (the xarray.Dataset passed in)"),
                 coordinate_names(path))]
    if not str(path):
        raise MissingFileError(f"{what} is empty: set it to a netCDF file, a zarr store, a directory of them or a "
                               "glob (or pass an xarray.Dataset from Python)")
    out = []
    for p in _paths(str(path)):
        raw = open_store(p)
        out.append((str(p), standardize(raw, str(p)), coordinate_names(raw)))
    return out


__all__ = ["open_store", "open_files", "standardize", "coordinate_names", "unwrap_longitude"]
