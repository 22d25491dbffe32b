r"""Naive baselines next to which an assimilation is judged.

:func:`interpolation_baseline` reconstructs a state trajectory from its (linear) observations alone, with no
prior: every observation is spread back onto the grid with its operator's adjoint and normalized, i.e. for
observations :math:`y_i = A_i x + \nu_i` with noise :math:`s_i`,

.. math:: \hat x = \frac{\sum_i A_i^\top (y_i / s_i^2)}{\sum_i A_i^\top (1 / s_i^2)}

wherever the denominator is positive (a block average becomes a constant block, a station its bilinear
footprint). States with no observation are linearly interpolated in time between the nearest observed states
(held constant before the first and after the last); points never observed take the climatological mean.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax.observations import Observation


def _adjoint_sums(observations: Sequence[Observation], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``sum_i A_i^T (y_i / s_i^2)`` and ``sum_i A_i^T (1 / s_i^2)`` over the linear observations."""
    zero = jnp.zeros(shape, jnp.float32)
    num = np.zeros(shape, np.float64)
    den = np.zeros(shape, np.float64)
    for obs in observations:
        if not obs.operator.linear:
            continue
        _, adjoint = jax.vjp(obs.operator, zero)
        w = 1.0 / np.square(obs.std_array())
        num += np.asarray(adjoint(jnp.asarray(obs.values * w, jnp.float32))[0], np.float64)
        den += np.asarray(adjoint(jnp.asarray(w, jnp.float32))[0], np.float64)
    return num, den


def observed_states(observations: Sequence[Observation], shape: tuple[int, ...]) -> list[int]:
    """Indices of the states of a ``shape`` trajectory that some linear observation sees."""
    _, den = _adjoint_sums(observations, shape)
    return [int(t) for t in np.flatnonzero((den.reshape(shape[0], -1) > 0).any(1))]


def interpolation_baseline(
    observations: Sequence[Observation], shape: tuple[int, ...], climatology: np.ndarray | float = 0.0,
) -> np.ndarray:
    """The state trajectory ``shape = (time, lat, lon, channel)`` interpolated from linear observations.

    Nonlinear observations are ignored (they have no adjoint); if none is linear, the climatology is returned.
    """
    num, den = _adjoint_sums(observations, shape)
    seen = den > 1e-12 * max(float(den.max(initial=0.0)), 1e-30)
    field = np.where(seen, num / np.where(seen, den, 1.0), np.nan)
    # time: linear interpolation between observed states, per point
    flat = field.reshape(shape[0], -1)
    observed = np.isfinite(flat)
    times = np.arange(shape[0])
    for j in np.flatnonzero(observed.any(0) & ~observed.all(0)):
        ok = observed[:, j]
        flat[:, j] = np.interp(times, times[ok], flat[ok, j])
    clim = np.broadcast_to(np.asarray(climatology, np.float64), shape)
    out = flat.reshape(shape)
    return np.where(np.isfinite(out), out, clim).astype(np.float32)


__all__ = ["interpolation_baseline", "observed_states"]
