r"""The score-based filter and smoother of a twin experiment, scored as the time-mean analysis RMSE.

Every cycle observes every variable, :math:`y_t = x_t + \nu_t`, :math:`\nu_t \sim N(0, r^2 I)`: an
:class:`~slams_jax.observation.observations.Observation` of the physical ``state`` with the
:class:`~slams_jax.observation.operators.Identity` operator, turned into the Gaussian likelihood by the posterior
core (:func:`~slams_jax.diffusion.likelihood.build_likelihood`), guided and sampled by the main pipeline's
factories (:func:`~slams_jax.pipeline.methods.make_guidance`, ``make_sampler``).

- ``filter``: the analysis at cycle :math:`t` is the last state of a sample of
  :math:`p(x_{t-L+1:t} \mid y_{t-L+1:t})`, a lag window of :math:`L` states, so it uses observations up to
  :math:`t` only. There is no cycling of an ensemble (no model forecast at all): information older than the
  lag is forgotten, which costs little on chaotic systems whose error doubling time is shorter than the lag.
  Every cycle's window is independent, so all cycles are sampled in one batched program.
- ``cycled``: the filter that does not forget (:func:`_cycled`): each lag window is also conditioned on the
  analysis ensemble at its first state, as a Gaussian background, so information is carried across cycles.
- ``smoother``: one sample of the whole test trajectory :math:`p(x_{1:T} \mid y_{1:T})` from the composed
  window scores (past and future observations).

A member that went non-finite or far off the attractor is dropped from its cycle's statistics and
counted (:func:`ensemble_statistics`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, PRNGKey
from slams_jax.diffusion.likelihood import build_likelihood
from slams_jax.errors import TwinError
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Identity
from slams_jax.pipeline.methods import make_guidance, make_sampler
from slams_jax.twin import lorenz
from slams_jax.twin.model import TwinModel
from slams_jax.twin.settings import MODES, TwinAssimilationSettings
from slams_jax.twin.training import windows

DIVERGED = 10.0  # a member this many climatological stds from the mean has diverged

# (key, observed values (length, dim)[, their noise stds]) -> (physical sample (length, dim), whether every step
# stayed finite)
SampleFn = Callable[..., tuple[Array, Array]]


@dataclasses.dataclass
class Analysis:
    """Analysis ensemble statistics per cycle and the scores over the scored cycles."""

    means: np.ndarray  # (T, dim), NaN where no analysis (filter: before the first full lag)
    spreads: np.ndarray  # (T,)
    rmse: float
    spread: float
    seconds: float
    failed: int  # member samples dropped as diverged (over all analysed cycles)
    ranks: np.ndarray  # (members + 1,) rank histogram of the truth among the members, 1 = uniform


def ensemble_statistics(ens: np.ndarray, analysed: np.ndarray, mean: np.ndarray, std: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, int]:
    """Ensemble mean ``(T, dim)`` and spread ``(T,)`` of ``ens`` ``(T, members, dim)``, and the number of
    diverged member samples among the ``analysed`` cycles.

    A member that went non-finite or far off the attractor (beyond ``DIVERGED`` climatological stds ``std``
    from ``mean``) is dropped from its cycle's statistics and counted; a cycle left with fewer than 2
    members is NaN, and so is then the time-mean score.
    """
    far = np.abs(ens - mean) > DIVERGED * std
    diverged = (~np.isfinite(ens) | far).any(-1)  # (T, members)
    failed = int(diverged[analysed].sum())
    ens = np.where(diverged[..., None], np.nan, ens)
    valid = (~diverged).sum(1)
    enough = valid >= 2
    safe = np.where(enough[:, None, None], ens, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.nansum(safe, 1) / np.maximum(valid, 1)[:, None]
        var = np.nansum(np.square(safe - means[:, None]) * ~diverged[..., None], 1) / np.maximum(valid - 1, 1)[:, None]
    means = np.where(enough[:, None], means, np.nan)
    spreads = np.where(enough, np.sqrt(var.mean(-1)), np.nan)
    return means, spreads, failed


def rank_histogram(ens: np.ndarray, truth: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Frequencies ``(members + 1,)`` of the truth's rank among the members, over every variable of the
    ``scored`` cycles whose members are all finite, times ``members + 1`` (a calibrated ensemble gives 1
    everywhere; a U shape is an under-dispersed one, a dome an over-dispersed one)."""
    members = ens.shape[1]
    use = scored & np.isfinite(ens).all((1, 2))
    if not use.any():
        return np.full(members + 1, np.nan)
    rank = (ens[use] < truth[use][:, None]).sum(1)  # (cycles, dim) in 0..members
    counts = np.bincount(rank.ravel(), minlength=members + 1)
    return counts / counts.sum() * (members + 1)


def observation(values: np.ndarray, setup: lorenz.TwinSetup) -> Observation:
    """Every variable of every state of ``values`` ``(length, dim)``, with the setup's noise std."""
    return Observation(modality="state", operator=Identity(), values=values, std=setup.obs_std,
                       name=f"{setup.name} observations")


