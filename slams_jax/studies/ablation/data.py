"""The data every method shares: test windows in physical units and statistics of the training split.

The windows are disjoint blocks of ``study.length`` states of the test split with no missing day. The
classical methods' statistics come from training sequences of the same length (at most ``max_fit_states``
states in all), drawn without replacement with ``config.seed``. On a geographic grid (ERA5) every score is
weighted by cell area, from the grid's latitude.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from slams_jax.data import datasets
from slams_jax.pipeline.configuration import Settings
from slams_jax.pipeline.training import prepare_data
from slams_jax.studies.ablation.settings import AblationSettings, StudyError


@dataclasses.dataclass
class StudyData:
    """Physical-unit test windows and training statistics shared by every method."""

    state: str
    variables: tuple[str, ...]
    modalities: tuple[str, ...]
    norm: datasets.Normalization
    windows: list[tuple[int, int]]
    truths: list[dict[str, np.ndarray]]  # per window: {modality: (time, lat, lon, channel)}
    train_states: np.ndarray  # (n, lat, lon, channel), physical
    train_sequences: np.ndarray  # (trajectory, time, lat, lon, channel), physical
    latitude: np.ndarray | None = None  # (lat,) degrees on a geographic grid (ERA5), else None

    @functools.cached_property
    def weights(self) -> np.ndarray | None:
        """``(lat,)`` cell-area weights of every score on a geographic grid, else ``None``."""
        from slams_jax.data.regrid import area_weights

        return None if self.latitude is None else area_weights(self.latitude)


def window_starts(present: np.ndarray | None, n_traj: int, n_time: int, count: int, length: int,
                  spacing: str = "first") -> list[tuple[int, int]]:
    """``count`` disjoint windows ``(trajectory, start)`` of states that all exist (``present``, a
    ``(trajectory, time)`` mask on real data, or ``None``).

    ``first``: the first ones, one per test trajectory, then further along them. ``even``: evenly spaced over
    all of them (e.g. every season of ERA5's test years, which are one trajectory).
    """
    per_traj = n_time // length
    blocks = [(i % n_traj, (i // n_traj) * length) for i in range(n_traj * per_traj)]
    if present is not None:
        blocks = [(t, s) for t, s in blocks if present[t, s:s + length].all()]
    if count > len(blocks):
        raise StudyError(f"config.study.windows={count}: the test split has only {len(blocks)} disjoint windows of "
                         f"length {length} ({n_traj} trajectories x {n_time} states"
                         + (", without missing days)" if present is not None else ")"))
    if spacing == "first":
        return blocks[:count]
    if spacing == "even":
        return [blocks[i] for i in np.linspace(0, len(blocks) - 1, count).round().astype(int)]
    raise StudyError(f"config.study.window_spacing={spacing!r}: expected 'first' or 'even'")


def data_settings(s: AblationSettings, workdir: Path) -> Settings:
    """The experiment's settings with every modality (the auxiliary observations need their truths), its
    data cached where the models' are (``WORKDIR/data`` unless ``data.cache_dir`` is set)."""
    e = s.experiment_settings
    return dataclasses.replace(e, data=dataclasses.replace(e.data, cache_dir=e.data.cache_dir or str(workdir / "data")))


def _test_truths(test: Mapping[str, Any], norm: datasets.Normalization, windows: list[tuple[int, int]],
                 length: int) -> list[dict[str, np.ndarray]]:
    truths = []
    for traj, start in windows:  # integer indices: the lazy ERA5 arrays read only those days
        steps = np.arange(start, start + length)
        truths.append({name: norm.denormalize(name, np.asarray(a[traj, steps], np.float32))
                       for name, a in test.items()})
    return truths


def _training_sequences(train: Mapping[str, Any], state: str, norm: datasets.Normalization, seed: int,
                        length: int, max_fit_states: int) -> np.ndarray:
    """``(sequence, time, lat, lon, channel)`` physical training sequences of ``min(states, max(2, length))``
    states, at most ``max_fit_states`` states in all, without missing days."""
    states = train[state]
    n_traj, n_time = states.shape[:2]
    rng = np.random.default_rng(seed)
    seq_len = min(n_time, max(2, length))
    per_traj = n_time // seq_len
    blocks = np.arange(n_traj * per_traj)
    present = datasets.present_mask(train)
    if present is not None:  # training sequences without missing days
        blocks = blocks[present[:, :per_traj * seq_len].reshape(n_traj, per_traj, seq_len).all(-1).ravel()]
    n_seq = max(1, min(len(blocks), max_fit_states // seq_len))
    picks = rng.choice(blocks, size=n_seq, replace=False)
    traj, block = np.divmod(np.sort(picks), per_traj)
    seqs = np.stack([np.asarray(states[t, np.arange(b * seq_len, (b + 1) * seq_len)], np.float32)
                     for t, b in zip(traj, block)])
    return norm.denormalize(state, seqs)


def _grid_latitude(settings: Settings, n_lat: int) -> np.ndarray | None:
    """``(lat,)`` degrees of a geographic grid (every score weighted by cell area, as WeatherBench)."""
    if settings.data.source != "dataset":
        return None
    from slams_jax.data.gridded import open_modalities

    latitude = np.asarray(open_modalities(settings.data)[1].latitude, np.float64)
    if latitude.shape != (n_lat,):
        raise StudyError(f"the grid's latitude has {latitude.shape[0]} rows but the test split has {n_lat}")
    return latitude


def load_study_data(s: AblationSettings, workdir: Path, max_fit_states: int = 4096) -> StudyData:
    """The test windows and training statistics of the study (data under ``workdir / "models"``)."""
    settings = data_settings(s, workdir)
    arrays, norm = prepare_data(settings, workdir / "models")
    state = settings.data.state.name
    test = arrays["test"]
    shape = test[state].shape
    study = s.study
    windows = window_starts(datasets.present_mask(test), shape[0], shape[1], study.windows, study.length,
                            study.window_spacing)
    seqs = _training_sequences(arrays["train"], state, norm, s.seed, study.length, max_fit_states)
    return StudyData(state=state, variables=tuple(settings.data.state.variables),
                     modalities=tuple(m.name for m in settings.data.modalities), norm=norm, windows=windows,
                     truths=_test_truths(test, norm, windows, study.length),
                     train_states=seqs.reshape((-1,) + seqs.shape[2:]), train_sequences=seqs,
                     latitude=_grid_latitude(settings, shape[2]))


__all__ = ["StudyData", "window_starts", "data_settings", "load_study_data"]
