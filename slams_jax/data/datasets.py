"""Datasets: generation and caching of the embedded default, splits and batches.

Arrays inside, xarray at the edges: a dataset is an ``xarray.Dataset`` whose data variables have dims
``(trajectory, time, y, x)``; :func:`to_arrays` stacks each modality's variables into a channels-last
array ``(trajectory, time, y, x, channel)`` (float32, NaN where the modality has no data, e.g. the ocean
for precipitation). Batches are drawn statelessly from a PRNG key, so a resumed run sees exactly the
batches an uninterrupted run would have seen. The normalization (:class:`Normalization`,
:func:`fit_normalization` over every training state) is :mod:`slams_jax.data.normalization`'s, re-exported here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Mapping

import jax
import numpy as np
import xarray as xr

from slams_jax._types import PRNGKey
from slams_jax.data import kolmogorov
from slams_jax.data.normalization import Normalization, fit_normalization, normalize_arrays
from slams_jax.data.settings import DataSettings, ModalitySettings

SPLITS = ("train", "valid", "test")
Arrays = dict[str, np.ndarray]


def _kolmogorov_cache_path(data: DataSettings, seed: int, workdir: str | os.PathLike) -> Path:
    spec = {
        "seed": seed,
        "n_trajectories": data.n_train + data.n_valid + data.n_test,
        "n_states": data.n_states,
        "solver": dataclasses.asdict(data.kolmogorov),
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(data.cache_dir) if data.cache_dir else Path(workdir) / "data"
    return root / f"kolmogorov-{digest}.nc"


def load_dataset(data: DataSettings, seed: int, workdir: str | os.PathLike) -> xr.Dataset:
    """The full dataset (all splits) as xarray, generated and cached on first use.

    The Kolmogorov-flow set is written once to ``WORKDIR/data/kolmogorov-<hash>.nc`` (atomically:
    a temporary file renamed into place) and reused while the generation settings are unchanged.
    """
    if data.source == "dataset":
        raise ValueError("load_dataset: the dataset source is read lazily by slams_jax.data.gridded.load_splits")
    path = _kolmogorov_cache_path(data, seed, workdir)
    if not path.exists():
        n = data.n_train + data.n_valid + data.n_test
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x4B4F4C)
        ds = kolmogorov.make_dataset(key, n, data.n_states, data.kolmogorov)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        ds.to_netcdf(tmp)
        os.replace(tmp, path)
    with xr.open_dataset(path) as ds:
        return ds.load()


def split_dataset(ds: xr.Dataset, data: DataSettings) -> dict[str, xr.Dataset]:
    """Split by trajectory: the first ``n_train``, then ``n_valid``, then ``n_test`` trajectories."""
    counts = (data.n_train, data.n_valid, data.n_test)
    total = ds.sizes.get("trajectory", 0)
    if sum(counts) > total:
        raise ValueError(
            f"config.data asks for {counts} train/valid/test trajectories but the dataset has {total}"
        )
    bounds = np.cumsum((0,) + counts)
    return {
        name: ds.isel(trajectory=slice(int(lo), int(hi)))
        for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:])
    }


def to_arrays(ds: xr.Dataset, modalities: tuple[ModalitySettings, ...]) -> Arrays:
    """Stack each modality's variables into ``(trajectory, time, y, x, channel)`` float32 arrays."""
    arrays = {}
    for m in modalities:
        missing = [v for v in m.variables if v not in ds.data_vars]
        if missing:
            raise KeyError(
                f"modality {m.name!r} needs variables {missing} that the dataset lacks; "
                f"it has {sorted(ds.data_vars)}"
            )
        parts = []
        for v in m.variables:
            da = ds[v]
            if da.ndim != 4 or da.dims[:2] != ("trajectory", "time"):
                raise ValueError(
                    f"variable {v!r} of modality {m.name!r} has dims {da.dims}; "
                    "expected ('trajectory', 'time', <latitude or y>, <longitude or x>)"
                )
            parts.append(np.asarray(da.values, np.float32))
        arrays[m.name] = np.stack(parts, axis=-1)
    shapes = {k: a.shape[:-1] for k, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"modalities disagree on (trajectory, time, y, x): {shapes}")
    return arrays


