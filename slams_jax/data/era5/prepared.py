"""The prepared store: every split's normalized modalities written once as ``.npy`` files, memory-mapped after.

:func:`prepare` (``python -m slams_jax.prepare``) reads the splits of :func:`~slams_jax.data.era5.splits.load_splits`
once and writes, under one directory (atomically: a temporary directory renamed into place),
``<split>_<modality>.npy`` ``(1, day, lat, lon, channel)`` float32 (NaN on the days a source lacks),
``<split>_present.npy`` and a ``manifest.json`` with the normalization, the grid and a fingerprint of the
data settings. Later runs (``config.data.era5.prepared``) memory-map the arrays for faster epochs
(:func:`open_prepared`, refused when the fingerprint differs); :func:`training_arrays` picks the prepared
store or the lazy splits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from slams_jax.data.datasets import SPLITS
from slams_jax.data.era5.splits import load_splits
from slams_jax.data.era5.stores import open_source
from slams_jax.data.normalization import Normalization
from slams_jax.data.settings import DataSettings, to_plain
from slams_jax.errors import DataError, MissingFileError


PREPARED_FORMAT = 1


def _fingerprint(data: DataSettings) -> dict:
    """What a prepared store depends on (paths, variables, levels, dates, modalities)."""
    e = to_plain(data.era5)
    e.pop("prepared")
    return json.loads(json.dumps({"era5_path": str(Path(data.era5_path).absolute()), "era5": e,
                                  "modalities": to_plain(data.modalities)}))


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
    root = Path(data.era5.prepared)
    path = root / "manifest.json"
    if not path.exists():
        raise MissingFileError(f"config.data.era5.prepared={str(root)!r}: no prepared store there ({path} is "
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
    return open_source(e.layout, data.era5_path, e.variable, list(e.levels), e.aggregation, "ERA5").latitude


def training_arrays(data: DataSettings):
    """The training pipeline's ``({split: arrays}, normalization)``: the prepared store if configured, else lazy."""
    if data.era5.prepared:
        return open_prepared(data)
    splits, norm, _ = load_splits(data)
    return splits, norm


__all__ = ["PREPARED_FORMAT", "PreparedArray", "prepare", "open_prepared", "grid_latitude", "training_arrays"]
