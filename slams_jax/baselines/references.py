r"""Reference baselines that need no interpolation in time: persistence and the climatological ensemble.

Like :mod:`slams_jax.baselines.interpolation`, they reconstruct the state trajectory ``(time, lat, lon,
channel)`` from the observations a score-based method gets, or from a climatology alone.

**Persistence** (:func:`persistence`): the spatial reconstruction of
:func:`~slams_jax.baselines.interpolation.spatial_interpolation` at observed states, held in time
(zero-order hold): a state takes the latest observed state at or before it, and states before the first
observation take the first observed state.

**Climatological ensemble** (:func:`climatology_ensemble`): members whose state at each time is an
independent random draw among climatological (e.g. training) states. Its mean is the climatological mean and
its spread the climatological variability: the probabilistic climatology baseline for the CRPS and the
spread-skill ratio.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from slams_jax._types import PRNGKey
from slams_jax.baselines.interpolation import reconstruct
from slams_jax.observation.observations import Observation


def persistence(
    observations: Sequence[Observation], shape: Sequence[int], climatology: np.ndarray | float = 0.0,
    periodic: tuple[bool, bool] = (False, True), power: float = 2.0, neighbours: int | None = None,
) -> np.ndarray:
    """The state trajectory interpolated in space as by ``spatial_interpolation``, held in time.

    Each state takes the latest observed state at or before it (per channel); states before the first
    observation take the first observed state. Arguments, returns and errors as in
    :func:`~slams_jax.baselines.interpolation.spatial_interpolation`.
    """
    return reconstruct(observations, shape, climatology, periodic, power, neighbours, True, "persistence")


def _seed(key: PRNGKey) -> list[int]:
    """The bits of a concrete JAX key (typed or raw ``uint32``), to seed a numpy generator."""
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(data).astype(np.uint32).ravel().tolist()


def climatology_ensemble(key: PRNGKey, states, members: int, length: int) -> np.ndarray:
    """A climatological ensemble: every member's state at every time drawn independently among ``states``.

    Args:
        key: A concrete PRNG key (typed or raw ``uint32``); the same key gives the same ensemble.
        states: Climatological states ``(n, lat, lon, channel)``, e.g. all training states flattened over
            trajectories and time; any array indexable by a sorted integer array on its first axis.
        members: Number of members, >= 1.
        length: Number of states of each member trajectory, >= 1.

    Returns:
        The ensemble ``(member, length, lat, lon, channel)``, float32; draws are uniform with replacement.
    """
    shape = tuple(getattr(states, "shape", np.shape(states)))
    if len(shape) != 4 or shape[0] < 1:
        raise ValueError(f"climatology_ensemble: states of shape {shape}, expected (n, lat, lon, channel) with n >= 1")
    for name, value in (("members", members), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"climatology_ensemble: {name}={value!r}, expected an integer >= 1")
    # numpy from the key's bits, like operators.random_points: exact and deterministic without a jitted sampler
    draws = np.random.default_rng(_seed(key)).integers(0, shape[0], size=members * length)
    unique, inverse = np.unique(draws, return_inverse=True)
    # read each drawn state once, in order (lazy or memory-mapped states read only those)
    picked = np.asarray(states[unique] if hasattr(states, "shape") else np.asarray(states)[unique], np.float32)
    return picked[inverse.ravel()].reshape(members, length, *shape[1:])


__all__ = ["climatology_ensemble", "persistence"]
