r"""The static, separable background-error covariance :math:`B` of 3D-Var (:mod:`slams_jax.baselines.variational`).

:class:`StaticCovariance` models the errors of a trajectory ``(time, lat, lon, channel)`` with no
cross-channel covariance and, within channel :math:`c`, a separable correlation:

.. math:: B_c = D_c \, (C^{(c)}_{\mathrm{time}} \otimes C^{(c)}_{\mathrm{lat}} \otimes C^{(c)}_{\mathrm{lon}}) \, D_c,
          \qquad [C^{(c)}_{\mathrm{axis}}]_{ij} = \exp\!\Big(-\frac{d(i, j)^2}{2 L_{c,\mathrm{axis}}^2}\Big),

where :math:`D_c` is the diagonal of standard deviations (one per channel or one per grid point) and
:math:`L` are length scales in grid cells (:math:`L = 0` is no correlation). The distance is
:math:`d(i, j) = |i - j|` on a non-periodic axis (time, and latitude: the poles are never neighbours)
and :math:`\min(|i - j|, n - |i - j|)` on a periodic one (longitude on a global grid). A periodic Gaussian
need not be exactly positive semi-definite, so each 1-D matrix is replaced by its projection on the PSD
cone (negative eigenvalues clipped to zero, in float64), rescaled to a unit diagonal again (so that the
variances stay :math:`D^2`), and its symmetric square root :math:`S_{\mathrm{axis}}` is kept. The square
root used throughout is

.. math:: B^{1/2} = D \, (S_{\mathrm{time}} \otimes S_{\mathrm{lat}} \otimes S_{\mathrm{lon}}), \qquad
          B = B^{1/2} (B^{1/2})^\top,

applied matrix-free one axis at a time. It is symmetric only when :math:`D` is constant per channel
(then :math:`B = B^{1/2} B^{1/2}`); with a per-point :math:`D` its transpose is
:math:`(S_{\mathrm{time}} \otimes S_{\mathrm{lat}} \otimes S_{\mathrm{lon}}) D`.

:func:`~slams_jax.baselines.covariance_fit.fit_static_covariance` estimates :math:`D` and the length scales
from training data; :func:`~slams_jax.baselines.covariance_tuning.tune_static_covariance` chooses among
variants of that fit by the 3D-Var error at withheld observations of held-out training windows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, ArrayLike, Float

_HIGHEST = jax.lax.Precision.HIGHEST

Matrices = tuple[np.ndarray, np.ndarray, np.ndarray]


# --------------------------------------------------------------------------------------------------- helpers
def _lengths(value: Any, name: str) -> tuple[float, ...]:
    """Per-channel length scales as a tuple of finite floats >= 0."""
    values = np.asarray(value, np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"StaticCovariance.{name}={value!r}: expected a non-empty sequence of length scales, one per channel"
        )
    if not (np.all(np.isfinite(values)) and np.all(values >= 0)):
        raise ValueError(f"StaticCovariance.{name}={value!r}: expected finite length scales >= 0 (grid cells)")
    return tuple(float(v) for v in values)


def _trajectory_shape(shape: Sequence[int], name: str) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{name}: expected a trajectory shape (time, lat, lon, channel), got {shape}")
    return shape  # type: ignore[return-value]


def _correlation(n: int, length: float, periodic: bool) -> np.ndarray:
    """The ``(n, n)`` Gaussian correlation matrix of one axis (float64)."""
    i = np.arange(n)
    d = np.abs(i[:, None] - i[None, :]).astype(np.float64)
    if periodic:
        d = np.minimum(d, n - d)
    if length == 0.0:
        return (d == 0).astype(np.float64)
    return np.exp(-np.square(d) / (2.0 * length**2))


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of the nearest correlation-like PSD matrix to a symmetric ``c`` with unit diagonal.

    Negative eigenvalues (round-off, or the wrap of a periodic Gaussian) are set to 0, which shifts the
    diagonal away from 1; rescaling to a unit diagonal again keeps the variances of ``B`` equal to ``std^2``.
    """
    w, u = np.linalg.eigh(c)
    clipped = (u * np.clip(w, 0.0, None)) @ u.T
    scale = 1.0 / np.sqrt(np.diag(clipped))
    w, u = np.linalg.eigh(clipped * scale[:, None] * scale[None, :])
    return (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T


def _correlate(mats, v):
    """``(S_time x S_lat x S_lon) v`` for one trajectory; ``mats[0] is None`` for no time correlation."""
    s_time, s_lat, s_lon = mats
    if s_time is not None:
        v = jnp.einsum("cst,tijc->sijc", s_time, v, precision=_HIGHEST)
    v = jnp.einsum("cai,tijc->tajc", s_lat, v, precision=_HIGHEST)
    return jnp.einsum("cbj,tijc->tibc", s_lon, v, precision=_HIGHEST)


def apply_sqrt(mats, std, v):
    """``B^{1/2} v = D (S_time x S_lat x S_lon) v`` from the runtime arrays of :meth:`StaticCovariance._runtime`.

    ``mats``: the square roots ``(S_time | None, S_lat, S_lon)``; ``std``: the ``(lat, lon, channel)`` field of
    ``D``; ``v``: one trajectory ``(time, lat, lon, channel)``. Traceable: the 3D-Var solver calls it under jit.
    """
    return _correlate(mats, v) * std[None]


def apply_sqrt_transpose(mats, std, v):
    """``(B^{1/2})^T v = (S_time x S_lat x S_lon) D v`` (each ``S`` is symmetric)."""
    return _correlate(mats, v * std[None])


# -------------------------------------------------------------------------------------------- covariance
@dataclasses.dataclass(frozen=True, eq=False)
class StaticCovariance:
    """Separable, channel-block-diagonal background-error covariance of a trajectory ``(time, lat, lon, channel)``.

    ``B = D (C_time x C_lat x C_lon) D`` per channel, with Gaussian correlations
    ``rho(d) = exp(-d^2 / (2 L^2))`` (see the module docstring). Instances are compared and hashed by identity;
    the square-root matrices are cached per trajectory shape.

    Attributes:
        std: Standard deviations, broadcastable to ``(lat, lon, channel)``: e.g. ``(channel,)`` or
            ``(lat, lon, channel)``; finite and >= 0 (stored as a read-only float64 array).
        length_lat: Latitude correlation length per channel, in grid cells (0: uncorrelated).
        length_lon: Longitude correlation length per channel, in grid cells.
        periodic: ``(lat_periodic, lon_periodic)``; ``(False, True)`` on a global latitude-longitude grid.
        length_time: Time correlation length per channel, in time steps, or ``None`` for no temporal
            correlation (``C_time = I``: every state analysed independently). Time is never periodic.
    """

    std: np.ndarray
    length_lat: tuple[float, ...]
    length_lon: tuple[float, ...]
    periodic: tuple[bool, bool] = (False, True)
    length_time: tuple[float, ...] | None = None
    _cache: dict = dataclasses.field(init=False, repr=False, default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "length_lat", _lengths(self.length_lat, "length_lat"))
        object.__setattr__(self, "length_lon", _lengths(self.length_lon, "length_lon"))
        n = len(self.length_lat)
        if len(self.length_lon) != n:
            raise ValueError(
                f"StaticCovariance: {n} latitude lengths but {len(self.length_lon)} longitude lengths; "
                "expected one of each per channel"
            )
        if self.length_time is not None:
            object.__setattr__(self, "length_time", _lengths(self.length_time, "length_time"))
            if len(self.length_time) != n:
                raise ValueError(
                    f"StaticCovariance.length_time: {len(self.length_time)} lengths for {n} channels; "
                    "expected one per channel (or None)"
                )
        periodic = tuple(self.periodic) if isinstance(self.periodic, (tuple, list)) else None
        if periodic is None or len(periodic) != 2 or not all(isinstance(p, (bool, np.bool_)) for p in periodic):
            raise ValueError(
                f"StaticCovariance.periodic={self.periodic!r}: expected a pair of bools (lat_periodic, lon_periodic)"
            )
        object.__setattr__(self, "periodic", (bool(periodic[0]), bool(periodic[1])))
        std = np.array(self.std, np.float64)
        if std.ndim > 3 or (std.ndim >= 1 and std.shape[-1] not in (1, n)):
            raise ValueError(
                f"StaticCovariance.std of shape {std.shape}: expected a shape broadcastable to (lat, lon, {n}), "
                f"e.g. ({n},) or (lat, lon, {n})"
            )
        if not (np.all(np.isfinite(std)) and np.all(std >= 0)):
            raise ValueError("StaticCovariance.std: expected finite standard deviations >= 0")
        std.flags.writeable = False
        object.__setattr__(self, "std", std)

    def __repr__(self) -> str:
        # a per-point std is a whole field: summarized, so logs of a tuned B stay one line
        std = (repr(tuple(round(float(v), 6) for v in self.std.ravel())) if self.std.size <= 8 else
               f"<{self.std.shape} field, mean {float(self.std.mean()):.6g}>")
        return (f"StaticCovariance(std={std}, length_lat={self.length_lat}, length_lon={self.length_lon}, "
                f"periodic={self.periodic}, length_time={self.length_time})")

    @property
    def n_channels(self) -> int:
        return len(self.length_lat)

    def check(self, shape: Sequence[int]) -> tuple[int, int, int, int]:
        """Validate a trajectory shape ``(time, lat, lon, channel)`` against this covariance and return it."""
        shape = _trajectory_shape(shape, "StaticCovariance")
        if shape[3] != self.n_channels:
            raise ValueError(
                f"StaticCovariance with {self.n_channels} channels: got a trajectory of shape {shape} "
                f"with {shape[3]} channels"
            )
        try:
            np.broadcast_shapes(self.std.shape, shape[1:])
        except ValueError:
            raise ValueError(
                f"StaticCovariance.std of shape {self.std.shape} does not broadcast to the (lat, lon, channel) "
                f"grid {shape[1:]} of a trajectory of shape {shape}"
            ) from None
        return shape

    def std_field(self, shape: Sequence[int]) -> np.ndarray:
        """The standard deviations broadcast to ``(lat, lon, channel)`` of a ``shape`` trajectory (float64)."""
        shape = self.check(shape)
        return np.broadcast_to(self.std, shape[1:])

    def sqrt_matrices(self, shape: Sequence[int]) -> Matrices:
        """Symmetric square roots of the per-channel 1-D correlation matrices (float64, read-only, cached).

        Args:
            shape: Trajectory shape ``(time, lat, lon, channel)``.

        Returns:
            ``(S_time, S_lat, S_lon)`` of shapes ``(channel, time, time)``, ``(channel, lat, lat)`` and
            ``(channel, lon, lon)``, with ``S @ S`` the correlation matrix projected on the PSD cone (unit diagonal);
            ``S_time`` is the identity when ``length_time`` is None.
        """
        shape = self.check(shape)
        if shape not in self._cache:
            time, lat, lon, channels = shape
            times = self.length_time if self.length_time is not None else (0.0,) * channels
            mats = tuple(
                np.stack([_psd_sqrt(_correlation(n, float(lengths[c]), periodic)) for c in range(channels)])
                for n, lengths, periodic in (
                    (time, times, False),
                    (lat, self.length_lat, self.periodic[0]),
                    (lon, self.length_lon, self.periodic[1]),
                )
            )
            for m in mats:
                m.flags.writeable = False
            self._cache[shape] = mats
        return self._cache[shape]

    def _runtime(self, shape: Sequence[int], dtype=jnp.float32):
        """The solver's arguments ``(mats, std)``: jnp square roots (``None`` for an uncorrelated time) and std field."""
        s_time, s_lat, s_lon = self.sqrt_matrices(shape)
        mats = (None if self.length_time is None else jnp.asarray(s_time, dtype),
                jnp.asarray(s_lat, dtype), jnp.asarray(s_lon, dtype))
        return mats, jnp.asarray(self.std_field(shape), dtype)

    def sqrt_apply(self, v: Float[ArrayLike, "time lat lon channel"]) -> Float[Array, "time lat lon channel"]:
        """``B^{1/2} v = D (S_time x S_lat x S_lon) v``: maps white noise to a draw from ``N(0, B)`` (jit-able).

        Args:
            v: One trajectory ``(time, lat, lon, channel)``.

        Returns:
            ``B^{1/2} v``, same shape and dtype.
        """
        v = jnp.asarray(v)
        mats, std = self._runtime(v.shape, v.dtype)
        return apply_sqrt(mats, std, v)

    def sqrt_transpose_apply(self, v: Float[ArrayLike, "time lat lon channel"]) -> Float[Array, "time lat lon channel"]:
        """``(B^{1/2})^T v = (S_time x S_lat x S_lon) D v``; equals :meth:`sqrt_apply` when ``std`` is per channel."""
        v = jnp.asarray(v)
        mats, std = self._runtime(v.shape, v.dtype)
        return apply_sqrt_transpose(mats, std, v)

    def apply(self, v: Float[ArrayLike, "time lat lon channel"]) -> Float[Array, "time lat lon channel"]:
        """``B v = B^{1/2} (B^{1/2})^T v`` for one trajectory ``(time, lat, lon, channel)`` (jit-able)."""
        v = jnp.asarray(v)
        mats, std = self._runtime(v.shape, v.dtype)
        return apply_sqrt(mats, std, apply_sqrt_transpose(mats, std, v))

    def dense(self, shape: Sequence[int]) -> np.ndarray:
        """The full ``B`` over the flattened (row-major) trajectory, float64 ``(n, n)`` with ``n = prod(shape)``.

        Built from the PSD-projected correlations ``S @ S``, so it is exactly the matrix that
        :meth:`apply` multiplies by. Memory grows as ``n^2``: for tests and tiny problems only.
        """
        shape = self.check(shape)
        time, lat, lon, channels = shape
        d = self.std_field(shape)
        s_time, s_lat, s_lon = self.sqrt_matrices(shape)
        b = np.zeros(shape + shape)
        for c in range(channels):
            c_time, c_lat, c_lon = (m[c] @ m[c] for m in (s_time, s_lat, s_lon))
            corr = np.einsum("ts,ik,jl->tijskl", c_time, c_lat, c_lon)
            dc = d[:, :, c]
            b[:, :, :, c, :, :, :, c] = corr * dc[None, :, :, None, None, None] * dc[None, None, None, None, :, :]
        n = time * lat * lon * channels
        return b.reshape(n, n)


__all__ = ["Matrices", "StaticCovariance"]
