r"""Tuning the static :math:`B` of 3D-Var on held-out training data, where the truth is known.

:func:`~slams_jax.baselines.covariance_fit.fit_static_covariance` fits Gaussian correlations to the lag
correlations of training anomalies. That shape need not give the best analysis, nor the ensemble the right
spread: on a real regional temperature field the fitted space-time :math:`B` analysed withheld stations
worse than a space-only one (1.57 K against 0.94 K RMSE), and its randomized-maximum-likelihood ensemble
had a spread of 0.18 K for an error of 1.58 K. :func:`tune_static_covariance` therefore chooses :math:`B`
by what it is for, on training windows observed like the real data:

1. The training trajectories are split (:func:`~slams_jax.baselines.training_windows.holdout_split`): the
   lag-correlation fits use one part, the verification windows are cut from the other.
2. Every window is observed by the real network (same operators and noise) and a part is withheld: a
   random fraction of the sites of every observation, or a supplied network of withheld observations.
3. Each candidate :math:`B(m, \tau, p, a)` (latitude and longitude lengths of the fit times :math:`m`; the
   time length times :math:`\tau`, or no time correlation; standard deviations pooled per channel or per
   point, :math:`p`; the variances times :math:`a`, which sets how far the analysis trusts the
   observations) analyses every window by 3D-Var from the climatological background, and is scored by

   .. math:: S = \frac{1}{|G|} \sum_{g \in G} \frac{\mathrm{MSE}_g(x_a)}{\mathrm{MSE}_g(x_b)},

   over the groups :math:`g` (withheld observation, channel), the errors taken against the noise-free
   withheld values :math:`H_w x` of the training truth (so the observation noise needs no correction):
   the analysis error relative to the background's (1: no better than climatology), unit-free across
   channels. The search is by coordinates: every :math:`(m, \tau, p)` of the grid at :math:`a = 1`, then
   the variance scales :math:`a` of the best, then the length multipliers :math:`m` again at the best
   :math:`a` (a smooth Gaussian fitted to a field with small scales tends to want longer lengths and less
   trust in the observations together); the lowest :math:`S` of all is chosen.
4. The spread is calibrated by the RML ``inflation`` :math:`\beta` of
   :func:`~slams_jax.baselines.variational.three_dvar_ensemble` (both perturbations times :math:`\beta`:
   the same analysis, the posterior covariance times :math:`\beta^2`), so that the ensemble's spread
   matches the error of its mean at the withheld values,

   .. math:: r = \Big(\frac{\sum_g (1 + 1/M)\,\mathrm{spread}_g^2 / v_g}{\sum_g \mathrm{MSE}_g / v_g}\Big)^{1/2},
             \qquad \beta = 1 / r,

   (:math:`v_g` the background's MSE, :math:`M` members): the spread is linear in :math:`\beta`, so one
   ensemble gives :math:`\beta` and a second, with the same random numbers, the ratio after. Scaling
   :math:`B` alone would also move the analysis (the gain), which step 3 already chose.
5. The chosen model is refitted on all the training data.
"""

from __future__ import annotations

import dataclasses
import math
import time as _time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import PRNGKey
from slams_jax.baselines.covariance import StaticCovariance
from slams_jax.baselines.covariance_fit import fit_static_covariance
from slams_jax.baselines.training_windows import Network, cut_windows, holdout_split, simulate_network
from slams_jax.baselines.variational import solve_windows
from slams_jax.metrics import ensemble_mean_rmse, ensemble_spread

_CALLER = "tune_static_covariance"


@dataclasses.dataclass(frozen=True)
class CovarianceTuning:
    """What :func:`tune_static_covariance` tried and chose (every number on the held-out training windows).

    Attributes:
        candidates: One dict per candidate scored, in order: ``length_scale`` (multiplier of the fitted
            lat/lon lengths), ``time_scale`` (multiplier of the fitted time length; ``None``: no time
            correlation), ``per_point_std``, ``variance_scale`` (factor on ``B``), ``score`` (the analysis
            MSE relative to the background's, mean over withheld observations and channels), ``rmse`` (of
            the analysis at all withheld values, pooled, in the data's units), ``converged`` (fraction of
            windows whose conjugate gradients met ``tol``).
        chosen: The candidate with the lowest score (one of ``candidates``).
        inflation: The RML inflation to pass to ``three_dvar_ensemble`` (1: none).
        calibration: The two ensemble runs, at inflation 1 and at ``inflation``: dicts of ``inflation``,
            ``spread``, ``rmse`` (of the ensemble mean), ``spread_skill`` (pooled ratio, module docstring).
        spread_skill_before, spread_skill_after: The ratio of those two runs.
        windows, withheld, members: Windows used, withheld values per window, ensemble members.
        tol, maxiter: The conjugate-gradient settings every solve used (use them for the real analysis).
        seconds: Wall time of the tuning.
    """

    candidates: tuple[dict, ...]
    chosen: dict
    inflation: float
    calibration: tuple[dict, ...]
    spread_skill_before: float
    spread_skill_after: float
    windows: int
    withheld: int
    members: int
    tol: float
    maxiter: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Windows:
    """The verification problem: assimilated observations per window, withheld operators and their truths."""

    assimilated: list          # per window, list of Observation
    operators: tuple           # per withheld observation, its operator
    truths: tuple              # per withheld observation, noise-free values (window, obs_time, site, channel)
                               # (its own axes between time and channel flattened into sites)
    background: np.ndarray     # (time, lat, lon, channel)
    background_mse: tuple      # per withheld observation, (channel,)


