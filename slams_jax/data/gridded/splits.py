"""The ``dataset`` source on the model grid: every modality on one time axis per split, normalized when read.

- :class:`Grid`: the state's grid as the files have it (never reordered) and whether longitude wraps
  (``config.data.periodic``: detected when ``"auto"``, a grid spanning the globe; ``"yes"``/``"no"``).
- :class:`Modality`: a :class:`~slams_jax.data.gridded.source.GriddedSource` on the state's grid, auxiliary
  ones regridded (conservatively or bilinearly, NaN kept as missing; :mod:`slams_jax.data.regrid`).
- :func:`align`: a split's state times (``config.data.train`` ... at ``config.data.cadence``); a state
  that a source lacks is reported, and either stops the run or is skipped (no window contains it) as
  ``config.data.missing`` says; a split with no data at all names the option and the data's coverage.
- :func:`fit_normalization`: per modality and channel, on ``normalization_states`` training states drawn at
  random (seeded; evenly spaced ones alias with the diurnal cycle), :func:`slams_jax.data.normalization.fit_chunks`.
- :func:`load_splits`: each split as a dict of :class:`LazyModality` arrays ``(1, time, lat, lon, channel)``
  that read and normalize the rows they are indexed with; :func:`window_dataset`: one window in physical
  units, as xarray.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Mapping

import numpy as np
import xarray as xr

from slams_jax.data.gridded.files import unwrap_longitude
from slams_jax.data.gridded.source import GriddedSource
from slams_jax.data.normalization import Normalization, fit_chunks
from slams_jax.data.regrid import Regridder
from slams_jax.data.regrid.grid import GLOBAL_GAP_FACTOR
from slams_jax.data.settings import DataSettings
from slams_jax.errors import DataError

SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Grid:
    """The state's grid: ``latitude`` and ``longitude`` in the files' order and values; ``periodic`` longitude."""

    latitude: np.ndarray
    longitude: np.ndarray
    periodic: bool

    def to_dict(self) -> dict:
        return {"latitude": self.latitude.tolist(), "longitude": self.longitude.tolist(), "periodic": self.periodic}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Grid":
        return cls(np.asarray(d["latitude"], np.float64), np.asarray(d["longitude"], np.float64), bool(d["periodic"]))


def detect_periodic(longitude: np.ndarray) -> bool:
    """Whether a longitude axis spans the globe (its gap round the seam is about one spacing)."""
    lon = unwrap_longitude(longitude)  # contiguous, so a regional grid across 0 E keeps its real span
    if lon.size < 3:
        return False
    step = np.abs(np.diff(lon))
    return bool(360.0 - abs(lon[-1] - lon[0]) <= GLOBAL_GAP_FACTOR * step.max())


class Modality:
    """A source on the model grid: regridded (unless already on it)."""

    def __init__(self, name: str, source: GriddedSource, lat: np.ndarray, lon: np.ndarray, method: str):
        self.name, self.source = name, source
        same = (source.latitude.shape == lat.shape and np.allclose(source.latitude, lat)
                and source.longitude.shape == lon.shape and np.allclose(source.longitude, lon))
        self.regridder = None if same else Regridder(source.latitude, unwrap_longitude(source.longitude), lat,
                                                     unwrap_longitude(lon), method=method)
        self.shape = (len(lat), len(lon), len(source.channels))

    def read(self, times) -> np.ndarray:
        """``(len(times), lat, lon, channel)`` in physical units on the model grid."""
        x = self.source.read(times)
        if self.regridder is not None:
            x = self.regridder(x)
        return np.moveaxis(x, 1, -1).astype(np.float32)


class LazyModality:
    """``(1, time, lat, lon, channel)`` view of a modality over a split's times, read when indexed.

    Supports the indexing of :func:`slams_jax.data.datasets.gather` (integer arrays for the first two axes).
    ``present[0, i]`` tells whether state ``i`` exists in every source (windows avoid absent states).
    """

    ndim = 5
    dtype = np.dtype(np.float32)

    def __init__(self, modality: Modality, times: np.ndarray, present: np.ndarray, mean=None, std=None):
        self.modality, self.times, self.present = modality, times, present[None]
        self.shape = (1, len(times)) + modality.shape
        self.mean, self.std = mean, std

    def with_normalization(self, mean, std) -> "LazyModality":
        return LazyModality(self.modality, self.times, self.present[0], np.asarray(mean, np.float32),
                            np.asarray(std, np.float32))

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError("LazyModality is indexed with (trajectory, time) integer arrays")
        traj, time = np.broadcast_arrays(*(np.asarray(k) for k in key))
        if np.any(traj != 0):
            raise IndexError("a dataset split is one trajectory: its trajectory index is 0")
        if not self.present[0, time].all():
            raise DataError(f"modality {self.modality.name!r}: times {self.times[time][~self.present[0, time]][:5]} "
                            "are missing in a source")
        unique, inverse = np.unique(time.ravel(), return_inverse=True)
        x = self.modality.read(self.times[unique])
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x[inverse].reshape(time.shape + x.shape[1:])

    def __array__(self, dtype=None, copy=None):
        x = self[np.zeros(self.shape[1], int), np.arange(self.shape[1])][None]
        return x if dtype is None else x.astype(dtype)


def open_modalities(data: DataSettings, dataset: xr.Dataset | None = None) -> tuple[dict[str, Modality], Grid]:
    """Every modality of ``data`` on the state's grid, and that grid.

    Args:
        data: The ``dataset`` source's settings.
        dataset: The data in memory, in place of ``config.data.path`` (and of every empty aux path).
    """
    where = dataset if dataset is not None else data.path
    state = GriddedSource(where, data.variables, data.cadence, data.aggregation, "config.data")
    lat, lon = state.latitude, state.longitude
    periodic = detect_periodic(lon) if data.periodic == "auto" else data.periodic == "yes"
    modalities = {data.state.name: Modality(data.state.name, state, lat, lon, "bilinear")}
    for name, a in data.aux.items():
        src = GriddedSource(a.path or where, a.variables, data.cadence, a.aggregation or data.aggregation,
                            f"config.data.aux.{name}")
        if src.step != state.step:
            raise DataError(f"config.data.aux.{name}: its files' step {src.step} differs from the state's {state.step}; "
                            "set config.data.cadence to resample both")
        modalities[name] = Modality(name, src, lat, lon, a.regrid)
    return modalities, Grid(lat, lon, periodic)


def split_times(data: DataSettings, modalities: Mapping[str, Modality], split: str) -> np.ndarray:
    """The state times of ``split`` at the state's cadence."""
    return modalities[data.state.name].source.axis(*getattr(data, split))


