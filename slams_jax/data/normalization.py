r"""The normalization of every modality: per-channel mean and standard deviation over valid values.

Each channel :math:`c` of a modality is normalized as :math:`(x_c - \mu_c) / \sigma_c`, with
:math:`\mu_c` and :math:`\sigma_c` the mean and (population) standard deviation of its finite values over a
sample of training states; NaN (missing data, e.g. precipitation over the ocean) is left out. The callers
only choose the sample: every state of the training trajectories (:func:`fit_normalization`, the Kolmogorov
flow), or evenly spaced training states read in chunks (:func:`slams_jax.data.gridded.fit_normalization`).

:func:`fit_chunks` is the one fit. It reads a sample chunk by chunk, in float64, and merges the chunks'
moments (Chan, Golub & LeVeque 1979): a chunk :math:`b` of :math:`n_b` valid values with mean
:math:`\bar x_b` and centred sum of squares :math:`M_b = \sum (x - \bar x_b)^2` joins the running
:math:`(n_a, \bar x_a, M_a)` as

.. math:: M_{ab} = M_a + M_b + (\bar x_b - \bar x_a)^2 \, \frac{n_a n_b}{n_a + n_b},

so :math:`\sigma^2 = M / n` never suffers the cancellation of :math:`\overline{x^2} - \bar x^2`; the mean is
the sum of the chunks' sums over the total count. A single chunk gives exactly NumPy's ``nanmean`` and
``nanstd``. A standard deviation below ``1e-6`` (a constant channel) is raised to ``1e-6``.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import numpy as np

from slams_jax.errors import DataError

MIN_STD = 1e-6


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Per-modality, per-channel affine normalization ``(x - mean) / std`` (NaN-aware)."""

    mean: Mapping[str, tuple[float, ...]]
    std: Mapping[str, tuple[float, ...]]

    def normalize(self, name: str, x):
        m = np.asarray(self.mean[name], np.float32)
        s = np.asarray(self.std[name], np.float32)
        return (x - m.reshape((1,) * (x.ndim - 1) + (-1,))) / s.reshape((1,) * (x.ndim - 1) + (-1,))

    def denormalize(self, name: str, x):
        m = np.asarray(self.mean[name], np.float32)
        s = np.asarray(self.std[name], np.float32)
        return x * s.reshape((1,) * (x.ndim - 1) + (-1,)) + m.reshape((1,) * (x.ndim - 1) + (-1,))

    def to_dict(self) -> dict:
        return {"mean": {k: list(v) for k, v in self.mean.items()}, "std": {k: list(v) for k, v in self.std.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Normalization":
        return cls(
            mean={k: tuple(float(x) for x in v) for k, v in d["mean"].items()},
            std={k: tuple(float(x) for x in v) for k, v in d["std"].items()},
        )


def channel_moments(chunks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and standard deviation of the finite values of each channel over ``chunks``.

    Args:
        chunks: Arrays ``(..., channel)`` with the same channel count (any leading shape); NaN and inf are
            left out.

    Returns:
        ``(count, mean, std)``, each ``(channel,)`` float64 (``(0,)`` without chunks); mean and std are NaN
        where the count is 0.
    """
    total = count = m2 = None
    for chunk in chunks:
        x = np.asarray(chunk).astype(np.float64).reshape(-1, np.shape(chunk)[-1])
        ok = np.isfinite(x)
        n = ok.sum(0)
        s = np.where(ok, x, 0).sum(0)
        mean = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
        d = x - mean  # in place from here: a chunk may be the whole training split
        d[~ok] = 0
        m2_chunk = np.multiply(d, d, out=d).sum(0)
        if total is None:
            total, count, m2 = np.zeros_like(s), np.zeros_like(s), np.zeros_like(s)
        # the merge term is 0 for the first chunk (count 0) and for a channel without values in this chunk
        both = (count > 0) & (n > 0)
        delta = mean - np.divide(total, count, out=np.zeros_like(s), where=count > 0)
        merge = np.divide(delta * delta * count * n, count + n, out=np.zeros_like(s), where=both)
        m2 = m2 + m2_chunk + merge
        total += s
        count += n
    if total is None:  # no chunk: no channel has a value
        return np.zeros(0), np.zeros(0), np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return count, total / count, np.sqrt(m2 / count)


def fit_chunks(samples: Mapping[str, Iterable[np.ndarray]], sample: str) -> Normalization:
    """The normalization of each modality from its sample, given as chunks ``(..., channel)``.

    Args:
        samples: ``{modality: chunks}``; the chunks (e.g. a generator reading days) are consumed in order,
            modality after modality.
        sample: What the sample is, for the error message (e.g. ``"in the training split"``).

    Raises:
        DataError: a channel has no valid value in its sample.
    """
    mean, std = {}, {}
    for name, chunks in samples.items():
        count, mu, sd = channel_moments(chunks)
        if count.size == 0 or (count == 0).any():
            raise DataError(f"modality {name!r}: a channel has no valid value {sample}")
        mean[name] = tuple(float(x) for x in mu)
        std[name] = tuple(float(max(x, MIN_STD)) for x in sd)
    return Normalization(mean=mean, std=std)


def fit_normalization(arrays: Mapping[str, np.ndarray]) -> Normalization:
    """Per-channel mean and standard deviation over valid points of the training arrays (all states).

    Args:
        arrays: ``{modality: (trajectory, time, y, x, channel)}`` of the training split.
    """
    return fit_chunks({name: [a] for name, a in arrays.items()}, "in the training split")


def normalize_arrays(arrays: Mapping[str, np.ndarray], norm: Normalization) -> dict[str, np.ndarray]:
    """Every modality normalized by ``norm``, as float32."""
    return {k: norm.normalize(k, a).astype(np.float32) for k, a in arrays.items()}


__all__ = ["MIN_STD", "Normalization", "channel_moments", "fit_chunks", "fit_normalization", "normalize_arrays"]
