"""Score-based twin experiments: typed settings, networks, the posterior plumbing on an exact Gaussian prior,
training resume and the entry points."""

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.diffusion.guidance import MMPS, SDA
from slams_jax.diffusion.likelihood import build_likelihood
from slams_jax.diffusion.samplers import PredictorCorrector
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.errors import ConfigError, TwinError
from slams_jax.pipeline.methods import make_guidance, make_sampler
from slams_jax.twin import lorenz
from slams_jax.twin.assimilation import assimilate_twin, ensemble_statistics, observation, rank_histogram
from slams_jax.twin.model import TwinModel
from slams_jax.twin.networks import TwinAutoencoder, build_score
from slams_jax.twin.settings import TwinSettings, maybe_twin_settings, twin_settings_from_config
from slams_jax.twin.training import train_twin

ROOT = Path(__file__).resolve().parents[2]


def _config(name="lorenz63", variant="quick"):
    spec = importlib.util.spec_from_file_location(f"_cfg_{name}", ROOT / "configs" / f"{name}.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m.get_config(variant)


def _settings(name="lorenz63", variant="quick"):
    return twin_settings_from_config(_config(name, variant))


def test_configs_become_typed_settings():
    s = _settings("lorenz96", "")
    assert isinstance(s, TwinSettings)
    assert s.setup.name.startswith("lorenz96") and s.setup.cycles == 1000 and s.twin.augment_shifts
    assert s.score.network.kind == "resnet" and s.score.network.hidden == (32,) and s.score.window == 7
    assert s.score.vp_schedule == VPSchedule(alpha="cos", eta=1e-3)
    assert s.train.steps == 6000 and s.twin.spaces == ("pixel",) and s.assimilation.cycled_lag == 7
    assert s.assimilation.modes == ("filter", "cycled", "smoother")
    # the guidance and sampler settings are the main pipeline's, so its factories build them
    assert make_sampler(s.assimilation) == PredictorCorrector(steps=64, corrections=1, tau=0.5)
    assert make_guidance(s.assimilation) == SDA(gamma=1.0)
    assert make_guidance(dataclasses.replace(s.assimilation, guidance="mmps")) == MMPS(cg_iterations=3, cg_tolerance=0.0,
                                                                                         max_shift=None)
    assert _settings("lorenz63", "quick").setup.cycles == 100
    # the entry points dispatch on the presence of twin settings
    assert maybe_twin_settings(_config()) == _settings()
    kolmogorov = importlib.util.spec_from_file_location("_cfg_k", ROOT / "configs" / "kolmogorov.py")
    module = importlib.util.module_from_spec(kolmogorov)
    kolmogorov.loader.exec_module(module)
    assert maybe_twin_settings(module.get_config()) is None


@pytest.mark.parametrize("key, value, match", [
    ("assimilation.lag", 3, "config.assimilation.lag=3"),
    ("assimilation.cycled_lag", 4, "config.assimilation.cycled_lag=4"),
    ("assimilation.background_inflation", 0.0, "config.assimilation.background_inflation=0.0"),
    ("twin.spaces", ("pixel", "physical"), "config.twin.spaces"),
    ("twin.setup", "lorenz05", "config.twin.setup='lorenz05'"),
    ("twin.augment_shifts", True, "config.twin.augment_shifts=True"),
    ("assimilation.members", 1, "config.assimilation.members=1"),
    ("assimilation.modes", ("filter", "forecast"), "config.assimilation.modes"),
    ("assimilation.guidance", "pigdm", "config.assimilation.guidance='pigdm'"),
    ("train.steps", "many", "config.train.steps='many'"),
    ("twin.bogus", 1, r"config.twin: unknown key\(s\) \['bogus'\]"),
])
def test_config_errors_name_the_field(key, value, match):
    cfg = _config().to_dict()
    group, name = key.split(".")
    cfg[group][name] = value
    with pytest.raises(TwinError, match=match) as info:
        twin_settings_from_config(cfg)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


def test_conv_autoencoder_is_shift_equivariant_on_the_ring():
    ae = TwinAutoencoder(dim=40, kind="conv", latent=4, hidden=8)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 40, 1))
    params = ae.init(jax.random.PRNGKey(1), x)["params"]
    enc = lambda x: ae.apply({"params": params}, x, method=TwinAutoencoder.encode)
    dec = lambda z: ae.apply({"params": params}, z, method=TwinAutoencoder.decode)
    z = enc(x)
    assert z.shape == (3, 20, 4)
    # a shift by 2 variables is a shift by 1 latent cell (circular stride-2 convolutions): no edge anywhere
    np.testing.assert_allclose(enc(jnp.roll(x, 2, axis=1)), jnp.roll(z, 1, axis=1), atol=1e-5)
    np.testing.assert_allclose(dec(jnp.roll(z, 1, axis=1)), jnp.roll(dec(z), 2, axis=1), atol=1e-5)