def align(modalities: Mapping[str, Modality], times: np.ndarray, missing: str, what: str) -> np.ndarray:
    """Which of ``times`` every source has; a missing state is an error unless ``missing == "skip"``."""
    if not times.size:
        raise DataError(f"{what} holds no state time")
    present = np.ones(len(times), bool)
    report = []
    for m in modalities.values():
        src = m.source
        has = src.present(times)
        if not has.any():
            raise DataError(f"{what} ({times[0]} to {times[-1]}): {src.name} has no data in that period (its files "
                            f"cover {src.times[0]} to {src.times[-1]}); change the dates")
        if not has.all():
            gone = times[~has]
            outside = (gone < src.times[0]) | (gone > src.times[-1])
            where = (f" (outside its files' {src.times[0]} to {src.times[-1]}: shorten the period)" if outside.all()
                     else "")
            report.append(f"{src.name} lacks {len(gone)} state(s){where}: {', '.join(map(str, gone[:5]))}"
                          f"{' ...' if len(gone) > 5 else ''}")
        present &= has
    if report and missing != "skip":
        raise DataError(f"{what}: " + "; ".join(report) + ". Set config.data.missing='skip' to train without "
                        "the windows that contain them.")
    if report:
        warnings.warn(f"{what}: skipping states missing in a source: " + "; ".join(report), stacklevel=2)
    return present


def sample_indices(count: int, n: int, seed: int = 0) -> np.ndarray:
    """``min(n, count)`` sorted distinct indices of ``range(count)``, drawn at random (seeded): evenly spaced
    picks alias with the diurnal cycle (366 of a year of hourly states fall at one hour of the day)."""
    if n >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, n, replace=False))


