"""What training refuses before any optimisation step, and the settings that follow from the data.

:func:`resolve_settings` replaces every ``"auto"`` padding by the one the grid calls for
(:func:`slams_jax.data.gridded.resolve_padding`: circular longitude only on a global grid, the pole
padding only where the rows reach both poles), so the user sets nothing for a regional grid, and refuses
an explicit choice the grid cannot take. :func:`check_splits` makes sure every split the stages read holds
a window of consecutive states (``2 * order + 1`` for the scores), naming the option to change.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from slams_jax.data.datasets import present_mask
from slams_jax.data.gridded import resolve_padding
from slams_jax.errors import ConfigError
from slams_jax.pipeline.configuration import Settings
from slams_jax.pipeline.sources import SourceData

_SCORE_STAGES = {"score": "score", "pixel_score": "pixel_score"}


def resolve_settings(settings: Settings, source: SourceData) -> Settings:
    """``settings`` with the networks' paddings resolved against the data's grid (see the module docstring)."""
    grid = source.coordinates

    def resolved(group, name: str):
        # every level pads: a U-Net's levels halve the grid (stride 2), the autoencoder works at full and at
        # downsampled resolution
        levels = len(group.hidden_channels) if name != "autoencoder" else 1 + int(np.log2(max(group.downsample, 1)))
        return dataclasses.replace(group, padding=resolve_padding(group.padding, grid, f"config.{name}.padding",
                                                                  divisor=2 ** levels))

    return dataclasses.replace(settings, autoencoder=resolved(settings.autoencoder, "autoencoder"),
                               score=resolved(settings.score, "score"),
                               pixel_score=resolved(settings.pixel_score, "pixel_score"))


def longest_run(present: np.ndarray) -> int:
    """The most consecutive ``True`` in any row of a ``(trajectory, time)`` mask."""
    best = 0
    for row in np.atleast_2d(present):
        edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        best = max(best, int((ends - starts).max()) if starts.size else 0)
    return best


def check_splits(settings: Settings, source: SourceData) -> None:
    """Every split the score stages train and validate on holds a full window of states.

    Raises:
        ConfigError: naming the split's option (``config.data.train`` ..., or ``config.data.n_states``) and
            the score's ``order``.
    """
    for stage in settings.stages:
        if stage not in _SCORE_STAGES:
            continue
        score = getattr(settings, _SCORE_STAGES[stage])
        for split in ("train", "valid"):
            arrays = source.arrays[split]
            first = next(iter(arrays.values()))
            present = present_mask(arrays)
            run = first.shape[1] if present is None else longest_run(present)
            if run >= score.window:
                continue
            if source.coordinates is not None:
                option = f"config.data.{split}={tuple(getattr(settings.data, split))}"
                what = f"{run} consecutive state(s) at cadence {settings.data.cadence or 'of the files'}"
            else:
                option, what = f"config.data.n_states={settings.data.n_states}", f"{run} states per trajectory"
            raise ConfigError(f"{option}: the {split} split holds {what}, fewer than the {stage} window "
                              f"{score.window} (2 * config.{_SCORE_STAGES[stage]}.order + 1); widen the period or "
                              "lower the order")


__all__ = ["resolve_settings", "check_splits", "longest_run"]
