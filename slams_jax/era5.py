"""Real data: ERA5 and gridded auxiliary modalities through xarray, aligned by date, streamed lazily.

Stores are opened lazily: nothing is read until values are indexed, so a window of a multi-year archive
costs only its own bytes. The pieces:

- :func:`open_store`: a zarr store (a directory, e.g. WeatherBench2's ``1959-2023_01_10-...zarr``) or a
  netCDF file.
- :func:`standardize`: dimension and coordinate names to ``time, level, latitude, longitude``, whatever
  their spelling in the store (``lat``/``lon``, ``pressure_level``/``plev``/``isobaricInhPa``,
  ``valid_time``); a scalar ``time`` coordinate becomes a length-1 dimension. Latitude is put in
  north-to-south order (ERA5's own), longitude in ascending order in ``[0, 360)``.
- :func:`select`: one variable at the requested pressure levels (by value, in hPa), as ``(time, level,
  latitude, longitude)``; the errors name the store, the variable and what it has.
- :class:`StoreSource` (one store: WeatherBench2, CPC, NOAA OLR, any netCDF/zarr) and
  :class:`ChaosBenchSource` (one zarr per day): the days a source has, and the daily states of any days
  (sub-daily values averaged, or the first one taken), ``(day, channel, latitude, longitude)``.
- :func:`load_splits`: every modality on the state's grid (auxiliary ones regridded, conservatively or
  bilinearly, NaN kept as missing), on one daily axis per split built from the config's date ranges.
  Days are matched **by timestamp**; a day that a source lacks is reported, and either stops the run or
  is skipped (no window contains it) as ``config.data.era5.missing`` says. The normalization (per modality
  and channel) is fitted on days of the training period only. Each split is a dict of
  :class:`LazyModality` arrays ``(1, day, lat, lon, channel)`` that read and normalize the rows they are
  indexed with, so :mod:`slams_jax.train` uses them as it uses in-memory arrays.
- :func:`prepare` (``python -m slams_jax.prepare``): the same arrays written once as normalized ``.npy``
  files, memory-mapped by later runs (``config.data.era5.prepared``) for faster epochs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from slams_jax.configuration import AuxSourceSettings, DataSettings, Era5Settings
from slams_jax.regrid import Regridder

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


DAY = np.timedelta64(1, "D")


def _days(times) -> np.ndarray:
    return np.asarray(times).astype("datetime64[D]")


class StoreSource:
    """One variable of one store (WeatherBench2 ERA5, CPC, NOAA OLR, any netCDF or zarr), read by day."""

    def __init__(self, path: str | os.PathLike, variable: str, levels: Sequence[float] | None,
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

    def read(self, days: Sequence[np.datetime64]) -> np.ndarray:
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

    def __init__(self, directory: str | os.PathLike, variable: str, levels: Sequence[float] | None,
                 aggregation: str = "mean", name: str = ""):
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"ChaosBench directory {root} does not exist")
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

    def read(self, days: Sequence[np.datetime64]) -> np.ndarray:
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


def _source(layout: str, path: str, variable: str, levels, aggregation: str, name: str):
    if layout == "chaosbench":
        return ChaosBenchSource(path, variable, levels, aggregation, name)
    return StoreSource(path, variable, levels, aggregation, name)


class Modality:
    """A source on the model grid: regridded (unless already on it) and normalized on read."""

    def __init__(self, name: str, source, lat: np.ndarray, lon: np.ndarray, method: str = "conservative"):
        self.name, self.source = name, source
        same = (source.latitude.shape == lat.shape and np.allclose(source.latitude, lat)
                and source.longitude.shape == lon.shape and np.allclose(source.longitude, lon))
        self.regridder = None if same else Regridder(source.latitude, source.longitude, lat, lon, method=method)
        self.shape = (len(lat), len(lon), source.channels)

    def read(self, days) -> np.ndarray:
        """``(len(days), lat, lon, channel)`` in physical units on the model grid."""
        x = self.source.read(days)
        if self.regridder is not None:
            x = self.regridder(x)
        return np.moveaxis(x, 1, -1).astype(np.float32)


class LazyModality:
    """``(1, day, lat, lon, channel)`` view of a modality over a split's days, read when indexed.

    Supports the indexing of :func:`slams_jax.datasets.gather` (integer arrays for the first two axes).
    ``present[0, i]`` tells whether day ``i`` exists in every source (windows avoid absent days).
    """

    ndim = 5
    dtype = np.dtype(np.float32)

    def __init__(self, modality: Modality, days: np.ndarray, present: np.ndarray, mean=None, std=None):
        self.modality, self.days, self.present = modality, days, present[None]
        self.shape = (1, len(days)) + modality.shape
        self.mean, self.std = mean, std

    def with_normalization(self, mean, std) -> "LazyModality":
        return LazyModality(self.modality, self.days, self.present[0], np.asarray(mean, np.float32),
                            np.asarray(std, np.float32))

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError("LazyModality is indexed with (trajectory, time) integer arrays")
        traj, time = np.broadcast_arrays(*(np.asarray(k) for k in key))
        if np.any(traj != 0):
            raise IndexError("a real-data split is one trajectory: its trajectory index is 0")
        if not self.present[0, time].all():
            raise DataError(f"modality {self.modality.name!r}: days {self.days[time][~self.present[0, time]][:5]} "
                            "are missing in a source")
        unique, inverse = np.unique(time.ravel(), return_inverse=True)
        x = self.modality.read(self.days[unique])
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x[inverse].reshape(time.shape + x.shape[1:])

    def __array__(self, dtype=None, copy=None):
        x = self[np.zeros(self.shape[1], int), np.arange(self.shape[1])][None]
        return x if dtype is None else x.astype(dtype)


def _sources(data: DataSettings) -> dict[str, object]:
    e = data.era5
    state = data.state
    if not data.era5_path:
        raise FileNotFoundError(
            "config.data.era5_path is empty: the era5 config needs the ERA5 store (WeatherBench2 layout: one "
            "zarr store; ChaosBench: the directory of daily zarr stores), e.g. --config.data.era5_path=/data/era5.zarr"
        )
    if len(state.variables) != len(e.levels):
        raise DataError(f"config.data.modalities[0] ({state.name!r}) names {len(state.variables)} channels "
                        f"but config.data.era5.levels has {len(e.levels)} levels")
    sources = {state.name: _source(e.layout, data.era5_path, e.variable, list(e.levels), e.aggregation,
                                   f"ERA5 {data.era5_path}")}
    by_name = dict(e.aux)
    for m in data.modalities[1:]:
        a: AuxSourceSettings | None = by_name.get(m.name)
        if a is None or not a.path:
            raise DataError(f"modality {m.name!r} has no source: set config.data.era5.aux.{m.name}.path "
                            "and .variable")
        src = _source(a.layout, a.path, a.variable, list(a.levels) or None, a.aggregation, f"{m.name} {a.path}")
        if src.channels != len(m.variables):
            raise DataError(f"modality {m.name!r}: {a.path} gives {src.channels} channel(s), the config names "
                            f"{len(m.variables)} ({', '.join(m.variables)})")
        sources[m.name] = src
    unknown = sorted(set(by_name) - {m.name for m in data.modalities})
    if unknown:
        raise DataError(f"config.data.era5.aux names modalities {unknown} that config.data.modalities lacks")
    return sources


def _split_days(e: Era5Settings, split: str) -> np.ndarray:
    lo, hi = (np.datetime64(d, "D") for d in getattr(e, split))
    return np.arange(lo, hi + DAY, DAY)


def align(sources: Mapping[str, object], days: np.ndarray, missing: str, what: str) -> np.ndarray:
    """Which of ``days`` every source has; a missing day is an error unless ``missing == "skip"``."""
    present = np.ones(len(days), bool)
    report = []
    for name, src in sources.items():
        has = np.isin(days, src.days)
        if not has.any():
            raise DataError(f"{what} ({days[0]} to {days[-1]}): source {src.name} has no data in that period "
                            f"(it covers {src.days[0]} to {src.days[-1]})")
        if not has.all():
            gone = days[~has]
            report.append(f"{src.name} lacks {len(gone)} day(s): {', '.join(map(str, gone[:5]))}"
                          f"{' ...' if len(gone) > 5 else ''}")
        present &= has
    if report and missing != "skip":
        raise DataError(f"{what}: " + "; ".join(report) + ". Set config.data.era5.missing='skip' to train without "
                        "the windows that contain them.")
    if report:
        import warnings

        warnings.warn(f"{what}: skipping days missing in a source: " + "; ".join(report), stacklevel=2)
    return present


def fit_normalization(modalities: Mapping[str, Modality], days: np.ndarray, n_days: int):
    """Per modality and channel mean and std (NaN-aware) over ``n_days`` evenly spaced training days."""
    from slams_jax.datasets import Normalization

    pick = days[np.unique(np.linspace(0, len(days) - 1, min(n_days, len(days))).astype(int))]
    mean, std = {}, {}
    for name, m in modalities.items():
        total = np.zeros(m.shape[-1]); sq = np.zeros(m.shape[-1]); count = np.zeros(m.shape[-1])  # noqa: E702
        for lo in range(0, len(pick), 32):
            x = m.read(pick[lo:lo + 32]).astype(np.float64).reshape(-1, m.shape[-1])
            ok = np.isfinite(x)
            total += np.where(ok, x, 0).sum(0)
            sq += np.where(ok, x * x, 0).sum(0)
            count += ok.sum(0)
        if (count == 0).any():
            raise DataError(f"modality {name!r}: a channel has no valid value on the {len(pick)} training days")
        mu = total / count
        mean[name] = tuple(float(v) for v in mu)
        std[name] = tuple(float(max(v, 1e-6)) for v in np.sqrt(np.maximum(sq / count - mu * mu, 0)))
    return Normalization(mean=mean, std=std)


def _modalities(data: DataSettings):
    """The sources and every modality on the state's grid: ``(sources, modalities, lat, lon)``."""
    sources = _sources(data)
    state = sources[data.state.name]
    lat, lon = state.latitude, state.longitude
    regrid = {name: a.regrid for name, a in data.era5.aux.items()}
    modalities = {name: Modality(name, src, lat, lon, regrid.get(name, "conservative"))
                  for name, src in sources.items()}
    return sources, modalities, lat, lon


