"""The twin's local score network over the Lorenz-96 ring: rotation equivariance and learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.diffusion.score import denoising_loss
from slams_jax.errors import TwinError
from slams_jax.twin import lorenz
from slams_jax.twin.networks import RingResNetScore, TwinAutoencoder, build_score
from slams_jax.twin.settings import TwinNetworkSettings, TwinScoreSettings
from slams_jax.twin.training import fit, windows


def _score(width=16, blocks=2, order=2):
    net = TwinNetworkSettings(kind="resnet", hidden=(width,), blocks=(blocks,), kernel_size=5, embedding=16)
    return build_score(TwinScoreSettings(order=order, network=net), 1, VPSchedule())


def test_ring_resnet_is_rotation_equivariant():
    """A rotated window of the ring gives the rotated noise prediction: no site is special (no edges)."""
    score = _score()
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 40, 1))
    params = score.init(jax.random.PRNGKey(1), x)
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
    t = jnp.asarray([0.1, 0.5, 0.9])
    eps = score.window_eps(params, x, t)
    np.testing.assert_allclose(score.window_eps(params, jnp.roll(x, 7, axis=2), t), jnp.roll(eps, 7, axis=2),
                               atol=1e-5)
    # but it is not a per-site map: moving one site's value changes its neighbours' predictions
    bumped = score.window_eps(params, x.at[0, 2, 10, 0].add(1.0), t)
    assert float(jnp.abs(bumped - eps)[0, :, 12].max()) > 1e-4


def test_ring_resnet_settings_are_checked():
    net = TwinNetworkSettings(kind="resnet", hidden=(16, 32), blocks=(2,))
    with pytest.raises(TwinError, match="one width"):
        build_score(TwinScoreSettings(network=net), 1, VPSchedule())
    module = _score().network
    assert isinstance(module, RingResNetScore) and module.width == 16 and module.blocks == 2


def test_ring_resnet_learns_lorenz96_windows(tmp_path):
    """Trained on windows of a Lorenz-96 run, the denoising loss on held-out windows falls well below that of
    the Gaussian skip alone (the exact noise predictor of iid standardized states, the network at zero)."""
    setup = lorenz.SETUPS["lorenz96"]
    run = np.asarray(lorenz.free_run(setup, jax.random.PRNGKey(0), 3000), np.float32)
    u = jnp.asarray((run - run.mean(0)) / run.std(0))[..., None]
    train, test = u[:2500], u[2500:]
    score = _score()
    schedule = score.skip
    params = score.init(jax.random.PRNGKey(1), train[None, :5])

    def loss(p, k, data=train, batch=64):
        k1, k2 = jax.random.split(k)
        x = windows(data, jax.random.randint(k1, (batch,), 0, data.shape[0] - 4), 5)
        return denoising_loss(lambda x_t, t: score.window_eps(p, x_t, t), schedule, k2, x)

    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    held_out = lambda p: float(jnp.mean(jnp.stack([loss(p, jax.random.PRNGKey(100 + i), test, 256)
                                                   for i in range(4)])))
    trained = fit("ring", tmp_path, loss, params, jax.random.PRNGKey(2), 300, 3e-3, 100, lambda s: None)
    assert held_out(trained) < 0.7 * held_out(zero)


def test_conv_autoencoder_without_downsampling_keeps_every_site():
    """``downsample=1``: the latent is the ring itself ``(dim, latent)``, and a shift by one site is a shift
    by one latent site, in the encoder and the decoder alike."""
    ae = TwinAutoencoder(dim=40, kind="conv", latent=2, hidden=8, downsample=1)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 40, 1))
    params = ae.init(jax.random.PRNGKey(1), x)["params"]
    enc = lambda x: ae.apply({"params": params}, x, method=TwinAutoencoder.encode)
    dec = lambda z: ae.apply({"params": params}, z, method=TwinAutoencoder.decode)
    z = enc(x)
    assert z.shape == (3, 40, 2) and dec(z).shape == x.shape
    np.testing.assert_allclose(enc(jnp.roll(x, 1, axis=1)), jnp.roll(z, 1, axis=1), atol=1e-5)
    np.testing.assert_allclose(dec(jnp.roll(z, 3, axis=1)), jnp.roll(dec(z), 3, axis=1), atol=1e-5)
    with pytest.raises(TwinError, match="downsample=3"):
        TwinAutoencoder(dim=40, kind="conv", downsample=3).init(jax.random.PRNGKey(1), x)
