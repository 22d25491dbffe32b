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