def posterior_sampler(model: TwinModel, space: str, example: Observation, a: TwinAssimilationSettings
                      ) -> SampleFn:
    """One guided posterior sample of a trajectory observed like ``example`` (any values of its shape).

    The likelihood is built (and checked) once from ``example``; a sample swaps in its own observed values,
    as the core does for batched problems of one structure.
    """
    prior = model.prior(space, example.values.shape[0])
    likelihood = build_likelihood(prior, [example])
    guidance, sampler = make_guidance(a), make_sampler(a)
    per_variable = prior.scales["state"]
    # Every variable is observed, so the core's scale of each value is its variable's std. It is rebuilt in
    # the trace as that broadcast of the (dim,) stds: XLA compiles SDA's variance of a broadcast otherwise
    # than of a full constant array (measured: the samples then differ in their last bits, and chaotically
    # after a few steps), and the twin's tables were computed with the broadcast.
    if not np.array_equal(likelihood.scale, np.broadcast_to(per_variable, example.values.shape).ravel()):
        raise TwinError(f"observation {example.name!r}: expected every variable of every state observed")

    def sample(key, y, std=None):
        scale = jnp.broadcast_to(jnp.asarray(per_variable, y.dtype), y.shape).ravel()
        lik = dataclasses.replace(likelihood, y=y.ravel(), scale=scale)
        if std is not None:  # per-value noise stds of the same structure (the cycled filter's background)
            lik = dataclasses.replace(lik, std=std.ravel())
        x, finite = sampler.sample(key, guidance.guide(prior.eps, prior.schedule, lik), prior.shape, prior.schedule)
        return prior.output(x), jnp.all(finite)

    return sample


def _filter(key: PRNGKey, model: TwinModel, space: str, obs: Array, a: TwinAssimilationSettings
            ) -> tuple[np.ndarray, np.ndarray]:
    """Ensembles ``(T, members, dim)`` of the last state of every full lag window (NaN before the first)."""
    T, members, dim = obs.shape[0], a.members, model.setup.dim
    ends = np.arange(a.lag - 1, T)
    ys = windows(obs, jnp.asarray(ends - a.lag + 1), a.lag)  # (W, lag, dim)
    one = posterior_sampler(model, space, observation(np.asarray(ys[0]), model.setup), a)
    keys = jax.random.split(key, len(ends) * members).reshape(len(ends), members, -1)

    @jax.jit
    def run(keys, ys):
        def window(args):
            k, y = args
            x, ok = jax.vmap(lambda kk: one(kk, y))(k)
            return x[:, -1], ok
        return jax.lax.map(window, (keys, ys), batch_size=a.batch_windows)

    ens, _ = run(keys, ys)  # (W, members, dim)
    full = np.full((T, members, dim), np.nan, np.float32)
    full[ends] = np.asarray(ens)
    analysed = np.zeros(T, bool)
    analysed[ends] = True
    return full, analysed


def background(ens: Array, mean: Array, std: Array, inflation: float) -> tuple[Array, Array, Array]:
    r"""The Gaussian likelihood ``(value (dim,), std (dim,), usable)`` that stands for an analysis ensemble
    ``(members, dim)`` of one state in the next window.

    Per variable, the ensemble's mean ``m`` and unbiased variance ``v`` (times ``inflation``) summarize
    :math:`p(x_s \mid y_{1:s})`; the window's prior already holds the climatological marginal
    :math:`N(\cdot, \text{std}^2)`, which is divided out: the likelihood's precision is
    :math:`1 / v - 1 / \text{std}^2` (Gaussian algebra, exact for a Gaussian prior; a variable whose analysis
    is no tighter than the climatology carries no information, a std of 1e6 climatological stds). Members
    that went non-finite or beyond ``DIVERGED`` stds from ``mean`` are left out; ``usable`` is False with
    fewer than 2 members left.
    """
    ok = jnp.all(jnp.isfinite(ens) & (jnp.abs(ens - mean[None]) <= DIVERGED * std[None]), axis=-1)
    n = jnp.sum(ok.astype(ens.dtype))
    keep = jnp.broadcast_to(ok[:, None], ens.shape)
    m = jnp.sum(jnp.where(keep, ens, 0.0), 0) / jnp.maximum(n, 1.0)
    var = inflation * jnp.sum(jnp.where(keep, jnp.square(ens - m[None]), 0.0), 0) / jnp.maximum(n - 1.0, 1.0)
    precision = 1.0 / jnp.maximum(var, 1e-12) - 1.0 / jnp.square(std)
    none = jnp.square(1e6 * std)
    informative = precision > 1.0 / none
    lik_var = jnp.where(informative, 1.0 / jnp.maximum(precision, 1.0 / none), none)
    # the likelihood's mean: the posterior mean with the prior's pull toward the climatological mean removed
    value = jnp.where(informative, mean + lik_var / jnp.maximum(var, 1e-12) * (m - mean), m)
    return value, jnp.sqrt(lik_var), n >= 2


