"""Real data on the model grid: every modality aligned by date, per split, normalized when read.

- :class:`Modality`: a source (:mod:`slams_jax.data.era5.stores`) on the state's grid, auxiliary ones
  regridded (conservatively or bilinearly, NaN kept as missing; :mod:`slams_jax.data.regrid`).
- :func:`align`: days are matched **by timestamp**, on one daily axis per split built from the config's
  date ranges; a day that a source lacks is reported, and either stops the run or is skipped (no window
  contains it) as ``config.data.era5.missing`` says.
- :func:`fit_normalization`: per modality and channel, on ``normalization_days`` evenly spaced days of the
  training period only (the statistics are :func:`slams_jax.data.normalization.fit_chunks`').
- :func:`load_splits`: each split as a dict of :class:`LazyModality` arrays ``(1, day, lat, lon, channel)``
  that read and normalize the rows they are indexed with, so :mod:`slams_jax.pipeline.training` uses them as
  it uses in-memory arrays; :func:`window_dataset`: one window in physical units, as xarray.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np
import xarray as xr

from slams_jax.data.datasets import SPLITS
from slams_jax.data.era5.stores import DAY, Source, open_source
from slams_jax.data.normalization import Normalization, fit_chunks
from slams_jax.data.regrid import Regridder
from slams_jax.data.settings import AuxSourceSettings, DataSettings, Era5Settings
from slams_jax.errors import DataError, MissingFileError


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

    Supports the indexing of :func:`slams_jax.data.datasets.gather` (integer arrays for the first two axes).
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


def _sources(data: DataSettings) -> dict[str, Source]:
    e = data.era5
    state = data.state
    if not data.era5_path:
        raise MissingFileError(
            "config.data.era5_path is empty: the era5 config needs the ERA5 store (WeatherBench2 layout: one "
            "zarr store; ChaosBench: the directory of daily zarr stores), e.g. --config.data.era5_path=/data/era5.zarr"
        )
    if len(state.variables) != len(e.levels):
        raise DataError(f"config.data.modalities[0] ({state.name!r}) names {len(state.variables)} channels "
                        f"but config.data.era5.levels has {len(e.levels)} levels")
    sources = {state.name: open_source(e.layout, data.era5_path, e.variable, list(e.levels), e.aggregation,
                                   f"ERA5 {data.era5_path}")}
    by_name = dict(e.aux)
    for m in data.modalities[1:]:
        a: AuxSourceSettings | None = by_name.get(m.name)
        if a is None or not a.path:
            raise DataError(f"modality {m.name!r} has no source: set config.data.era5.aux.{m.name}.path "
                            "and .variable")
        src = open_source(a.layout, a.path, a.variable, list(a.levels) or None, a.aggregation, f"{m.name} {a.path}")
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


def align(sources: Mapping[str, Source], days: np.ndarray, missing: str, what: str) -> np.ndarray:
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
        warnings.warn(f"{what}: skipping days missing in a source: " + "; ".join(report), stacklevel=2)
    return present


def fit_normalization(modalities: Mapping[str, Modality], days: np.ndarray, n_days: int) -> Normalization:
    """Per modality and channel mean and std (NaN-aware) over ``n_days`` evenly spaced training days.

    The sample of :func:`slams_jax.data.normalization.fit_chunks`, read 32 days at a time.
    """
    pick = days[np.unique(np.linspace(0, len(days) - 1, min(n_days, len(days))).astype(int))]
    return fit_chunks({name: _chunks(m, pick) for name, m in modalities.items()}, f"on the {len(pick)} training days")


def _chunks(modality: Modality, days: np.ndarray, size: int = 32):
    """``modality`` on ``days``, read ``size`` days at a time: ``(<= size, lat, lon, channel)`` each."""
    for lo in range(0, len(days), size):
        yield modality.read(days[lo:lo + size])


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


__all__ = ["Modality", "LazyModality", "align", "fit_normalization", "load_splits", "window_dataset"]