def test_mlp_score_window_shapes():
    score = build_score(_settings().score, 1, VPSchedule())
    x = jnp.ones((2, 5, 3, 1))
    params = score.init(jax.random.PRNGKey(0), x)
    assert score.window_eps(params, x, jnp.full((2,), 0.5)).shape == x.shape
    traj = jnp.ones((2, 11, 3, 1))
    assert score.trajectory_eps(params, traj, jnp.asarray(0.5)).shape == traj.shape


def _gaussian_model(setup, mean, std, order=2):
    """A twin model whose prior is exactly iid N(mean, std^2) per variable and state: the network outputs
    zero, so the score is the Gaussian skip term alone."""
    schedule = VPSchedule()
    score = build_score(dataclasses.replace(_settings().score, order=order), 1, schedule)
    params = score.init(jax.random.PRNGKey(0), jnp.zeros((1, 2 * order + 1, setup.dim, 1)))
    params = jax.tree_util.tree_map(jnp.zeros_like, params)
    return TwinModel(setup=setup, mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32),
                     autoencoder=None, ae_params=None, latent_mean=None, latent_std=None,
                     scores={"pixel": (score, params)}, schedule=schedule)


def test_observations_go_through_the_core_likelihood_in_physical_units():
    """The twin's Gaussian model, built by the core from an ``Observation`` of the physical state: the
    forward map de-standardizes the prior's variable, the noise std is the setup's, and SDA's scale of each
    observed value is its variable's climatological std."""
    setup = lorenz.SETUPS["lorenz63"]
    mean, std = np.array([1.0, -2.0, 20.0], np.float32), np.array([3.0, 5.0, 8.0], np.float32)
    model = _gaussian_model(setup, mean, std)
    values = np.arange(18, dtype=np.float32).reshape(6, 3)
    lik = build_likelihood(model.prior("pixel", 6), [observation(values, setup)])
    u = jax.random.normal(jax.random.PRNGKey(0), (6, 3, 1))
    np.testing.assert_allclose(lik.forward(u), (u[..., 0] * std[None] + mean[None]).ravel(), rtol=1e-6)
    np.testing.assert_array_equal(lik.y, values.ravel())
    np.testing.assert_array_equal(lik.std, np.full(18, setup.obs_std, np.float32))
    np.testing.assert_array_equal(lik.scale, np.tile(std, 6))
    with pytest.raises(ValueError, match="values have shape"):
        build_likelihood(model.prior("pixel", 5), [observation(values, setup)])


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
    a = dataclasses.replace(_settings().assimilation, members=64, steps=64, lag=5, guidance="mmps", cg_iterations=3,
                            corrections=1, tau=0.1)
    r = assimilate_twin(jax.random.PRNGKey(1), model, data, "pixel", mode, a)
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


@pytest.mark.slow
def test_quick_training_learns_and_resumes(tmp_path):
    settings = _settings("lorenz63", "quick")
    logs = []
    model = train_twin(settings, tmp_path, log=logs.append)
    assert set(model.scores) == {"pixel", "latent"}
    losses = [float(s.split("loss ")[1].split()[0]) for s in logs if s.startswith("score_pixel: step")]
    assert losses[-1] < 0.9 * losses[0]  # the denoising loss decreased
    # a second call restores every stage instead of training again, with identical parameters
    logs2 = []
    again = train_twin(settings, tmp_path, log=logs2.append)
    assert any("restored" in s for s in logs2) and not any("step 100/" in s for s in logs2)
    same = jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), model.scores["pixel"][1],
                                  again.scores["pixel"][1])
    assert all(jax.tree_util.tree_leaves(same))
    # the latent prior decodes to physical states of the right shape
    z = jnp.zeros((2,) + model.state_shape("latent"))
    assert model.decode(z).shape == (2, 3)


@pytest.mark.slow
def test_experiment_table_puts_ours_next_to_every_published_number():
    sys.path.insert(0, str(ROOT / "experiments"))
    import twin as experiment  # experiments/twin.py

    setup = dataclasses.replace(lorenz.SETUPS["lorenz96"], burn_in=20, cycles=100)
    data = lorenz.twin_data(setup, jax.random.PRNGKey(3))
    train = np.asarray(lorenz.free_run(setup, jax.random.PRNGKey(4), 2000))
    ours = experiment.classical("lorenz96", setup, data, train, seed=0)
    assert set(ours) == {"climatology", "oi", "3dvar", "enkf"}
    # the ordering of the classical methods on this setup (their published RMSEs: 3.6 > 0.95 > 0.41 > 0.22)
    assert ours["climatology"]["rmse"] > ours["oi"]["rmse"] > ours["3dvar"]["rmse"] > ours["enkf"]["rmse"]
    rows = [{"space": "pixel", "mode": "filter", "members": 10, "rmse": 0.5, "spread": 0.4, "seconds": 1.0,
             "failed": 2, "ranks": [2.0] + [0.8] * 9 + [2.0]}]
    table = experiment.markdown("lorenz96", setup, ours, rows)
    lines = table.splitlines()
    for label, value in setup.published:
        line = next(line for line in lines if line.startswith(f"| {label} |"))
        assert f"| {value:.2f} |" in line
    # our numbers sit on the rows of the configurations we reproduce, and only there
    assert f"| {ours['3dvar']['rmse']:.2f} |" in next(line for line in lines if line.startswith("| Var3D"))
    assert f"| {ours['enkf']['rmse']:.2f} |" in next(line for line in lines if "PertObs" in line and "N=40" in line)
    assert next(line for line in lines if line.startswith("| LETKF")).count("—") == 4
    assert "| slams_jax pixel filter (N=10) | — | 0.50 | 0.40 | 0.80 | 1.0 | 2 |" in table
    assert "- pixel filter: 2.00 0.80 0.80" in table


