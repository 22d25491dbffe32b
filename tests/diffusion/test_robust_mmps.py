"""MMPS(solver="robust"): exact where the denoiser's Jacobian is a covariance, bounded where it is not.

Prior N(m, C) in d = 6 dimensions with its exact noise predictor, 3 observations y = A x + noise (as in
test_guidance.py). The broken prior has the same denoiser value at the evaluated point but a Jacobian
J + B with a large random non-symmetric B (what a learned denoiser does: on the Lorenz-63 prior the
whitened operator had eigenvalues down to -3000): x_hat'(x) = x_hat(x) + B (x - x_t).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.diffusion.gaussian import ring_problem
from slams_jax.diffusion.guidance import MMPS, SDA, Likelihood
from slams_jax.diffusion.linalg import safeguarded_cg
from slams_jax.diffusion.posterior import posterior_sample
from slams_jax.diffusion.schedules import VPSchedule

from test_guidance import A, COV, MEAN, STD, X_T, Y, D, M  # the Gaussian problem of the guidance tests

SCHEDULE = VPSchedule()
LIK = Likelihood(forward=lambda x: jnp.asarray(A, jnp.float32) @ x, y=jnp.asarray(Y, jnp.float32),
                 std=jnp.asarray(STD, jnp.float32), scale=jnp.ones(M, jnp.float32))


def _eps(x, t, skew=None):
    mu, sigma = SCHEDULE.mu(t), SCHEDULE.sigma(t)
    p = jnp.linalg.inv(mu**2 * jnp.asarray(COV, jnp.float32) + sigma**2 * jnp.eye(D))
    eps = sigma * (p @ (x - mu * jnp.asarray(MEAN, jnp.float32)))
    if skew is not None:  # x_hat += B (x - x_t): eps -= mu / sigma B (x - x_t)
        eps = eps - (mu / sigma) * (jnp.asarray(skew, jnp.float32) @ (x - jnp.asarray(X_T, jnp.float32)))
    return eps


def _guided(guidance, t, skew=None):
    eps = guidance.guide(lambda x, t: _eps(x, t, skew), SCHEDULE, LIK)
    return np.asarray(jax.jit(eps)(jnp.asarray(X_T, jnp.float32), jnp.asarray(t, jnp.float32)), np.float64)


def _exact(t):
    """The exact posterior noise predictor at x_t (float64)."""
    gain = COV @ A.T @ np.linalg.inv(A @ COV @ A.T + np.diag(STD**2))
    mean, cov = MEAN + gain @ (Y - A @ MEAN), COV - gain @ A @ COV
    mu, sigma = float(SCHEDULE.mu(t)), float(SCHEDULE.sigma(t))
    return sigma * np.linalg.solve(mu**2 * cov + sigma**2 * np.eye(D), X_T - mu * mean)


@pytest.mark.parametrize("t", [0.05, 0.2, 0.5, 0.8, 0.95])
def test_robust_mmps_is_exact_for_a_gaussian_prior(t):
    exact = _exact(t)
    got = _guided(MMPS(cg_iterations=M, cg_tolerance=0.0, solver="robust", max_shift=None), t)
    np.testing.assert_allclose(got, exact, rtol=2e-3, atol=2e-4 * np.abs(exact).max())
    # and it is not the fallback: SDA's diagonal likelihood is off here
    sda = _guided(SDA(), t)
    assert np.abs(sda - exact).max() > 10 * 2e-4 * np.abs(exact).max()


SKEW = np.random.default_rng(3).standard_normal((D, D))


@pytest.mark.parametrize("t", [0.3, 0.5])
def test_robust_mmps_stays_bounded_with_a_non_symmetric_jacobian(t):
    exact, prior = _exact(t), np.asarray(_eps(jnp.asarray(X_T, jnp.float32), t), np.float64)
    scale = np.abs(exact - prior).max()  # what the observations change
    old = _guided(MMPS(cg_iterations=M, cg_tolerance=0.0, max_shift=None), t, SKEW)
    assert np.abs(old - exact).max() > 5 * scale  # the plain solve blows up (measured 5.6 and 44 x)
    floored = _guided(MMPS(cg_iterations=M, cg_tolerance=0.0, solver="robust", fallback_gamma=None,
                           max_shift=None), t, SKEW)
    assert np.abs(floored - exact).max() <= 1.01 * scale  # never further off than the prior alone
    # the default falls back to SDA's diagonal likelihood (through the same denoiser) where the solve broke down
    robust = _guided(MMPS(cg_iterations=M, cg_tolerance=0.0, solver="robust", max_shift=None), t, SKEW)
    sda = np.asarray(jax.jit(SDA().guide(lambda x, t: _eps(x, t, SKEW), SCHEDULE, LIK))(
        jnp.asarray(X_T, jnp.float32), jnp.asarray(t, jnp.float32)), np.float64)
    np.testing.assert_allclose(robust, sda, rtol=1e-4, atol=1e-4 * np.abs(sda).max())


def test_safeguarded_cg_is_cg_on_an_spd_operator_and_flags_an_indefinite_one():
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    b = jnp.asarray(rng.standard_normal(8), jnp.float32)
    spd = jnp.asarray(q @ np.diag(np.linspace(1.0, 6.0, 8)) @ q.T, jnp.float32)
    x, k, res, sound = safeguarded_cg(lambda v: spd @ v, b, 8)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(np.asarray(spd), np.asarray(b)), rtol=1e-3, atol=1e-4)
    assert bool(sound) and float(res) < 1e-3
    bad = jnp.asarray(q @ np.diag(np.linspace(-30.0, 1e-3, 8)) @ q.T, jnp.float32)
    x, _, res, sound = safeguarded_cg(lambda v: bad @ v, b, 8)
    assert not bool(sound) and float(res) <= 1.0 + 1e-6  # the best iterate is never worse than x = 0
    assert float(jnp.linalg.norm(x)) <= 8 * float(jnp.linalg.norm(b))


def test_robust_settings_are_checked():
    for bad in (lambda: MMPS(solver="gmres"), lambda: MMPS(solver="robust", fallback_gamma=-1.0)):
        with pytest.raises(ValueError):
            bad()


@pytest.mark.slow
def test_robust_mmps_samples_the_exact_posterior():
    problem = ring_problem(dim=16, observed=6, std=0.3)
    x = posterior_sample(jax.random.PRNGKey(0), problem.eps(SCHEDULE), problem.observations(), n_samples=4096,
                         shape=problem.shape, schedule=SCHEDULE, guidance=MMPS(solver="robust"))
    mean_error, cov_error = problem.errors(np.asarray(x))
    assert mean_error <= 0.1 and cov_error <= 0.15, (mean_error, cov_error)
