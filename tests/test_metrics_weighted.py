"""Latitude-weighted ensemble scores, bias, spread-skill ratio, rank histogram and zonal power spectrum."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from slams_jax.metrics import (
    crps_ensemble,
    ensemble_mean_bias,
    ensemble_mean_rmse,
    ensemble_scores,
    ensemble_spread,
    rank_histogram,
    spread_skill_ratio,
    wasserstein1,
    zonal_power_spectrum,
)
from slams_jax.data.regrid import area_weights

# Jitted once per shape (much faster on CPU than eager op-by-op); weights are traced arguments.
_crps = jax.jit(crps_ensemble, static_argnames="fair")
_rmse = jax.jit(ensemble_mean_rmse)
_bias = jax.jit(ensemble_mean_bias)
_spread = jax.jit(ensemble_spread)
_ratio = jax.jit(spread_skill_ratio)
_ranks = jax.jit(rank_histogram)
_zonal = jax.jit(zonal_power_spectrum)

LAT = np.linspace(-90.0, 90.0, 13)  # poles included: area_weights gives them their half cells


def _random(shape, seed=0, scale=1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _weighted_channel_mean(values: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Float64 reference: per-channel sum(w * v) / sum(w) over the finite truth points, w per latitude (axis -3)."""
    w = np.broadcast_to(weights.reshape(-1, 1, 1), truth.shape).astype(np.float64)
    w = np.where(np.isfinite(truth), w, 0.0)
    v = np.where(np.isfinite(truth), values, 0.0).astype(np.float64)
    return (w * v).reshape(-1, truth.shape[-1]).sum(0) / w.reshape(-1, truth.shape[-1]).sum(0)


def _gaussian_crps(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma^2) at y (Gneiting & Raftery 2007)."""
    z = (y - mu) / sigma
    return sigma * (z * (2.0 * stats.norm.cdf(z) - 1.0) + 2.0 * stats.norm.pdf(z) - 1.0 / math.sqrt(math.pi))


def _fair_crps_points(ens: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pointwise fair CRPS in float64 (sorted-member form), only used to size the member-sampling error."""
    ens = np.asarray(ens, np.float64)
    n = ens.shape[0]
    ranks = (2.0 * np.arange(1, n + 1) - n - 1.0).reshape((n,) + (1,) * (ens.ndim - 1))
    pairs = 2.0 * np.sum(ranks * np.sort(ens, axis=0), axis=0)
    return np.mean(np.abs(ens - truth[None]), axis=0) - 0.5 * pairs / (n * (n - 1))


