r"""Evaluation metrics of slams_jax live here: pure ``jnp`` functions of arrays, jit-able.

Isotropic kinetic-energy spectrum
---------------------------------
For a velocity field :math:`(u, v)` on an :math:`N_y \times N_x` periodic grid of a
:math:`2\pi \times 2\pi` domain, with unnormalized DFT :math:`\hat u_{\mathbf k}` and integer
wavenumbers :math:`\mathbf k = (k_y, k_x)`, Parseval's identity reads

.. math:: \Big\langle \tfrac12 (u^2 + v^2) \Big\rangle
          = \sum_{\mathbf k} \frac{|\hat u_{\mathbf k}|^2 + |\hat v_{\mathbf k}|^2}{2\,(N_y N_x)^2},

(:math:`\langle\cdot\rangle` = mean over grid points). The isotropic spectrum groups the terms of
this sum into integer shells, :math:`E(k) = \sum_{\mathrm{round}(|\mathbf k|) = k} (\dots)`,
so that :math:`\sum_k E(k)` equals the mean kinetic energy exactly. Only the ``rfft2`` half-plane is
computed; its columns :math:`0 < k_x < N_x/2` stand for both :math:`\pm k_x` and count twice.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float


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


def _per_channel(x: Array) -> Array:
    return x.reshape(-1, x.shape[-1])


def _valid(truth: Array) -> Array:
    return jnp.isfinite(truth)


def _valid_mean(values: Array, valid: Array) -> Array:
    """Per-channel mean of ``values`` over the valid points."""
    total = jnp.sum(_per_channel(jnp.where(valid, values, 0.0)), 0)
    return total / jnp.sum(_per_channel(valid), 0).astype(values.dtype)


def ensemble_mean_rmse(ensemble: Float[Array, "member ... channel"], truth: Float[Array, "... channel"]) -> Array:
    """Per-channel RMSE of the ensemble mean over the valid (finite) points of ``truth``."""
    err = jnp.square(jnp.mean(ensemble, axis=0) - jnp.nan_to_num(truth))
    return jnp.sqrt(_valid_mean(err, _valid(truth)))


def ensemble_spread(ensemble: Float[Array, "member ... channel"], truth: Float[Array, "... channel"]) -> Array:
    """Per-channel ensemble spread: square root of the mean unbiased ensemble variance (valid points).

    For a calibrated ensemble of ``n`` members, ``spread * sqrt((n + 1) / n)`` matches the RMSE of the mean.
    """
    var = jnp.var(ensemble, axis=0, ddof=1)
    return jnp.sqrt(_valid_mean(var, _valid(truth)))


def crps_ensemble(
    ensemble: Float[Array, "member ... channel"], truth: Float[Array, "... channel"], fair: bool = True
) -> Array:
    r"""Per-channel mean CRPS of an ensemble, :math:`E|X - y| - \tfrac12 E|X - X'|` (valid points).

    With ``fair`` the second term uses :math:`n(n-1)` pairs (the unbiased estimator of the CRPS of the
    distribution the members are drawn from, Ferro 2014); otherwise :math:`n^2`. The pair term is computed
    from the sorted members: :math:`\sum_{i,j} |x_i - x_j| = 2 \sum_i (2i - n - 1)\, x_{(i)}`.
    """
    n = ensemble.shape[0]
    y = jnp.nan_to_num(truth)
    skill = jnp.mean(jnp.abs(ensemble - y[None]), axis=0)
    ranks = (2.0 * jnp.arange(1, n + 1, dtype=ensemble.dtype) - n - 1.0).reshape((n,) + (1,) * (ensemble.ndim - 1))
    pairs = 2.0 * jnp.sum(ranks * jnp.sort(ensemble, axis=0), axis=0)
    denom = n * (n - 1) if fair and n > 1 else n * n
    crps = skill - 0.5 * pairs / denom
    return _valid_mean(crps, _valid(truth))


def wasserstein1(a: Float[Array, "n"], b: Float[Array, "m"], quantiles: int = 1000) -> Array:
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
    ensemble: Float[Array, "member ... channel"], truth: Float[Array, "... channel"], channels: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """RMSE of the mean, spread, fair CRPS and W1 (pooled members against the truth's values) per channel."""
    rmse = ensemble_mean_rmse(ensemble, truth)
    spread = ensemble_spread(ensemble, truth)
    crps = crps_ensemble(ensemble, truth)
    out = {}
    for c, name in enumerate(channels):
        t = truth[..., c]
        v = jnp.isfinite(t)
        members = ensemble[..., c][:, v]
        out[name] = {
            "rmse": float(rmse[c]), "spread": float(spread[c]), "crps": float(crps[c]),
            "wasserstein1": float(wasserstein1(members, t[v])),
        }
    return out


__all__ = [
    "isotropic_energy_spectrum", "ensemble_mean_rmse", "ensemble_spread", "crps_ensemble", "wasserstein1",
    "ensemble_scores",
]
