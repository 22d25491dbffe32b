r"""Auxiliary modalities of the Kolmogorov flow: stand-ins for in-situ and satellite data.

A multimodal assimilation problem needs data besides the state; two products of the velocity play that
part (both are deterministic functions of the vorticity :math:`\omega`, so they carry information about the
state, but not all of it):

* :func:`precipitation`: :math:`P = s\,r^2/(w + r)`, :math:`r = \max(\omega - \omega_c, 0)`
  (mm/day), non-negative with exact zeros, C1 at the threshold, rain where vorticity is strongly
  positive, NaN over a fixed periodic "ocean" blob (:func:`ocean_mask`), like gauge-based CPC
  precipitation which is undefined over the ocean.
* :func:`outgoing_longwave`: :math:`\mathrm{OLR} = 240 - 60 \tanh(\bar\omega / 4)`
  (W m-2), with :math:`\bar\omega` the vorticity seen through a Gaussian footprint of FWHM 8 cells
  of the 64 grid: smooth and coarse like a broadband satellite radiance.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Bool, Float
from slams_jax.data.kolmogorov.spectral import batched, flatten_batch, grid_coordinates, vorticity, wavenumbers


def ocean_mask(n: int) -> Bool[Array, "y x"]:
    """Fixed periodic "ocean" region (True = ocean) covering about 36 % of an n x n grid.

    The super-level set of a smooth trigonometric polynomial, so it is a periodic-consistent blob that
    looks the same at every resolution.
    """
    y = grid_coordinates(n).reshape(n, 1)
    x = grid_coordinates(n).reshape(1, n)
    h = np.cos(x - 2.0) + 0.8 * np.cos(y - 1.0) + 0.35 * np.cos(2.0 * x + y - 0.5)
    return jnp.asarray(h > 0.4)


@jax.jit
def precipitation(uv: Float[Array, "*batch y x 2"], threshold: float = 2.0, scale: float = 4.0,
                  width: float = 2.0) -> Float[Array, "*batch y x"]:
    """Precipitation-like field (mm/day) from positive vorticity, NaN over :func:`ocean_mask`.

    ``P = scale * r^2 / (width + r)`` with ``r = max(omega - threshold, 0)``: zero below the threshold,
    quadratic onset (C1), then linear growth. ``threshold`` and ``width`` are in vorticity units
    (the RMS vorticity at Re = 1000 is about 4.5); with the defaults about 30 % of land points are
    wet, with a mean of 2.5 mm/day and maxima near 85 mm/day.
    """
    w = vorticity(uv)
    r = jnp.maximum(w - threshold, 0.0)
    p = scale * r * r / (width + r)
    mask = jnp.broadcast_to(ocean_mask(w.shape[-1]), w.shape)
    return jnp.where(mask, jnp.nan, p).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("footprint",))
def outgoing_longwave(uv: Float[Array, "*batch y x 2"], footprint: float = 8.0,
                      reference: float = 4.0) -> Float[Array, "*batch y x"]:
    """Outgoing-longwave-radiation-like field (W m-2): ``240 - 60 tanh(smooth(omega) / reference)``.

    ``smooth`` is a Gaussian low-pass of FWHM ``footprint * 2 pi / 64`` radians (``footprint`` cells of
    the 64 grid whatever the input grid), so cloudy (low OLR) regions follow positive vorticity.
    """
    w = vorticity(uv)
    flat, batch = flatten_batch(w, 2)
    n = flat.shape[-1]
    sigma = footprint * (2.0 * math.pi / 64.0) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    ky, kx = wavenumbers(n)
    kernel = np.exp(-0.5 * sigma**2 * (ky**2 + kx**2)).astype(np.complex64)
    smooth = jnp.fft.irfft2(jnp.fft.rfft2(flat) * batched(kernel, 3), s=(n, n))
    olr = 240.0 - 60.0 * jnp.tanh(smooth / reference)
    return olr.reshape(batch + (n, n)).astype(jnp.float32)


__all__ = ["ocean_mask", "precipitation", "outgoing_longwave"]
