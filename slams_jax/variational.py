r"""3D-Var / optimal interpolation with a static, separable background-error covariance.

The classical baseline of data assimilation: a Gaussian prior around a background trajectory
:math:`x_b` (e.g. climatology or a forecast) with a fixed covariance :math:`B`, updated by linear
observations :math:`y_i = H_i x + \nu_i`, :math:`\nu_i \sim N(0, \mathrm{diag}(s_i^2))`. The analysis is
the posterior mean (and mode)

.. math:: x_a = x_b + B H^\top (H B H^\top + R)^{-1} (y - H x_b)
              = \arg\min_x \tfrac12 (x - x_b)^\top B^{-1} (x - x_b) + \tfrac12 \| R^{-1/2} (y - H x) \|^2,

with posterior covariance :math:`A = (B^{-1} + H^\top R^{-1} H)^{-1}` (all observations stacked into
:math:`H`, :math:`y`, :math:`R`).

Background covariance
---------------------
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

:func:`fit_static_covariance` estimates :math:`D` and the length scales from a training set: the
standard deviation of the anomalies about the climatological mean (pooled per channel, or per point),
and per channel and axis the least-squares fit of :math:`-\log \hat\rho(k) = k^2 / (2L^2)` over the lags
:math:`k = 1, \dots, K`, where :math:`\hat\rho(k)` is the empirical lag correlation of the standardized
anomalies and :math:`K` the last lag of the run :math:`\hat\rho(1), \hat\rho(2), \dots` that stays above
0.05 (and at most ``max_lag``), i.e. :math:`1/(2L^2) = \sum_k k^2 (-\log\hat\rho(k)) / \sum_k k^4`.

Solver
------
:func:`three_dvar` uses the control variable :math:`x = x_b + B^{1/2} v`, which turns the cost into

.. math:: J(v) = \tfrac12 v^\top v + \tfrac12 \sum_i \| (y_i - H_i x_b - G_i v) / s_i \|^2,
          \qquad G_i = H_i B^{1/2},

whose minimiser solves the well-conditioned normal equations
:math:`(I + G^\top R^{-1} G)\, v = G^\top R^{-1} (y - H x_b)` (eigenvalues :math:`\ge 1`, no :math:`B^{-1}`
needed, singular :math:`B` allowed). They are solved matrix-free by conjugate gradients to a relative
residual ``tol``, :math:`H_i` and :math:`H_i^\top` being the linearization of each operator and its
transpose. The whole solve is one jitted function, compiled once per observation structure (operators,
shapes); values, noise levels, the background and the covariance's matrices are runtime arguments.

:func:`three_dvar_ensemble` draws posterior samples by randomized maximum likelihood: member :math:`m`
solves the same problem with a perturbed background :math:`x_b + B^{1/2} \eta_m` and perturbed
observations :math:`y_i + s_i \varepsilon_{i,m}` (:math:`\eta, \varepsilon \sim N(0, I)`). In the
linear-Gaussian case the members are exact, independent samples of :math:`N(x_a, A)`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float, PRNGKey
from slams_jax.observations import Observation, check_observations

_HIGHEST = jax.lax.Precision.HIGHEST
#: Lag correlations at or below this are noise-dominated and left out of the length-scale fit.
CORRELATION_THRESHOLD = 0.05
#: The length whose lag-1 correlation equals the threshold: used when even lag 1 is at or below it.
_SHORT_LENGTH = 1.0 / math.sqrt(2.0 * math.log(1.0 / CORRELATION_THRESHOLD))

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


def _sqrt(mats, std, v):
    """``B^{1/2} v = D (S_time x S_lat x S_lon) v``; ``std`` is the ``(lat, lon, channel)`` field of ``D``."""
    return _correlate(mats, v) * std[None]


def _sqrt_transpose(mats, std, v):
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

    def sqrt_apply(self, v: Float[Array, "time lat lon channel"]) -> Float[Array, "time lat lon channel"]:
        """``B^{1/2} v = D (S_time x S_lat x S_lon) v``: maps white noise to a draw from ``N(0, B)`` (jit-able).

        Args:
            v: One trajectory ``(time, lat, lon, channel)``.

        Returns:
            ``B^{1/2} v``, same shape and dtype.
        """
        v = jnp.asarray(v)
        mats, std = self._runtime(v.shape, v.dtype)
        return _sqrt(mats, std, v)

    def sqrt_transpose_apply(self, v: Float[Array, "time lat lon channel"]) -> Float[Array, "time lat lon channel"]:
        """``(B^{1/2})^T v = (S_time x S_lat x S_lon) D v``; equals :meth:`sqrt_apply` when ``std`` is per channel."""
        v = jnp.asarray(v)
        mats, std = self._runtime(v.shape, v.dtype)
        return _sqrt_transpose(mats, std, v)

    def apply(self, v: Float[Array, "time lat lon channel"]) -> Float[Array, "time lat lon channel"]:
        """``B v = B^{1/2} (B^{1/2})^T v`` for one trajectory ``(time, lat, lon, channel)`` (jit-able)."""
        v = jnp.asarray(v)
        mats, std = self._runtime(v.shape, v.dtype)
        return _sqrt(mats, std, _sqrt_transpose(mats, std, v))

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


# ----------------------------------------------------------------------------------------------------- fit
def _lag_correlation(z: np.ndarray, valid: np.ndarray, axis: int, lag: int, periodic: bool) -> np.ndarray:
    """Per-channel correlation of standardized anomalies ``z`` (zeros where invalid) at ``lag`` along ``axis``."""
    if periodic:
        za, zb = z, np.roll(z, -lag, axis=axis)
        va, vb = valid, np.roll(valid, -lag, axis=axis)
    else:
        n = z.shape[axis]
        head = [slice(None)] * z.ndim
        tail = [slice(None)] * z.ndim
        head[axis], tail[axis] = slice(0, n - lag), slice(lag, n)
        za, zb, va, vb = z[tuple(head)], z[tuple(tail)], valid[tuple(head)], valid[tuple(tail)]
    axes = tuple(range(z.ndim - 1))
    num = np.sum(za * zb, axis=axes)  # a pair with a missing value contributes 0 (z is 0 there)
    den = np.sqrt(np.sum(za * za * vb, axis=axes) * np.sum(zb * zb * va, axis=axes))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _fit_length(z: np.ndarray, valid: np.ndarray, axis: int, periodic: bool, max_lag: int | None) -> tuple[float, ...]:
    """Per-channel Gaussian length scale along ``axis`` (see the module docstring for the rule)."""
    n = z.shape[axis]
    limit = n // 2 if periodic else n - 1
    if max_lag is not None:
        limit = min(limit, max_lag)
    rhos = [_lag_correlation(z, valid, axis, k, periodic) for k in range(1, limit + 1)]
    lengths = []
    for c in range(z.shape[-1]):
        lags, logs = [], []
        for k, rho in enumerate(rhos, start=1):
            if not rho[c] > CORRELATION_THRESHOLD:
                break  # the contiguous run above the threshold ends here
            lags.append(k)
            logs.append(-math.log(min(float(rho[c]), 1.0 - 1e-12)))
        if not lags:
            lengths.append(_SHORT_LENGTH)
            continue
        k2 = np.square(np.asarray(lags, np.float64))
        q = float(np.sum(k2 * np.asarray(logs)) / np.sum(k2 * k2))  # least squares of -log rho = q k^2
        lengths.append(float(math.sqrt(1.0 / (2.0 * q))))
    return tuple(lengths)


def fit_static_covariance(
    train: np.ndarray,
    periodic: tuple[bool, bool],
    max_lag: int | None = None,
    per_point_std: bool = False,
    time_correlation: bool = False,
) -> tuple[np.ndarray, StaticCovariance]:
    """Climatological mean and a :class:`StaticCovariance` fitted to training trajectories.

    The anomalies are taken about the mean over trajectories and times; the standard deviation is pooled
    over all points of a channel (or kept per point), and the length scales are fitted per channel to the
    empirical lag correlation of the standardized anomalies along latitude, longitude (and time, within
    each trajectory, with ``time_correlation``) by the least-squares rule of the module docstring. A
    periodic axis is shifted with :func:`numpy.roll` (lags up to ``n // 2``), a non-periodic one by slicing
    (lags up to ``n - 1``). Lags whose correlation is at or below 0.05 end the fit; if even lag 1 is, the
    length is ``1 / sqrt(2 log 20) ~ 0.41`` cells (the length whose lag-1 correlation is 0.05).

    Args:
        train: Training data ``(trajectory, time, lat, lon, channel)``; NaN marks missing values, which
            are ignored. A grid point never observed gets its channel's mean (and pooled std).
        periodic: ``(lat_periodic, lon_periodic)`` of the grid.
        max_lag: Largest lag used in the fits (>= 1), or ``None`` for the axis limit.
        per_point_std: Standard deviation per grid point ``(lat, lon, channel)`` instead of per channel.
        time_correlation: Also fit a time length scale (otherwise ``length_time=None``).

    Returns:
        ``(mean, covariance)``: the mean field ``(lat, lon, channel)`` (float32) and the fitted covariance.
    """
    train = np.asarray(train)
    if train.ndim != 5:
        raise ValueError(
            f"fit_static_covariance: train of shape {train.shape}, expected 5 axes "
            "(trajectory, time, lat, lon, channel)"
        )
    if not np.issubdtype(train.dtype, np.number):
        raise ValueError(f"fit_static_covariance: train of dtype {train.dtype}, expected numbers")
    if max_lag is not None and (isinstance(max_lag, bool) or not isinstance(max_lag, (int, np.integer)) or max_lag < 1):
        raise ValueError(f"fit_static_covariance: max_lag={max_lag!r}, expected None or an integer >= 1")
    if time_correlation and train.shape[1] < 2:
        raise ValueError(
            f"fit_static_covariance: time_correlation needs trajectories of at least 2 states, "
            f"got train of shape {train.shape}"
        )
    x = train.astype(np.float64)
    valid = np.isfinite(x)
    if not valid.any(axis=(0, 1, 2, 3)).all():
        empty = [int(c) for c in np.flatnonzero(~valid.any(axis=(0, 1, 2, 3)))]
        raise ValueError(f"fit_static_covariance: channels {empty} of train (shape {train.shape}) have no finite value")
    x0 = np.where(valid, x, 0.0)
    count = valid.sum(axis=(0, 1))  # (lat, lon, channel)
    channel_mean = x0.sum(axis=(0, 1, 2, 3)) / valid.sum(axis=(0, 1, 2, 3))
    mean = np.where(count > 0, x0.sum(axis=(0, 1)) / np.maximum(count, 1), channel_mean)
    anomaly = np.where(valid, x - mean, 0.0)
    square = np.sum(anomaly**2, axis=(0, 1))
    # Unbiased: each point's own mean costs one degree of freedom.
    pooled = np.sqrt(square.sum(axis=(0, 1)) / np.maximum((count - 1).clip(0).sum(axis=(0, 1)), 1))
    if per_point_std:
        std = np.where(count > 1, np.sqrt(square / np.maximum(count - 1, 1)), pooled)
    else:
        std = pooled
    scale = np.broadcast_to(std, mean.shape)
    z = anomaly / np.where(scale > 0, scale, 1.0)  # correlations of standardized anomalies: per-point std aware
    length_lat = _fit_length(z, valid, 2, bool(periodic[0]), max_lag)
    length_lon = _fit_length(z, valid, 3, bool(periodic[1]), max_lag)
    length_time = _fit_length(z, valid, 1, False, max_lag) if time_correlation else None
    covariance = StaticCovariance(std=std, length_lat=length_lat, length_lon=length_lon,
                                  periodic=periodic, length_time=length_time)
    return mean.astype(np.float32), covariance


# -------------------------------------------------------------------------------------------------- solver
def _cg(matvec, b, tol, maxiter: int):
    """Conjugate gradients from 0 until ``|r| <= tol |b|`` or ``maxiter`` steps: ``(x, iterations, |r| / |b|)``."""
    bb = jnp.vdot(b, b)
    threshold = jnp.square(tol) * bb

    def cond(state):
        k, _, _, _, rr = state
        return (k < maxiter) & (rr > threshold)

    def body(state):
        k, x, r, p, rr = state
        ap = matvec(p)
        pap = jnp.vdot(p, ap)
        alpha = rr / jnp.where(pap > 0, pap, 1.0)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = jnp.vdot(r, r)
        # rr > threshold >= 0 here, except for finished members of a vmapped solve (their update is discarded).
        p = r + (rr_new / jnp.where(rr > 0, rr, 1.0)) * p
        return k + 1, x, r, p, rr_new

    state = (jnp.asarray(0, jnp.int32), jnp.zeros_like(b), b, b, bb)
    k, x, _, _, rr = jax.lax.while_loop(cond, body, state)
    residual = jnp.sqrt(rr / jnp.where(bb > 0, bb, 1.0))
    return x, k, residual


def _analysis(operators, maxiter, background, values, stds, mats, std, tol):
    """One 3D-Var solve in control-variable form: ``(x_a, iterations, relative residual)``."""
    linear = [jax.linearize(op, background) for op in operators]  # (H x_b, v -> H v)
    adjoints = [jax.linear_transpose(jvp, background) for _, jvp in linear]
    weights = [1.0 / jnp.square(s) for s in stds]  # R^{-1}

    def g(v):
        u = _sqrt(mats, std, v)
        return [jvp(u) for _, jvp in linear]

    def g_adjoint(ws):
        total = sum(adjoint(w)[0] for adjoint, w in zip(adjoints, ws))
        return _sqrt_transpose(mats, std, total)

    rhs = g_adjoint([(y - hxb) * w for y, (hxb, _), w in zip(values, linear, weights)])
    matvec = lambda v: v + g_adjoint([gv * w for gv, w in zip(g(v), weights)])
    v, iterations, residual = _cg(matvec, rhs, tol, maxiter)
    return background + _sqrt(mats, std, v), iterations, residual


_analysis_jit = jax.jit(_analysis, static_argnames=("operators", "maxiter"))


def _perturbed_analysis(operators, maxiter, members, key, background, values, stds, mats, std, tol):
    """Randomized maximum likelihood: ``members`` solves with perturbed background and observations."""
    # One flat draw, cut into the background and observation perturbations: XLA compiles a flat threefry
    # draw several times faster than one of a many-axis shape.
    sizes = [math.prod(background.shape)] + [math.prod(y.shape) for y in values]
    noise = jax.random.normal(key, (members * sum(sizes),), background.dtype).reshape(members, sum(sizes))
    parts = jnp.split(noise, np.cumsum(sizes)[:-1].tolist(), axis=1)
    eta = parts[0].reshape((members,) + background.shape)
    backgrounds = background[None] + jax.vmap(lambda e: _sqrt(mats, std, e))(eta)
    perturbed = [
        y[None] + s[None] * eps.reshape((members,) + y.shape) for y, s, eps in zip(values, stds, parts[1:])
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


def three_dvar(
    observations: Sequence[Observation],
    background: Float[Array, "time lat lon channel"],
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
    background: Float[Array, "time lat lon channel"],
    covariance: StaticCovariance,
    members: int,
    *,
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
        return_info: Also return ``{"iterations", "residual", "converged"}``, arrays ``(member,)``.

    Returns:
        The members ``(member, time, lat, lon, channel)`` (np.float32), and the info dict if ``return_info``.
    """
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
        raise ValueError(f"three_dvar_ensemble: members={members!r}, expected an integer >= 1")
    args = _prepare(observations, background, covariance, tol, maxiter, "three_dvar_ensemble")
    ensemble, iterations, residual = _ensemble_jit(members=int(members), key=key, **args)
    ensemble = np.asarray(ensemble, np.float32)
    if not return_info:
        return ensemble
    residual = np.asarray(residual, np.float64)
    return ensemble, {"iterations": np.asarray(iterations), "residual": residual, "converged": residual <= tol}


__all__ = [
    "CORRELATION_THRESHOLD",
    "StaticCovariance",
    "fit_static_covariance",
    "three_dvar",
    "three_dvar_ensemble",
]
