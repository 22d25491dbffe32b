r"""Fitting the static covariance :class:`~slams_jax.baselines.covariance.StaticCovariance` to training data.

:func:`fit_static_covariance` estimates the standard deviations :math:`D` and the Gaussian length scales
:math:`L` of :math:`B` from a training set: the standard deviation of the anomalies about the
climatological mean (pooled per channel, or per point), and per channel and axis the least-squares fit of
:math:`-\log \hat\rho(k) = k^2 / (2L^2)` over the lags :math:`k = 1, \dots, K`, where :math:`\hat\rho(k)` is
the empirical lag correlation of the standardized anomalies and :math:`K` the last lag of the run
:math:`\hat\rho(1), \hat\rho(2), \dots` that stays above 0.05 (and at most ``max_lag``), i.e.
:math:`1/(2L^2) = \sum_k k^2 (-\log\hat\rho(k)) / \sum_k k^4`.
"""

from __future__ import annotations

import math

import numpy as np

from slams_jax.baselines.covariance import StaticCovariance

#: Lag correlations at or below this are noise-dominated and left out of the length-scale fit.
CORRELATION_THRESHOLD = 0.05
#: The length whose lag-1 correlation equals the threshold: used when even lag 1 is at or below it.
_SHORT_LENGTH = 1.0 / math.sqrt(2.0 * math.log(1.0 / CORRELATION_THRESHOLD))


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


def _check_train(train: np.ndarray, max_lag: int | None, time_correlation: bool) -> np.ndarray:
    """The training data as an array ``(trajectory, time, lat, lon, channel)``, the arguments checked."""
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
    return train


def _anomalies(train: np.ndarray, per_point_std: bool) -> tuple[np.ndarray, ...]:
    """``(valid, mean, anomaly, std)``: the finite mask and anomalies (zero where missing) of ``train``
    ``(trajectory, time, lat, lon, channel)`` about its mean field ``(lat, lon, channel)``, and the standard
    deviation, ``(channel,)`` pooled or ``(lat, lon, channel)`` per point (float64)."""
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
    return valid, mean, anomaly, std


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
    valid, mean, anomaly, std = _anomalies(_check_train(train, max_lag, time_correlation), per_point_std)
    scale = np.broadcast_to(std, mean.shape)
    z = anomaly / np.where(scale > 0, scale, 1.0)  # correlations of standardized anomalies: per-point std aware
    length_lat = _fit_length(z, valid, 2, bool(periodic[0]), max_lag)
    length_lon = _fit_length(z, valid, 3, bool(periodic[1]), max_lag)
    length_time = _fit_length(z, valid, 1, False, max_lag) if time_correlation else None
    covariance = StaticCovariance(std=std, length_lat=length_lat, length_lon=length_lon,
                                  periodic=periodic, length_time=length_time)
    return mean.astype(np.float32), covariance


__all__ = ["CORRELATION_THRESHOLD", "fit_static_covariance"]
