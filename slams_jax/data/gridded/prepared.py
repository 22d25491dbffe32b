"""The prepared store: every split's normalized modalities written once as ``.npy`` files, memory-mapped after.

:func:`prepare` (``python -m slams_jax.prepare``) reads the splits of :func:`~slams_jax.data.gridded.splits.load_splits`
once and writes, under one directory (atomically: a temporary directory renamed into place),
``<split>_<modality>.npy`` ``(1, time, lat, lon, channel)`` float32 (NaN on the states a source lacks),
``<split>_present.npy``, ``<split>_times.npy`` and a ``manifest.json`` with the normalization, the grid and a fingerprint of the
data settings. Later runs (``config.data.prepared``) memory-map the arrays for faster epochs
(:func:`open_prepared`, refused when the fingerprint differs); :func:`training_arrays` picks the prepared
store or the lazy splits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from slams_jax.data.gridded.splits import SPLITS, Grid, load_splits
from slams_jax.data.normalization import Normalization
from slams_jax.data.settings import DataSettings, to_plain
from slams_jax.errors import DataError, MissingFileError


PREPARED_FORMAT = 3


def _fingerprint(data: DataSettings) -> dict:
    """What a prepared store depends on (paths, variables, cadence, dates, modalities)."""
    keep = ("variables", "cadence", "aggregation", "train", "valid", "test", "periodic", "missing",
            "normalization_states", "aux", "modalities")
    d = {k: v for k, v in to_plain(data).items() if k in keep}
    return json.loads(json.dumps({"path": str(Path(data.path).absolute()), **d}))


class PreparedArray:
    """A split's modality in a prepared store: a memory-mapped ``.npy`` file and the ``present`` mask."""

    ndim = 5
    dtype = np.dtype(np.float32)

    def __init__(self, data: np.ndarray, present: np.ndarray, times: np.ndarray | None = None):
        self.data, self.present, self.shape, self.times = data, present, data.shape, times

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.data[key])

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data, dtype)


def prepare(data: DataSettings, out: str | os.PathLike, chunk: int = 32, progress: bool = True) -> Path:
    """Write every split's normalized modalities as ``.npy`` files under ``out`` (atomically), with a manifest.

    Returns:
        The store's path; train from it with ``--config.data.prepared=<path>``.
    """
    import shutil

    from tqdm.auto import tqdm

    out = Path(out).absolute()
    splits, norm, grid = load_splits(data)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    total = sum(a.shape[1] for arrays in splits.values() for a in arrays.values())
    bar = tqdm(total=total, desc="prepare", unit="state", disable=not progress)
    times = {}
    for split, arrays in splits.items():
        for name, a in arrays.items():
            target = np.lib.format.open_memmap(tmp / f"{split}_{name}.npy", "w+", np.float32, a.shape)
            target[:] = np.nan
            present = np.flatnonzero(a.present[0])
            for lo in range(0, len(present), chunk):
                rows = present[lo:lo + chunk]
                target[0, rows] = a[np.zeros_like(rows), rows]
                bar.update(len(rows))
            bar.update(a.shape[1] - len(present))
            target.flush()
            del target
        first = next(iter(arrays.values()))
        np.save(tmp / f"{split}_present.npy", first.present)
        np.save(tmp / f"{split}_times.npy", first.times.astype("datetime64[ns]"))
        times[split] = [str(first.times[0]), str(first.times[-1])]
    bar.close()
    manifest = {"format": PREPARED_FORMAT, "fingerprint": _fingerprint(data), "normalization": norm.to_dict(),
                "grid": grid.to_dict(), "times": times}
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
    """``({split: {modality: PreparedArray}}, normalization, grid)`` from ``config.data.prepared``."""
    root = Path(data.prepared)
    path = root / "manifest.json"
    if not path.exists():
        raise MissingFileError(f"config.data.prepared={str(root)!r}: no prepared store there ({path} is "
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
        times = np.load(root / f"{split}_times.npy")
        splits[split] = {m.name: PreparedArray(np.load(root / f"{split}_{m.name}.npy", mmap_mode="r"), present, times)
                         for m in data.modalities}
    return splits, Normalization.from_dict(manifest["normalization"]), Grid.from_dict(manifest["grid"])


def training_arrays(data: DataSettings, dataset=None, normalization: Normalization | None = None):
    """The training pipeline's ``({split: arrays}, normalization, grid)``: the prepared store if configured,
    else the lazily read files (or ``dataset``, an ``xarray.Dataset`` in memory), normalized by
    ``normalization`` when given instead of a new fit."""
    if data.prepared:
        return open_prepared(data)
    return load_splits(data, dataset, normalization)


__all__ = ["PREPARED_FORMAT", "PreparedArray", "prepare", "open_prepared", "training_arrays"]
