"""Cycled assimilation: each cycle's problem is the exact filter posterior, whatever its placeholders."""

import jax
import numpy as np
import pytest

from slams_jax.diffusion.gaussian import GaussianProblem, ring_problem
from slams_jax.diffusion.posterior import posterior_sample_batch
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.errors import ConfigError
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Points, Swath, TimeIndex, TimeSubsample
from slams_jax.pipeline.filtering import cycle_problems, filter_analysis, lag_windows

LAG, N_TIME, LON = 4, 7, 4  # windows of 4 states of 4 points; a period of 7 states
POINTS = Points(lat_index=(0, 0), lon_index=(0, 2))


def _period_observations(seed=0):
    """Points 0 and 2 at every second state (0, 2, 4, 6) with noise 0.3, and point 3 at states 1 and 5."""
    rng = np.random.default_rng(seed)
    a = Observation("state", TimeSubsample(2) >> POINTS, rng.standard_normal((4, 2, 1)), 0.3, name="even")
    b = Observation("state", TimeIndex((1, 5)) >> Points(lat_index=(0,), lon_index=(3,)),
                    rng.standard_normal((2, 1, 1)), np.array([[[0.2]], [[0.4]]]), name="odd")
    return [a, b]


def _visible(observations, t, s):
    """The components (flattened over the window (lag, 1, 4, 1)) seen by cycle t, their values and stds."""
    index, y, std = [], [], []
    a, b = observations
    for row, k in enumerate(range(0, N_TIME, 2)):
        if s <= k <= t:
            index += [(k - s) * LON + 0, (k - s) * LON + 2]
            y += list(a.values[row, :, 0])
            std += [0.3, 0.3]
    for row, k in enumerate((1, 5)):
        if s <= k <= t:
            index.append((k - s) * LON + 3)
            y.append(b.values[row, 0, 0])
            std.append(b.std[row, 0, 0])
    return np.array(index), np.array(y), np.array(std)


def test_the_cycles_share_one_structure_and_see_only_the_past():
    obs = _period_observations()
    problems = cycle_problems(obs, N_TIME, LAG)
    assert len(problems) == N_TIME and lag_windows(N_TIME, LAG).tolist() == [0, 0, 0, 0, 1, 2, 3]
    ops = [[o.operator for o in p] for p in problems]
    assert all(o == ops[0] for o in ops)  # one compiled program for every cycle
    # cycle 2 (window 0-3): slots 0 and 2 see "even" rows 0 and 1; slot 3's would-be "odd" row is in the future
    seen = {o.name: o for o in problems[2] if float(o.std.max()) < 10}
    assert sorted(seen) == ["even[slot 0]", "even[slot 2]", "odd[slot 1]"]
    np.testing.assert_array_equal(seen["even[slot 2]"].values, obs[0].values[1:2])
    assert sorted(o.name for o in problems[5] if float(o.std.max()) < 10) == [
        "even[slot 0]", "even[slot 2]", "odd[slot 3]"]  # window 2-5: states 2, 4 and 5


def test_each_cycle_samples_the_exact_filter_posterior():
    """A Gaussian prior over the window: the sampled cycles' mean and covariance are the Kalman update with
    the visible observations only; the placeholders carry no information."""
    schedule = VPSchedule()
    ring = ring_problem(dim=LAG * LON, observed=1)
    obs = _period_observations()
    problems = cycle_problems(obs, N_TIME, LAG)
    cycles = (2, 5)
    prior = GaussianProblem(ring.mean, ring.cov, np.zeros(1, int), 1.0, np.zeros(1))
    x = posterior_sample_batch(jax.random.split(jax.random.PRNGKey(0), len(cycles)), prior.eps(schedule),
                               [problems[t] for t in cycles], n_samples=2048, shape=(LAG, 1, LON, 1),
                               schedule=schedule)
    for p, t in enumerate(cycles):
        index, y, std = _visible(obs, t, lag_windows(N_TIME, LAG)[t])
        a = np.eye(LAG * LON)[index]
        s = a @ ring.cov @ a.T + np.diag(std**2)
        gain = np.linalg.solve(s, a @ ring.cov).T
        mean, cov = ring.mean + gain @ (y - a @ ring.mean), ring.cov - gain @ a @ ring.cov
        samples = np.asarray(x[p], np.float64).reshape(2048, -1)
        mean_error = np.max(np.abs(samples.mean(0) - mean) / np.sqrt(np.diag(cov)))
        cov_error = np.linalg.norm(np.cov(samples, rowvar=False) - cov) / np.linalg.norm(cov)
        assert mean_error < 0.12 and cov_error < 0.15, (t, mean_error, cov_error)


def test_the_analysis_takes_each_cycles_own_state_and_refuses_moving_swaths():
    windows = np.arange(N_TIME)[:, None, None] * 10 + np.arange(LAG)[None, None, :]  # (cycle, member, slot)
    assert filter_analysis(windows, N_TIME, LAG)[0].tolist() == [0, 11, 22, 33, 43, 53, 63]
    swath = Observation("state", Swath(1, 1), np.zeros((N_TIME, 1, 1, 1)), 1.0, name="olr")
    with pytest.raises(ConfigError, match="observation 'olr' uses Swath.*mode='smoother'"):
        cycle_problems([swath], N_TIME, LAG)
    with pytest.raises(ConfigError, match="config.assimilation.lag=9"):
        cycle_problems(_period_observations(), N_TIME, 9)
