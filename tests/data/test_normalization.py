"""Tests of slams_jax.data.normalization: the one normalization fit, whatever sample its callers choose.

References are NumPy's ``nanmean``/``nanstd`` and sums in long double, independent of the module.
"""

import numpy as np
import pytest

from slams_jax.data import datasets, gridded
from slams_jax.data.normalization import MIN_STD, Normalization, channel_moments, fit_chunks, fit_normalization
from slams_jax.errors import DataError


def _field(seed, shape, mean=250.0, scale=10.0, missing=0.3, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = (mean + scale * rng.standard_normal(shape)).astype(dtype)
    x[rng.uniform(size=shape) < missing] = np.nan
    return x


def _reference(x):
    """Mean and population std of the finite values per channel, in long double."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.longdouble)
    cols = [flat[np.isfinite(flat[:, c]), c] for c in range(flat.shape[1])]
    mean = np.array([c.mean() for c in cols])
    return mean, np.array([np.sqrt(((c - m) ** 2).mean()) for c, m in zip(cols, mean)])


def test_all_states_fit_is_numpy_nanmean_and_nanstd_bit_for_bit():
    """The Kolmogorov caller (one chunk: every training state) keeps the numbers it always had."""
    arrays = {"state": _field(0, (3, 5, 8, 8, 2), missing=0.0), "precip": _field(1, (3, 5, 8, 8, 1), 2.0, 3.0)}
    norm = datasets.fit_normalization(arrays)
    for name, a in arrays.items():
        flat = a.reshape(-1, a.shape[-1]).astype(np.float64)
        assert norm.mean[name] == tuple(float(v) for v in np.nanmean(flat, axis=0))
        assert norm.std[name] == tuple(float(v) for v in np.nanstd(flat, axis=0))


@pytest.mark.parametrize("size", [1, 7, 32, 1000])
def test_chunked_fit_does_not_depend_on_the_chunks(size):
    x = _field(2, (90, 6, 5, 3))
    count, mean, std = channel_moments(x[lo:lo + size] for lo in range(0, len(x), size))
    want_mean, want_std = _reference(x)
    np.testing.assert_array_equal(count, np.isfinite(x).reshape(-1, 3).sum(0))
    np.testing.assert_allclose(mean, want_mean.astype(np.float64), rtol=1e-14)
    np.testing.assert_allclose(std, want_std.astype(np.float64), rtol=1e-13)


def test_no_cancellation_when_the_mean_dwarfs_the_spread():
    """sqrt(E[x^2] - E[x]^2) loses every digit here; the merged centred sums do not."""
    x = _field(3, (64, 16, 16, 1), mean=1e5, scale=1e-3, missing=0.1, dtype=np.float64)
    _, _, std = channel_moments(x[lo:lo + 8] for lo in range(0, len(x), 8))
    np.testing.assert_allclose(std, _reference(x)[1].astype(np.float64), rtol=1e-9)


def test_a_channel_without_values_or_constant():
    x = np.stack([np.full((4, 3, 3), 7.0), np.full((4, 3, 3), np.nan)], -1)
    with pytest.raises(DataError, match=r"modality 'p': a channel has no valid value on the 4 training days"):
        fit_chunks({"p": [x]}, "on the 4 training days")
    with pytest.raises(ValueError, match=r"modality 'p': a channel has no valid value in the training split"):
        fit_normalization({"p": x})
    with pytest.raises(DataError, match="no valid value"):
        fit_chunks({"p": iter(())}, "on the 0 training days")
    norm = fit_normalization({"c": x[..., :1]})
    assert norm.mean["c"] == (7.0,) and norm.std["c"] == (MIN_STD,)


class _Days:
    """A modality stand-in: day ``d`` is a field of value ``d`` plus noise; remembers the days read."""

    shape = (4, 5, 2)

    def __init__(self):
        self.read_days = []

    def read(self, days):
        self.read_days.append(np.asarray(days))
        noise = np.stack([np.random.default_rng(int(d)).standard_normal(self.shape) for d in days])
        return (np.asarray(days, np.float64)[:, None, None, None] + noise).astype(np.float32)


def test_gridded_caller_draws_states_that_do_not_alias_with_the_day_and_shares_the_fit():
    days = np.arange(200)
    m = _Days()
    norm = gridded.fit_normalization({"state": m}, days, 50)
    read = np.concatenate(m.read_days)
    assert len(np.unique(read)) == 50 and np.all(np.diff(read) > 0)  # distinct, in storage order
    # a year of hourly states, 366 picks: evenly spaced ones fall at one hour; these cover the day
    hours = gridded.splits.sample_indices(365 * 24, 366) % 24
    assert len(np.unique(hours)) == 24 and np.bincount(hours).max() < 3 * 366 / 24
    assert [len(r) for r in m.read_days] == [32, 18]  # read 32 days at a time
    sample = _Days().read(read)  # the same values in one chunk: the all-states fit
    whole = fit_normalization({"state": sample})
    np.testing.assert_allclose(norm.mean["state"], whole.mean["state"], rtol=1e-14)
    np.testing.assert_allclose(norm.std["state"], whole.std["state"], rtol=1e-13)


def test_normalize_round_trip_and_dict():
    norm = Normalization(mean={"s": (1.0, -2.0)}, std={"s": (2.0, 0.5)})
    x = _field(4, (3, 4, 2), 0.0, 1.0, 0.0)
    np.testing.assert_allclose(norm.normalize("s", x)[..., 1], (x[..., 1] + 2.0) / 0.5, rtol=1e-6)
    np.testing.assert_allclose(norm.denormalize("s", norm.normalize("s", x)), x, rtol=1e-6, atol=1e-6)
    assert Normalization.from_dict(norm.to_dict()) == norm
    assert datasets.normalize_arrays({"s": x}, norm)["s"].dtype == np.float32
