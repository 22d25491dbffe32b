"""Tuning the static B of 3D-Var on held-out training windows: the right model, the right length, a spread
that matches the error, and the untuned lag-correlation fit beaten where it is known to be wrong."""

import math

import jax
import numpy as np
import pytest

from slams_jax.baselines.covariance import StaticCovariance
from slams_jax.baselines.covariance_fit import fit_static_covariance
from slams_jax.baselines.covariance_tuning import tune_static_covariance
from slams_jax.baselines.variational import solve_windows
from slams_jax.baselines.verification import scores_at_observations
from slams_jax.observation.observations import Observation, ObservationError, observe
from slams_jax.observation.operators import Points, Saturate, TimeSubsample

GRID, WINDOW, PERIODIC = (14, 18), 6, (False, False)
_CELLS = np.random.default_rng(0).permutation(GRID[0] * GRID[1])
NETWORK = Points(_CELLS[:50] // GRID[1], _CELLS[:50] % GRID[1])  # the assimilated stations
VERIFY = Points(_CELLS[50:90] // GRID[1], _CELLS[50:90] % GRID[1])  # 40 other, withheld, stations


def _gaussian(length, std, length_time=None) -> StaticCovariance:
    return StaticCovariance(std=(std,), length_lat=(length,), length_lon=(length,), periodic=PERIODIC,
                            length_time=length_time)


def _sample(cov: StaticCovariance, time: int, count: int, seed: int) -> np.ndarray:
    """``count`` trajectories ``(time, lat, lon, 1)`` drawn from ``N(0, B)`` (float32)."""
    shape = (time,) + GRID + (1,)
    s_time, s_lat, s_lon = cov.sqrt_matrices(shape)
    z = np.random.default_rng(seed).normal(size=(count,) + shape)
    x = np.einsum("cst,cai,cbj,ntijc->nsabc", s_time, s_lat, s_lon, z, optimize=True)
    return (x * cov.std_field(shape)).astype(np.float32)


def _template(op, times: int, sites: int, std: float) -> list[Observation]:
    return [Observation("state", op, np.zeros((times, sites, 1), np.float32), std=std)]


def _tune(train, **kw):
    """The tuner on every other state observed at NETWORK, verified at VERIFY at every state."""
    kw.setdefault("length_scales", (0.5, 1.0, 2.0))
    kw.setdefault("per_point_std", (False,))
    kw.setdefault("variance_scales", (0.3, 3.0))
    return tune_static_covariance(jax.random.key(0), train, _template(TimeSubsample(2) >> NETWORK, 3, 50, 0.3),
                                  PERIODIC, WINDOW, withheld=_template(VERIFY, WINDOW, 40, 0.3), windows=6,
                                  members=8, **kw)


def _score(report, **model):
    (match,) = [c for c in report.candidates if all(c[k] == v for k, v in model.items())]
    return match["score"]


# ----------------------------------------------------------------------------------- choosing the model
@pytest.fixture(scope="module")
def white_in_time():
    """A Gaussian random field of length 2 cells, std 2, with no time correlation at all."""
    train = _sample(_gaussian(2.0, 2.0), 24, 8, seed=1) + 10.0
    return train, _tune(train, time_scales=(None, 4.0))


def test_tuner_finds_the_length_and_no_time_correlation(white_in_time):
    train, (mean, cov, report) = white_in_time
    chosen = report.chosen
    # 4 x the fitted time length (~0.41 for white noise) correlates neighbouring states at 0.8: wrong here,
    # and it shows at the states between two observed ones
    assert chosen["time_scale"] is None and cov.length_time is None
    assert chosen["length_scale"] == 1.0
    assert _score(report, length_scale=1.0, time_scale=4.0, variance_scale=1.0) > 1.2 * chosen["score"]
    assert _score(report, length_scale=0.5, time_scale=None, variance_scale=1.0) > 1.03 * chosen["score"]
    assert _score(report, length_scale=2.0, time_scale=None, variance_scale=1.0) > 1.03 * chosen["score"]
    np.testing.assert_allclose(cov.length_lat + cov.length_lon, (2.0, 2.0), rtol=0.15)
    # the fitted B is the true one, so its ensemble is already calibrated and hardly needs an inflation
    assert 0.8 < report.spread_skill_before < 1.25 and 0.8 < report.inflation < 1.25
    assert abs(report.spread_skill_after - 1) < 0.08
    assert mean.shape == GRID + (1,) and abs(float(mean.mean()) - 10.0) < 0.2
    assert report.windows == 6 and report.withheld == WINDOW * 40 and report.members == 8
    assert report.to_dict()["chosen"] == chosen


def test_tuner_is_deterministic(white_in_time):
    train, (mean, cov, report) = white_in_time
    mean2, cov2, report2 = _tune(train, time_scales=(None, 4.0))
    assert report2.candidates == report.candidates and report2.inflation == report.inflation
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(cov2.std, cov.std)


def test_tuner_keeps_a_real_time_correlation():
    train = _sample(_gaussian(2.0, 2.0, length_time=(2.0,)), 24, 8, seed=2) + 10.0
    _, cov, report = _tune(train, length_scales=(1.0,), time_scales=(None, 1.0), variance_scales=())
    assert report.chosen["time_scale"] == 1.0
    np.testing.assert_allclose(cov.length_time, (2.0,), rtol=0.2)
    # the unobserved states come from their neighbours in time: far better than climatology there
    assert _score(report, time_scale=None) > 2.0 * report.chosen["score"]


# --------------------------------------------------------------- the untuned fit where it is known wrong
def _two_scales(count: int, seed: int) -> np.ndarray:
    """Anomalies of variance 4: 60 % on a length of 5 cells, 40 % on 0.7 cells (a Gaussian fits neither)."""
    large = _sample(_gaussian(5.0, math.sqrt(0.6)), 12, count, seed)
    small = _sample(_gaussian(0.7, math.sqrt(0.4)), 12, count, seed + 100)
    return 2.0 * (large + small) + 10.0


def _held_out(mean, cov, inflation, truths):
    """Analysis RMSE and pooled spread-skill of the 3D-Var ensemble at VERIFY on windows never seen."""
    sets = [[observe(jax.random.key(100 + w), t, NETWORK, 0.2)] for w, t in enumerate(truths)]
    background = np.broadcast_to(mean, (WINDOW,) + mean.shape)
    analyses, _ = solve_windows(sets, background, cov, tol=1e-3, maxiter=100)
    ensembles, _ = solve_windows(sets, background, cov, key=jax.random.key(5), members=16, inflation=inflation,
                                 tol=1e-3, maxiter=100)
    spread2, mse, analysis_mse = [], [], []
    for analysis, ensemble, truth in zip(analyses, ensembles, truths):
        verify = Observation("state", VERIFY, np.asarray(VERIFY(truth)), std=0.2)
        scores = scores_at_observations(ensemble, [verify])[verify.name]["0"]
        spread2.append(scores["spread"] ** 2)
        mse.append(scores["rmse"] ** 2)
        analysis_mse.append(np.mean(np.square(np.asarray(VERIFY(analysis)) - verify.values)))
    return math.sqrt(np.mean(analysis_mse)), math.sqrt((1 + 1 / 16) * np.mean(spread2) / np.mean(mse))


@pytest.mark.slow
def test_tuned_covariance_beats_the_untuned_fit_on_held_out_windows():
    train = _two_scales(12, seed=3)
    mean, tuned, report = tune_static_covariance(
        jax.random.key(1), train, _template(NETWORK, WINDOW, 50, 0.2), PERIODIC, WINDOW,
        withheld=_template(VERIFY, WINDOW, 40, 0.2), time_scales=(None,), per_point_std=(False,))
    untuned_mean, untuned = fit_static_covariance(train, PERIODIC)
    truths = _two_scales(10, seed=7)[:, :WINDOW]
    rmse_untuned, ratio_untuned = _held_out(untuned_mean, untuned, 1.0, truths)
    rmse_tuned, ratio_tuned = _held_out(mean, tuned, report.inflation, truths)
    # the lag fit follows the large scale: its analysis trusts a smooth field and its spread is ~10x too small
    assert ratio_untuned < 0.3 and report.spread_skill_before < 0.3
    assert 0.8 < ratio_tuned < 1.25
    assert rmse_tuned < rmse_untuned
    assert report.inflation > 3.0


# ------------------------------------------------------------------------------------------------ errors
def test_tuner_refuses_bad_arguments():
    train = np.zeros((2, 12) + GRID + (1,), np.float32)
    good = _template(NETWORK, WINDOW, 50, 0.2)
    call = lambda **kw: tune_static_covariance(jax.random.key(0), kw.pop("train", train), kw.pop("obs", good),
                                               PERIODIC, kw.pop("window", WINDOW), **kw)
    with pytest.raises(ValueError, match="withheld=1.5"):
        call(withheld=1.5)
    with pytest.raises(ObservationError, match="nonlinear"):
        call(obs=[Observation("state", NETWORK >> Saturate(1.0), np.zeros((WINDOW, 50, 1)), std=0.2)])
    with pytest.raises(ObservationError, match="modality 'precip'"):
        call(obs=[Observation("precip", NETWORK, np.zeros((WINDOW, 50, 1)), std=0.2)])
    with pytest.raises(ValueError, match="fewer than the window 20"):
        call(window=20)
    with pytest.raises(ValueError, match="one training trajectory of 7 states"):
        call(train=train[:1, :7])
    with pytest.raises(ValueError, match="per_point_std"):
        call(per_point_std=("yes",))
    with pytest.raises(ValueError, match="length_scales"):
        call(length_scales=(0.0,))
    with pytest.raises(ValueError, match="members=1"):
        call(members=1)
