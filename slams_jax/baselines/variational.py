r"""The 3D-Var / optimal-interpolation analysis: a static Gaussian prior updated by linear observations.

The classical baseline of data assimilation: a Gaussian prior around a background :math:`x_b` (e.g.
climatology or a forecast) with a fixed covariance :math:`B`, updated by linear observations
:math:`y_i = H_i x + \nu_i`, :math:`\nu_i \sim N(0, \mathrm{diag}(s_i^2))`. The analysis is the posterior
mean (and mode)

.. math:: x_a = x_b + K (y - H x_b), \qquad K = B H^\top (H B H^\top + R)^{-1},

          x_a = \arg\min_x \tfrac12 (x - x_b)^\top B^{-1} (x - x_b) + \tfrac12 \| R^{-1/2} (y - H x) \|^2,

with posterior covariance :math:`A = (B^{-1} + H^\top R^{-1} H)^{-1}` (all observations stacked into
:math:`H`, :math:`y`, :math:`R`). The same analysis is computed two ways, by the size of the problem.

Small problems: the explicit gain
---------------------------------
With every variable observed (:math:`H = I`, :math:`R = r I`) and a dense :math:`B` of a few dozen
variables, :func:`dense_gain` forms :math:`K = B (B + rI)^{-1}` once by a direct solve (:func:`spd_solve`)
and :func:`dense_update` applies it to one state. A static :math:`B` gives a static gain, so a cycled
3D-Var on a low-dimensional model (the Lorenz twin, :mod:`slams_jax.baselines.filters`) forms it once
and reuses it at every cycle.

Gridded states: matrix-free, control variable
---------------------------------------------
For a trajectory ``(time, lat, lon, channel)`` :math:`B` is never formed: it is the
:class:`~slams_jax.baselines.covariance.StaticCovariance` operator, applied through its square root
:math:`B^{1/2}`. :func:`three_dvar` uses the control variable :math:`x = x_b + B^{1/2} v`, which turns the
cost into

.. math:: J(v) = \tfrac12 v^\top v + \tfrac12 \sum_i \| (y_i - H_i x_b - G_i v) / s_i \|^2,
          \qquad G_i = H_i B^{1/2},

whose minimiser solves the well-conditioned normal equations
:math:`(I + G^\top R^{-1} G)\, v = G^\top R^{-1} (y - H x_b)` (eigenvalues :math:`\ge 1`, no :math:`B^{-1}`
needed, singular :math:`B` allowed); :math:`x_b + B^{1/2} v` is then the :math:`x_a` above. They are solved
matrix-free by conjugate gradients to a relative residual ``tol``, :math:`H_i` and :math:`H_i^\top` being
the linearization of each operator and its transpose. The whole solve is one jitted function, compiled
once per observation structure (operators, shapes); values, noise levels, the background and the
covariance's matrices are runtime arguments.

:func:`three_dvar_ensemble` draws posterior samples by randomized maximum likelihood: member :math:`m`
solves the same problem with a perturbed background :math:`x_b + B^{1/2} \eta_m` and perturbed
observations :math:`y_i + s_i \varepsilon_{i,m}` (:math:`\eta, \varepsilon \sim N(0, I)`). In the
linear-Gaussian case the members are exact, independent samples of :math:`N(x_a, A)`. With ``inflation``
:math:`\beta` both perturbations are multiplied by :math:`\beta`, which leaves the mean and the gain alone
and draws from :math:`N(x_a, \beta^2 A)`: the spread calibration of a misspecified :math:`B`
(:mod:`slams_jax.baselines.covariance_tuning`). :func:`solve_windows` solves many windows observed by one
network in one compiled call.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, ArrayLike, Float, PRNGKey
from slams_jax.baselines.covariance import StaticCovariance, apply_sqrt, apply_sqrt_transpose
from slams_jax.diffusion.linalg import conjugate_gradient, spd_solve
from slams_jax.errors import ObservationError
from slams_jax.observation.observations import Observation, check_observations


# ------------------------------------------------------------------------------------ small problems
def dense_gain(cov: Float[Array, "n n"], obs_var) -> Float[Array, "n n"]:
    """The gain ``K = B (B + r I)^{-1}`` of every variable observed with variance ``r`` (``H = I``).

    Args:
        cov: The background-error covariance ``B (n, n)``, symmetric positive semi-definite.
        obs_var: The observation-error variance ``r > 0`` (a scalar).

    Returns:
        ``K (n, n)``, same dtype as ``cov``.
    """
    s = cov + obs_var * jnp.eye(cov.shape[0], dtype=cov.dtype)
    # K^T = (B + rI)^{-1} B, since both are symmetric.
    return spd_solve(s, cov).T


def dense_update(gain: Float[Array, "n n"], background: Float[Array, " n"], y: Float[Array, " n"]) -> Float[Array, " n"]:
    """The analysis ``x_a = x_b + K (y - x_b)`` of one state ``(n,)`` observed everywhere (``H = I``)."""
    return background + gain @ (y - background)


# ----------------------------------------------------------------------------------- gridded states
def _analysis(operators, maxiter, background, values, stds, mats, std, tol):
    """One 3D-Var solve in control-variable form: ``(x_a, iterations, relative residual)``."""
    linear = [jax.linearize(op, background) for op in operators]  # (H x_b, v -> H v)
    adjoints = [jax.linear_transpose(jvp, background) for _, jvp in linear]
    weights = [1.0 / jnp.square(s) for s in stds]  # R^{-1}

    def g(v):
        u = apply_sqrt(mats, std, v)
        return [jvp(u) for _, jvp in linear]

    def g_adjoint(ws):
        total = sum(adjoint(w)[0] for adjoint, w in zip(adjoints, ws))
        return apply_sqrt_transpose(mats, std, total)

    rhs = g_adjoint([(y - hxb) * w for y, (hxb, _), w in zip(values, linear, weights)])
    matvec = lambda v: v + g_adjoint([gv * w for gv, w in zip(g(v), weights)])
    v, iterations, residual = conjugate_gradient(matvec, rhs, maxiter, tol)
    return background + apply_sqrt(mats, std, v), iterations, residual


_analysis_jit = jax.jit(_analysis, static_argnames=("operators", "maxiter"))


def _perturbed_analysis(operators, maxiter, members, key, background, values, stds, mats, std, tol, inflation=1.0):
    """Randomized maximum likelihood: ``members`` solves with perturbed background and observations, the
    perturbations' standard deviations times ``inflation``."""
    # One flat draw, cut into the background and observation perturbations: XLA compiles a flat threefry
    # draw several times faster than one of a many-axis shape.
    sizes = [math.prod(background.shape)] + [math.prod(y.shape) for y in values]
    noise = jax.random.normal(key, (members * sum(sizes),), background.dtype).reshape(members, sum(sizes))
    parts = jnp.split(noise, np.cumsum(sizes)[:-1].tolist(), axis=1)
    eta = inflation * parts[0].reshape((members,) + background.shape)
    backgrounds = background[None] + jax.vmap(lambda e: apply_sqrt(mats, std, e))(eta)
    perturbed = [
        y[None] + inflation * s[None] * eps.reshape((members,) + y.shape) for y, s, eps in zip(values, stds, parts[1:])
    ]
    solve = lambda xb, ys: _analysis(operators, maxiter, xb, ys, stds, mats, std, tol)
    return jax.vmap(solve)(backgrounds, perturbed)