def present_mask(arrays: Arrays) -> np.ndarray | None:
    """``(trajectory, time)`` mask of the states that exist (real data with skipped days), or ``None``."""
    masks = [a.present for a in arrays.values() if getattr(a, "present", None) is not None]
    return np.logical_and.reduce(masks) if masks else None


def state_indices(key: PRNGKey, arrays: Arrays, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(trajectory, time)`` indices ``(batch,)`` of a batch of single states, drawn from ``key``."""
    first = next(iter(arrays.values()))
    n_traj, n_time = first.shape[:2]
    present = present_mask(arrays)
    if present is None:
        idx = np.asarray(jax.random.randint(key, (batch_size,), 0, n_traj * n_time))
    else:
        allowed = np.flatnonzero(present)
        idx = allowed[np.asarray(jax.random.randint(key, (batch_size,), 0, len(allowed)))]
    return np.divmod(idx, n_time)


def window_indices(key: PRNGKey, arrays: Arrays, batch_size: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(trajectory (batch,), time (batch, window))`` indices of a batch of windows, drawn from ``key``.

    With missing states (real data, ``present`` masks), only windows of states that all exist are drawn.
    """
    first = next(iter(arrays.values()))
    n_traj, n_time = first.shape[:2]
    if n_time < window:
        raise ValueError(f"trajectories have {n_time} states, fewer than the score window {window}")
    per_traj = n_time - window + 1
    present = present_mask(arrays)
    if present is None:
        idx = np.asarray(jax.random.randint(key, (batch_size,), 0, n_traj * per_traj))
    else:
        full = np.lib.stride_tricks.sliding_window_view(present, window, axis=1).all(-1)  # (traj, per_traj)
        allowed = np.flatnonzero(full)
        if not len(allowed):
            raise ValueError(f"no window of {window} consecutive states without a missing one")
        idx = allowed[np.asarray(jax.random.randint(key, (batch_size,), 0, len(allowed)))]
    traj, start = np.divmod(idx, per_traj)
    return traj, start[:, None] + np.arange(window)[None, :]


def gather(arrays: Arrays, traj: np.ndarray, time: np.ndarray) -> Arrays:
    """The states (``time (batch,)``) or windows (``time (batch, window)``) at the given indices."""
    if time.ndim == 2:
        traj = traj[:, None]
    return {k: a[traj, time] for k, a in arrays.items()}


def sample_states(key: PRNGKey, arrays: Arrays, batch_size: int) -> Arrays:
    """A batch of single states: ``{modality: (batch, y, x, channel)}``, indices drawn from ``key``."""
    return gather(arrays, *state_indices(key, arrays, batch_size))


def sample_windows(key: PRNGKey, arrays: Arrays, batch_size: int, window: int) -> Arrays:
    """A batch of windows of consecutive states: ``{modality: (batch, window, y, x, channel)}``."""
    return gather(arrays, *window_indices(key, arrays, batch_size, window))


def check_batch(batch: Mapping[str, np.ndarray], modalities: tuple[ModalitySettings, ...], what: str) -> None:
    """Raise a clear error for a batch with a missing modality, a wrong channel count or NaN in the state.

    Auxiliary modalities may hold NaN (missing data); the state modality may not.
    """
    for i, m in enumerate(modalities):
        if m.name not in batch:
            raise KeyError(f"{what}: modality {m.name!r} is missing from the batch (has {sorted(batch)})")
        a = batch[m.name]
        if a.shape[-1] != len(m.variables):
            raise ValueError(
                f"{what}: modality {m.name!r} has {a.shape[-1]} channels, expected {len(m.variables)} "
                f"({', '.join(m.variables)}); shape {a.shape}"
            )
        if i == 0:
            bad = ~np.isfinite(a)
            if bad.any():
                chans = [m.variables[c] for c in np.unique(np.nonzero(bad)[-1])]
                raise ValueError(
                    f"{what}: state modality {m.name!r} has {int(bad.sum())} NaN/inf values "
                    f"(channels {chans}); the state must be complete"
                )


__all__ = [
    "SPLITS", "Normalization", "load_dataset", "split_dataset", "to_arrays", "fit_normalization",
    "normalize_arrays", "state_indices", "window_indices", "gather", "sample_states", "sample_windows",
    "check_batch", "present_mask",
]