def fit_normalization(modalities: Mapping[str, Modality], times: np.ndarray, n: int) -> Normalization:
    """Per modality and channel mean and std (NaN-aware) over ``n`` training states drawn at random."""
    pick = times[sample_indices(len(times), n)]

    def chunks(m: Modality, size: int = 32):
        for lo in range(0, len(pick), size):
            yield m.read(pick[lo:lo + size])

    return fit_chunks({name: chunks(m) for name, m in modalities.items()}, f"on the {len(pick)} training states")


def _state_index(modalities, data: DataSettings, times: np.ndarray, split: str, when: str) -> int:
    """The index in ``times`` (``split``'s axis) of the state at the date-time ``when``."""
    try:
        t = np.datetime64(str(when).strip(), "ns")
    except ValueError:
        raise DataError(f"config.assimilation.start={when!r}: not a state index nor a date-time") from None
    hit = np.flatnonzero(times == t)
    if not hit.size:
        step = modalities[data.state.name].source.step
        raise DataError(f"config.assimilation.start={when!r}: no state of the {split} split ({times[0]} to "
                        f"{times[-1]}, every {step.astype('timedelta64[m]')}) is at that time")
    return int(hit[0])


def window_dataset(data: DataSettings, split: str, start: int | str, length: int,
                   dataset: xr.Dataset | None = None) -> xr.Dataset:
    """``length`` states of a split from state ``start`` (an index, or a date-time of the split such as
    ``"2021-01-25T00"``), every modality variable in physical units on the state's grid (the truth of an
    assimilation window).

    The dims are ``(time, <lat>, <lon>)`` with the state files' own latitude and longitude names, values
    (dtype included) and attributes; ``attrs["time_name"]`` is how the files name time (the outputs use it)
    and ``attrs["periodic_longitude"]`` whether longitude wraps.
    """
    modalities, grid = open_modalities(data, dataset)
    times = split_times(data, modalities, split)
    if isinstance(start, str):
        start = _state_index(modalities, data, times, split, start)
    if start < 0 or length < 1 or start + length > len(times):
        raise DataError(f"config.assimilation.start={start}, length={length}: the window does not fit the {split} "
                        f"period {getattr(data, split)} ({len(times)} states)")
    times = times[start:start + length]
    align(modalities, times, "error", f"the {split} window {times[0]} to {times[-1]}")
    spelled = modalities[data.state.name].source.coordinates
    (lat, lat_values, lat_attrs), (lon, lon_values, lon_attrs) = spelled["latitude"], spelled["longitude"]
    variables = {}
    for m in data.modalities:
        x = modalities[m.name].read(times)
        units = modalities[m.name].source.units
        for c, v in enumerate(m.variables):
            variables[v] = (("time", lat, lon), x[..., c], {"units": units[c]})
    time_attrs = {k: v for k, v in spelled["time"][2].items() if k not in ("units", "calendar")}  # encoding's
    coords = {"time": ("time", times.astype("datetime64[ns]"), time_attrs),
              lat: (lat, lat_values, {"units": "degrees_north", **lat_attrs}),
              lon: (lon, lon_values, {"units": "degrees_east", **lon_attrs})}
    return xr.Dataset(variables, coords=coords,
                      attrs={"periodic_longitude": int(grid.periodic), "time_name": spelled["time"][0]})


def load_splits(data: DataSettings, dataset: xr.Dataset | None = None, normalization: Normalization | None = None):
    """``({split: {modality: LazyModality}}, normalization, grid)`` of the ``dataset`` source; the normalization
    is fitted on the training split unless a known one (a checkpoint's) is given."""
    modalities, grid = open_modalities(data, dataset)
    splits = {}
    for split in SPLITS:
        times = split_times(data, modalities, split)
        present = align(modalities, times, data.missing, f"config.data.{split}={tuple(getattr(data, split))}")
        splits[split] = {name: LazyModality(m, times, present) for name, m in modalities.items()}
    first = splits["train"][data.state.name]
    norm = normalization or fit_normalization(modalities, first.times[first.present[0]], data.normalization_states)
    splits = {s: {k: v.with_normalization(norm.mean[k], norm.std[k]) for k, v in arrays.items()}
              for s, arrays in splits.items()}
    return splits, norm, grid


__all__ = ["SPLITS", "Grid", "detect_periodic", "sample_indices", "Modality", "LazyModality", "open_modalities", "split_times", "align",
           "fit_normalization", "window_dataset", "load_splits"]
