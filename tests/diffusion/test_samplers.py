"""The predictor-corrector sampler against an analytic Gaussian prior.

Data x ~ N(m, s^2) (per coordinate) have the exact noise predictor
eps(x_t, t) = sigma_t (x_t - mu_t m) / (mu_t^2 s^2 + sigma_t^2), so the sampler must return N(m, s^2).
"""

import jax
import numpy as np
import pytest

from slams_jax.diffusion.samplers import (
    DiffraxPredictorCorrector,
    PredictorCorrector,
    ProbabilityFlow,
    ReverseSDE,
    predictor_corrector,
)
from slams_jax.diffusion.multistep import Multistep, edm_times
from slams_jax.diffusion.schedules import VPSchedule

M, S = 0.7, 0.5


def gaussian_eps(schedule):
    def eps(x, t):
        mu, sigma = schedule.mu(t), schedule.sigma(t)
        return sigma * (x - mu * M) / (mu**2 * S**2 + sigma**2)
    return eps


def moments(steps, corrections, tau=1.0, n=256, dim=512, seed=0):
    s = VPSchedule()
    f = lambda k: predictor_corrector(k, gaussian_eps(s), (n, dim), s, steps, corrections, tau)
    x = jax.jit(f)(jax.random.PRNGKey(seed))
    return float(x.mean()), float(x.std())


@pytest.mark.parametrize("corrections,tau", [(0, 1.0), (1, 0.1)])
def test_gaussian_moments_within_sampling_error(corrections, tau):
    mean, std = moments(steps=64, corrections=corrections, tau=tau)
    n = 256 * 512
    # 5 standard errors of the sample moments, plus the predictor's discretisation bias at 64 steps
    # (about 1%) and, with corrections, the unadjusted Langevin bias: its stationary variance on a
    # Gaussian is v / (1 - tau / 2), i.e. std at most 2.6% high for tau = 0.1.
    assert abs(mean - M) < 5 * S / np.sqrt(n) + 0.01
    assert abs(std - S) < 5 * S / np.sqrt(2 * n) + 0.015


def test_langevin_bias_follows_ula_theory():
    """With tau = 1 the corrector inflates the variance towards v / (1 - tau / 2) = 2 v, as ULA predicts."""
    _, std_pc = moments(steps=64, corrections=1, tau=1.0)
    assert S < std_pc < S * np.sqrt(2.0)


def test_error_shrinks_with_steps():
    errs = []
    for steps in (4, 16, 64):
        _, std = moments(steps=steps, corrections=0, n=64, seed=1)
        errs.append(abs(std - S))
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[0] > 2 * errs[2]


def test_same_key_same_samples_and_jit_agrees():
    s = VPSchedule()
    eps = gaussian_eps(s)
    f = lambda k: predictor_corrector(k, eps, (16, 3), s, 8, 1)
    a = f(jax.random.PRNGKey(3))
    b = jax.jit(f)(jax.random.PRNGKey(3))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(jax.jit(f)(jax.random.PRNGKey(3)), b)
    assert not np.allclose(jax.jit(f)(jax.random.PRNGKey(4)), b)


@pytest.mark.parametrize("sampler,tol", [
    (PredictorCorrector(64, corrections=0), 0.05),  # the predictor alone is ~4% narrow at 64 steps
    (DiffraxPredictorCorrector(64, corrections=1, tau=0.1), 0.04),
    (ReverseSDE(128, "euler"), 0.03),
    (ProbabilityFlow(32, "heun"), 0.02),
    (ProbabilityFlow(8, "tsit5", adaptive=True, rtol=1e-4, atol=1e-4), 0.02),
    (Multistep(32), 0.02),
    (Multistep(32, eta=1.0), 0.06),  # the SDE form converges more slowly: 4.5% narrow at 32 steps
])
def test_sampler_objects_draw_the_gaussian_prior(sampler, tol):
    s = VPSchedule()
    x, finite = jax.jit(jax.vmap(lambda k: sampler.sample(k, gaussian_eps(s), (64,), s)))(
        jax.random.split(jax.random.PRNGKey(0), 256))
    assert bool(finite.all()) and finite.shape[0] == 256
    n = x.size
    assert abs(float(x.mean()) - M) < 5 * S / np.sqrt(n) + 0.01
    assert abs(float(x.std()) / S - 1.0) < tol


def test_sampler_settings_are_checked():
    with pytest.raises(ValueError, match="steps=0"):
        PredictorCorrector(0)
    with pytest.raises(ValueError, match="ReverseSDE.solver='rk4'"):
        ReverseSDE(8, "rk4")
    with pytest.raises(ValueError, match="adaptive"):
        ProbabilityFlow(8, "euler", adaptive=True)
    with pytest.raises(ValueError, match="Multistep.order=3"):
        Multistep(8, order=3)
    with pytest.raises(ValueError, match="Multistep.kappa_max=0.5"):
        Multistep(8, kappa_max=0.5)


@pytest.mark.parametrize("alpha", ["cos", "lin", "exp"])
@pytest.mark.parametrize("kappa_max", [None, 80.0])
def test_edm_times_are_uniform_in_kappa_to_the_one_over_rho(alpha, kappa_max):
    s = VPSchedule(alpha=alpha)
    t = np.asarray(edm_times(s, 16, rho=7.0, kappa_max=kappa_max), np.float64)
    assert t[-1] == 0.0 and (np.diff(t) < 0).all()
    kappa = np.asarray(s.sigma(t) / s.mu(t), np.float64)
    np.testing.assert_allclose(kappa[0], kappa_max or 1 / s.eta, rtol=1e-3)
    np.testing.assert_allclose(kappa[-1], s.eta, rtol=1e-3)
    np.testing.assert_allclose(np.diff(kappa ** (1 / 7)), np.diff(kappa ** (1 / 7))[0], rtol=1e-2)
