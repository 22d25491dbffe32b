r"""Spectral operators on the doubly periodic :math:`[0, 2\pi)^2` grid of the Kolmogorov flow.

Grid
----
An n x n grid has nodes (not cell centres) :math:`y_j = x_j = 2\pi j / n`, ``j = 0..n-1``, on both axes,
so the nodes of a coarse grid are a subset of a fine one's and coarsening by spectral truncation needs no
phase shift. A field is held as its ``rfft2`` coefficients over the (y, x) axes: integer wavenumbers
``ky`` (n of them, in :func:`numpy.fft.fftfreq` order) by ``kx = 0 .. n // 2``.

Conventions
-----------
* Derivatives: :math:`\partial_x \to i k_x`, :math:`\partial_y \to i k_y`, zero on the Nyquist modes (the
  Nyquist mode of an even grid is its own conjugate, so its derivative is not a real field).
* Streamfunction and velocity: :math:`\Delta\psi = -\omega`, :math:`u = \partial_y\psi`,
  :math:`v = -\partial_x\psi`, i.e. :math:`\hat\psi = \hat\omega / |k|^2` (zero mean) and
  :math:`\hat u = i k_y \hat\psi`, :math:`\hat v = -i k_x \hat\psi`, so :math:`\nabla\cdot\mathbf{u} = 0`
  holds mode by mode; the vorticity is :math:`\omega = \partial_x v - \partial_y u`.
* 2/3 rule: only the modes :math:`|k_x|, |k_y| \le K = \lfloor (n-1)/3 \rfloor` are kept
  (:func:`dealias_mask`); the product of two such fields has no alias on the kept modes.
* Re-gridding (:func:`spectral_resample`) keeps the modes :math:`|k_x|, |k_y| < \min(N, n)/2` (Nyquist
  modes dropped), which keeps a coarse velocity exactly solenoidal.

The wavenumber tables are numpy constants built once per grid size and baked into the compiled code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Complex

from slams_jax._types import Array, Float

Spectrum = Complex[Array, "*batch ky kx"]  # rfft2 coefficients, kx = 0 .. n // 2


def wavenumbers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers ``ky`` (n, 1) and ``kx`` (1, n//2+1) of ``rfft2`` on a 2*pi domain."""
    ky = np.fft.fftfreq(n, 1.0 / n).reshape(n, 1)
    kx = np.fft.rfftfreq(n, 1.0 / n).reshape(1, n // 2 + 1)
    return ky, kx


def derivatives(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``i ky`` and ``i kx`` as full (n, n//2+1) complex64 arrays, zero on the Nyquist modes.

    The Nyquist mode of an even grid is its own conjugate, so its derivative is not representable as
    a real field; zeroing it is the usual convention.
    """
    ky, kx = wavenumbers(n)
    ky = np.where(np.abs(ky) == n // 2, 0.0, ky)
    kx = np.where(kx == n // 2, 0.0, kx)
    shape = (n, n // 2 + 1)
    return (np.broadcast_to(1j * ky, shape).astype(np.complex64),
            np.broadcast_to(1j * kx, shape).astype(np.complex64))


def inverse_laplacian(n: int) -> np.ndarray:
    """``1 / |k|^2`` with the mean mode set to 0 (the streamfunction has zero mean)."""
    ky, kx = wavenumbers(n)
    k2 = ky**2 + kx**2
    return np.where(k2 == 0, 0.0, 1.0 / np.where(k2 == 0, 1.0, k2)).astype(np.complex64)


def dealias_mask(n: int) -> np.ndarray:
    """1 on the modes ``|kx|, |ky| <= (n-1)//3`` kept by the 2/3 rule, else 0."""
    ky, kx = wavenumbers(n)
    cut = (n - 1) // 3
    return ((np.abs(ky) <= cut) & (np.abs(kx) <= cut)).astype(np.complex64)


def batched(c: np.ndarray, ndim: int) -> jax.Array:
    """Constant ``c`` with leading unit axes, so it multiplies an ``ndim`` array without rank promotion."""
    return jnp.asarray(c.reshape((1,) * (ndim - c.ndim) + c.shape))


def flatten_batch(x: jax.Array, core: int) -> tuple[jax.Array, tuple[int, ...]]:
    """``x (*batch, *core)`` as ``(prod(batch), *core)``, and ``batch`` to restore it with a reshape."""
    batch = x.shape[: x.ndim - core]
    return x.reshape((-1,) + x.shape[x.ndim - core:]), batch


def grid_coordinates(n: int) -> np.ndarray:
    """Node coordinates ``2 pi j / n`` (radians) of both axes of an n x n grid."""
    return 2.0 * np.pi * np.arange(n) / n


def spectral_resample(w_hat: Spectrum, n: int) -> Complex[Array, "*batch ky_out kx_out"]:
    """Re-grid ``rfft2`` coefficients from an N grid to an n grid by truncation or zero padding.

    Only modes ``|kx|, |ky| < min(N, n) / 2`` survive (the Nyquist modes are dropped, so a real field
    stays real and a solenoidal velocity stays solenoidal); coefficients are rescaled by
    ``(n / N)^2`` because ``rfft2`` is unnormalized.

    Args:
        w_hat: Complex[Array, "*batch N N//2+1"] coefficients on the N grid.
        n: Target grid size (even).

    Returns:
        Complex[Array, "*batch n n//2+1"] coefficients on the n grid.
    """
    big = w_hat.shape[-2]
    h = min(big, n) // 2
    top = w_hat[..., :h, :h]
    bottom = w_hat[..., big - h + 1:, :h]
    pad_shape = w_hat.shape[:-2]
    zeros_mid = jnp.zeros(pad_shape + (n - 2 * h + 1, h), w_hat.dtype)
    out = jnp.concatenate([top, zeros_mid, bottom], axis=-2)
    zeros_right = jnp.zeros(pad_shape + (n, n // 2 + 1 - h), w_hat.dtype)
    out = jnp.concatenate([out, zeros_right], axis=-1)
    return out * ((n / big) ** 2)


# ---------------------------------------------------------------------------------------------
# Diagnostics on arbitrary grids (public, batch-friendly).


@jax.jit
def velocity_from_vorticity(omega: Float[Array, "*batch y x"]) -> Float[Array, "*batch y x 2"]:
    """Velocity ``(u, v) = (d psi/dy, -d psi/dx)`` with ``Delta psi = -omega`` (spectral).

    The mean flow is set to zero (it is not determined by the vorticity).
    """
    flat, batch = flatten_batch(omega, 2)
    n = flat.shape[-2]
    uv = velocity_hat_to_uv(jnp.fft.rfft2(flat), n)
    return uv.reshape(batch + uv.shape[-3:])


def velocity_hat_to_uv(w_hat: Spectrum, n: int) -> Float[Array, "b y x 2"]:
    """Velocity ``(u, v)`` on the n grid from vorticity coefficients ``(b, n, n//2+1)``."""
    iky, ikx = derivatives(n)
    psi_hat = w_hat * batched(inverse_laplacian(n), w_hat.ndim)
    u = jnp.fft.irfft2(psi_hat * batched(iky, w_hat.ndim), s=(n, n))
    v = jnp.fft.irfft2(psi_hat * batched(-ikx, w_hat.ndim), s=(n, n))
    return jnp.stack([u, v], axis=-1)


def _curl_and_divergence(uv: Float[Array, "*batch y x 2"], curl: bool) -> Float[Array, "*batch y x"]:
    flat, batch = flatten_batch(uv, 3)
    ny, nx = flat.shape[-3:-1]
    if ny != nx:
        raise ValueError(f"square grid expected, got {ny} x {nx}")
    iky, ikx = derivatives(nx)
    u_hat = jnp.fft.rfft2(flat[..., 0])
    v_hat = jnp.fft.rfft2(flat[..., 1])
    if curl:
        out_hat = v_hat * batched(ikx, 3) - u_hat * batched(iky, 3)
    else:
        out_hat = u_hat * batched(ikx, 3) + v_hat * batched(iky, 3)
    return jnp.fft.irfft2(out_hat, s=(ny, nx)).reshape(batch + (ny, nx))


@jax.jit
def vorticity(uv: Float[Array, "*batch y x 2"]) -> Float[Array, "*batch y x"]:
    """Vorticity ``dv/dx - du/dy`` by spectral differentiation on the periodic 2*pi grid."""
    return _curl_and_divergence(uv, curl=True)


@jax.jit
def divergence(uv: Float[Array, "*batch y x 2"]) -> Float[Array, "*batch y x"]:
    """Divergence ``du/dx + dv/dy`` by spectral differentiation on the periodic 2*pi grid."""
    return _curl_and_divergence(uv, curl=False)


def dealias(omega: Float[Array, "*batch y x"]) -> Float[Array, "*batch y x"]:
    """``omega`` projected on the modes kept by the 2/3 rule (see :func:`dealias_mask`)."""
    n = omega.shape[-1]
    w_hat = jnp.fft.rfft2(omega) * batched(dealias_mask(n), omega.ndim)
    return jnp.fft.irfft2(w_hat, s=(n, n))


__all__ = [
    "Spectrum", "wavenumbers", "derivatives", "inverse_laplacian", "dealias_mask", "batched", "flatten_batch",
    "grid_coordinates", "spectral_resample", "velocity_from_vorticity", "velocity_hat_to_uv", "vorticity",
    "divergence", "dealias",
]
