"""Ensemble metrics: RMSE of the mean, spread, (fair) CRPS, Wasserstein-1 and their per-channel summary."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from slams_jax.metrics import (
    crps_ensemble,
    ensemble_mean_rmse,
    ensemble_scores,
    ensemble_spread,
    wasserstein1,
)

# The metrics are jit-able; jitting compiles one program per shape instead of one per eager op (much faster on
# CPU). The hand-computed tests and ensemble_scores exercise the eager path.
_crps_ensemble = jax.jit(crps_ensemble, static_argnames="fair")
_ensemble_mean_rmse = jax.jit(ensemble_mean_rmse)
_ensemble_spread = jax.jit(ensemble_spread)
_wasserstein1 = jax.jit(wasserstein1, static_argnames="quantiles")


def _crps_brute(ensemble: np.ndarray, truth: np.ndarray, fair: bool) -> np.ndarray:
    """Per-point CRPS from all member pairs, float64: ``mean|X - y| - 0.5 * sum_ij |x_i - x_j| / denom``."""
    ensemble, truth = np.asarray(ensemble, np.float64), np.asarray(truth, np.float64)
    n = ensemble.shape[0]
    skill = np.mean(np.abs(ensemble - truth[None]), axis=0)
    pairs = np.sum(np.abs(ensemble[:, None] - ensemble[None, :]), axis=(0, 1))
    return skill - 0.5 * pairs / (n * (n - 1) if fair else n * n)


def _masked_channel_mean(values: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-channel mean of ``values`` over the points where ``truth`` is finite."""
    valid = np.isfinite(truth).reshape(-1, truth.shape[-1])
    flat = values.reshape(-1, values.shape[-1])
    return np.array([flat[valid[:, c], c].mean() for c in range(flat.shape[1])])