_ensemble_jit = jax.jit(_perturbed_analysis, static_argnames=("operators", "maxiter", "members"))


def _prepare(observations, background, covariance, tol, maxiter, caller: str):
    """Validate the inputs and return the solver's arguments."""
    if not isinstance(covariance, StaticCovariance):
        raise ValueError(f"{caller}: covariance must be a StaticCovariance, got {type(covariance).__name__}")
    background = np.asarray(background)
    if background.ndim != 4:
        raise ValueError(
            f"{caller}: background of shape {background.shape}, expected a trajectory (time, lat, lon, channel)"
        )
    if not np.all(np.isfinite(background)):
        raise ValueError(f"{caller}: background has {int((~np.isfinite(background)).sum())} NaN or infinite values")
    shape = covariance.check(background.shape)
    if isinstance(observations, Observation):
        observations = [observations]
    observations = list(observations)
    check_observations(observations, {"state": shape})
    for obs in observations:
        if not obs.operator.linear:
            raise ValueError(
                f"{caller}: observation {obs.name!r} has the nonlinear operator {obs.operator!r}; 3D-Var here "
                "needs linear operators (drop it or linearize it about the background yourself)"
            )
    if not (isinstance(tol, (int, float, np.floating)) and 0 <= tol < 1):
        raise ValueError(f"{caller}: tol={tol!r}, expected a relative residual in [0, 1)")
    if isinstance(maxiter, bool) or not isinstance(maxiter, (int, np.integer)) or maxiter < 1:
        raise ValueError(f"{caller}: maxiter={maxiter!r}, expected an integer >= 1")
    mats, std = covariance._runtime(shape)
    return dict(
        operators=tuple(obs.operator for obs in observations),
        maxiter=int(maxiter),
        background=jnp.asarray(background, jnp.float32),
        values=tuple(jnp.asarray(obs.values, jnp.float32) for obs in observations),
        stds=tuple(jnp.asarray(obs.std_array(), jnp.float32) for obs in observations),
        mats=mats,
        std=std,
        tol=jnp.asarray(tol, jnp.float32),
    )


