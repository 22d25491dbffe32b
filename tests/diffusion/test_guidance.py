"""Guidance and the conjugate-gradient solver against closed forms.

Prior x ~ N(m, C) in d = 6 dimensions has the exact noise predictor eps(x_t) = sigma_t P_t (x_t - mu_t m) with
P_t = (mu_t^2 C + sigma_t^2 I)^-1, hence the exact Tweedie denoiser x_hat = (x_t - sigma_t eps) / mu_t with
Jacobian J_t = (I - sigma_t^2 P_t) / mu_t. Observations y = A x + noise (A: 3 x 6, noise std s per value):

- the exact posterior is N(m', C') (Kalman), so the exact posterior noise predictor is
  sigma_t (mu_t^2 C' + sigma_t^2 I)^-1 (x_t - mu_t m'); MMPS must equal it (its likelihood is exact here);
- SDA: eps - sigma_t J_t^T A^T (y - A x_hat) / v with v = s^2 + gamma c^2 (sigma_t / mu_t)^2;
- DPS: eps - zeta sigma_t J_t^T A^T (y - A x_hat) / s^2.
The references are computed in float64 with numpy.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.diffusion.guidance import DPS, MMPS, SDA, Likelihood
from slams_jax.diffusion.linalg import conjugate_gradient
from slams_jax.diffusion.schedules import VPSchedule

D, M = 6, 3
SCHEDULE = VPSchedule()
TIMES = (0.05, 0.2, 0.5, 0.8, 0.95)
_rng = np.random.default_rng(0)
_L = _rng.standard_normal((D, D))
COV = _L @ _L.T / D + 0.3 * np.eye(D)
MEAN = _rng.standard_normal(D)
A = _rng.standard_normal((M, D))
STD = np.array([0.3, 0.5, 0.2])
SCALE = np.array([1.0, 2.0, 0.5])
Y = A @ (MEAN + np.linalg.cholesky(COV) @ _rng.standard_normal(D)) + STD * _rng.standard_normal(M)
X_T = _rng.standard_normal(D)


def _mu_sigma(t):
    return float(SCHEDULE.mu(t)), float(SCHEDULE.sigma(t))


def _gaussian_eps(mean, cov):
    """The exact noise predictor of N(mean, cov) in float64."""
    def eps(x, t):
        mu, sigma = _mu_sigma(t)
        return sigma * np.linalg.solve(mu**2 * cov + sigma**2 * np.eye(D), x - mu * mean)
    return eps


def _jax_eps(x, t):
    mu, sigma = SCHEDULE.mu(t), SCHEDULE.sigma(t)
    p = jnp.linalg.inv(mu**2 * jnp.asarray(COV, jnp.float32) + sigma**2 * jnp.eye(D, dtype=jnp.float32))
    return sigma * (p @ (x - mu * jnp.asarray(MEAN, jnp.float32)))


LIK = Likelihood(forward=lambda x: jnp.asarray(A, jnp.float32) @ x, y=jnp.asarray(Y, jnp.float32),
                 std=jnp.asarray(STD, jnp.float32), scale=jnp.asarray(SCALE, jnp.float32))


def _guided(guidance, t):
    eps = guidance.guide(_jax_eps, SCHEDULE, LIK)
    return np.asarray(jax.jit(eps)(jnp.asarray(X_T, jnp.float32), jnp.asarray(t, jnp.float32)), np.float64)


def _gaussian_guided(t, variance, weight):
    """eps - weight sigma J^T A^T (y - A x_hat) / variance, for the exact Gaussian prior."""
    mu, sigma = _mu_sigma(t)
    eps = _gaussian_eps(MEAN, COV)(X_T, t)
    x_hat = (X_T - sigma * eps) / mu
    jac = (np.eye(D) - sigma**2 * np.linalg.inv(mu**2 * COV + sigma**2 * np.eye(D))) / mu
    return eps - weight * sigma * jac.T @ A.T @ ((Y - A @ x_hat) / variance)


@pytest.mark.parametrize("t", TIMES)
def test_mmps_equals_the_exact_posterior_eps(t):
    gain = COV @ A.T @ np.linalg.inv(A @ COV @ A.T + np.diag(STD**2))
    post_mean, post_cov = MEAN + gain @ (Y - A @ MEAN), COV - gain @ A @ COV
    exact = _gaussian_eps(post_mean, post_cov)(X_T, t)
    prior = _gaussian_eps(MEAN, COV)(X_T, t)
    got = _guided(MMPS(cg_iterations=M, cg_tolerance=0.0), t)  # M iterations solve the M x M system exactly
    np.testing.assert_allclose(got, exact, rtol=2e-3, atol=2e-4 * np.abs(exact).max())
    assert np.abs(exact - prior).max() > 10 * 2e-4 * np.abs(exact).max()  # the observations matter at this t


@pytest.mark.parametrize("t", TIMES)
@pytest.mark.parametrize("gamma", [1e-2, 0.5])
def test_sda_variance_adds_the_scaled_denoiser_term(t, gamma):
    mu, sigma = _mu_sigma(t)
    variance = STD**2 + gamma * SCALE**2 * (sigma / mu) ** 2
    got = _guided(SDA(gamma=gamma), t)
    want = _gaussian_guided(t, variance, 1.0)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4 * np.abs(want).max())
    if gamma == 0.5 and t >= 0.2:  # the term is large here: a variance without it is far off
        assert np.abs(_gaussian_guided(t, STD**2, 1.0) - want).max() > 0.05 * np.abs(want).max()


@pytest.mark.parametrize("t", TIMES)
@pytest.mark.parametrize("zeta", [1.0, 0.3])
def test_dps_variance_is_the_noise_and_zeta_scales_the_gradient(t, zeta):
    got = _guided(DPS(zeta=zeta), t)
    want = _gaussian_guided(t, STD**2, zeta)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4 * np.abs(want).max())


def test_guidance_settings_are_checked():
    for bad in (lambda: SDA(gamma=-1.0), lambda: DPS(zeta=0.0), lambda: MMPS(cg_iterations=0)):
        with pytest.raises(ValueError):
            bad()


def _spd(eigenvalues, seed=1):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues),) * 2))
    return q @ np.diag(eigenvalues) @ q.T


def _solve(matrix, b, maxiter, tol=0.0):
    a = jnp.asarray(matrix, jnp.float32)
    x, k, res = jax.jit(lambda b: conjugate_gradient(lambda v: a @ v, b, maxiter, tol))(jnp.asarray(b, jnp.float32))
    return np.asarray(x, np.float64), int(k), float(res)


def test_conjugate_gradient_matches_a_dense_solve():
    a = _spd(np.linspace(0.5, 4.0, 8))
    b = np.random.default_rng(2).standard_normal(8)
    x, k, res = _solve(a, b, maxiter=8)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-4, atol=1e-5)
    assert k == 8 and res < 1e-4


def test_conjugate_gradient_stops_at_its_tolerance():
    # 3 distinct eigenvalues: exact after 3 iterations, so a tolerance stops it there instead of at maxiter
    a = _spd([1.0, 1.0, 1.0, 2.0, 2.0, 5.0, 5.0, 5.0])
    b = np.random.default_rng(3).standard_normal(8)
    x, k, res = _solve(a, b, maxiter=20, tol=1e-4)
    assert k == 3, k
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-4, atol=1e-5)
    assert res <= 1e-4
    np.testing.assert_allclose(res, np.linalg.norm(b - a @ x) / np.linalg.norm(b), atol=1e-5)
    # a loose tolerance stops earlier, with the residual it reports above the tight one
    _, k_loose, res_loose = _solve(a, b, maxiter=20, tol=0.5)
    assert k_loose < 3 and res_loose <= 0.5
    # vmapped, each member stops at its own residual: an eigenvector needs one iteration
    eigvec = np.linalg.eigh(a)[1][:, 0]
    am = jnp.asarray(a, jnp.float32)
    _, ks, _ = jax.vmap(lambda b: conjugate_gradient(lambda v: am @ v, b, 20, 1e-4))(
        jnp.asarray(np.stack([b, eigvec]), jnp.float32))
    assert list(np.asarray(ks)) == [3, 1]


@pytest.mark.parametrize("matrix", [-np.eye(4), np.zeros((4, 4)), np.diag([-1.0, -2.0, 0.0, -3.0])])
def test_conjugate_gradient_takes_no_step_along_non_positive_curvature(matrix):
    b = np.ones(4)
    x, k, res = _solve(matrix, b, maxiter=5)
    assert np.all(np.isfinite(x)) and np.all(x == 0.0)
    assert k == 5 and res == pytest.approx(1.0)


def test_conjugate_gradient_with_zero_rhs_returns_zero():
    x, k, res = _solve(_spd(np.linspace(1.0, 2.0, 4)), np.zeros(4), maxiter=5, tol=1e-3)
    assert np.all(x == 0.0) and k == 0 and res == 0.0


@pytest.mark.parametrize("guidance", [SDA(max_shift=0.05), DPS(max_shift=0.05), MMPS(cg_iterations=M, max_shift=0.05)])
def test_max_shift_bounds_the_correction_of_the_denoised_estimate(guidance, t=0.5):
    """The correction's effect on the denoised estimate, sigma / mu |eps - eps_post|, has RMS at most max_shift,
    in the direction of the undamped correction."""
    mu, sigma = _mu_sigma(t)
    prior = _gaussian_eps(MEAN, COV)(X_T, t)
    free = _guided(dataclasses.replace(guidance, max_shift=None), t) - prior
    damped = _guided(guidance, t) - prior
    assert np.sqrt(np.mean(free**2)) * sigma / mu > 0.05  # the limit acts here
    np.testing.assert_allclose(np.sqrt(np.mean(damped**2)) * sigma / mu, 0.05, rtol=1e-3)
    np.testing.assert_allclose(damped / np.linalg.norm(damped), free / np.linalg.norm(free), atol=1e-4)
    loose = _guided(dataclasses.replace(guidance, max_shift=1e3), t) - prior
    np.testing.assert_allclose(loose, free, rtol=1e-5, atol=1e-6)  # a loose limit changes nothing
