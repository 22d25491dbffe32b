"""Score-based twin experiments: networks, the posterior plumbing on an exact Gaussian prior, training resume."""

import dataclasses
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax import lorenz, twin
from slams_jax.schedules import VPSchedule

ROOT = Path(__file__).resolve().parents[1]


def _config(name="lorenz63", variant="quick"):
    spec = importlib.util.spec_from_file_location(f"_cfg_{name}", ROOT / "configs" / f"{name}.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m.get_config(variant)


def test_conv_autoencoder_is_shift_equivariant_on_the_ring():
    ae = twin.TwinAutoencoder(dim=40, kind="conv", latent=4, hidden=8)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 40, 1))
    params = ae.init(jax.random.PRNGKey(1), x)["params"]
    enc = lambda x: ae.apply({"params": params}, x, method=twin.TwinAutoencoder.encode)
    dec = lambda z: ae.apply({"params": params}, z, method=twin.TwinAutoencoder.decode)
    z = enc(x)
    assert z.shape == (3, 20, 4)
    # a shift by 2 variables is a shift by 1 latent cell (circular stride-2 convolutions): no edge anywhere
    np.testing.assert_allclose(enc(jnp.roll(x, 2, axis=1)), jnp.roll(z, 1, axis=1), atol=1e-5)
    np.testing.assert_allclose(dec(jnp.roll(z, 1, axis=1)), jnp.roll(dec(z), 2, axis=1), atol=1e-5)


def test_mlp_score_window_shapes():
    cfg = _config()
    score = twin.build_score(cfg, 1, VPSchedule())
    x = jnp.ones((2, 5, 3, 1))
    params = score.init(jax.random.PRNGKey(0), x)
    assert score.window_eps(params, x, jnp.full((2,), 0.5)).shape == x.shape
    traj = jnp.ones((2, 11, 3, 1))
    assert score.trajectory_eps(params, traj, 0.5).shape == traj.shape


def _gaussian_model(setup, mean, std, order=2):
    """A twin model whose prior is exactly iid N(mean, std^2) per variable and state: the network outputs
    zero, so the score is the Gaussian skip term alone."""
    cfg = _config()
    cfg.score.order = order
    schedule = VPSchedule()
    score = twin.build_score(cfg, 1, schedule)
    params = score.init(jax.random.PRNGKey(0), jnp.zeros((1, 2 * order + 1, setup.dim, 1)))
    params = jax.tree_util.tree_map(jnp.zeros_like, params)
    return twin.TwinModel(setup=setup, mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32),
                          autoencoder=None, ae_params=None, latent_mean=None, latent_std=None,
                          scores={"pixel": (score, params)}, schedule=schedule)


@pytest.mark.parametrize("mode", ["filter", "smoother"])
def test_posterior_is_the_exact_gaussian_update(mode):
    """Prior N(m, s^2) iid, observation y = x + N(0, r^2) of every variable: the analysis of each variable is
    N(m + s^2 (y - m) / (s^2 + r^2), s^2 r^2 / (s^2 + r^2)). MMPS is exact here up to discretization, so the
    ensemble mean and spread must match; this checks standardization, the observation alignment in time and
    the filter's choice of the last state of each lag window."""
    base = lorenz.SETUPS["lorenz63"]
    setup = dataclasses.replace(base, burn_in=4, cycles=40)
    mean, std = np.array([1.0, -2.0, 20.0]), np.array([3.0, 5.0, 8.0])
    model = _gaussian_model(setup, mean, std)
    rng = np.random.default_rng(0)
    T = setup.burn_in + setup.cycles
    truth = mean + std * rng.standard_normal((T, 3))
    obs = truth + setup.obs_std * rng.standard_normal((T, 3))
    data = lorenz.TwinData(truth=truth.astype(np.float32), obs=obs.astype(np.float32), x0=truth[0])
    a = _config().assimilation
    a.members, a.steps, a.lag, a.guidance, a.cg_iterations, a.corrections, a.tau = 64, 64, 5, "mmps", 3, 1, 0.1
    r = twin.assimilate_twin(jax.random.PRNGKey(1), model, data, "pixel", mode, a)
    gain = std**2 / (std**2 + setup.obs_std**2)
    expected = mean + gain * (obs - mean)
    post_std = np.sqrt(gain * setup.obs_std**2)
    scored = slice(setup.burn_in, None)
    # 64 members: the ensemble mean's sampling error is post_std / 8 per value
    err = (r.means[scored] - expected[scored]) / post_std
    assert np.abs(err.mean(0)).max() < 0.1
    assert np.sqrt(np.mean(err**2)) < 0.2
    assert r.spread == pytest.approx(float(np.sqrt(np.mean(post_std**2))), rel=0.1)
    assert r.failed == 0
    if mode == "filter":
        assert np.isnan(r.means[: a.lag - 1]).all() and np.isfinite(r.means[a.lag - 1:]).all()


def test_config_errors_name_the_field():
    cfg = _config()
    cfg.assimilation.lag = 3
    with pytest.raises(twin.TwinError, match="config.assimilation.lag=3"):
        twin.check_config(cfg)
    cfg = _config()
    cfg.twin.spaces = ("pixel", "physical")
    with pytest.raises(twin.TwinError, match="config.twin.spaces"):
        twin.check_config(cfg)
    cfg = _config()
    cfg.twin.setup = "lorenz05"
    with pytest.raises(twin.TwinError, match="config.twin.setup='lorenz05'"):
        twin.check_config(cfg)


def test_quick_training_learns_and_resumes(tmp_path):
    cfg = _config("lorenz63", "quick")
    logs = []
    model = twin.train_twin(cfg, tmp_path, log=logs.append)
    assert set(model.scores) == {"pixel", "latent"}
    losses = [float(s.split("loss ")[1].split()[0]) for s in logs if s.startswith("score_pixel: step")]
    assert losses[-1] < 0.9 * losses[0]  # the denoising loss decreased
    # a second call restores every stage instead of training again, with identical parameters
    logs2 = []
    again = twin.train_twin(cfg, tmp_path, log=logs2.append)
    assert any("restored" in s for s in logs2) and not any("step 100/" in s for s in logs2)
    same = jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), model.scores["pixel"][1],
                                  again.scores["pixel"][1])
    assert all(jax.tree_util.tree_leaves(same))
    # the latent prior decodes to physical states of the right shape
    z = jnp.zeros((2,) + model.state_shape("latent"))
    assert model.decode(z).shape == (2, 3)