def _inflation(value) -> jax.Array:
    if isinstance(value, bool) or not (isinstance(value, (int, float, np.floating)) and math.isfinite(value)
                                       and value > 0):
        raise ValueError(f"three_dvar_ensemble: inflation={value!r}, expected a finite number > 0")
    return jnp.asarray(value, jnp.float32)


def three_dvar(
    observations: Sequence[Observation],
    background: Float[ArrayLike, "..."],  # validated below: the error names the expected trajectory shape
    covariance: StaticCovariance,
    *,
    tol: float = 1e-6,
    maxiter: int = 200,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """The 3D-Var / optimal-interpolation analysis of a state trajectory (posterior mean of the Gaussian model).

    Solves ``(I + G^T R^{-1} G) v = G^T R^{-1} (y - H x_b)``, ``G = H B^{1/2}``, by conjugate gradients in
    float32 and returns ``x_b + B^{1/2} v`` (module docstring). Compiled once per observation structure.

    Args:
        observations: Observations of modality ``state`` with linear operators of a ``(time, lat, lon,
            channel)`` trajectory.
        background: Background (prior mean) trajectory ``(time, lat, lon, channel)``, physical units.
        covariance: Background-error covariance for that trajectory shape.
        tol: Relative residual ``|r| / |b|`` at which conjugate gradients stop.
        maxiter: Largest number of conjugate-gradient iterations.
        return_info: Also return ``{"iterations", "residual", "converged"}``.

    Returns:
        The analysis ``(time, lat, lon, channel)`` (np.float32), and the info dict if ``return_info``.

    Raises:
        ValueError: A nonlinear operator, an observation of another modality or of the wrong shape, a
            background that is not a trajectory or does not fit the covariance, or a bad ``tol``/``maxiter``.
    """
    args = _prepare(observations, background, covariance, tol, maxiter, "three_dvar")
    analysis, iterations, residual = _analysis_jit(**args)
    analysis = np.asarray(analysis, np.float32)
    if not return_info:
        return analysis
    residual = float(residual)
    return analysis, {"iterations": int(iterations), "residual": residual, "converged": residual <= tol}


def three_dvar_ensemble(
    key: PRNGKey,
    observations: Sequence[Observation],
    background: Float[ArrayLike, "..."],  # validated below: the error names the expected trajectory shape
    covariance: StaticCovariance,
    members: int,
    *,
    inflation: float = 1.0,
    tol: float = 1e-6,
    maxiter: int = 200,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """Posterior samples by randomized maximum likelihood (perturbed background and observations).

    Member ``m`` is the :func:`three_dvar` analysis of background ``x_b + B^{1/2} eta_m`` and observations
    ``y_i + s_i eps_{i,m}``; all members are solved at once (``vmap`` of the same conjugate gradients, which
    then run until the slowest member converges). For linear observations these are exact samples of the
    Gaussian posterior ``N(x_a, (B^{-1} + H^T R^{-1} H)^{-1})``.

    Args:
        key: PRNG key (typed or raw).
        observations, background, covariance, tol, maxiter: As in :func:`three_dvar`.
        members: Number of samples (>= 1).
        inflation: Factor on the standard deviations of both perturbations (> 0): the members are then
            samples of ``N(x_a, inflation^2 A)``, the same mean with the spread times ``inflation`` (the
            calibration of :func:`~slams_jax.baselines.covariance_tuning.tune_static_covariance`).
        return_info: Also return ``{"iterations", "residual", "converged"}``, arrays ``(member,)``.

    Returns:
        The members ``(member, time, lat, lon, channel)`` (np.float32), and the info dict if ``return_info``.
    """
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
        raise ValueError(f"three_dvar_ensemble: members={members!r}, expected an integer >= 1")
    args = _prepare(observations, background, covariance, tol, maxiter, "three_dvar_ensemble")
    ensemble, iterations, residual = _ensemble_jit(members=int(members), key=key, inflation=_inflation(inflation),
                                                   **args)
    ensemble = np.asarray(ensemble, np.float32)
    if not return_info:
        return ensemble
    residual = np.asarray(residual, np.float64)
    return ensemble, {"iterations": np.asarray(iterations), "residual": residual, "converged": residual <= tol}


def _window_analyses(operators, maxiter, background, values, stds, mats, std, tol):
    """:func:`_analysis` of a batch of windows sharing the operators, noise, background and B (``values``
    have a leading window axis): one compiled solve for all of them."""
    return jax.vmap(lambda ys: _analysis(operators, maxiter, background, ys, stds, mats, std, tol))(values)


def _window_ensembles(operators, maxiter, members, keys, background, values, stds, mats, std, tol, inflation):
    """:func:`_perturbed_analysis` of a batch of windows (``keys`` and ``values`` with a leading window axis)."""
    solve = lambda key, ys: _perturbed_analysis(operators, maxiter, members, key, background, ys, stds, mats, std, tol,
                                                inflation)
    return jax.vmap(solve)(keys, values)


_windows_jit = jax.jit(_window_analyses, static_argnames=("operators", "maxiter"))
_window_ensembles_jit = jax.jit(_window_ensembles, static_argnames=("operators", "maxiter", "members"))


def solve_windows(
    observation_sets: Sequence[Sequence[Observation]],
    background: Float[ArrayLike, "time lat lon channel"],
    covariance: StaticCovariance,
    *,
    key: PRNGKey | None = None,
    members: int | None = None,
    inflation: float = 1.0,
    tol: float = 1e-6,
    maxiter: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`three_dvar` (or, with ``key`` and ``members``, :func:`three_dvar_ensemble`) of several windows at once.

    Every window has the same observation network (operators and noise; only the values differ), the same
    background and ``B``, so all are solved by one vmapped, jitted call (compiled once per network).

    Args:
        observation_sets: One list of observations per window, with equal operators and stds across windows.
        background, covariance, tol, maxiter: As in :func:`three_dvar`.
        key: PRNG key of the ensembles (window ``w`` uses ``split(key, windows)[w]``), or ``None``.
        members: Members per window with ``key``.
        inflation: As in :func:`three_dvar_ensemble`.

    Returns:
        ``(analyses, residuals)``: ``(window, time, lat, lon, channel)`` (or ``(window, member, ...)``) float32,
        and the conjugate-gradient relative residuals ``(window,)`` (or ``(window, member)``).
    """
    if (key is None) != (members is None):
        raise ValueError("solve_windows: give both key and members (an ensemble) or neither (the analyses)")
    if not observation_sets:
        raise ValueError("solve_windows: expected at least one window of observations")
    args = [_prepare(obs, background, covariance, tol, maxiter, "solve_windows") for obs in observation_sets]
    first = args[0]
    for w, a in enumerate(args[1:], start=1):
        if a["operators"] != first["operators"] or any(
                s.shape != t.shape or bool(jnp.any(s != t)) for s, t in zip(a["stds"], first["stds"])):
            raise ObservationError(
                f"solve_windows: window {w} has another observation network (operators or noise) than window 0; "
                "every window must be observed by the same network (draw random points once, outside the windows)"
            )
    batch = dict(first, values=tuple(jnp.stack(v) for v in zip(*(a["values"] for a in args))))
    if key is None:
        out, _, residual = _windows_jit(**batch)
    else:
        if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
            raise ValueError(f"solve_windows: members={members!r}, expected an integer >= 1")
        keys = jax.random.split(key, len(observation_sets))
        out, _, residual = _window_ensembles_jit(members=int(members), keys=keys, inflation=_inflation(inflation),
                                                 **batch)
    return np.asarray(out, np.float32), np.asarray(residual, np.float64)


__all__ = ["dense_gain", "dense_update", "solve_windows", "three_dvar", "three_dvar_ensemble"]