def _windows(assimilated, withheld, background) -> _Windows:
    operators = tuple(o.operator for o in withheld[0])
    for w, obs in enumerate(withheld):
        if tuple(o.operator for o in obs) != operators:
            raise ValueError(f"{_CALLER}: window {w} withholds other observations than window 0; the withheld "
                             "network must be the same in every window")
    truths = tuple(_sites(np.stack([obs[i].values for obs in withheld]), 1) for i in range(len(operators)))
    mse = tuple(np.mean(np.square(_sites(np.asarray(op(jnp.asarray(background))), 0)[None] - t), axis=(0, 1, 2))
                for op, t in zip(operators, truths))
    return _Windows(assimilated, operators, truths, background, mse)


def _sites(values, lead: int):
    """``values (*lead, obs_time, *obs, channel)`` with the observation's own axes flattened into one."""
    return values.reshape(values.shape[: lead + 1] + (-1, values.shape[-1]))


def _at_withheld(problem: _Windows, states: np.ndarray) -> list[jax.Array]:
    """Each withheld operator applied to states ``(..., time, lat, lon, channel)``: ``(..., obs_time, site,
    channel)``."""
    lead = states.shape[:-4]
    flat = jnp.asarray(states).reshape((-1,) + states.shape[-4:])
    return [jax.vmap(op)(flat).reshape(lead + t.shape[1:]) for op, t in zip(problem.operators, problem.truths)]


def _scores(problem: _Windows, mse: Sequence[np.ndarray]) -> tuple[float, float]:
    """``(S, pooled RMSE)`` from the per-group MSEs (module docstring)."""
    relative = np.concatenate([m / np.where(v > 0, v, 1.0) for m, v in zip(mse, problem.background_mse)])
    sizes = [t[..., 0].size for t in problem.truths]
    pooled = sum(float(np.sum(m)) * s for m, s in zip(mse, sizes)) / sum(s * len(m) for m, s in zip(mse, sizes))
    return float(np.mean(relative)), math.sqrt(pooled)


def _analysis_scores(problem: _Windows, cov: StaticCovariance, tol: float, maxiter: int) -> dict:
    analyses, residual = solve_windows(problem.assimilated, problem.background, cov, tol=tol, maxiter=maxiter)
    mse = [np.mean(np.square(np.asarray(p) - t), axis=(0, 1, 2))
           for p, t in zip(_at_withheld(problem, analyses), problem.truths)]
    score, rmse = _scores(problem, mse)
    return {"score": score, "rmse": rmse, "converged": float(np.mean(residual <= tol))}


def _ensemble_scores(problem: _Windows, cov, key, members, inflation, tol, maxiter) -> dict:
    """Spread, RMSE of the mean and the pooled spread-skill ratio of RML ensembles at the withheld values."""
    ensembles, _ = solve_windows(problem.assimilated, problem.background, cov, key=key, members=members,
                                 inflation=inflation, tol=tol, maxiter=maxiter)  # (window, member, *trajectory)
    spread2, mse = [], []
    for p, t in zip(_at_withheld(problem, ensembles), problem.truths):
        p = jnp.moveaxis(p, 1, 0)  # (member, window, obs_time, site, channel)
        spread2.append(np.square(np.asarray(ensemble_spread(p, jnp.asarray(t)), np.float64)))
        mse.append(np.square(np.asarray(ensemble_mean_rmse(p, jnp.asarray(t)), np.float64)))
    v = [np.where(b > 0, b, 1.0) for b in problem.background_mse]
    total_spread = sum(float(np.sum(s / w)) for s, w in zip(spread2, v)) * (1 + 1 / members)
    total_mse = sum(float(np.sum(m / w)) for m, w in zip(mse, v))
    _, rmse = _scores(problem, mse)
    _, spread = _scores(problem, spread2)
    ratio = math.sqrt(total_spread / total_mse) if total_mse > 0 else math.nan
    return {"inflation": float(inflation), "spread": spread, "rmse": rmse, "spread_skill": ratio}