def _run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.slow
def test_entry_points_take_twin_configs(tmp_path):
    """``python -m slams_jax.twin train|assimilate`` and ``python -m slams_jax.train`` / ``assimilate`` with
    configs/lorenz63.py (tiny overrides): the commands share one workdir, the second training restores."""
    config = f"--config={ROOT / 'configs' / 'lorenz63.py'}:quick"
    small = [f"--workdir={tmp_path}", "--config.train.steps=40", "--config.autoencoder.steps=40",
             "--config.train.chunk=20", "--config.twin.train_states=600", "--config.twin.spaces=('pixel',)",
             "--config.twin.cycles=20"]
    out = _run("slams_jax.twin", "train", config, *small)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "checkpoints" / "score_pixel").is_dir()
    assert not (tmp_path / "checkpoints" / "score_latent").exists()
    out = _run("slams_jax.train", config, *small)
    assert out.returncode == 0 and "score_pixel: 40 steps (restored)" in out.stdout, out.stderr[-2000:]
    for module, mode in (("slams_jax.twin", "filter"), ("slams_jax.assimilate", "smoother")):
        args = ("assimilate",) if module == "slams_jax.twin" else ()
        out = _run(module, *args, config, *small, f"--config.assimilation.modes=('{mode}',)")
        assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["space"], r["mode"]) for r in rows] == [("pixel", "filter"), ("pixel", "smoother")]
    # 40 training steps make a useless prior: a row either scores or counts the members it dropped as diverged
    assert all(r["members"] == 4 and (np.isfinite(r["rmse"]) or r["failed"] > 0) for r in rows)
    # a bad command or a config without a twin group is one line naming the problem (exit status 2)
    out = _run("slams_jax.twin", "forecast", config, *small)
    assert out.returncode == 2 and "error (TwinError)" in out.stderr and "'forecast'" in out.stderr
    out = _run("slams_jax.twin", "train", f"--workdir={tmp_path}")
    assert out.returncode == 2 and "no 'twin' group" in out.stderr


def test_ensemble_statistics_drop_diverged_members_and_count_them():
    rng = np.random.default_rng(0)
    ens = rng.standard_normal((4, 5, 3)).astype(np.float32)
    ens[1, 2] = np.nan  # non-finite member
    ens[2, 0, 1] = 1e3  # far off the attractor (mean 0, std 1)
    ens[3, :4] = np.inf  # only one member left: no statistics
    analysed = np.array([True, True, True, True])
    means, spreads, failed = ensemble_statistics(ens, analysed, np.zeros(3), np.ones(3))
    assert failed == 1 + 1 + 4
    np.testing.assert_allclose(means[0], ens[0].mean(0), rtol=1e-5)
    keep = [0, 1, 3, 4]
    np.testing.assert_allclose(means[1], ens[1, keep].mean(0), rtol=1e-5)
    np.testing.assert_allclose(spreads[1], np.sqrt(ens[1, keep].var(0, ddof=1).mean()), rtol=1e-5)
    np.testing.assert_allclose(means[2], ens[2, 1:].mean(0), rtol=1e-5)
    assert np.isnan(means[3]).all() and np.isnan(spreads[3])
    # cycles that were not analysed (the filter's first lag) are not counted as failures
    _, _, failed = ensemble_statistics(ens, np.array([True, True, True, False]), np.zeros(3), np.ones(3))
    assert failed == 2


def test_rank_histogram_is_flat_for_a_calibrated_ensemble_and_u_shaped_for_a_narrow_one():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((400, 5))
    calibrated = rng.standard_normal((400, 9, 5))  # truth and members from one distribution
    narrow = 0.5 * rng.standard_normal((400, 9, 5))
    scored = np.arange(400) >= 50
    flat = rank_histogram(calibrated, truth, scored)
    assert flat.shape == (10,) and flat.mean() == pytest.approx(1.0)
    assert np.abs(flat - 1).max() < 0.25  # 1750 ranks: about 0.07 sampling std per bin
    u = rank_histogram(narrow, truth, scored)
    assert min(u[0], u[-1]) > 2.0 and u[3:7].max() < 0.8
    # a cycle with a non-finite member is left out, not counted in the lowest bin
    narrow[60, 0, 0] = np.nan
    assert rank_histogram(narrow, truth, scored)[0] == pytest.approx(
        rank_histogram(narrow, truth, scored & (np.arange(400) != 60))[0])