# ------------------------------------------------------------------------------------------- weighting
def test_weighted_rmse_bias_spread_crps_match_numpy_with_cos_latitude_weights_and_nans():
    ens = _random((5, 4, LAT.size, 8, 2), seed=0) + np.float32(0.3)
    truth = _random((4, LAT.size, 8, 2), seed=1)
    truth[..., 1] *= np.float32(3.0)
    truth[0, :, :, 1] = np.nan  # a whole time step of one channel missing
    truth[1:3, 2, :4, 0] = np.nan
    truth[3, -1, 0, 0] = np.inf
    ens[:, ~np.isfinite(truth)] = 1e4  # members where the truth is missing must not matter
    w = area_weights(LAT)
    assert w.mean() == pytest.approx(1.0) and w[6] > w[3] > w[0] > 0
    ens64 = ens.astype(np.float64)
    err = ens64.mean(0) - truth
    args = (jnp.asarray(ens), jnp.asarray(truth))
    wj = jnp.asarray(w)
    np.testing.assert_allclose(np.asarray(_rmse(*args, wj)), np.sqrt(_weighted_channel_mean(err**2, truth, w)),
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(_bias(*args, wj)), _weighted_channel_mean(err, truth, w),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(_spread(*args, wj)),
                               np.sqrt(_weighted_channel_mean(ens64.var(0, ddof=1), truth, w)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(_crps(*args, weights=wj)),
                               _weighted_channel_mean(_fair_crps_points(ens, truth), truth, w), rtol=1e-5)
    # the weighting matters here (the unweighted scores differ), and eager agrees with jit
    assert np.all(np.abs(np.asarray(_rmse(*args)) - np.asarray(_rmse(*args, wj))) > 1e-3)
    np.testing.assert_allclose(np.asarray(ensemble_mean_rmse(*args, wj)), np.asarray(_rmse(*args, wj)), rtol=1e-6)


def test_weighted_pooled_spread_matches_numpy():
    ens = _random((5, 3, LAT.size, 8, 2), seed=2) * np.array([1.0, 4.0], np.float32)
    truth = _random((3, LAT.size, 8, 2), seed=3)
    truth[0, 2:5, :, 1] = np.nan
    w = area_weights(LAT)
    var = ens.astype(np.float64).var(0, ddof=1)
    pw = np.where(np.isfinite(truth), np.broadcast_to(w.reshape(-1, 1, 1), truth.shape), 0.0)
    want = math.sqrt((pw * np.where(np.isfinite(truth), var, 0.0)).sum() / pw.sum())
    got = ensemble_spread(jnp.asarray(ens), jnp.asarray(truth), jnp.asarray(w), pooled=True)
    assert got.shape == () and float(got) == pytest.approx(want, rel=1e-5)
    unweighted = float(ensemble_spread(jnp.asarray(ens), jnp.asarray(truth), pooled=True))
    assert abs(unweighted - want) > 1e-4  # the weights matter


def test_bias_hand_computed():
    # channel 0: means 1 and 2 vs truths 2 and 5 -> errors -1, -3; channel 1: mean 1 vs 4, second truth NaN
    ens = np.array([[[0.0, 0.0], [1.0, 100.0]],
                    [[1.0, 0.0], [1.0, -100.0]],
                    [[2.0, 3.0], [4.0, 7.0]]], np.float32)
    truth = np.array([[2.0, 4.0], [5.0, np.nan]], np.float32)
    np.testing.assert_allclose(np.asarray(ensemble_mean_bias(jnp.asarray(ens), jnp.asarray(truth))), [-2.0, -3.0])


def test_constant_weights_give_the_unweighted_scores_and_scale_does_not_matter():
    ens = _random((4, 3, 6, 5, 2), seed=2)
    truth = _random((3, 6, 5, 2), seed=3)
    truth[1, 2, :, 1] = np.nan
    args = (jnp.asarray(ens), jnp.asarray(truth))
    for fn in (_rmse, _bias, _spread, _ratio):
        plain = np.asarray(fn(*args))
        np.testing.assert_allclose(np.asarray(fn(*args, jnp.full((6,), 3.0))), plain, rtol=1e-6, atol=1e-7)
        w = area_weights(np.linspace(-75.0, 75.0, 6))
        np.testing.assert_allclose(np.asarray(fn(*args, jnp.asarray(7.0 * w))), np.asarray(fn(*args, jnp.asarray(w))),
                                   rtol=1e-5, atol=1e-7)


def test_weights_of_the_wrong_shape_raise():
    ens, truth = jnp.zeros((2, 3, 4, 5, 1)), jnp.zeros((3, 4, 5, 1))
    with pytest.raises(ValueError, match="latitude"):
        ensemble_mean_rmse(ens, truth, jnp.ones(5))  # lon, not lat
    with pytest.raises(ValueError, match="latitude"):
        crps_ensemble(ens[..., 0, :], truth[..., 0, :], weights=jnp.ones(4))  # (time, lat, channel): no lon axis


def test_weighted_crps_of_large_gaussian_ensemble_matches_closed_form():
    # members ~ N(mu, sigma^2) with sigma growing with latitude row, truths drawn wider (not calibrated)
    rng = np.random.default_rng(4)
    n_lat, members = 8, 2000
    shape = (4, n_lat, 16, 1)
    mu = rng.normal(size=shape)
    sigma = np.broadcast_to(np.linspace(0.5, 3.0, n_lat).reshape(-1, 1, 1), shape)
    y = mu + 1.3 * sigma * rng.normal(size=shape)
    ens = (mu + sigma * rng.normal(size=(members,) + shape)).astype(np.float32)
    truth = y.astype(np.float32)
    truth[0, 1, :3, 0] = np.nan
    exact = _gaussian_crps(truth.astype(np.float64), mu, sigma)
    # member-sampling error of each point's estimate, for the tolerances (points are independent)
    noise = np.where(np.isfinite(truth), _fair_crps_points(ens, truth) - exact, np.nan)
    noise_sd = np.nanstd(noise)

    def close(got, weights):
        wt = np.where(np.isfinite(truth), np.broadcast_to(weights.reshape(-1, 1, 1), shape), 0.0)
        expected = np.nansum(wt * exact) / wt.sum()
        se = noise_sd * math.sqrt(np.sum(wt**2)) / wt.sum()
        assert abs(got - expected) < 5 * se + 1e-5, (got, expected, se)

    args = (jnp.asarray(ens), jnp.asarray(truth))
    w = area_weights(np.linspace(-80.0, 80.0, n_lat))
    weighted = float(_crps(*args, weights=jnp.asarray(w))[0])
    unweighted = float(_crps(*args)[0])
    close(weighted, w)
    close(unweighted, np.ones(n_lat))
    # equal weights: the unweighted value
    assert float(_crps(*args, weights=jnp.ones(n_lat))[0]) == pytest.approx(unweighted, rel=1e-6)
    # all the weight on one row: that row's value (here the row with NaNs and sigma = 0.5 + 2.5/7)
    onehot = np.zeros(n_lat)
    onehot[1] = 1.0
    row = float(_crps(*args, weights=jnp.asarray(onehot))[0])
    assert row == pytest.approx(float(_crps(jnp.asarray(ens[:, :, 1:2]), jnp.asarray(truth[:, 1:2]))[0]), rel=1e-5)
    close(row, onehot)
    assert abs(row - unweighted) > 0.3  # the rows differ a lot: the one-hot weighting did select a row


# ---------------------------------------------------------------------------------------- spread-skill
def _ratio_standard_error(ens: np.ndarray, truth: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Delta-method standard error of sqrt(A / B), A and B the weighted means of the variance and squared error."""
    ens = ens.astype(np.float64)
    a, b = ens.var(0, ddof=1), np.square(ens.mean(0) - truth)
    w = np.broadcast_to(weights.reshape(-1, 1, 1), truth.shape).reshape(-1, truth.shape[-1])
    a, b = a.reshape(w.shape), b.reshape(w.shape)
    ma, mb = (w * a).sum(0) / w.sum(0), (w * b).sum(0) / w.sum(0)
    influence = a / ma - b / mb  # relative change of A / B per point
    return 0.5 * np.sqrt((w**2).sum(0) * influence.var(0)) / w.sum(0)


@pytest.mark.parametrize("scale", [1.0, 0.5, 2.0])
def test_spread_skill_ratio_of_exchangeable_and_misdispersed_ensembles(scale):
    # truth ~ N(centre, sd^2), members ~ N(centre, (scale sd)^2): E ratio = sqrt((M+1)/M) scale / sqrt(1 + scale^2/M)
    rng = np.random.default_rng(5)
    members, shape, sd = 10, (40, 20, 25, 2), np.array([1.0, 3.0])
    centre = 5.0 * rng.normal(size=shape[:-1] + (1,))
    truth = (centre + sd * rng.normal(size=shape)).astype(np.float32)
    ens = (centre + scale * sd * rng.normal(size=(members,) + shape)).astype(np.float32)
    w = area_weights(np.linspace(-85.5, 85.5, shape[1]))
    expected = math.sqrt((members + 1) / members) * scale / math.sqrt(1.0 + scale**2 / members)
    for weights in (None, w):
        got = np.asarray(_ratio(jnp.asarray(ens), jnp.asarray(truth), None if weights is None else jnp.asarray(w)))
        se = _ratio_standard_error(ens, truth, np.ones(shape[1]) if weights is None else w)
        assert np.all(se < 0.02 * expected)  # the test has power: the sampling error is small
        np.testing.assert_array_less(np.abs(got - expected), 4 * se)
    if scale == 1.0:  # the calibrated case, spelled out
        np.testing.assert_allclose(got, 1.0, atol=0.03)


def test_spread_skill_ratio_is_the_corrected_spread_over_rmse():
    ens = _random((3, 4, 5, 6, 2), seed=6)
    truth = _random((4, 5, 6, 2), seed=7)
    w = jnp.asarray(area_weights(np.linspace(-60.0, 60.0, 5)))
    args = (jnp.asarray(ens), jnp.asarray(truth))
    expected = np.asarray(_spread(*args, w)) * math.sqrt(4 / 3) / np.asarray(_rmse(*args, w))
    np.testing.assert_allclose(np.asarray(_ratio(*args, w)), expected, rtol=1e-6)


# ------------------------------------------------------------------------------------------ ensemble_scores
def test_weighted_ensemble_scores_match_the_metrics():
    ens = _random((4, 3, 7, 6, 2), seed=8)
    truth = _random((3, 7, 6, 2), seed=9, scale=1.5)
    truth[0, 2, :, 1] = np.nan
    w = jnp.asarray(area_weights(np.linspace(-90.0, 90.0, 7)))
    args = (jnp.asarray(ens), jnp.asarray(truth))
    scores = ensemble_scores(*args, ("a", "b"), weights=w)
    plain = ensemble_scores(*args, ("a", "b"))
    expected = {"rmse": _rmse(*args, w), "bias": _bias(*args, w), "spread": _spread(*args, w),
                "spread_skill": _ratio(*args, w), "crps": _crps(*args, weights=w)}
    for c, name in enumerate(("a", "b")):
        s = scores[name]
        assert set(s) == {"rmse", "bias", "spread", "spread_skill", "crps", "wasserstein1"}
        for key, value in expected.items():
            assert s[key] == pytest.approx(float(value[c]), rel=1e-5, abs=1e-7), key
        assert s["rmse"] != pytest.approx(plain[name]["rmse"], rel=1e-4)  # weighting changed it
        # W1 is the unweighted distance between pooled members and truth values
        valid = np.isfinite(truth[..., c])
        assert s["wasserstein1"] == pytest.approx(
            float(wasserstein1(jnp.asarray(ens[..., c][:, valid]), jnp.asarray(truth[..., c][valid]))), rel=1e-6)
        assert s["wasserstein1"] == plain[name]["wasserstein1"]


# ------------------------------------------------------------------------------------------ rank histogram
def test_rank_histogram_hand_computed():
    # members (0, 1, 2) in every channel-0 point; truths 1.5 -> rank 2, -1 -> 0, 5 -> 3, NaN -> not counted
    ens = np.broadcast_to(np.array([0.0, 1.0, 2.0], np.float32).reshape(3, 1, 1), (3, 4, 2)).copy()
    truth = np.array([[1.5, 0.5], [-1.0, 0.5], [5.0, 3.0], [np.nan, np.nan]], np.float32)
    counts = np.asarray(rank_histogram(jnp.asarray(ens), jnp.asarray(truth)))
    assert counts.shape == (2, 4) and counts.dtype == np.int32
    np.testing.assert_array_equal(counts, [[1, 0, 1, 1], [0, 2, 0, 1]])


def test_rank_histogram_of_exchangeable_truth_is_flat():
    members, shape = 10, (50, 20, 20, 2)
    rng = np.random.default_rng(10)
    centre = 3.0 * rng.normal(size=shape)
    truth = (centre + rng.normal(size=shape)).astype(np.float32)
    ens = (centre + rng.normal(size=(members,) + shape)).astype(np.float32)
    truth[:5, :, :, 1] = np.nan
    counts = np.asarray(_ranks(jnp.asarray(ens), jnp.asarray(truth), jax.random.key(0)))
    assert counts.shape == (2, members + 1)
    np.testing.assert_array_equal(counts.sum(1), np.isfinite(truth).reshape(-1, 2).sum(0))
    for c in range(2):
        n = counts[c].sum()
        # multinomial with equal probabilities: each bin within 5 binomial sigmas, and a chi-square test
        sigma = math.sqrt(n / (members + 1) * (1 - 1 / (members + 1)))
        assert np.max(np.abs(counts[c] - n / (members + 1))) < 5 * sigma
        assert stats.chisquare(counts[c]).pvalue > 1e-3
    # no ties here, so the key does not matter; jit and eager agree
    np.testing.assert_array_equal(np.asarray(rank_histogram(jnp.asarray(ens), jnp.asarray(truth))), counts)


def test_rank_histogram_of_underdispersed_ensemble_is_u_shaped_and_of_biased_one_sloped():
    members, shape = 10, (40, 20, 20, 1)
    rng = np.random.default_rng(11)
    truth = rng.normal(size=shape).astype(np.float32)
    narrow = (0.3 * rng.normal(size=(members,) + shape)).astype(np.float32)
    counts = np.asarray(_ranks(jnp.asarray(narrow), jnp.asarray(truth)))[0]
    middle = counts[1:-1].max()
    assert counts[0] > 4 * middle and counts[-1] > 4 * middle
    assert counts.sum() == truth.size
    high = (narrow / np.float32(0.3) + np.float32(1.0)).astype(np.float32)  # right spread, biased high
    counts = np.asarray(_ranks(jnp.asarray(high), jnp.asarray(truth)))[0]
    assert np.all(np.diff(counts[:4]) < 0) and counts[0] > 10 * counts[-1]


def test_rank_histogram_breaks_ties_uniformly_with_a_key_and_in_the_middle_without():
    # zero-precipitation-like: every member and the truth equal at every point
    members, shape = 4, (4000, 2)
    ens, truth = jnp.zeros((members,) + shape), jnp.zeros(shape)
    counts = np.asarray(_ranks(ens, truth, jax.random.key(1)))
    assert counts.sum() == truth.size
    for c in range(2):
        assert stats.chisquare(counts[c]).pvalue > 1e-3
    np.testing.assert_array_equal(np.asarray(_ranks(ens, truth, jax.random.key(1))), counts)  # same key, same counts
    assert not np.array_equal(np.asarray(_ranks(ens, truth, jax.random.key(2))), counts)
    np.testing.assert_array_equal(np.asarray(_ranks(ens, truth)), [[0, 0, 4000, 0, 0]] * 2)
    # partial ties: members (-1, 0, 0, 2) and truth 0 -> rank 1, 2 or 3 with a key (1 below, 2 tied), 2 without
    ens = jnp.asarray(np.array([-1.0, 0.0, 0.0, 2.0], np.float32).reshape(4, 1, 1) * np.ones((1, 3000, 1), np.float32))
    truth = jnp.zeros((3000, 1))
    counts = np.asarray(_ranks(ens, truth, jax.random.key(3)))[0]
    assert counts[0] == counts[4] == 0 and stats.chisquare(counts[1:4]).pvalue > 1e-3
    np.testing.assert_array_equal(np.asarray(_ranks(ens, truth))[0], [0, 0, 3000, 0, 0])


# ------------------------------------------------------------------------------------------ zonal spectrum
@pytest.mark.parametrize("nlon", [16, 15])
def test_zonal_spectrum_of_a_cosine_is_one_bin(nlon):
    lon = 2.0 * np.pi * np.arange(nlon) / nlon
    for k in range(nlon // 2 + 1):
        amplitude, phase = 1.5 + k, 0.3 * k
        row = amplitude * np.cos(k * lon + phase)
        field = np.stack([row, 2.0 * row], -1)[None, None].astype(np.float32)  # (time, lat, lon, channel)
        wavenumbers, power = _zonal(jnp.asarray(field))
        np.testing.assert_array_equal(np.asarray(wavenumbers), np.arange(nlon // 2 + 1))
        assert power.shape == (1, 1, nlon // 2 + 1, 2)
        # mean of A^2 cos^2 is A^2 / 2, except for constant and the Nyquist mode (A^2 cos^2(phase))
        mean_square = amplitude**2 * (np.cos(phase) ** 2 if k == 0 or 2 * k == nlon else 0.5)
        expected = np.zeros(nlon // 2 + 1)
        expected[k] = mean_square
        np.testing.assert_allclose(np.asarray(power)[0, 0, :, 0], expected, rtol=1e-5, atol=1e-4 * mean_square)
        np.testing.assert_allclose(np.asarray(power)[0, 0, :, 1], 4.0 * expected, rtol=1e-5, atol=4e-4 * mean_square)


@pytest.mark.parametrize("nlon", [32, 31])
def test_zonal_spectrum_parseval_for_random_fields(nlon):
    field = _random((3, 5, nlon, 2), seed=12, scale=2.0) + np.float32(0.7)
    wavenumbers, power = _zonal(jnp.asarray(field))
    assert wavenumbers.shape == (nlon // 2 + 1,) and power.shape == (3, 5, nlon // 2 + 1, 2)
    assert np.all(np.asarray(power) >= 0)
    np.testing.assert_allclose(np.asarray(power).sum(-2), np.mean(field.astype(np.float64) ** 2, axis=-2), rtol=1e-5)
    # an independent NumPy rfft in float64 gives the same spectrum
    hat = np.fft.rfft(field.astype(np.float64), axis=-2)
    double = np.full(nlon // 2 + 1, 2.0)
    double[0] = 1.0
    if nlon % 2 == 0:
        double[-1] = 1.0
    np.testing.assert_allclose(np.asarray(power), np.abs(hat) ** 2 * double.reshape(-1, 1) / nlon**2,
                               rtol=1e-4, atol=1e-6)