def window_dataset(data: DataSettings, split: str, start: int, length: int) -> xr.Dataset:
    """``length`` days of a split from day ``start``, every modality variable in physical units on the state's
    grid, dims ``(time, latitude, longitude)`` (the truth of an assimilation window)."""
    sources, modalities, lat, lon = _modalities(data)
    days = _split_days(data.era5, split)
    if start < 0 or length < 1 or start + length > len(days):
        raise DataError(f"a window of {length} days from day {start} does not fit the {split} period "
                        f"{getattr(data.era5, split)} ({len(days)} days)")
    days = days[start:start + length]
    align(sources, days, "error", f"the {split} window {days[0]} to {days[-1]}")
    variables = {}
    for m in data.modalities:
        x = modalities[m.name].read(days)
        for c, v in enumerate(m.variables):
            variables[v] = (("time", "latitude", "longitude"), x[..., c], {"units": sources[m.name].units})
    coords = {"time": days.astype("datetime64[ns]"), "latitude": ("latitude", lat, {"units": "degrees_north"}),
              "longitude": ("longitude", lon, {"units": "degrees_east"})}
    return xr.Dataset(variables, coords=coords)


def load_splits(data: DataSettings):
    """``({split: {modality: LazyModality}}, normalization, grid)`` for the ``era5`` source."""
    from slams_jax.datasets import SPLITS

    sources, modalities, lat, lon = _modalities(data)
    splits = {}
    for split in SPLITS:
        days = _split_days(data.era5, split)
        present = align(sources, days, data.era5.missing, f"the {split} period")
        splits[split] = {name: LazyModality(m, days, present) for name, m in modalities.items()}
    train_days = splits["train"][data.state.name].days[splits["train"][data.state.name].present[0]]
    norm = fit_normalization(modalities, train_days, data.era5.normalization_days)
    splits = {s: {k: v.with_normalization(norm.mean[k], norm.std[k]) for k, v in arrays.items()}
              for s, arrays in splits.items()}
    return splits, norm, {"latitude": lat, "longitude": lon}


