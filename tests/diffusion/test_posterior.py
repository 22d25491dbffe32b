"""Posterior sampling on a linear-Gaussian problem, where the exact answer is the Kalman posterior.

Prior x ~ N(m, C) over a trajectory of shape (4, 4, 4, 1) (64 dims, smooth squared-exponential covariance),
observed through y = A x + noise with A = every 2nd state, 2x2 block means (8 values), noise std 0.2. Its
exact noise predictor is eps(x_t, t) = sigma_t (mu_t^2 C + sigma_t^2 I)^-1 (x_t - mu_t m), and the posterior
is N(m + K (y - A m), C - K A C) with K = C A^T (A C A^T + R)^-1.

Tolerances:
- MMPS uses the exact likelihood for this problem (Tweedie's covariance is exact for a Gaussian prior and
  8 CG iterations solve the 8x8 system), so its samples must match the Kalman posterior within sampling
  error: ensemble mean within 5 standard errors plus 5% of the posterior std (sampler discretisation), and a
  covariance error at most twice that of as many exact posterior samples plus 0.05.
- SDA (gamma = 1e-2) and DPS replace the likelihood covariance by an approximation, so they are biased by
  construction (measured: mean errors 0.3-0.4 posterior std for SDA, 0.4-1.0 for DPS); they must still move
  the mean most of the way from the prior to the posterior, and never beat MMPS.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.diffusion.guidance import DPS, MMPS, SDA
from slams_jax.observation.observations import Observation, ObservationError, observe
from slams_jax.observation.operators import Coarsen, Points, TimeIndex, TimeSubsample
from slams_jax.diffusion.posterior import SamplingError, posterior_sample, posterior_sample_batch
from slams_jax.diffusion.samplers import DiffraxPredictorCorrector, PredictorCorrector, ProbabilityFlow, ReverseSDE
from slams_jax.diffusion.schedules import VPSchedule

SHAPE = (4, 4, 4, 1)
D = 64
STD = 0.2
SCHEDULE = VPSchedule()


def _problem():
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE[:3]], indexing="ij"), -1).reshape(-1, 3)
    dist2 = ((grid[:, None] - grid[None]) ** 2).sum(-1)
    cov = np.exp(-dist2 / (2 * 1.5**2)) + 0.05 * np.eye(D)
    mean = 0.5 * np.sin(np.arange(D))
    lam, u = np.linalg.eigh(cov)
    uj, lamj, mj = (jnp.asarray(a, jnp.float32) for a in (u, lam, mean))

    def eps(x, t):
        mu, sigma = SCHEDULE.mu(t), SCHEDULE.sigma(t)
        r = x.reshape(-1) - mu * mj
        return (sigma * (uj @ ((uj.T @ r) / (mu**2 * lamj + sigma**2)))).reshape(x.shape)

    op = TimeSubsample(2) >> Coarsen(2)
    truth = (mean + np.linalg.cholesky(cov) @ np.random.default_rng(0).standard_normal(D)).reshape(SHAPE)
    obs = observe(jax.random.PRNGKey(1), jnp.asarray(truth, jnp.float32), op, STD)
    a = np.asarray(jax.jacfwd(op)(jnp.zeros(SHAPE, jnp.float32)).reshape(-1, D), np.float64)
    gain = cov @ a.T @ np.linalg.inv(a @ cov @ a.T + STD**2 * np.eye(len(a)))
    post_mean = mean + gain @ (obs.values.ravel().astype(np.float64) - a @ mean)
    post_cov = cov - gain @ a @ cov
    return eps, obs, mean, post_mean, post_cov


EPS, OBS, PRIOR_MEAN, POST_MEAN, POST_COV = _problem()


def _sample(guidance, sampler, n, seed=2, **kw):
    x = posterior_sample(jax.random.PRNGKey(seed), EPS, [OBS], n_samples=n, shape=SHAPE, schedule=SCHEDULE,
                         guidance=guidance, sampler=sampler, **kw)
    return np.asarray(x, np.float64).reshape(n, D)


def _errors(x):
    n = len(x)
    sd = np.sqrt(np.diag(POST_COV))
    z = np.abs(x.mean(0) - POST_MEAN) / (sd / np.sqrt(n))
    mean_err = np.abs(x.mean(0) - POST_MEAN).max() / sd.max()
    cov_err = np.linalg.norm(np.cov(x.T) - POST_COV) / np.linalg.norm(POST_COV)
    return z, mean_err, cov_err


def _exact_cov_error(n, seed=5):
    exact = np.random.default_rng(seed).multivariate_normal(POST_MEAN, POST_COV, size=n)
    return np.linalg.norm(np.cov(exact.T) - POST_COV) / np.linalg.norm(POST_COV)


@pytest.mark.parametrize("sampler,n", [
    (PredictorCorrector(steps=64, corrections=0), 1024),
    pytest.param(DiffraxPredictorCorrector(steps=64, corrections=1, tau=0.1), 512, marks=pytest.mark.slow),
    pytest.param(ReverseSDE(steps=128), 512, marks=pytest.mark.slow),
    (ProbabilityFlow(steps=32, solver="heun"), 1024),
])
def test_mmps_matches_the_kalman_posterior(sampler, n):
    x = _sample(MMPS(cg_iterations=8, cg_tolerance=0.0), sampler, n)
    z, _, cov_err = _errors(x)
    sd = np.sqrt(np.diag(POST_COV))
    assert np.all(np.abs(x.mean(0) - POST_MEAN) < 5 * sd / np.sqrt(n) + 0.05 * sd), z.max()
    assert cov_err < 2 * _exact_cov_error(n) + 0.05, cov_err


APPROX_SAMPLER = PredictorCorrector(steps=64, corrections=1, tau=0.1)


@functools.lru_cache(maxsize=1)
def _mmps_mean_error():
    return _errors(_sample(MMPS(cg_iterations=8, cg_tolerance=0.0), APPROX_SAMPLER, 512))[1]


@pytest.mark.parametrize("guidance,bound", [(SDA(), 0.5), (DPS(), 0.6)])
def test_approximate_guidance_moves_towards_the_posterior(guidance, bound):
    _, mean_err, _ = _errors(_sample(guidance, APPROX_SAMPLER, 512))
    prior_err = np.abs(PRIOR_MEAN - POST_MEAN).max() / np.sqrt(np.diag(POST_COV)).max()
    assert mean_err < bound, mean_err
    assert mean_err < 0.5 * prior_err, (mean_err, prior_err)
    assert _mmps_mean_error() < mean_err


@pytest.mark.slow
def test_scan_and_diffrax_predictor_corrector_agree():
    # without corrections both run the same predictor from the same initial noise: identical samples
    a = _sample(SDA(), PredictorCorrector(steps=16, corrections=0), 8)
    b = _sample(SDA(), DiffraxPredictorCorrector(steps=16, corrections=0), 8)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # with corrections their noises differ (key splits vs a Brownian tree): equal in distribution
    n = 512
    a = _sample(SDA(), PredictorCorrector(steps=32, corrections=1, tau=0.1), n, seed=3)
    b = _sample(SDA(), DiffraxPredictorCorrector(steps=32, corrections=1, tau=0.1), n, seed=4)
    se = np.sqrt((a.var(0) + b.var(0)) / n)
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < 5 * se)
    np.testing.assert_allclose(a.std(0), b.std(0), rtol=0.15)


def test_same_key_same_samples():
    for sampler in (DiffraxPredictorCorrector(steps=8), ReverseSDE(steps=8)):
        # 8 reverse-SDE steps overshoot past |x| = 100 for some members: only determinism is checked here
        a = _sample(SDA(), sampler, 4, seed=7, divergence_bound=None)
        np.testing.assert_array_equal(a, _sample(SDA(), sampler, 4, seed=7, divergence_bound=None))
        assert not np.allclose(a, _sample(SDA(), sampler, 4, seed=8, divergence_bound=None))
        assert not np.allclose(a[0], a[1])  # members differ


@pytest.mark.parametrize("make,steps", [
    (lambda s: ProbabilityFlow(steps=s, solver="heun"), (4, 8, 16)),
    (lambda s: ReverseSDE(steps=s), (8, 32, 128)),
])
@pytest.mark.slow
def test_more_steps_reduce_the_error(make, steps):
    """Same key, same initial noise and Brownian path: the solves converge to the finest one."""
    ref = _sample(SDA(), make(4 * steps[-1]), 32)
    # 8 reverse-SDE steps overshoot past |x| = 100 for some members: no bound, the errors are what is measured
    errs = [np.sqrt(np.mean((_sample(SDA(), make(s), 32, divergence_bound=None) - ref) ** 2)) for s in steps]
    assert errs[0] > errs[1] > errs[2], errs


def test_bad_observations_are_named():
    good = dict(shape=SHAPE, schedule=SCHEDULE, sampler=PredictorCorrector(steps=2))
    key = jax.random.PRNGKey(0)
    with pytest.raises(ObservationError, match="gauge.*NaN"):
        Observation("state", Points((0,), (0,)), np.full((4, 1, 1), np.nan), 0.1, name="gauge")
    with pytest.raises(ObservationError, match="sat.*unknown modality 'olr'"):
        posterior_sample(key, EPS, [Observation("olr", Points((0,), (0,)), np.zeros((4, 1, 1)), 0.1, name="sat")],
                         **good)
    with pytest.raises(ObservationError, match="late.*past the trajectory"):
        posterior_sample(key, EPS, [Observation("state", TimeIndex((7,)), np.zeros((1, 4, 4, 1)), 0.1, name="late")],
                         **good)
    with pytest.raises(ObservationError, match=r"coarse.*shape \(2, 2, 2, 1\)"):
        posterior_sample(key, EPS, [Observation("state", Coarsen(2), np.zeros((2, 2, 2, 1)), 0.1, name="coarse")],
                         **good)
    with pytest.raises(ObservationError, match="std"):
        Observation("state", Coarsen(2), np.zeros((4, 2, 2, 1)), -1.0)
    with pytest.raises(ValueError, match="shape= and schedule="):
        posterior_sample(key, EPS, [OBS])


def test_non_finite_sampling_is_reported_with_its_step():
    def broken(x, t):  # a prior that breaks down below t = 0.5
        return jnp.where(t < 0.5, jnp.nan, 1.0) * EPS(x, t)

    with pytest.raises(SamplingError, match=r"step (9|10) of"):
        posterior_sample(jax.random.PRNGKey(0), broken, [OBS], shape=SHAPE, schedule=SCHEDULE, n_samples=2,
                         sampler=DiffraxPredictorCorrector(steps=16, corrections=0))
    with pytest.raises(SamplingError, match=r"member 0: .* step (9|10) of"):
        posterior_sample(jax.random.PRNGKey(0), broken, [OBS], shape=SHAPE, schedule=SCHEDULE, n_samples=2,
                         sampler=PredictorCorrector(steps=16, corrections=0))


def test_batched_problems_equal_separate_runs_and_fail_alone():
    """Windows batched in one program: each gets exactly its separate ensemble; a failure stays its own."""
    op = OBS.operator
    truths = [np.random.default_rng(s).standard_normal(SHAPE).astype(np.float32) for s in (10, 11, 12)]
    problems = [[observe(jax.random.PRNGKey(20 + i), jnp.asarray(x), op, std)]
                for i, (x, std) in enumerate(zip(truths, (0.2, 0.5, 0.2)))]
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    kw = dict(n_samples=4, shape=SHAPE, schedule=SCHEDULE, guidance=SDA(), sampler=PredictorCorrector(steps=8))
    batch = posterior_sample_batch(keys, EPS, problems, **kw)
    assert batch.shape == (3, 4) + SHAPE
    for p in range(3):
        alone = np.asarray(posterior_sample(keys[p], EPS, problems[p], **kw))
        np.testing.assert_allclose(batch[p], alone, rtol=1e-5, atol=1e-5)
    assert np.abs(batch[0] - batch[2]).max() > 0.1  # different observations, different posteriors

    # one absurd problem: it alone is reported (named) and NaN; the others are unchanged
    absurd = [Observation("state", op, np.full(OBS.values.shape, 1e30, np.float32), 1e-3, name="absurd")]
    states, failures = posterior_sample_batch(keys, EPS, [problems[0], absurd, problems[2]], errors="return", **kw)
    assert failures[0] is None and failures[2] is None
    assert failures[1].startswith("problem 1, member"), failures
    assert np.isnan(states[1]).all()
    np.testing.assert_allclose(states[[0, 2]], batch[[0, 2]], rtol=1e-5, atol=1e-5)
    with pytest.raises(SamplingError, match="problem 1, member"):
        posterior_sample_batch(keys, EPS, [problems[0], absurd, problems[2]], **kw)

    # problems must share one structure, and one key each
    other = [observe(jax.random.PRNGKey(0), jnp.asarray(truths[0]), TimeSubsample(2), 0.2)]
    with pytest.raises(ObservationError, match="problem 1: .*differ in modality or operator"):
        posterior_sample_batch(keys[:2], EPS, [problems[0], other], **kw)
    with pytest.raises(ValueError, match="one key per problem"):
        posterior_sample_batch(keys[:2], EPS, problems, **kw)
