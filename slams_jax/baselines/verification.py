r"""Scores of an ensemble of trajectories at observations: withheld stations, points, any linear network.

:func:`scores_at_observations` maps every member through each observation's operator and scores the
members against the observed values with :func:`slams_jax.metrics.ensemble_scores` (RMSE of the mean, bias,
spread, spread-skill, CRPS, W1), so a 3D-Var ensemble and a score-based posterior are scored the same way.

Against noisy observations a calibrated ensemble of :math:`M` members has
:math:`E(\bar x - y)^2 = (1 + 1/M)\,\mathrm{spread}^2 + s^2` (the error of the mean plus the noise
:math:`s` of the observation), so next to the plain ``spread_skill`` (1 when calibrated against a
noise-free truth) the scores add ``spread_skill_noise``
:math:`= \sqrt{(1 + 1/M)\,\mathrm{spread}^2 + s^2} / \mathrm{RMSE}`, which is 1 for a calibrated
ensemble checked against observations with noise :math:`s`.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import ArrayLike, Float
from slams_jax.errors import ObservationError
from slams_jax.metrics import ensemble_scores
from slams_jax.observation.observations import Observation


def spread_skill_noise(spread: float, rmse: float, noise: float, members: int) -> float:
    """:math:`\\sqrt{(1 + 1/M)\\,\\mathrm{spread}^2 + s^2} / \\mathrm{RMSE}`: 1 for a calibrated ensemble of
    ``members`` scored against observations with noise std ``noise`` (NaN for one member or a zero RMSE)."""
    if members < 2 or not rmse > 0:
        return math.nan
    return math.sqrt((1 + 1 / members) * spread**2 + noise**2) / rmse


def _channel_names(obs: Observation, channels, count: int) -> tuple[str, ...]:
    names = channels.get(obs.name) if isinstance(channels, Mapping) else channels
    if names is None:
        return tuple(str(c) for c in range(count))
    names = tuple(str(n) for n in names)
    if len(names) != count:
        raise ObservationError(
            f"scores_at_observations: {len(names)} channel names {names} for observation {obs.name!r}, whose "
            f"values have {count} channels (last axis of shape {obs.values.shape})"
        )
    return names


def scores_at_observations(
    ensemble: Float[ArrayLike, "member time lat lon channel"],
    observations: Observation | Sequence[Observation],
    channels: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per observation and channel, the ensemble's scores at the observed points (module docstring).

    Args:
        ensemble: Members ``(member, time, lat, lon, channel)`` in the observations' units (physical); one
            member (a deterministic analysis) gives NaN spreads.
        observations: Observations of that trajectory, e.g. withheld stations (any operators, linear or not).
        channels: Names of the output channels of every observation (its values' last axis), or a mapping
            from observation name to them; ``None`` names them ``"0", "1", ...``.

    Returns:
        ``{observation name: {channel: {"rmse", "bias", "spread", "spread_skill", "crps", "wasserstein1",
        "noise_std", "spread_skill_noise", "count"}}}`` of floats (``count``: number of values scored).
    """
    ensemble = jnp.asarray(ensemble, jnp.float32)
    if ensemble.ndim != 5:
        raise ObservationError(f"scores_at_observations: ensemble of shape {tuple(ensemble.shape)}, expected "
                               "(member, time, lat, lon, channel)")
    observations = [observations] if isinstance(observations, Observation) else list(observations)
    m = ensemble.shape[0]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for obs in observations:
        if not isinstance(obs, Observation):
            raise ObservationError(f"scores_at_observations: expected Observation objects, got {type(obs).__name__}")
        obs.check({obs.modality: tuple(ensemble.shape[1:])})
        at_points = jax.vmap(obs.operator)(ensemble)  # (member, obs_time, *obs, channel)
        names = _channel_names(obs, channels, obs.values.shape[-1])
        scores = ensemble_scores(at_points, jnp.asarray(obs.values), names)
        # per channel: the RMS of the noise stds (a table's per-row stds differ from station to station)
        noise = np.sqrt(np.mean(np.square(obs.std_array().astype(np.float64)).reshape(-1, len(names)), axis=0))
        for c, name in enumerate(names):
            s = scores[name]
            s.update(noise_std=float(noise[c]), count=float(obs.values[..., c].size),
                     spread_skill_noise=spread_skill_noise(s["spread"], s["rmse"], noise[c], m))
        out[obs.name] = scores
    return out


__all__ = ["scores_at_observations", "spread_skill_noise"]
