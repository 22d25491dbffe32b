r"""The classical methods of the Lorenz twin experiments (:mod:`slams_jax.twin.lorenz`), after DAPPER.

All observe every variable (:math:`H = I`, :math:`R = \text{obs\_std}^2 I`) of a
:class:`~slams_jax.twin.lorenz.TwinSetup`; the twin data, its protocol and the scores are described in
:mod:`slams_jax.twin.lorenz`.

* Climatology: the analysis is the climatological mean (:func:`climatology` of a long free run).
* Optimal interpolation (:func:`optimal_interpolation`, DAPPER ``OptInterp``): no cycling; every
  analysis is :math:`\mu_c + K(y - \mu_c)` with :math:`K = C(C + R)^{-1}` from the climatological
  covariance :math:`C`.
* 3D-Var (:func:`var3d`, DAPPER ``Var3D``): cycled; the background is the model forecast of the
  previous analysis and the gain is static, :math:`K = B(B + R)^{-1}` with :math:`B = x_B C`.
  OI and 3D-Var are the small-problem (dense-gain) case of the analysis of
  :mod:`slams_jax.baselines.variational` (:func:`~slams_jax.baselines.variational.dense_gain`,
  :func:`~slams_jax.baselines.variational.dense_update`).
* Stochastic (perturbed-observation) EnKF (:func:`enkf`, DAPPER ``EnKF('PertObs')``, Burgers et al.
  1998): each member is updated with ``y - d_n``, where the perturbations :math:`d_n \sim \mathcal N(0, R)`
  are centred over the ensemble as DAPPER does, and the gain uses the ensemble covariance (ddof = 1).
  Multiplicative inflation scales the *forecast* anomalies by ``inflation`` before the analysis. (DAPPER
  scales the *analysis* anomalies after it, in ``post_process``; the two differ only by where in the
  cycle the inflation sits, not in the analysis mean's statistics to within sampling noise.)

Differences to DAPPER that do not change the scores beyond sampling noise: the climatology (mean and
covariance for Climatology, OptInterp and 3D-Var) comes from an independent long free run instead of the
truth trajectory itself, everything runs in float32, and the random numbers differ.

Ensembles are batched with :func:`jax.vmap`, cycles are :func:`jax.lax.scan`; as in
:mod:`slams_jax.twin.lorenz`, the public functions validate their arguments (``ValueError`` naming the
argument) and call jitted cores whose static arguments are the dynamics and shapes only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from slams_jax.baselines.variational import dense_gain, dense_update
from slams_jax.diffusion.linalg import spd_solve
from slams_jax.metrics import ensemble_spread
from slams_jax.twin.lorenz import (
    Dynamics, TwinSetup, _check_float, _check_int, _check_state, dynamics, integrate,
)

Array = jax.Array


def climatology(states: Array) -> tuple[Array, Array]:
    """Climatological mean ``(dim,)`` and covariance ``(dim, dim)`` (ddof = 1) of states ``(n, dim)``."""
    states = jnp.asarray(states)
    if states.ndim != 2 or states.shape[0] < 2:
        raise ValueError(f"states must have shape (n >= 2, dim), got {states.shape}")
    return _climatology(states)


@jax.jit
def _climatology(states: Array) -> tuple[Array, Array]:
    mean = states.mean(axis=0)
    anom = states - mean[None, :]
    return mean, anom.T @ anom / (states.shape[0] - 1)


def _check_obs(obs: Array, dim: int) -> Array:
    obs = jnp.asarray(obs)
    if obs.ndim != 2 or obs.shape[1] != dim or obs.shape[0] < 1:
        raise ValueError(f"obs must have shape (T >= 1, {dim}), got {obs.shape}")
    return obs


def _check_cov(cov: Array, dim: int) -> Array:
    cov = jnp.asarray(cov)
    if cov.shape != (dim, dim):
        raise ValueError(f"cov must have shape ({dim}, {dim}), got {cov.shape}")
    return cov


def optimal_interpolation(obs: Array, mean: Array, cov: Array, obs_std: float) -> Array:
    """Optimal interpolation (no cycling): analyses ``mean + K (obs[k] - mean)``, ``K = C (C + R)^{-1}``.

    ``mean, cov``: climatological mean and covariance (:func:`climatology`); returns ``(T, dim)``.
    """
    mean = jnp.asarray(mean)
    if mean.ndim != 1:
        raise ValueError(f"mean must have shape (dim,), got {mean.shape}")
    obs = _check_obs(obs, mean.shape[0])
    cov = _check_cov(cov, mean.shape[0])
    _check_float("obs_std", obs_std, 0.0, strict=True)
    return _optimal_interpolation(obs, mean, cov, obs_std)


@jax.jit
def _optimal_interpolation(obs: Array, mean: Array, cov: Array, obs_std) -> Array:
    gain = dense_gain(cov, jnp.square(obs_std))
    return jax.vmap(dense_update, in_axes=(None, None, 0))(gain, mean, obs)


def var3d(setup: TwinSetup, obs: Array, cov: Array, x0: Array, xb: float = 1.0) -> Array:
    """Cycled 3D-Var with a static gain: ``B = xb * cov``, background = forecast of the previous analysis.

    Starts from ``x0`` (DAPPER starts at the mean of ``X0``), forecasts one cycle before each analysis of
    ``obs[k]``; returns the analyses ``(T, dim)``.
    """
    obs = _check_obs(obs, setup.dim)
    cov = _check_cov(cov, setup.dim)
    x0 = _check_state("x0", x0, setup.dim, batched=False)
    _check_float("xb", xb, 0.0, strict=True)
    return _var3d(dynamics(setup), obs, cov, x0, xb, setup.obs_std)


@functools.partial(jax.jit, static_argnames=("dyn",))
def _var3d(dyn: Dynamics, obs: Array, cov: Array, x0: Array, xb, obs_std) -> Array:
    gain = dense_gain(xb * cov, jnp.square(obs_std))

    def step(x, y):
        xa = dense_update(gain, integrate(dyn, x, 1), y)
        return xa, xa

    return lax.scan(step, x0.astype(obs.dtype), obs)[1]


def enkf_analysis(key: Array, ensemble: Array, y: Array, obs_std) -> Array:
    """Stochastic (perturbed-observation) EnKF analysis with ``H = I``, ``R = obs_std^2 I``.

    ``E_a = E_f + K (y - d_n - E_f)``, ``K = P_f (P_f + R)^{-1}`` with ``P_f`` the ensemble covariance
    (ddof = 1) and perturbations ``d_n ~ N(0, R)`` centred over the members (DAPPER's ``PertObs``).
    ``ensemble (members, dim)``, ``y (dim,)``.
    """
    ensemble = jnp.asarray(ensemble)
    if ensemble.ndim != 2 or ensemble.shape[0] < 2:
        raise ValueError(f"ensemble must have shape (members >= 2, dim), got {ensemble.shape}")
    y = _check_state("y", y, ensemble.shape[1], batched=False)
    _check_float("obs_std", obs_std, 0.0, strict=True)
    return _enkf_analysis(key, ensemble, y, obs_std)


@jax.jit
def _enkf_analysis(key: Array, ensemble: Array, y: Array, obs_std) -> Array:
    n, dim = ensemble.shape
    anom = ensemble - ensemble.mean(axis=0, keepdims=True)
    pert = obs_std * jax.random.normal(key, ensemble.shape, ensemble.dtype)
    pert = pert - pert.mean(axis=0, keepdims=True)
    # (N-1) (P_f + R) = A^T A + (N-1) R;  K^T = (P_f + R)^{-1} P_f
    c = anom.T @ anom + ((n - 1) * jnp.square(obs_std)) * jnp.eye(dim, dtype=ensemble.dtype)
    gain_t = spd_solve(c, anom.T @ anom)
    return ensemble + (y[None, :] - pert - ensemble) @ gain_t


def enkf(setup: TwinSetup, key: Array, obs: Array, members: int, inflation: float,
         x0_mean: Array, x0_std: float) -> tuple[Array, Array]:
    """Perturbed-observation EnKF (DAPPER ``EnKF('PertObs', N=members, infl=inflation)``), ``H = I``.

    The ensemble starts as ``x0_mean + x0_std * N(0, I)``; each cycle forecasts every member one
    observation interval, multiplies the forecast anomalies by ``inflation`` and analyses ``obs[k]`` with
    :func:`enkf_analysis` and ``R = setup.obs_std^2 I``. Returns the analysis means ``(T, dim)`` and
    spreads ``(T,)`` (:func:`slams_jax.metrics.ensemble_spread`, pooled over the variables).
    """
    obs = _check_obs(obs, setup.dim)
    members = _check_int("members", members, 2)
    _check_float("inflation", inflation, 1.0)
    x0_mean = _check_state("x0_mean", x0_mean, setup.dim, batched=False)
    _check_float("x0_std", x0_std, 0.0)
    return _enkf(dynamics(setup), key, obs, members, inflation, x0_mean, x0_std, setup.obs_std)


@functools.partial(jax.jit, static_argnames=("dyn", "members"))
def _enkf(dyn: Dynamics, key: Array, obs: Array, members: int, inflation, x0_mean: Array, x0_std,
          obs_std) -> tuple[Array, Array]:
    k_init, k_cycles = jax.random.split(key)
    dim = obs.shape[1]
    ens = x0_mean.astype(obs.dtype)[None, :] + x0_std * jax.random.normal(k_init, (members, dim), obs.dtype)
    model = jax.vmap(lambda x: integrate(dyn, x, 1))

    def cycle(ens, inputs):
        y, k = inputs
        ens = model(ens)
        mean = ens.mean(axis=0, keepdims=True)
        ens = mean + inflation * (ens - mean)
        ens = _enkf_analysis(k, ens, y, obs_std)
        return ens, (ens.mean(axis=0), ensemble_spread(ens, pooled=True))

    keys = jax.random.split(k_cycles, obs.shape[0])
    return lax.scan(cycle, ens, (obs, keys))[1]


__all__ = ["climatology", "enkf", "enkf_analysis", "optimal_interpolation", "var3d"]
