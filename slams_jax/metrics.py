r"""Evaluation metrics of slams_jax live here: pure ``jnp`` functions of arrays, jit-able.

Spectra
-------
For a velocity field :math:`(u, v)` on an :math:`N_y \times N_x` periodic grid of a
:math:`2\pi \times 2\pi` domain, with unnormalized DFT :math:`\hat u_{\mathbf k}` and integer
wavenumbers :math:`\mathbf k = (k_y, k_x)`, Parseval's identity reads

.. math:: \Big\langle \tfrac12 (u^2 + v^2) \Big\rangle
          = \sum_{\mathbf k} \frac{|\hat u_{\mathbf k}|^2 + |\hat v_{\mathbf k}|^2}{2\,(N_y N_x)^2},

(:math:`\langle\cdot\rangle` = mean over grid points). The isotropic spectrum groups the terms of
this sum into integer shells, :math:`E(k) = \sum_{\mathrm{round}(|\mathbf k|) = k} (\dots)`,
so that :math:`\sum_k E(k)` equals the mean kinetic energy exactly. Only the ``rfft2`` half-plane is
computed; its columns :math:`0 < k_x < N_x/2` stand for both :math:`\pm k_x` and count twice.

The zonal spectrum applies the same identity in one dimension, along the (periodic) longitude axis of
each latitude row: with :math:`N` points and unnormalized DFT :math:`\hat f_k`,
:math:`P(k) = c_k |\hat f_k|^2 / N^2` for :math:`k = 0, \dots, \lfloor N/2 \rfloor`, where
:math:`c_k = 2` stands for :math:`\pm k` and :math:`c_0 = 1` (and :math:`c_{N/2} = 1` for even :math:`N`,
the Nyquist mode being its own mirror image), so that :math:`\sum_k P(k) = \langle f^2 \rangle_{\mathrm{lon}}`.
A cosine of amplitude :math:`A` and wavenumber :math:`0 < k < N/2` has :math:`P(k) = A^2/2`.

Ensemble scores
---------------
Ensembles are ``(member, ..., channel)`` and truths ``(..., channel)``; non-finite truth values are
missing and excluded everywhere (the members there are ignored). Every score is a mean over the valid
points of each channel; with ``weights`` (area weights per latitude row, shape ``(lat,)``, e.g.
:func:`slams_jax.data.regrid.area_weights`) it is the weighted mean
:math:`\sum_i w_i s_i / \sum_i w_i` over the valid points, with :math:`w_i` the weight of the latitude row
of point :math:`i` (latitude is axis ``-3`` of the truth). ``weights=None`` is the plain mean. Only the
ratios of the weights matter; zero weights drop rows.

- RMSE of the ensemble mean :math:`\bar x`: :math:`\sqrt{\langle (\bar x - y)^2 \rangle}`; bias:
  :math:`\langle \bar x - y \rangle`.
- Spread: :math:`\sqrt{\langle s^2 \rangle}` with :math:`s^2` the unbiased (``ddof=1``) member variance.
- Spread-skill ratio (Fortin et al. 2014, "Why should ensemble spread match the RMSE of the ensemble
  mean?"): for :math:`M` members exchangeable with the truth,
  :math:`E(\bar x - y)^2 = \frac{M + 1}{M} E s^2`, so the ratio is reported as
  :math:`\sqrt{\tfrac{M+1}{M}}\, \mathrm{spread} / \mathrm{RMSE}`, which is 1 for a calibrated
  ensemble of any size, < 1 for an under-dispersive one, > 1 for an over-dispersive one (undefined, NaN,
  for one member).
- Rank histogram (Hamill 2001): the rank of the truth among the :math:`M` members,
  :math:`0, \dots, M`, counted per channel; flat for exchangeable members and truth, U-shaped for an
  under-dispersive ensemble, sloped for a biased one. A truth equal to :math:`e` members takes a rank
  drawn uniformly among the :math:`e + 1` ranks it could have (or the middle one when no key is given).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, ArrayLike, Float, Int, PRNGKey


def _shell_matrix(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """One-hot map from the (ny, nx//2+1) rfft2 modes to integer |k| shells, with Parseval weights."""
    ky = np.fft.fftfreq(ny, 1.0 / ny).reshape(ny, 1)
    kx = np.fft.rfftfreq(nx, 1.0 / nx).reshape(1, nx // 2 + 1)
    shell = np.rint(np.sqrt(ky**2 + kx**2)).astype(np.int64).reshape(-1)
    weight = np.full((1, nx // 2 + 1), 2.0)
    weight[0, 0] = 1.0
    if nx % 2 == 0:
        weight[0, -1] = 1.0  # the Nyquist column is its own mirror image
    weight = np.broadcast_to(weight, (ny, nx // 2 + 1)).reshape(-1)
    n_shells = int(shell.max()) + 1
    matrix = np.zeros((shell.size, n_shells))
    matrix[np.arange(shell.size), shell] = weight
    return matrix, np.arange(n_shells)


def isotropic_energy_spectrum(
    uv: Float[Array, "*batch y x 2"],
) -> tuple[Float[Array, " k"], Float[Array, "*batch k"]]:
    """Kinetic-energy spectrum ``E(k)`` binned by integer shells ``k = round(|k|)``.

    The grid is periodic with period ``2 pi`` along both axes (integer wavenumbers), channels are
    ``(u, v)``. Batch dimensions are kept (average the result over them for a mean spectrum).

    Args:
        uv: Velocity field, channels last.

    Returns:
        ``(wavenumbers, spectrum)``: the shells ``0, 1, ..., k_max`` (float32, ``k_max = round(|k|)``
        of the corner mode) and ``E(k)`` with ``spectrum.sum(-1) == mean((u^2 + v^2) / 2)`` over the
        grid (Parseval).
    """
    ny, nx = uv.shape[-3], uv.shape[-2]
    matrix, shells = _shell_matrix(ny, nx)
    # Channels to the front so the FFT acts on the trailing (y, x) axes.
    hat = jnp.fft.rfft2(jnp.moveaxis(uv, -1, -3))
    power = jnp.sum(jnp.real(hat) ** 2 + jnp.imag(hat) ** 2, axis=-3)
    power = power.reshape(power.shape[:-2] + (-1,)) / (2.0 * (ny * nx) ** 2)
    # HIGHEST: on GPU the default float32 matmul precision (TF32) would break Parseval at ~1e-4.
    spectrum = jnp.einsum("...m,mk->...k", power, jnp.asarray(matrix, power.dtype),
                          precision=jax.lax.Precision.HIGHEST)
    return jnp.asarray(shells, jnp.float32), spectrum


def zonal_power_spectrum(
    field: Float[Array, "*batch lat lon channel"],
) -> tuple[Float[Array, " k"], Float[Array, "*batch lat k channel"]]:
    """One-sided power spectrum along the (periodic) longitude axis, per latitude row and channel.

    Args:
        field: Values on the grid, channels last; longitude is axis ``-2``.

    Returns:
        ``(wavenumbers, power)``: the zonal wavenumbers ``0, 1, ..., lon // 2`` (float32) and the power,
        whose longitude axis is replaced by the wavenumber axis, with ``power.sum(-2) == mean(field**2)``
        over longitude (Parseval, see the module docstring).
    """
    n = field.shape[-2]
    hat = jnp.fft.rfft(field, axis=-2)
    weight = np.full(n // 2 + 1, 2.0)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0  # the Nyquist mode is its own mirror image
    power = jnp.real(hat) ** 2 + jnp.imag(hat) ** 2
    weight = (weight / n**2).reshape((1,) * (power.ndim - 2) + (-1, 1))
    return jnp.arange(n // 2 + 1, dtype=jnp.float32), power * jnp.asarray(weight, power.dtype)


def _per_channel(x: Array) -> Array:
    return x.reshape(-1, x.shape[-1])


def _valid(truth: Array) -> Array:
    return jnp.isfinite(truth)


def _point_weights(weights: Float[Array, " lat"], valid: Array, dtype) -> Array:
    """Latitude weights broadcast to the points of ``valid`` (``(..., lat, lon, channel)``), zero where invalid."""
    weights = jnp.asarray(weights, dtype)
    if valid.ndim < 3 or weights.shape != (valid.shape[-3],):
        raise ValueError(f"weights of shape {weights.shape} do not match the latitude axis (-3) of a truth "
                         f"of shape {valid.shape}: expected ({valid.shape[-3] if valid.ndim >= 3 else 'lat'},)")
    w = jnp.broadcast_to(weights.reshape(-1, 1, 1), valid.shape)
    return jnp.where(valid, w, 0.0)


def _valid_mean(values: Array, valid: Array, weights: Float[Array, " lat"] | None = None) -> Array:
    """Per-channel (latitude-weighted) mean of ``values`` over the valid points."""
    values = jnp.where(valid, values, 0.0)
    if weights is None:
        return jnp.sum(_per_channel(values), 0) / jnp.sum(_per_channel(valid), 0).astype(values.dtype)
    w = _point_weights(weights, valid, values.dtype)
    return jnp.sum(_per_channel(w * values), 0) / jnp.sum(_per_channel(w), 0)


def ensemble_mean_rmse(
    ensemble: Float[Array, "member ... channel"],
    truth: Float[Array, "... channel"],
    weights: Float[Array, " lat"] | None = None,
) -> Float[Array, " channel"]:
    """Per-channel RMSE of the ensemble mean over the valid (finite) points of ``truth``.

    Args:
        ensemble: Members, ``(member, ..., lat, lon, channel)`` when weighted.
        truth: Reference, ``(..., lat, lon, channel)``; non-finite values are missing.
        weights: Optional area weights per latitude row, ``(lat,)``; ``None`` weighs all points equally.
    """
    err = jnp.square(jnp.mean(ensemble, axis=0) - jnp.nan_to_num(truth))
    return jnp.sqrt(_valid_mean(err, _valid(truth), weights))


def ensemble_mean_bias(
    ensemble: Float[Array, "member ... channel"],
    truth: Float[Array, "... channel"],
    weights: Float[Array, " lat"] | None = None,
) -> Float[Array, " channel"]:
    """Per-channel mean of ``ensemble mean - truth`` over the valid points (arguments as
    :func:`ensemble_mean_rmse`); positive when the ensemble is too high."""
    err = jnp.mean(ensemble, axis=0) - jnp.nan_to_num(truth)
    return _valid_mean(err, _valid(truth), weights)


def ensemble_spread(
    ensemble: Float[Array, "member ... channel"],
    truth: Float[Array, "... channel"] | None = None,
    weights: Float[Array, " lat"] | None = None,
    *,
    pooled: bool = False,
) -> Float[Array, " channel"] | Float[Array, ""]:
    """Ensemble spread: square root of the mean unbiased (``ddof=1``) ensemble variance over the valid points.

    For a calibrated ensemble of ``n`` members, ``spread * sqrt((n + 1) / n)`` matches the RMSE of the mean
    (see :func:`spread_skill_ratio`). NaN for one member.

    Args:
        ensemble: Members, ``(member, ..., lat, lon, channel)`` when weighted.
        truth: Reference, ``(..., channel)``, whose non-finite values mark the points left out; ``None``
            counts every point.
        weights: Optional area weights per latitude row, ``(lat,)``.
        pooled: Average the variance over the channels too and return one number (the spread of a state
            vector, e.g. of a Lorenz-96 ensemble ``(member, dim)``), instead of one per channel.

    Returns:
        ``(channel,)`` spreads, or a scalar with ``pooled``.
    """
    var = jnp.var(ensemble, axis=0, ddof=1)
    if truth is None and weights is None:
        # nothing masked or weighted: the plain mean, whose reduction XLA fuses as the twin's filters always had it
        return jnp.sqrt(jnp.mean(var) if pooled else jnp.mean(_per_channel(var), axis=0))
    valid = jnp.ones(var.shape, bool) if truth is None else _valid(truth)
    if pooled:
        # every (point, channel) pair in one channel; merging lon and channel keeps latitude at axis -3
        merged = var.shape[:-2] + (-1, 1) if var.ndim >= 2 else (-1, 1)
        return jnp.sqrt(_valid_mean(var.reshape(merged), valid.reshape(merged), weights))[0]
    return jnp.sqrt(_valid_mean(var, valid, weights))


def spread_skill_ratio(
    ensemble: Float[Array, "member ... channel"],
    truth: Float[Array, "... channel"],
    weights: Float[Array, " lat"] | None = None,
) -> Float[Array, " channel"]:
    """Per-channel ``sqrt((M + 1) / M) * spread / RMSE`` for ``M`` members (1 when calibrated).

    The finite-ensemble factor multiplies the spread, so that members exchangeable with the truth give 1
    whatever ``M`` (module docstring). Arguments as :func:`ensemble_mean_rmse`; NaN for one member.
    """
    m = ensemble.shape[0]
    spread = ensemble_spread(ensemble, truth, weights)
    return spread * math.sqrt((m + 1) / m) / ensemble_mean_rmse(ensemble, truth, weights)


def crps_ensemble(
    ensemble: Float[Array, "member ... channel"],
    truth: Float[Array, "... channel"],
    fair: bool = True,
    weights: Float[Array, " lat"] | None = None,
) -> Float[Array, " channel"]:
    r"""Per-channel mean CRPS of an ensemble, :math:`E|X - y| - \tfrac12 E|X - X'|` (valid points).

    With ``fair`` the second term uses :math:`n(n-1)` pairs (the unbiased estimator of the CRPS of the
    distribution the members are drawn from, Ferro 2014); otherwise :math:`n^2`. The pair term is computed
    from the sorted members: :math:`\sum_{i,j} |x_i - x_j| = 2 \sum_i (2i - n - 1)\, x_{(i)}`. ``weights``
    (``(lat,)``, optional) gives the latitude-weighted mean of the pointwise CRPS.
    """
    n = ensemble.shape[0]
    y = jnp.nan_to_num(truth)
    skill = jnp.mean(jnp.abs(ensemble - y[None]), axis=0)
    ranks = (2.0 * jnp.arange(1, n + 1, dtype=ensemble.dtype) - n - 1.0).reshape((n,) + (1,) * (ensemble.ndim - 1))
    pairs = 2.0 * jnp.sum(ranks * jnp.sort(ensemble, axis=0), axis=0)
    denom = n * (n - 1) if fair and n > 1 else n * n
    crps = skill - 0.5 * pairs / denom
    return _valid_mean(crps, _valid(truth), weights)


def rank_histogram(
    ensemble: Float[Array, "member ... channel"],
    truth: Float[Array, "... channel"],
    key: PRNGKey | None = None,
) -> Int[Array, "channel rank"]:
    """Per-channel counts of the rank of the truth among the members (Hamill 2001).

    The rank is the number of members below the truth, ``0, ..., M``. A truth tied with ``e`` members
    (e.g. zero precipitation) gets one of its ``e + 1`` possible ranks uniformly at random with ``key``,
    or the middle one, ``below + e // 2``, without (deterministic, but it piles ties up in the centre).
    Points with a non-finite truth are not counted, so ``counts.sum(-1)`` is the number of valid points.

    Args:
        ensemble: Members, ``(member, ..., channel)``.
        truth: Reference, ``(..., channel)``.
        key: Optional PRNG key for breaking ties.

    Returns:
        ``(channel, M + 1)`` int32 counts.
    """
    m, channels = ensemble.shape[0], truth.shape[-1]
    y = jnp.nan_to_num(truth)[None]
    below = jnp.sum(ensemble < y, axis=0, dtype=jnp.int32)
    ties = jnp.sum(ensemble == y, axis=0, dtype=jnp.int32)
    if key is None:
        rank = below + ties // 2
    else:
        rank = below + jax.random.randint(key, ties.shape, 0, ties + 1, dtype=jnp.int32)
    index = _per_channel(rank) + jnp.arange(channels, dtype=jnp.int32).reshape(1, -1) * (m + 1)
    counts = jnp.zeros(channels * (m + 1), jnp.int32).at[index.reshape(-1)].add(
        _per_channel(_valid(truth)).astype(jnp.int32).reshape(-1))
    return counts.reshape(channels, m + 1)


def wasserstein1(a: Float[ArrayLike, "..."], b: Float[ArrayLike, "..."], quantiles: int = 1000) -> Array:
    r"""Wasserstein-1 distance between the empirical distributions of two sets of values.

    :math:`W_1 = \int_0^1 |F_a^{-1}(q) - F_b^{-1}(q)|\, dq`: exact (mean absolute difference of the sorted
    values) when the sizes match, otherwise evaluated at ``quantiles`` mid-point quantiles.
    """
    a, b = jnp.ravel(a), jnp.ravel(b)
    if a.size == b.size:
        return jnp.mean(jnp.abs(jnp.sort(a) - jnp.sort(b)))
    q = (jnp.arange(quantiles, dtype=a.dtype) + 0.5) / quantiles
    return jnp.mean(jnp.abs(jnp.quantile(a, q) - jnp.quantile(b, q)))


def ensemble_scores(
    ensemble: Float[Array, "member ... channel"],
    truth: Float[Array, "... channel"],
    channels: tuple[str, ...],
    weights: Float[Array, " lat"] | None = None,
) -> dict[str, dict[str, float]]:
    """Per-channel summary: RMSE of the mean, bias, spread, spread-skill ratio, fair CRPS and W1.

    ``weights`` (``(lat,)``, optional) weighs every score but W1, which compares the unweighted pooled
    member values with the truth's values. With one member the spread and spread-skill ratio are NaN.

    Returns:
        ``{channel: {"rmse", "bias", "spread", "spread_skill", "crps", "wasserstein1"}}`` of floats.
    """
    rmse = ensemble_mean_rmse(ensemble, truth, weights)
    bias = ensemble_mean_bias(ensemble, truth, weights)
    spread = ensemble_spread(ensemble, truth, weights)
    m = ensemble.shape[0]
    ratio = spread * math.sqrt((m + 1) / m) / rmse
    crps = crps_ensemble(ensemble, truth, weights=weights)
    out = {}
    for c, name in enumerate(channels):
        t = truth[..., c]
        v = jnp.isfinite(t)
        members = ensemble[..., c][:, v]
        out[name] = {
            "rmse": float(rmse[c]), "spread": float(spread[c]), "crps": float(crps[c]),
            "wasserstein1": float(wasserstein1(members, t[v])),
            "bias": float(bias[c]), "spread_skill": float(ratio[c]),
        }
    return out


__all__ = [
    "isotropic_energy_spectrum", "zonal_power_spectrum", "ensemble_mean_rmse", "ensemble_mean_bias",
    "ensemble_spread", "spread_skill_ratio", "crps_ensemble", "rank_histogram", "wasserstein1",
    "ensemble_scores",
]