def _gaussian_crps(y: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(0, 1) at ``y`` (Gneiting & Raftery 2007)."""
    return y * (2.0 * stats.norm.cdf(y) - 1.0) + 2.0 * stats.norm.pdf(y) - 1.0 / math.sqrt(math.pi)


def _expected_gaussian_crps() -> float:
    """E_y[CRPS(N(0, 1), y)] for y ~ N(0, 1), by numerical quadrature."""
    value, _ = integrate.quad(lambda y: _gaussian_crps(np.float64(y)) * stats.norm.pdf(y), -np.inf, np.inf)
    return value


def _random(shape, seed=0, scale=1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


# ------------------------------------------------------------------------------------------------- CRPS
@pytest.mark.parametrize("fair", [True, False])
def test_crps_matches_brute_force_pairs(fair):
    ens = _random((7, 3, 5, 2), seed=1)
    truth = _random((3, 5, 2), seed=2, scale=1.5)
    got = np.asarray(_crps_ensemble(jnp.asarray(ens), jnp.asarray(truth), fair=fair))
    expected = _crps_brute(ens, truth, fair).reshape(-1, 2).mean(0)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # the two estimators differ by 0.5 * sum|x_i - x_j| * (1 / n(n-1) - 1 / n^2) > 0
    other = _crps_brute(ens, truth, not fair).reshape(-1, 2).mean(0)
    assert np.all(np.abs(other - expected) > 1e-2)


def test_crps_hand_computed():
    # channel 0: members (0, 1, 2) vs y=2 and (1, 1, 4) vs y=5; channel 1: (0, 0, 3) vs y=4, second point NaN
    ens = np.array([[[0.0, 0.0], [1.0, 100.0]],
                    [[1.0, 0.0], [1.0, -100.0]],
                    [[2.0, 3.0], [4.0, 7.0]]], np.float32)
    truth = np.array([[2.0, 4.0], [5.0, np.nan]], np.float32)
    fair = np.asarray(crps_ensemble(jnp.asarray(ens), jnp.asarray(truth), fair=True))
    unfair = np.asarray(crps_ensemble(jnp.asarray(ens), jnp.asarray(truth), fair=False))
    # point CRPS (fair / not fair): 1/3 and 5/9, 2 and 7/3; channel 1: 2 and 7/3
    np.testing.assert_allclose(fair, [(1 / 3 + 2) / 2, 2.0], rtol=1e-6)
    np.testing.assert_allclose(unfair, [(5 / 9 + 7 / 3) / 2, 7 / 3], rtol=1e-6)


def test_crps_single_member_is_mean_absolute_error():
    ens = _random((1, 4, 6, 2), seed=3)
    truth = _random((4, 6, 2), seed=4)
    mae = np.abs(ens[0].astype(np.float64) - truth).reshape(-1, 2).mean(0)
    for fair in (True, False):
        np.testing.assert_allclose(np.asarray(_crps_ensemble(jnp.asarray(ens), jnp.asarray(truth), fair=fair)),
                                   mae, rtol=1e-5)


def test_crps_large_gaussian_ensemble_matches_closed_form():
    expected = _expected_gaussian_crps()
    assert expected == pytest.approx(1.0 / math.sqrt(math.pi), rel=1e-6)  # E|X - y| - E|X - X'| / 2
    y = np.random.default_rng(5).normal(size=5000)
    # standard error of the mean over y of the exact CRPS: the large-ensemble estimate must be that close
    se = _gaussian_crps(y).std() / math.sqrt(y.size)
    ens = _random((200, y.size, 1), seed=6)
    truth = y.astype(np.float32).reshape(-1, 1)
    fair = float(_crps_ensemble(jnp.asarray(ens), jnp.asarray(truth))[0])
    assert fair == pytest.approx(expected, abs=5 * se + 2e-3)
    # at the realized y, the ensemble estimate is close to the exact CRPS of N(0, 1) (only member noise left)
    assert fair == pytest.approx(_gaussian_crps(y).mean(), abs=5e-3)


def test_fair_crps_of_two_members_is_unbiased_and_unfair_is_biased_high():
    expected = _expected_gaussian_crps()
    pair_mean = stats.norm(scale=math.sqrt(2.0)).expect(abs)  # E|X - X'|
    points = 100_000
    ens = _random((2, points, 1), seed=7)
    truth = _random((points, 1), seed=8)
    fair = float(_crps_ensemble(jnp.asarray(ens), jnp.asarray(truth), fair=True)[0])
    unfair = float(_crps_ensemble(jnp.asarray(ens), jnp.asarray(truth), fair=False)[0])
    se_fair = _crps_brute(ens, truth, True).std() / math.sqrt(points)
    se_unfair = _crps_brute(ens, truth, False).std() / math.sqrt(points)
    # unbiased: the average over many 2-member draws matches the infinite-ensemble value
    assert abs(fair - expected) < 5 * se_fair
    # with n^2 pairs the expectation is CRPS + E|X - X'| / (2 n) = CRPS + E|X - X'| / 4 for n = 2
    assert abs(unfair - (expected + pair_mean / 4)) < 5 * se_unfair
    assert unfair - expected > 50 * se_unfair
    # the same comparison against a large (100-member) ensemble on the first truths
    sub = 10_000
    large = float(_crps_ensemble(jnp.asarray(_random((100, sub, 1), seed=9)), jnp.asarray(truth[:sub]))[0])
    se_large = _gaussian_crps(truth[:sub].astype(np.float64)).std() / math.sqrt(sub)
    assert abs(fair - large) < 5 * math.hypot(se_fair, se_large)
    assert unfair - large > 10 * math.hypot(se_unfair, se_large)


def test_crps_excludes_nan_truth_per_channel():
    ens = _random((5, 6, 4, 3), seed=10)
    truth = _random((6, 4, 3), seed=11)
    truth[0, :, 0] = np.nan
    truth[2:4, 1, 2] = np.nan
    expected = _masked_channel_mean(_crps_brute(ens, truth, True), truth)
    got = np.asarray(_crps_ensemble(jnp.asarray(ens), jnp.asarray(truth)))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # members at the excluded points do not matter
    wild = ens.copy()
    wild[:, ~np.isfinite(truth)] = 1e3
    np.testing.assert_allclose(np.asarray(_crps_ensemble(jnp.asarray(wild), jnp.asarray(truth))), got, rtol=1e-6)


# ------------------------------------------------------------------------------------------- RMSE, spread
def test_rmse_and_spread_hand_computed_with_nan_truth():
    # channel 0: (0, 1, 2) mean 1 var 1 vs 2; (1, 1, 4) mean 2 var 3 vs 5  -> rmse sqrt(5), spread sqrt(2)
    # channel 1: (0, 0, 3) mean 1 var 3 vs 4; the second point's truth is NaN -> rmse 3, spread sqrt(3)
    ens = np.array([[[0.0, 0.0], [1.0, 100.0]],
                    [[1.0, 0.0], [1.0, -100.0]],
                    [[2.0, 3.0], [4.0, 7.0]]], np.float32)
    truth = np.array([[2.0, 4.0], [5.0, np.nan]], np.float32)
    rmse = np.asarray(ensemble_mean_rmse(jnp.asarray(ens), jnp.asarray(truth)))
    spread = np.asarray(ensemble_spread(jnp.asarray(ens), jnp.asarray(truth)))
    np.testing.assert_allclose(rmse, [math.sqrt(5.0), 3.0], rtol=1e-6)
    np.testing.assert_allclose(spread, [math.sqrt(2.0), math.sqrt(3.0)], rtol=1e-6)


def test_spread_without_truth_and_pooled_over_channels():
    ens = _random((4, 5, 3, 2), seed=14) * np.array([1.0, 3.0], np.float32)
    var = ens.astype(np.float64).var(0, ddof=1)
    truth = _random((5, 3, 2), seed=15)
    truth[1, :, 1] = np.nan
    # no truth: every point counts, as a finite truth would
    np.testing.assert_allclose(np.asarray(ensemble_spread(jnp.asarray(ens))), np.sqrt(var.reshape(-1, 2).mean(0)),
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(ensemble_spread(jnp.asarray(ens))),
                               np.asarray(ensemble_spread(jnp.asarray(ens), jnp.zeros((5, 3, 2)))), rtol=1e-6)
    # pooled: one number, the root of the mean variance over every valid (point, channel) pair
    pooled = ensemble_spread(jnp.asarray(ens), jnp.asarray(truth), pooled=True)
    assert pooled.shape == ()
    np.testing.assert_allclose(float(pooled), math.sqrt(var[np.isfinite(truth)].mean()), rtol=1e-5)
    np.testing.assert_allclose(float(ensemble_spread(jnp.asarray(ens), pooled=True)), math.sqrt(var.mean()), rtol=1e-5)
    # which is not the mean of the per-channel spreads when the channels differ
    assert abs(float(pooled) - float(np.asarray(ensemble_spread(jnp.asarray(ens), jnp.asarray(truth))).mean())) > 0.05
    # a state vector (member, dim): the spread of the Lorenz twin's filters
    state = _random((10, 40), seed=16)
    np.testing.assert_allclose(float(ensemble_spread(jnp.asarray(state), pooled=True)),
                               math.sqrt(state.astype(np.float64).var(0, ddof=1).mean()), rtol=1e-5)


def test_rmse_and_spread_match_numpy_over_valid_points():
    ens = _random((4, 5, 3, 2), seed=12)
    truth = _random((5, 3, 2), seed=13)
    truth[1, :, 1] = np.nan
    truth[4, 2, 0] = np.inf
    err = np.square(ens.astype(np.float64).mean(0) - truth)
    var = ens.astype(np.float64).var(0, ddof=1)
    np.testing.assert_allclose(np.asarray(_ensemble_mean_rmse(jnp.asarray(ens), jnp.asarray(truth))),
                               np.sqrt(_masked_channel_mean(err, truth)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(_ensemble_spread(jnp.asarray(ens), jnp.asarray(truth))),
                               np.sqrt(_masked_channel_mean(var, truth)), rtol=1e-5)


@pytest.mark.parametrize("members", [3, 10])
def test_calibrated_ensemble_spread_skill(members):
    # truth and members i.i.d. given a varying "forecast" mean; channels with different spreads
    rng = np.random.default_rng(14)
    points, sd = 20_000, np.array([1.0, 3.0])
    centre = rng.normal(size=(points, 1)) * 5.0
    truth = (centre + sd * rng.normal(size=(points, 2))).astype(np.float32)
    ens = (centre + sd * rng.normal(size=(members, points, 2))).astype(np.float32)
    rmse = np.asarray(_ensemble_mean_rmse(jnp.asarray(ens), jnp.asarray(truth)))
    spread = np.asarray(_ensemble_spread(jnp.asarray(ens), jnp.asarray(truth)))
    np.testing.assert_allclose(spread, sd, rtol=0.02)
    np.testing.assert_allclose(spread * math.sqrt((members + 1) / members), rmse, rtol=0.02)
    # an under-dispersive ensemble (half the spread) breaks the relation
    narrow = (centre + 0.5 * sd * rng.normal(size=(members, points, 2))).astype(np.float32)
    ratio = np.asarray(_ensemble_spread(jnp.asarray(narrow), jnp.asarray(truth))) * math.sqrt((members + 1) / members)
    assert np.all(ratio / np.asarray(_ensemble_mean_rmse(jnp.asarray(narrow), jnp.asarray(truth))) < 0.7)


# ---------------------------------------------------------------------------------------------------- W1
def test_wasserstein_of_shifted_sample_is_the_shift():
    a = _random((1000,), seed=15)
    for c in (0.0, 0.25, 3.0):
        b = (a + np.float32(c)).astype(np.float32)
        assert float(_wasserstein1(jnp.asarray(a), jnp.asarray(b[::-1]))) == pytest.approx(c, abs=1e-5)


def test_wasserstein_equal_sizes_is_mean_absolute_difference_of_sorted_values():
    a = _random((4, 50), seed=16)
    b = _random((200,), seed=17, scale=2.0) + np.float32(0.5)
    expected = np.mean(np.abs(np.sort(a.ravel().astype(np.float64)) - np.sort(b.astype(np.float64))))
    got = float(_wasserstein1(jnp.asarray(a), jnp.asarray(b)))
    assert got == pytest.approx(expected, rel=1e-5)
    assert got == pytest.approx(stats.wasserstein_distance(a.ravel(), b), rel=1e-5)
    # order within a sample is irrelevant; unsorted differences would be a different (larger) number
    perm = np.random.default_rng(18).permutation(b)
    assert float(_wasserstein1(jnp.asarray(a), jnp.asarray(perm))) == pytest.approx(got, rel=1e-6)
    assert np.mean(np.abs(a.ravel() - b)) > got + 0.1


def test_wasserstein_unequal_sizes_matches_scipy_and_is_symmetric():
    a = _random((6000,), seed=19)
    b = (_random((2500,), seed=20, scale=1.5) + np.float32(0.4)).astype(np.float32)
    expected = stats.wasserstein_distance(a, b)
    ab = float(_wasserstein1(jnp.asarray(a), jnp.asarray(b)))
    ba = float(_wasserstein1(jnp.asarray(b), jnp.asarray(a)))
    assert ab == pytest.approx(expected, abs=1e-2)
    assert ab == pytest.approx(ba, rel=1e-6)
    # equal sizes: symmetric too
    c = _random((2500,), seed=21)
    assert float(_wasserstein1(jnp.asarray(b), jnp.asarray(c))) == pytest.approx(
        float(_wasserstein1(jnp.asarray(c), jnp.asarray(b))), rel=1e-6)
    # a shift of an unequal-size sample by c moves W1 to about c
    shifted = (a[:2500] + np.float32(2.0)).astype(np.float32)
    assert float(_wasserstein1(jnp.asarray(a), jnp.asarray(shifted))) == pytest.approx(
        stats.wasserstein_distance(a, shifted), abs=1e-2)


# ------------------------------------------------------------------------------------------------ scores
def test_ensemble_scores_per_channel_consistent_with_metrics():
    ens = _random((4, 3, 5, 2), seed=22)
    ens[..., 1] = ens[..., 1] * np.float32(10.0) + np.float32(20.0)  # channels clearly different
    truth = _random((3, 5, 2), seed=23)
    truth[..., 1] = truth[..., 1] * np.float32(10.0) + np.float32(20.0)
    truth[0, :2, 1] = np.nan
    truth[2, 3:, 0] = np.nan
    ens[:, 0, :2, 1] = 1e4  # members where the truth is missing must not enter any score
    ens[:, 2, 3:, 0] = -1e4
    scores = ensemble_scores(jnp.asarray(ens), jnp.asarray(truth), ("u", "v"))
    assert list(scores) == ["u", "v"]
    ens64 = ens.astype(np.float64)
    rmse = np.sqrt(_masked_channel_mean(np.square(ens64.mean(0) - truth), truth))
    spread = np.sqrt(_masked_channel_mean(ens64.var(0, ddof=1), truth))
    crps = _masked_channel_mean(_crps_brute(ens, truth, True), truth)
    bias = _masked_channel_mean(ens64.mean(0) - truth, truth)
    q = (np.arange(1000) + 0.5) / 1000
    for c, name in enumerate(("u", "v")):
        s = scores[name]
        assert set(s) == {"rmse", "bias", "spread", "spread_skill", "crps", "wasserstein1"}
        assert all(isinstance(v, float) and math.isfinite(v) for v in s.values())
        assert s["rmse"] == pytest.approx(rmse[c], rel=1e-5)
        assert s["spread"] == pytest.approx(spread[c], rel=1e-5)
        assert s["crps"] == pytest.approx(crps[c], rel=1e-5)
        assert s["bias"] == pytest.approx(bias[c], rel=1e-4, abs=1e-5)
        assert s["spread_skill"] == pytest.approx(spread[c] * math.sqrt(5 / 4) / rmse[c], rel=1e-5)
        valid = np.isfinite(truth[..., c])
        members, values = ens64[..., c][:, valid], truth[..., c][valid].astype(np.float64)
        # pooled members (4 x valid) against the truth's values: unequal sizes, mid-point quantiles
        expected_w1 = np.mean(np.abs(np.quantile(members, q) - np.quantile(values, q)))
        assert s["wasserstein1"] == pytest.approx(expected_w1, rel=1e-4)
    assert scores["v"]["rmse"] > 5 * scores["u"]["rmse"]


def test_ensemble_scores_single_member():
    field = _random((1, 3, 5, 2), seed=24)
    truth = _random((3, 5, 2), seed=25)
    scores = ensemble_scores(jnp.asarray(field), jnp.asarray(truth), ("a", "b"))
    for c, name in enumerate(("a", "b")):
        diff = field[0, ..., c].astype(np.float64) - truth[..., c]
        assert scores[name]["rmse"] == pytest.approx(np.sqrt(np.mean(diff**2)), rel=1e-5)
        assert scores[name]["crps"] == pytest.approx(np.mean(np.abs(diff)), rel=1e-5)
        expected = np.mean(np.abs(np.sort(field[0, ..., c].ravel()) - np.sort(truth[..., c].ravel())))
        assert scores[name]["wasserstein1"] == pytest.approx(expected, rel=1e-5)