def _search(problem: _Windows, bases, grid, variance_scales, tol, maxiter) -> tuple[list[dict], dict]:
    """``(candidates, best)``: the coordinate search of the module docstring (step 3)."""
    scored: dict[tuple, dict] = {}

    def score(m: float, tau: float | None, p: bool, a: float) -> dict:
        if (m, tau, p, a) not in scored:
            cov = _scaled(bases[tau is not None, p], m, tau, a)
            scored[m, tau, p, a] = dict(length_scale=m, time_scale=tau, per_point_std=p, variance_scale=a,
                                        **_analysis_scores(problem, cov, tol, maxiter))
        return scored[m, tau, p, a]

    by_score = lambda c: c["score"]
    best = min((score(m, tau, p, 1.0) for m, tau, p in grid), key=by_score)
    m, tau, p = best["length_scale"], best["time_scale"], best["per_point_std"]
    best = min([best] + [score(m, tau, p, a) for a in variance_scales], key=by_score)
    lengths = dict.fromkeys(g[0] for g in grid)
    best = min([best] + [score(l, tau, p, best["variance_scale"]) for l in lengths], key=by_score)
    return list(scored.values()), best


def _calibrated(problem: _Windows, cov, key, members, tol, maxiter) -> tuple[float, tuple[dict, dict]]:
    """``(inflation, (run before, run after))``: the RML inflation matching spread and error (step 4)."""
    before = _ensemble_scores(problem, cov, key, members, 1.0, tol, maxiter)
    ratio = before["spread_skill"]
    inflation = min(max(1.0 / ratio, 1e-3), 1e3) if math.isfinite(ratio) and ratio > 0 else 1.0
    return inflation, (before, _ensemble_scores(problem, cov, key, members, inflation, tol, maxiter))


def _scaled(base: StaticCovariance, length_scale: float, time_scale: float | None, alpha: float) -> StaticCovariance:
    """``base`` with lat/lon lengths times ``length_scale``, the time length times ``time_scale`` and ``B`` times
    ``alpha`` (the standard deviations times ``sqrt(alpha)``)."""
    times = None if time_scale is None else tuple(l * time_scale for l in base.length_time)
    return StaticCovariance(std=base.std * math.sqrt(alpha), periodic=base.periodic, length_time=times,
                            length_lat=tuple(l * length_scale for l in base.length_lat),
                            length_lon=tuple(l * length_scale for l in base.length_lon))


def _problem(key, train, network, withheld, window, windows, holdout, fit, models):
    """The verification windows (:class:`_Windows`) and the fitted ``B`` of each ``(time_correlation,
    per_point_std)`` in ``models``, from the fit part of the training data."""
    k_windows, k_network = jax.random.split(key)
    fit_part, held = holdout_split(train, window, holdout)
    truths = cut_windows(k_windows, held, window, windows)
    assimilated, withheld_obs = simulate_network(k_network, truths, network, withheld, _CALLER)
    fits = {model: fit(fit_part, *model) for model in dict.fromkeys(models)}
    mean = next(iter(fits.values()))[0]  # the same whatever the model
    background = np.broadcast_to(mean, (window,) + mean.shape)
    return _windows(assimilated, withheld_obs, background), {model: cov for model, (_, cov) in fits.items()}