def _cycled(key: PRNGKey, model: TwinModel, space: str, obs: Array, a: TwinAssimilationSettings
            ) -> tuple[np.ndarray, np.ndarray]:
    r"""The filter that does not forget: ensembles ``(T, members, dim)`` (NaN before the first full lag).

    The analysis at :math:`t` is the last state of a sample of the lag window :math:`s = t - L + 1 .. t`
    given :math:`y_{s+1:t}` and a Gaussian background on :math:`x_s`: the mean and per-variable variance of
    the analysis ensemble at :math:`s` (which holds every observation up to :math:`s`, so :math:`y_s` is
    not used twice), inflated by ``background_inflation``, with the prior's marginal divided out
    (:func:`background`). It takes the place of :math:`y_s` in the same likelihood (per-value noise stds),
    so every window has one structure; :math:`L` is ``cycled_lag`` (``lag`` when 0). Windows ending
    :math:`L - 1` cycles apart chain, so the cycles run in blocks of :math:`L - 1` windows sampled at once,
    each block from the previous one's analyses; the first block is the lag filter's (no background), and a
    window whose background lost all but one member falls back to it.

    Exact for a Gaussian prior whose variables are independent (``tests/twin/test_cycled.py``); otherwise
    the background drops the ensemble's cross-covariances and the division is Gaussian algebra.
    """
    setup, L = model.setup, a.cycled_lag or a.lag
    T, members, dim, block = obs.shape[0], a.members, setup.dim, L - 1
    ends = np.arange(L - 1, T)
    one = posterior_sampler(model, space, observation(np.asarray(obs[:L]), setup), a)
    mean, std = jnp.asarray(model.mean, jnp.float32), jnp.asarray(model.std, jnp.float32)
    obs_std = jnp.full((L, dim), setup.obs_std, jnp.float32)

    @jax.jit
    def run(keys, ys, previous):  # keys (b, members, 2), ys (b, L, dim), previous (b, members, dim) or NaN
        def window(k, y, prev):
            m, s, usable = background(prev, mean, std, a.background_inflation)
            y = y.at[0].set(jnp.where(usable, m, y[0]))
            sd = obs_std.at[0].set(jnp.where(usable, s, setup.obs_std))
            x, ok = jax.vmap(lambda kk: one(kk, y, sd))(k)
            return x[:, -1], ok
        return jax.vmap(window)(keys, ys, previous)

    keys = jax.random.split(key, len(ends) * members).reshape(len(ends), members, -1)
    ys = windows(obs, jnp.asarray(ends - L + 1), L)
    out = np.full((len(ends), members, dim), np.nan, np.float32)
    previous = jnp.full((block, members, dim), jnp.nan, jnp.float32)
    for start in range(0, len(ends), block):
        # the last block is padded with repeats of its last window (one compiled shape), their samples unused
        index = jnp.asarray(np.minimum(np.arange(start, start + block), len(ends) - 1))
        previous, _ = run(keys[index], ys[index], previous)
        n = min(block, len(ends) - start)
        out[start:start + n] = np.asarray(previous)[:n]
    full = np.full((T, members, dim), np.nan, np.float32)
    full[ends] = out
    analysed = np.zeros(T, bool)
    analysed[ends] = True
    return full, analysed


def _smoother(key: PRNGKey, model: TwinModel, space: str, obs: Array, a: TwinAssimilationSettings
              ) -> tuple[np.ndarray, np.ndarray]:
    """Ensembles ``(T, members, dim)`` of samples of the whole observed trajectory."""
    one = posterior_sampler(model, space, observation(np.asarray(obs), model.setup), a)
    keys = jax.random.split(key, a.members)
    ens, _ = jax.jit(jax.vmap(lambda k: one(k, obs)))(keys)  # (members, T, dim)
    return np.moveaxis(np.asarray(ens), 0, 1), np.ones(obs.shape[0], bool)


def assimilate_twin(key: PRNGKey, model: TwinModel, data: lorenz.TwinData, space: str, mode: str,
                    a: TwinAssimilationSettings) -> Analysis:
    """Run the ``filter``, ``cycled`` or ``smoother`` mode on ``data`` with the prior of ``space``; see the module
    docstring."""
    if space not in model.scores:
        raise TwinError(f"space={space!r}: no prior trained for it (trained: {sorted(model.scores)})")
    if mode not in MODES:
        raise TwinError(f"mode={mode!r}: expected one of {MODES}")
    setup = model.setup
    obs = jnp.asarray(data.obs, jnp.float32)
    t0 = time.perf_counter()
    ens, analysed = {"filter": _filter, "cycled": _cycled, "smoother": _smoother}[mode](key, model, space, obs, a)
    seconds = time.perf_counter() - t0
    means, spreads, failed = ensemble_statistics(ens, analysed, model.mean, model.std)
    scored = analysed & (np.arange(len(analysed)) >= setup.burn_in)
    return Analysis(means=means, spreads=spreads, rmse=lorenz.analysis_rmse(means, data.truth, setup.burn_in),
                    spread=lorenz.time_mean_spread(spreads, setup.burn_in), seconds=seconds, failed=failed,
                    ranks=rank_histogram(ens, np.asarray(data.truth), scored))


__all__ = ["Analysis", "DIVERGED", "ensemble_statistics", "rank_histogram", "background", "observation",
           "posterior_sampler", "assimilate_twin"]
