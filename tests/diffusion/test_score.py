"""Markov-window composition and the denoising loss."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import _params, jit
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.diffusion.score import MarkovScore, denoising_loss, fold_windows, tweedie_denoise, unfold_windows
from slams_jax.nn.unet import ScoreUNet


class WindowProbe(nn.Module):
    """A window 'network' whose output encodes which window position each channel block came from."""

    @nn.compact
    def __call__(self, x, t):
        scale = self.param("scale", nn.initializers.ones, ())
        return scale * x * 2.0 + t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def _tiny_score(order=1, channels=2):
    net = ScoreUNet(channels=(2 * order + 1) * channels, embedding=8, hidden_channels=(8, 8), hidden_blocks=(1, 1),
                    padding_modes=("circular", "circular"))
    return MarkovScore(network=net, order=order, spatial=2)


def test_unfold_fold_roundtrip():
    x = jnp.arange(2 * 7 * 3, dtype=jnp.float32).reshape(2, 7, 3)
    w = unfold_windows(x, order=2, time_axis=1)
    assert w.shape == (2, 3, 5, 3)
    np.testing.assert_array_equal(w[:, 1], x[:, 1:6])
    np.testing.assert_array_equal(fold_windows(w, order=2, time_axis=1), x)


def test_trajectory_equals_window_when_they_coincide():
    score = _tiny_score(order=2)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 8, 8, 2))
    t = jnp.array([0.1, 0.5, 0.9])
    params = _params(score.network, x[:, 0].repeat(5, axis=-1), t)["params"]
    np.testing.assert_allclose(jit(score.trajectory_eps)(params, x, t), jit(score.window_eps)(params, x, t),
                               rtol=1e-6, atol=1e-6)


def test_trajectory_composition_uses_the_right_window():
    """State i takes its estimate from window i - k (centre), the ends from the first/last window."""
    order, length = 1, 6
    score = _tiny_score(order=order)
    x = jax.random.normal(jax.random.PRNGKey(2), (length, 8, 8, 2))
    t = jnp.float32(0.3)
    params = _params(score.network, x[0].repeat(3, axis=-1)[None], t[None])["params"]
    full = jit(score.trajectory_eps)(params, x, t)
    window = jit(score.window_eps)
    for i in range(length):
        start = min(max(i - order, 0), length - 2 * order - 1)
        local = window(params, x[start:start + 3], t)
        np.testing.assert_allclose(full[i], local[i - start], rtol=1e-4, atol=2e-5)


def test_window_channels_are_state_major():
    score = MarkovScore(network=WindowProbe(), order=1, spatial=1)
    x = jnp.arange(3 * 4 * 2, dtype=jnp.float32).reshape(3, 4, 2)  # (window, x, channel)
    params = {"scale": jnp.float32(1.0)}
    out = score.window_eps(params, x, jnp.float32(0.0))
    np.testing.assert_allclose(out, 2 * x)


def test_short_trajectory_raises():
    score = _tiny_score(order=2)
    with pytest.raises(ValueError, match="shorter than the score window"):
        score.trajectory_eps({}, jnp.zeros((4, 8, 8, 2)), jnp.float32(0.5))


def test_denoising_loss_is_zero_for_the_exact_eps_of_a_point_mass():
    """For data x = c (a point mass), eps(x_t, t) = (x_t - mu c) / sigma is exact: the loss vanishes."""
    s = VPSchedule()
    c = 1.5
    x = jnp.full((64, 4), c)
    exact = lambda xt, t: (xt - s.mu(t)[:, None] * c) / s.sigma(t)[:, None]
    assert float(denoising_loss(exact, s, jax.random.PRNGKey(0), x)) < 1e-8
    wrong = lambda xt, t: jnp.zeros_like(xt)
    assert float(denoising_loss(wrong, s, jax.random.PRNGKey(0), x)) == pytest.approx(1.0, abs=0.15)


def test_tweedie_recovers_clean_sample_with_true_noise():
    s = VPSchedule()
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    t = jnp.float32(0.7)
    xt, eps = s.perturb(jax.random.PRNGKey(1), x, jnp.full((5,), t))
    np.testing.assert_allclose(tweedie_denoise(s, xt, eps, t), x, rtol=1e-4, atol=1e-4)


class Zero(nn.Module):
    @nn.compact
    def __call__(self, x, t):
        return jnp.zeros_like(x)


def test_gaussian_skip_alone_is_the_exact_standard_normal_prior():
    """With a zero network, the skip term is the exact eps of N(0, I): samples have unit variance."""
    from slams_jax.diffusion.samplers import predictor_corrector

    s = VPSchedule()
    score = MarkovScore(network=Zero(), order=1, spatial=1, skip=s)
    eps = lambda x, t: score.trajectory_eps({}, x, t)
    xt = jax.random.normal(jax.random.PRNGKey(1), (6, 32, 2))
    for t in (0.05, 0.5, 1.0):
        t = jnp.float32(t)
        exact = s.sigma(t) * xt / (s.mu(t) ** 2 + s.sigma(t) ** 2)
        np.testing.assert_allclose(eps(xt, t), exact, rtol=1e-6)
    x = jax.jit(lambda k: predictor_corrector(k, eps, (64, 6, 32, 2), s, steps=64))(jax.random.PRNGKey(0))
    n = x.size
    assert abs(float(x.mean())) < 5 / np.sqrt(n)
    assert abs(float(x.std()) - 1.0) < 0.03  # the predictor's discretisation bias at 64 steps is ~2%
    no_skip = MarkovScore(network=Zero(), order=1, spatial=1)
    np.testing.assert_array_equal(no_skip.trajectory_eps({}, x, jnp.float32(0.5)), 0.0)