def _check(train, window, windows, holdout, length_scales, time_scales, per_point_std, variance_scales, members):
    train = np.asarray(train)
    if train.ndim != 5:
        raise ValueError(f"{_CALLER}: train of shape {train.shape}, expected (trajectory, time, lat, lon, channel)")
    for name, value, low in (("window", window, 1), ("windows", windows, 1), ("members", members, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{_CALLER}: {name}={value!r}, expected an integer >= {low}")
    if not (isinstance(holdout, (int, float)) and 0 <= holdout < 1):
        raise ValueError(f"{_CALLER}: holdout={holdout!r}, expected a fraction in [0, 1)")
    for name, values in (("length_scales", length_scales), ("time_scales", time_scales),
                         ("variance_scales", variance_scales), ("per_point_std", per_point_std)):
        bad = [v for v in values if not (isinstance(v, (bool, np.bool_)) if name == "per_point_std" else
                                          (v is None and name == "time_scales") or (
                                              isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0))]
        if bad or not (len(values) or name == "variance_scales"):
            raise ValueError(f"{_CALLER}: {name}={values!r}, expected a list of "
                             + ("bools" if name == "per_point_std" else "multipliers > 0")
                             + (" or None (no time correlation)" if name == "time_scales" else ""))
    if window < 2 and any(s is not None for s in time_scales):
        time_scales = (None,)  # a one-state window has no time correlation to model
    return train, tuple(None if s is None else float(s) for s in time_scales)


def tune_static_covariance(
    key: PRNGKey,
    train: np.ndarray,
    observations: Network,
    periodic: tuple[bool, bool],
    window: int,
    *,
    withheld: float | Network = 0.2,
    windows: int = 8,
    holdout: float = 0.25,
    length_scales: Sequence[float] = (0.5, 0.7, 1.0, 1.4, 2.0),
    time_scales: Sequence[float | None] = (None, 1.0),
    per_point_std: Sequence[bool] = (False, True),
    variance_scales: Sequence[float] = (0.03, 0.1, 0.3, 1.0, 3.0),
    members: int = 16,
    max_lag: int | None = None,
    tol: float = 1e-3,
    maxiter: int = 100,
) -> tuple[np.ndarray, StaticCovariance, CovarianceTuning]:
    """Climatology and a static ``B`` chosen by the 3D-Var error at withheld training observations, and the
    RML inflation that makes the ensemble's spread match its error there (module docstring).

    Args:
        key: PRNG key of the windows, observation noise, withheld sites and ensembles.
        train: Training data ``(trajectory, time, lat, lon, channel)`` in the observations' units (e.g.
            ``normalization.denormalize("state", x)``); NaN is missing (windows with any are not used).
        observations: The real network, linear, of the ``state``: template observations (operators and
            noise reused, values ignored), or ``(key, window (time, lat, lon, channel)) -> [Observation]``.
        periodic, window: ``(lat_periodic, lon_periodic)`` of the grid; states per window (the real one's).
        withheld: Fraction of the sites (stations, points) of every observation withheld, or a network of
            withheld observations (e.g. the real verification stations), as ``observations``.
        windows, holdout: Number of windows (fewer if the data have fewer); fraction of the training data
            held out for them (0: the windows are in sample).
        length_scales, time_scales, per_point_std: The grid of models (all combinations): multipliers of the
            fitted lat/lon lengths, of the time length (``None``: no time correlation), per-point std or not.
        variance_scales, members: Factors on ``B`` tried for the best model (may be empty); RML members (>= 2).
        max_lag, tol, maxiter: The lag limit of the fits, the CG tolerance and iterations of every solve.

    Returns:
        ``(mean, covariance, report)``: the climatological mean ``(lat, lon, channel)`` (float32) and the
        tuned :class:`StaticCovariance`, both from all of ``train``, and the :class:`CovarianceTuning`
        (its ``inflation``, ``tol`` and ``maxiter`` go to ``three_dvar_ensemble``).
    """
    start = _time.perf_counter()  # the report's cost
    train, time_scales = _check(train, window, windows, holdout, length_scales, time_scales, per_point_std,
                                variance_scales, members)
    k_problem, k_ensemble = jax.random.split(key)
    fit = lambda data, tc, pp: fit_static_covariance(data, periodic, max_lag, per_point_std=pp, time_correlation=tc)
    grid = [(float(m), tau, bool(p)) for m in length_scales for tau in time_scales for p in per_point_std]
    problem, bases = _problem(k_problem, train, observations, withheld, int(window), int(windows), float(holdout),
                              fit, [(tau is not None, p) for _, tau, p in grid])
    candidates, chosen = _search(problem, bases, grid, [float(a) for a in variance_scales], tol, maxiter)
    model, shape = (chosen["time_scale"] is not None, chosen["per_point_std"]), (
        chosen["length_scale"], chosen["time_scale"], chosen["variance_scale"])
    inflation, runs = _calibrated(problem, _scaled(bases[model], *shape), k_ensemble, int(members), tol, maxiter)
    final_mean, final = fit(train, *model)  # the chosen model refitted on all the data
    report = CovarianceTuning(tuple(candidates), chosen, inflation, runs, runs[0]["spread_skill"],
                              runs[1]["spread_skill"], len(problem.assimilated), sum(t[0].size for t in problem.truths),
                              int(members), float(tol), int(maxiter), _time.perf_counter() - start)
    return final_mean, _scaled(final, *shape), report


__all__ = ["CovarianceTuning", "tune_static_covariance"]
