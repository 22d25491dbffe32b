"""The experiment's data, whichever its source: the one place where Kolmogorov flow and gridded data part ways.

Two sources feed the same pipeline (``config.data.source``):

- ``kolmogorov`` (the embedded default): trajectories generated once and cached as netCDF
  (:mod:`slams_jax.data.datasets`), split by trajectory, held in memory;
- ``dataset``: any gridded netCDF or zarr data (ERA5 among them, ``configs/era5.py``), one trajectory per
  split, split by date, streamed lazily (:mod:`slams_jax.data.gridded`), or an ``xarray.Dataset`` passed
  in from Python. Its grid is geographic (latitude x longitude, in the files' order), so losses and
  scores can be weighted by cell area, and longitude wraps only where the grid spans the globe.

:func:`load_source` gives the training view of either (normalized splits, the normalization fitted on the
training split, the grid); :func:`load_window` the assimilation view (a window of the test split in
physical units, with its coordinates). Training, assimilation and the demo take their data from here, so a
third source would be added in this module only.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import numpy as np
import xarray as xr

from slams_jax.data import datasets, gridded
from slams_jax.data.settings import DataSettings
from slams_jax.errors import ConfigError


def is_geographic(data: DataSettings) -> bool:
    """Whether the source's grid is latitude x longitude (``dataset``), so cell-area weights exist."""
    return data.source == "dataset"


@dataclasses.dataclass(frozen=True)
class SourceData:
    """The normalized splits of an experiment's data, loaded once and passed on.

    Attributes:
        data: The data settings they were loaded with.
        arrays: ``{split: {modality: (trajectory, time, y, x, channel)}}``, normalized (in-memory arrays for
            Kolmogorov flow, lazy or memory-mapped ones for gridded data).
        normalization: Per-modality normalization, fitted on the training split.
        splits: The Kolmogorov splits as xarray datasets in physical units (the assimilation's truth is cut
            from them); ``None`` for gridded data, whose windows are read from the files by date.
        coordinates: The geographic grid (latitude, longitude in the files' order, periodic longitude), or
            ``None`` (Kolmogorov flow).
        dataset: The ``xarray.Dataset`` the data came from when passed in from Python, else ``None``.
    """

    data: DataSettings
    arrays: Mapping[str, datasets.Arrays]
    normalization: datasets.Normalization
    splits: Mapping[str, xr.Dataset] | None = None
    coordinates: gridded.Grid | None = None
    dataset: xr.Dataset | None = None

    @property
    def grid(self) -> list[int]:
        """Spatial shape ``[y, x]`` of a state."""
        return list(self.arrays["train"][self.data.state.name].shape[2:-1])

    def latitude(self) -> np.ndarray | None:
        """Latitudes of the grid's rows (in the files' order) on a geographic grid, else ``None``."""
        return None if self.coordinates is None else self.coordinates.latitude


def load_source(data: DataSettings, seed: int, workdir: str | os.PathLike,
                dataset: xr.Dataset | None = None, normalization: datasets.Normalization | None = None) -> SourceData:
    """Load (or generate), split and normalize the data; the normalization is fitted on the train split only.

    Args:
        data: The data settings.
        seed: The experiment's seed (the Kolmogorov trajectories are generated from it).
        workdir: Where generated data are cached (``WORKDIR/data`` unless ``data.cache_dir``).
        dataset: The ``dataset`` source's data in memory, in place of ``config.data.path``.
        normalization: A known normalization of gridded data (a trained model's): the training split is not
            read to fit it again.

    Returns:
        The :class:`SourceData`. Gridded data: lazy arrays that read the files (or the prepared store) by
        date as batches are drawn; nothing is loaded whole.
    """
    if is_geographic(data):
        arrays, norm, grid = gridded.training_arrays(data, dataset, normalization)
        return SourceData(data, arrays, norm, coordinates=grid, dataset=dataset)
    if dataset is not None:
        raise ConfigError("an xarray.Dataset was passed in but config.data.source='kolmogorov'; set "
                          "config.data.source='dataset' (configs/dataset.py)")
    ds = datasets.load_dataset(data, seed, workdir)
    splits = datasets.split_dataset(ds, data)
    raw = {name: datasets.to_arrays(split, data.modalities) for name, split in splits.items()}
    norm = datasets.fit_normalization(raw["train"])
    arrays = {name: datasets.normalize_arrays(a, norm) for name, a in raw.items()}
    return SourceData(data, arrays, norm, splits)


def load_window(data: DataSettings, seed: int, workdir: str | os.PathLike, trajectory: int, start: int | str,
                length: int, source: SourceData | None = None, dataset: xr.Dataset | None = None) -> xr.Dataset:
    """States ``start .. start + length - 1`` of one test trajectory, physical units, with coordinates.

    Args:
        data, seed, workdir: As for :func:`load_source`.
        trajectory, start, length: The window (``config.assimilation``); gridded data have one test
            trajectory (0), and ``start`` may be a date-time of it (``"2021-01-25T00"``; empty: its first state).
        source: The data already loaded by :func:`load_source`, if any (Kolmogorov flow is then not
            read again; an in-memory dataset is reused).
        dataset: The ``dataset`` source's data in memory, in place of ``config.data.path``.

    Returns:
        The window's data variables, dims ``(time, latitude, longitude)`` (gridded) or ``(time, y, x)``.
    """
    if is_geographic(data):
        if trajectory != 0:
            raise ConfigError(f"config.assimilation.trajectory={trajectory}: a dataset's test split is one "
                              "trajectory (0)")
        if dataset is None and source is not None:
            dataset = source.dataset
        if dataset is None and not data.path:
            raise ConfigError("this experiment was trained on an xarray.Dataset passed in from Python; pass it "
                              "again (assimilate(config, workdir, dataset=ds))")
        return gridded.window_dataset(data, "test", _index(start), length, dataset)
    start = _index(start)
    if isinstance(start, str):
        raise ConfigError(f"config.assimilation.start={start!r}: the {data.source} data have no dates; give a "
                          "state index")
    if source is not None and source.splits is not None:
        test = source.splits["test"]
    else:
        test = datasets.split_dataset(datasets.load_dataset(data, seed, workdir), data)["test"]
    n_traj, n_time = test.sizes["trajectory"], test.sizes["time"]
    if not 0 <= trajectory < n_traj:
        raise ConfigError(f"config.assimilation.trajectory={trajectory}: the test split has {n_traj} trajectories")
    if start < 0 or start + length > n_time:
        raise ConfigError(
            f"config.assimilation.start={start}, length={length}: the test trajectories have {n_time} states"
        )
    return test.isel(trajectory=trajectory, time=slice(start, start + length))


def _index(start: int | str) -> int | str:
    """``config.assimilation.start`` as an index where it is one (``3``, ``"3"``, ``""`` for 0), else the
    date-time text."""
    if not isinstance(start, str):
        return start
    text = start.strip()
    return 0 if not text else int(text) if text.lstrip("-").isdigit() else text


__all__ = ["SourceData", "is_geographic", "load_source", "load_window"]