PREPARED_FORMAT = 1


def _fingerprint(data: DataSettings) -> dict:
    """What a prepared store depends on (paths, variables, levels, dates, modalities)."""
    from slams_jax.configuration import _plain

    e = _plain(data.era5)
    e.pop("prepared")
    return json.loads(json.dumps({"era5_path": str(Path(data.era5_path).absolute()), "era5": e,
                                  "modalities": _plain(data.modalities)}))


class PreparedArray:
    """A split's modality in a prepared store: a memory-mapped ``.npy`` file and the ``present`` mask."""

    ndim = 5
    dtype = np.dtype(np.float32)

    def __init__(self, data: np.ndarray, present: np.ndarray):
        self.data, self.present, self.shape = data, present, data.shape

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.data[key])

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype)


def prepare(data: DataSettings, out: str | os.PathLike, chunk_days: int = 32, progress: bool = True) -> Path:
    """Write every split's normalized modalities as ``.npy`` files under ``out`` (atomically), with a manifest.

    Returns:
        The store's path; train from it with ``--config.data.era5.prepared=<path>``.
    """
    import shutil

    from tqdm.auto import tqdm

    out = Path(out).absolute()
    splits, norm, grid = load_splits(data)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    total = sum(a.shape[1] for arrays in splits.values() for a in arrays.values())
    bar = tqdm(total=total, desc="prepare", unit="day", disable=not progress)
    days = {}
    for split, arrays in splits.items():
        for name, a in arrays.items():
            target = np.lib.format.open_memmap(tmp / f"{split}_{name}.npy", "w+", np.float32, a.shape)
            target[:] = np.nan
            present = np.flatnonzero(a.present[0])
            for lo in range(0, len(present), chunk_days):
                rows = present[lo:lo + chunk_days]
                target[0, rows] = a[np.zeros_like(rows), rows]
                bar.update(len(rows))
            bar.update(a.shape[1] - len(present))
            target.flush()
            del target
        first = next(iter(arrays.values()))
        np.save(tmp / f"{split}_present.npy", first.present)
        days[split] = [str(first.days[0]), str(first.days[-1])]
    bar.close()
    manifest = {"format": PREPARED_FORMAT, "fingerprint": _fingerprint(data), "normalization": norm.to_dict(),
                "latitude": grid["latitude"].tolist(), "longitude": grid["longitude"].tolist(), "days": days}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if out.exists():
        old = out.with_name(out.name + f".old{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    return out


def open_prepared(data: DataSettings):
    """``({split: {modality: PreparedArray}}, normalization)`` from ``config.data.era5.prepared``."""
    from slams_jax.datasets import SPLITS, Normalization

    root = Path(data.era5.prepared)
    path = root / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"config.data.era5.prepared={str(root)!r}: no prepared store there ({path} is "
                                "missing); write one with python -m slams_jax.prepare")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != PREPARED_FORMAT:
        raise DataError(f"{root}: prepared-store format {manifest.get('format')}, expected {PREPARED_FORMAT}")
    now = _fingerprint(data)
    if manifest["fingerprint"] != now:
        diffs = [k for k in now if manifest["fingerprint"].get(k) != now[k]]
        raise DataError(f"{root} was prepared for other data settings (differences in {diffs}); rerun "
                        "python -m slams_jax.prepare with this config")
    splits = {}
    for split in SPLITS:
        present = np.load(root / f"{split}_present.npy")
        splits[split] = {m.name: PreparedArray(np.load(root / f"{split}_{m.name}.npy", mmap_mode="r"), present)
                         for m in data.modalities}
    return splits, Normalization.from_dict(manifest["normalization"])


def grid_latitude(data: DataSettings) -> np.ndarray:
    """Latitudes (north to south) of the model grid: the prepared store's, or the state source's."""
    if data.era5.prepared:
        path = Path(data.era5.prepared) / "manifest.json"
        if path.exists():
            return np.asarray(json.loads(path.read_text())["latitude"])
    e = data.era5
    return _source(e.layout, data.era5_path, e.variable, list(e.levels), e.aggregation, "ERA5").latitude


def training_arrays(data: DataSettings):
    """The training pipeline's ``({split: arrays}, normalization)``: the prepared store if configured, else lazy."""
    if data.era5.prepared:
        return open_prepared(data)
    splits, norm, _ = load_splits(data)
    return splits, norm


__all__ = [
    "PreparedArray", "prepare", "grid_latitude", "open_prepared", "training_arrays",
    "ALIASES", "DataError", "open_store", "standardize", "select", "StoreSource", "ChaosBenchSource",
    "Modality", "LazyModality", "align", "fit_normalization", "load_splits", "window_dataset",
]
