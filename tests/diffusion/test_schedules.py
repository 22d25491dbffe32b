"""VP schedule identities and consistency of the SDE coefficients with the marginals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.diffusion.schedules import ALPHAS, VPSchedule


@pytest.mark.parametrize("alpha", ALPHAS)
def test_endpoints_and_variance_preservation(alpha):
    s = VPSchedule(alpha=alpha, eta=1e-3)
    assert float(s.mu(jnp.float32(0.0))) == pytest.approx(1.0, abs=1e-6)
    assert float(s.mu(jnp.float32(1.0))) == pytest.approx(1e-3, rel=1e-3)
    assert float(s.sigma(jnp.float32(0.0))) == pytest.approx(1e-3, rel=1e-3)
    t = jnp.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(s.mu(t) ** 2 + s.sigma(t) ** 2, 1.0 + 1e-6, rtol=1e-5)
    assert bool(jnp.all(jnp.diff(s.mu(t)) < 0)), "mu must decrease"
    assert bool(jnp.all(jnp.diff(s.sigma(t)) > 0)), "sigma must increase"


def test_closed_forms():
    eta = 1e-2
    t = jnp.array([0.25, 0.5, 0.75])
    np.testing.assert_allclose(VPSchedule("lin", eta).mu(t), 1 - (1 - eta) * np.array([0.25, 0.5, 0.75]), rtol=1e-6)
    np.testing.assert_allclose(VPSchedule("exp", eta).mu(t), np.exp(np.log(eta) * np.array([0.25, 0.5, 0.75]) ** 2), rtol=1e-6)
    np.testing.assert_allclose(
        VPSchedule("cos", eta).mu(t), np.cos(np.arccos(np.sqrt(eta)) * np.array([0.25, 0.5, 0.75])) ** 2, rtol=1e-6
    )


@pytest.mark.parametrize("alpha", ALPHAS)
def test_sde_coefficients_reproduce_marginal_variance(alpha):
    """d/dt Var[x_t] = 2 f Var + g^2 for the linear SDE; Var[x_t] = mu^2 v0 + sigma^2 for Var[x_0] = v0."""
    s = VPSchedule(alpha=alpha, eta=1e-3)
    v0 = 2.5
    var = lambda t: s.mu(t) ** 2 * v0 + s.sigma(t) ** 2
    for t in (0.1, 0.4, 0.8):
        t = jnp.float32(t)
        f, g = s.drift_diffusion(t)
        np.testing.assert_allclose(jax.grad(var)(t), 2 * f * var(t) + g**2, rtol=2e-3, atol=1e-4)


def test_perturb_statistics():
    s = VPSchedule()
    x = jnp.full((20000, 3), 2.0)
    t = jnp.full((20000,), 0.5)
    xt, eps = s.perturb(jax.random.PRNGKey(0), x, t)
    np.testing.assert_allclose(xt, s.mu(t)[:, None] * x + s.sigma(t)[:, None] * eps, rtol=1e-6)
    # sample moments within ~5 standard errors
    n = x.size
    mean, std = float(xt.mean()), float(xt.std())
    assert abs(mean - 2.0 * float(s.mu(0.5))) < 5 * float(s.sigma(0.5)) / np.sqrt(n)
    assert abs(std - float(s.sigma(0.5))) < 5 * float(s.sigma(0.5)) / np.sqrt(2 * n)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="alpha"):
        VPSchedule(alpha="quadratic")
    with pytest.raises(ValueError, match="eta"):
        VPSchedule(eta=0.0)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_time_inverts_mu(alpha):
    s = VPSchedule(alpha=alpha)
    t = jnp.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(s.time(s.mu(t)), t, atol=2e-4)
    np.testing.assert_allclose(s.time(jnp.asarray([s.eta, 1.0])), [1.0, 0.0], atol=1e-6)
