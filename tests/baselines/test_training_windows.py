"""The pieces under the covariance tuner: held-out windows, the simulated network and its withheld sites,
the batched 3D-Var solve with an RML inflation, and ensemble scores at observations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.baselines.covariance import StaticCovariance
from slams_jax.baselines.training_windows import Sites, cut_windows, holdout_split, simulate_network
from slams_jax.baselines.variational import solve_windows, three_dvar, three_dvar_ensemble
from slams_jax.baselines.verification import scores_at_observations
from slams_jax.metrics import ensemble_scores
from slams_jax.observation.observations import Observation, ObservationError, observe
from slams_jax.observation.operators import Coarsen, Identity, Points, TimeIndex

SHAPE = (4, 6, 8, 1)  # (time, lat, lon, channel)
COV = StaticCovariance(std=(1.5,), length_lat=(1.2,), length_lon=(1.5,), periodic=(False, True))


# ------------------------------------------------------------------------------------------------ windows
def test_holdout_split_keeps_the_windows_out_of_the_fit():
    train = np.arange(3 * 20).reshape(3, 20, 1, 1, 1).astype(np.float32)
    fit, held = holdout_split(train, window=4, holdout=0.25)  # the last 5 states of every trajectory
    assert fit.shape[1] == 15 and held.shape[1] == 5
    np.testing.assert_array_equal(np.concatenate([fit, held], axis=1), train)
    fit, held = holdout_split(train[:, :5], window=4, holdout=0.25)  # too short: the last trajectory
    assert fit.shape[0] == 2 and held.shape[0] == 1 and held.shape[1] == 5
    fit, held = holdout_split(train, window=4, holdout=0.0)
    assert fit is train and held is train
    with pytest.raises(ValueError, match="one training trajectory of 5 states"):
        holdout_split(train[:1, :5], window=4, holdout=0.25)


def test_cut_windows_are_disjoint_finite_and_drawn_by_key():
    held = np.arange(2 * 12).reshape(2, 12, 1, 1, 1).astype(np.float32)
    held[1, 5] = np.nan  # spoils the window of trajectory 1 starting at 4
    windows = cut_windows(jax.random.key(0), held, window=4, count=10)
    starts = sorted(float(w[0, 0, 0, 0]) for w in windows)
    assert starts == [0.0, 4.0, 8.0, 12.0, 20.0]  # every window but the spoiled one, none overlapping
    two = cut_windows(jax.random.key(1), held, window=4, count=2)
    assert two.shape == (2, 4, 1, 1, 1)
    np.testing.assert_array_equal(two, cut_windows(jax.random.key(1), held, window=4, count=2))
    with pytest.raises(ValueError, match="no window of 4 states"):
        cut_windows(jax.random.key(0), np.full((1, 4, 1, 1, 1), np.nan), window=4, count=1)


# ------------------------------------------------------------------------------------------------ network
def test_sites_picks_flat_sites_of_any_output():
    x = jnp.arange(math.prod((2, 4, 6, 1)), dtype=jnp.float32).reshape(2, 4, 6, 1)
    op = Coarsen(2) >> Sites((5, 0))  # coarse grid 2 x 3: site 5 is cell (1, 2)
    out = np.asarray(op(x))
    coarse = np.asarray(Coarsen(2)(x))
    np.testing.assert_array_equal(out, coarse[:, [1, 0], [2, 0], :])
    assert op.linear and op.check((2, 4, 6, 1)) == (2, 2, 1)
    with pytest.raises(ValueError, match="site 6 out of range for 6 sites"):
        (Coarsen(2) >> Sites((6,))).check((2, 4, 6, 1))
    with pytest.raises(ValueError, match="distinct"):
        Sites((1, 1))


def test_simulated_network_withholds_the_same_sites_with_their_noise_free_values():
    truths = np.random.default_rng(0).normal(size=(3,) + SHAPE).astype(np.float32)
    net = [Observation("state", Points(np.arange(6) % 6, np.arange(6) + 1), np.zeros((4, 6, 1)), std=0.5),
           Observation("state", TimeIndex((0,)) >> Coarsen(2), np.zeros((1, 3, 4, 1)), std=0.2)]
    assimilated, withheld = simulate_network(jax.random.key(0), truths, net, 0.3, "test")
    sites = [h.operator.ops[-1].index for h in withheld[0]]
    assert [len(s) for s in sites] == [2, 4]  # round(0.3 * 6), round(0.3 * 12)
    for w, truth in enumerate(truths):
        assert [h.operator.ops[-1].index for h in withheld[w]] == sites  # a fixed network
        for obs, held, full in zip(assimilated[w], withheld[w], net):
            kept = obs.operator.ops[-1].index
            assert sorted(kept + held.operator.ops[-1].index) == list(range(math.prod(full.values.shape[1:-1])))
            assert obs.std == held.std == full.std
            np.testing.assert_allclose(held.values, np.asarray(held.operator(jnp.asarray(truth))))  # no noise
            noise = obs.values - np.asarray(obs.operator(jnp.asarray(truth)))
            assert 0 < np.abs(noise).max() < 6 * full.std  # the assimilated ones are noisy
    # a supplied withheld network: all of the first is assimilated, all of the second withheld
    assimilated, withheld = simulate_network(jax.random.key(0), truths, net[:1], net[1:], "test")
    assert assimilated[0][0].operator == net[0].operator and withheld[0][0].operator == net[1].operator
    np.testing.assert_allclose(withheld[2][0].values, np.asarray(net[1].operator(jnp.asarray(truths[2]))))
    with pytest.raises(ObservationError, match="none can be withheld"):
        simulate_network(jax.random.key(0), truths,
                         [Observation("state", TimeIndex((0,)) >> Coarsen((6, 8)), np.zeros((1, 1, 1, 1)))], 0.2,
                         "test")


# ----------------------------------------------------------------------------------------- batched solve
def _windows(count: int):
    rng = np.random.default_rng(1)
    truths = rng.normal(size=(count,) + SHAPE).astype(np.float32)
    op = Points((0, 2, 5, 3), (1, 7, 4, 0))
    return [[observe(jax.random.key(w), t, op, 0.3), observe(jax.random.key(10 + w), t, Coarsen(2), 0.5)]
            for w, t in enumerate(truths)]


def test_solve_windows_equals_three_dvar_per_window_and_inflation_scales_the_spread():
    sets = _windows(3)
    background = np.full(SHAPE, 0.2, np.float32)
    analyses, residual = solve_windows(sets, background, COV, tol=1e-7, maxiter=300)
    assert analyses.shape == (3,) + SHAPE and residual.shape == (3,)
    for obs, analysis in zip(sets, analyses):
        np.testing.assert_allclose(analysis, three_dvar(obs, background, COV, tol=1e-7, maxiter=300), atol=1e-5)
    key = jax.random.key(2)
    plain, _ = solve_windows(sets, background, COV, key=key, members=5, tol=1e-7, maxiter=300)
    wide, _ = solve_windows(sets, background, COV, key=key, members=5, inflation=3.0, tol=1e-7, maxiter=300)
    assert plain.shape == (3, 5) + SHAPE
    # same random numbers, perturbations times 3: members move 3 times as far from the analysis
    np.testing.assert_allclose(wide - analyses[:, None], 3.0 * (plain - analyses[:, None]), atol=2e-4)
    np.testing.assert_allclose(plain[1], three_dvar_ensemble(jax.random.split(key, 3)[1], sets[1], background, COV,
                                                             5, tol=1e-7, maxiter=300), atol=1e-5)
    with pytest.raises(ValueError, match="inflation=0"):
        three_dvar_ensemble(key, sets[0], background, COV, 2, inflation=0)
    with pytest.raises(ObservationError, match="window 1 has another observation network"):
        solve_windows([sets[0], sets[1][:1]], background, COV)
    with pytest.raises(ValueError, match="both key and members"):
        solve_windows(sets, background, COV, key=key)


# ------------------------------------------------------------------------------------------------ scores
def test_scores_at_observations_are_ensemble_scores_of_the_members_there():
    rng = np.random.default_rng(3)
    ensemble = rng.normal(size=(6,) + SHAPE).astype(np.float32)
    op = Points((0, 2, 5), (1, 7, 4))
    obs = Observation("state", op, rng.normal(size=(4, 3, 1)).astype(np.float32), std=0.4, name="stations")
    scores = scores_at_observations(ensemble, [obs], channels=("t2m",))
    members = np.stack([np.asarray(op(jnp.asarray(m))) for m in ensemble])
    expected = ensemble_scores(jnp.asarray(members), jnp.asarray(obs.values), ("t2m",))["t2m"]
    s = scores["stations"]["t2m"]
    for k, v in expected.items():
        assert s[k] == pytest.approx(v, rel=1e-5)
    assert s["noise_std"] == pytest.approx(0.4) and s["count"] == 12
    total = math.sqrt((1 + 1 / 6) * s["spread"] ** 2 + 0.4**2)
    assert s["spread_skill_noise"] == pytest.approx(total / s["rmse"])
    with pytest.raises(ObservationError, match="2 channel names"):
        scores_at_observations(ensemble, [obs], channels=("a", "b"))


def test_a_calibrated_ensemble_against_noisy_observations_scores_one_with_the_noise():
    """Members and truth exchangeable (iid about a per-point centre), observations with noise 0.7."""
    rng = np.random.default_rng(4)
    centre = rng.normal(size=(8, 16, 16, 1))
    members = (centre + rng.normal(size=(12, 8, 16, 16, 1))).astype(np.float32)
    truth = centre + rng.normal(size=centre.shape)
    obs = Observation("state", Identity(), (truth + 0.7 * rng.normal(size=centre.shape)).astype(np.float32), std=0.7)
    s = scores_at_observations(members, obs)[obs.name]["0"]
    assert s["spread_skill_noise"] == pytest.approx(1.0, abs=0.04)
    assert s["spread_skill"] < 0.88  # the noise-free ratio calls it underdispersive against noisy values


def test_a_callable_network_and_withheld_values_of_several_axes():
    """The network as ``(key, truth) -> observations``; a withheld Coarsen (two site axes) is scored per channel."""
    from slams_jax.baselines.covariance_tuning import _analysis_scores, _windows as verification_problem

    cov = StaticCovariance(std=(1.0, 1.0), length_lat=(1.5, 1.5), length_lon=(1.5, 1.5), periodic=(False, True))
    white = np.random.default_rng(5).normal(size=(2,) + SHAPE[:3] + (2,)).astype(np.float32)
    truths = np.stack([np.asarray(cov.sqrt_apply(w)) for w in white])  # drawn from B: 3D-Var is then optimal
    network = lambda key, truth: [observe(key, truth, Points((0, 3, 5), (2, 6, 1)), 0.3)]
    verify = [Observation("state", Coarsen(2), np.zeros((4, 3, 4, 2)), std=0.1)]
    assimilated, withheld = simulate_network(jax.random.key(0), truths, network, verify, "test")
    assert [o.values.shape for o in assimilated[1]] == [(4, 3, 2)]
    background = np.zeros(SHAPE[:3] + (2,), np.float32)
    problem = verification_problem(assimilated, withheld, background)
    assert problem.truths[0].shape == (2, 4, 12, 2)  # (window, time, site, channel)
    coarse = np.stack([np.asarray(Coarsen(2)(jnp.asarray(t))) for t in truths])
    np.testing.assert_allclose(problem.background_mse[0], np.mean(coarse**2, axis=(0, 1, 2, 3)), rtol=1e-5)
    scores = _analysis_scores(problem, cov, 1e-6, 200)
    assert 0 < scores["score"] < 1 and scores["converged"] == 1.0  # better than the background, not perfect
    with pytest.raises(ObservationError, match="expected Observation objects"):
        simulate_network(jax.random.key(0), truths, lambda key, truth: [truth], 0.2, "test")
