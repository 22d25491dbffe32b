"""What every method receives: the state observed as a setting says, and the fixed auxiliary instruments.

The state of a test window is observed every ``study.every`` steps, through a block mean of factor r
(``coarsen`` and ``noise`` sweeps) or on a regular lattice of points of gap g (``gap`` sweep), with noise of
std ``setting.std`` times the state's climatological std per channel. The lattice is the study's own
operator (the pipeline's :class:`~slams_jax.pipeline.configuration.ObservationSettings` draws random points,
not a lattice), and the latent setting keeps a block mean of factor 1 where r divides down to one latent
cell, so the state's operator is built here rather than by
:func:`slams_jax.pipeline.assimilation.build_operator`.

The auxiliary instruments (``config.aux``, an OLR swath, a rain-gauge network) are the pipeline's
observation settings and its operator builder; each is drawn once for the whole study: real networks do
not move between windows, and one structure keeps every window of a setting in one compiled program.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from slams_jax.observation.observations import Observation, observe
from slams_jax.observation.operators import Coarsen, Operator, TimeSubsample, regular_points
from slams_jax.pipeline.assimilation import build_operator
from slams_jax.pipeline.configuration import ObservationSettings
from slams_jax.studies.ablation.settings import StudyError
from slams_jax.studies.ablation.sweeps import Setting


def state_operator(setting: Setting, grid: tuple[int, int], every: int) -> Operator:
    """Time subsampling, then a block mean (coarsen sweeps) or a regular lattice of points (gap sweep)."""
    time_op = TimeSubsample(every) if every > 1 else None
    space = regular_points(grid, setting.gap) if setting.gap else Coarsen(setting.coarsen)
    return space if time_op is None else time_op >> space


def latent_setting(setting: Setting, downsample: int) -> Setting:
    """The paper's latent setting: coarsening factor and gap in latent cells (divided by the downsampling)."""
    return dataclasses.replace(setting, coarsen=max(1, round(setting.coarsen / downsample)),
                               gap=max(1, round(setting.gap / downsample)) if setting.gap else 0)


def state_observation(key, truth: np.ndarray, setting: Setting, every: int, state: str,
                      state_std: tuple[float, ...]) -> Observation:
    """The state ``truth`` ``(time, lat, lon, channel)`` observed as ``setting`` says.

    Args:
        key: The noise key of this window and setting.
        truth: The true state of the window, physical units.
        setting: How it is observed; ``every``: observed every ``every`` steps.
        state, state_std: The state's modality name and its climatological std per channel.
    """
    op = state_operator(setting, truth.shape[1:3], every)
    std = tuple(setting.std * s for s in state_std)
    return observe(key, truth, op, std, modality=state, name=f"{state}:{setting.label}")


def aux_operator(key, truths: list[dict[str, np.ndarray]], spec: ObservationSettings) -> Operator:
    """The instrument of ``config.aux.<name>``, fixed for the whole study (a swath or a gauge network).

    Gauges are drawn once, where the modality is defined in every test window (e.g. precipitation over land
    only): the pipeline's builder draws among the cells finite at every time of the truth it is given, here
    the windows' truths one after the other.

    Args:
        key: The instrument's key.
        truths: Per test window, ``{modality: (time, lat, lon, channel)}``.
        spec: The instrument's observation settings.
    """
    if not (spec.swath_footprint or spec.points):
        raise StudyError(f"config.aux for {spec.modality!r}: expected swath_footprint > 0 or points > 0")
    return build_operator(spec, np.concatenate([t[spec.modality] for t in truths], axis=0), key)


def aux_observation(key, truth: Mapping[str, np.ndarray], spec: ObservationSettings, op: Operator,
                    modality_std: tuple[float, ...]) -> Observation:
    """One auxiliary observation (``config.aux.<name>``) of a window through its study-wide operator.

    The noise std is ``spec.std`` (physical units) if set, else ``spec.relative_std`` times the modality's
    climatological std ``modality_std`` of each observed channel.
    """
    return observe(key, truth[spec.modality], op, spec.noise_std(modality_std), modality=spec.modality,
                   name=f"{spec.modality}:aux")


__all__ = ["state_operator", "latent_setting", "state_observation", "aux_operator", "aux_observation"]
