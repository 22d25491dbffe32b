"""Lorenz-63/96 twin experiments (slams_jax.lorenz): dynamics, integrator order, EnKF algebra, and
reproduction of DAPPER's published time-mean analysis RMSEs on the full sakov2012 / sakov2008 setups.

Reproduction tolerances come from seeds 0-4 of the same protocol (twin data, a 5000-state free run for
the climatology, one filter run each), measured before fixing them (published value in brackets):

    method:       Climatology      OptInterp         Var3D             EnKF PertObs
    sakov2012:    7.59-7.60 (7.6)  1.23-1.27 (1.25)  1.01-1.06 (1.04)  0.54-0.60 (0.56)
    sakov2008:    3.63-3.66 (3.6)  0.94-0.95 (0.95)  0.40-0.42 (0.41)  0.21-0.22 (0.22)

The tolerances below are about twice the seed-to-seed deviation from the published value plus the
rounding of the published two digits.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from slams_jax import lorenz as L

ENKF_LABEL = {"lorenz63": "EnKF(PertObs,N=100,infl=1.01)", "lorenz96": "EnKF(PertObs,N=40,infl=1.06)"}
ENKF_ARGS = {"lorenz63": (100, 1.01), "lorenz96": (40, 1.06)}
VAR3D_LABEL = {"lorenz63": "Var3D(xB=0.1)", "lorenz96": "Var3D(xB=0.02)"}
XB = {"lorenz63": 0.1, "lorenz96": 0.02}
# relative tolerances around the published values (see the module docstring)
RTOL = {
    "lorenz63": {"Climatology": 0.03, "OptInterp": 0.05, "Var3D": 0.08, "EnKF": 0.15},
    "lorenz96": {"Climatology": 0.04, "OptInterp": 0.04, "Var3D": 0.07, "EnKF": 0.08},
}


# ------------------------------------------------------------------------------------------ setups


def test_setups_match_dapper():
    s63, s96 = L.SETUPS["lorenz63"], L.SETUPS["lorenz96"]
    assert s63 is L.SAKOV2012 and s96 is L.SAKOV2008
    assert (s63.dim, s63.dt, s63.steps_per_obs, s63.cycles, s63.burn_in) == (3, 0.01, 25, 1000, 64)
    assert s63.burn_in * s63.steps_per_obs * s63.dt == pytest.approx(16.0)  # 16 time units
    assert s63.obs_std ** 2 == pytest.approx(2.0) and s63.init_std ** 2 == pytest.approx(2.0)
    assert (s96.dim, s96.dt, s96.steps_per_obs, s96.forcing, s96.cycles, s96.burn_in) == (40, 0.05, 1, 8.0, 1000, 100)
    assert s96.obs_std == 1.0 and s96.init_std ** 2 == pytest.approx(0.001)
    assert [v for _, v in s63.published] == [7.6, 1.25, 1.04, 0.92, 0.56, 0.54, 0.31, 0.28]
    assert [v for _, v in s96.published] == [3.6, 0.95, 0.41, 0.24, 0.22, 0.18, 0.22]
    assert dict(s63.published)[ENKF_LABEL["lorenz63"]] == 0.56
    assert dict(s96.published)[VAR3D_LABEL["lorenz96"]] == 0.41


# ---------------------------------------------------------------------------------------- dynamics


def test_lorenz96_matches_loop_formula_and_conserves_energy_in_advection():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 4.0, size=(2, 11)).astype(np.float32)
    got = np.asarray(L.lorenz96(jnp.asarray(x), forcing=5.0), np.float64)
    n = x.shape[-1]
    xd = x.astype(np.float64)
    want = np.empty_like(xd)
    for b in range(2):
        for i in range(n):
            want[b, i] = (xd[b, (i + 1) % n] - xd[b, i - 2]) * xd[b, i - 1] - xd[b, i] + 5.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # the quadratic term conserves energy: d/dt |x|^2 / 2 = -|x|^2 + F sum(x)
    np.testing.assert_allclose((xd * got).sum(-1), -(xd ** 2).sum(-1) + 5.0 * xd.sum(-1), rtol=1e-4)
    # x_i = F is a fixed point
    np.testing.assert_allclose(L.lorenz96(jnp.full((40,), 8.0)), 0.0, atol=1e-6)


def test_lorenz63_fixed_points_and_values():
    sigma, rho, beta = 10.0, 28.0, 8.0 / 3.0
    c = math.sqrt(beta * (rho - 1.0))
    fixed = jnp.array([[c, c, rho - 1.0], [-c, -c, rho - 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(L.lorenz63(fixed), 0.0, atol=2e-5)
    # off the fixed points: (1, 2, 3) -> (sigma (2 - 1), 1 (rho - 3) - 2, 1 * 2 - beta * 3)
    np.testing.assert_allclose(L.lorenz63(jnp.array([1.0, 2.0, 3.0])), [10.0, 23.0, 2.0 - 8.0], rtol=1e-6)
    np.testing.assert_allclose(L.lorenz63(jnp.array([1.0, 2.0, 3.0]), sigma=2.0, rho=5.0, beta=1.0),
                               [2.0, 0.0, -1.0], atol=1e-6)
    assert float(jnp.abs(L.lorenz63(jnp.array([c + 0.1, c, rho - 1.0]))).max()) > 0.5


@functools.partial(jax.jit, static_argnames=("f", "n"))
def _integrate(f, x, dt, n):
    return lax.fori_loop(0, n, lambda _, s: L.rk4_step(f, s, dt), x)


@pytest.mark.parametrize("name", ["lorenz63", "lorenz96"])
def test_rk4_is_fourth_order(name):
    setup = L.SETUPS[name]
    f = L.tendency(setup)
    start = np.asarray(L.free_run(setup, jax.random.key(3), 1, spinup_cycles=40)[0], np.float64)
    # float64 only here: the float32 round-off (~1e-6 of |x|) would mask the 1e-7 errors measured
    with jax.enable_x64(True):
        x0 = jnp.asarray(start)
        dt = setup.dt
        # one step: local error O(dt^5), halving dt divides it by ~32
        one = [float(jnp.abs(L.rk4_step(f, x0, h) - _integrate(f, x0, h / 64, 64)).max()) for h in (dt, dt / 2)]
        assert 26.0 < one[0] / one[1] < 38.0, one
        # over a fixed time T: global error O(dt^4), halving dt divides it by ~16
        t_end, h = 0.5, dt / 4
        n = int(round(t_end / h))
        ref = _integrate(f, x0, h / 32, n * 32)
        glob = [float(jnp.abs(_integrate(f, x0, h / k, n * k) - ref).max()) for k in (1, 2)]
        assert 13.0 < glob[0] / glob[1] < 20.0, glob
        assert glob[0] < 1e-3


def test_forecast_is_cycles_of_rk4_and_batches():
    s = L.SAKOV2012
    f = L.tendency(s)
    x = jnp.array([[1.509, -1.531, 25.46], [-5.0, 3.0, 20.0]])
    manual = x
    for _ in range(2 * s.steps_per_obs):
        manual = L.rk4_step(f, manual, s.dt)
    batched = L.forecast(s, x, cycles=2)
    np.testing.assert_allclose(batched, manual, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(L.forecast(s, x[1], cycles=2), batched[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(L.forecast(s, x, cycles=0), x)


# --------------------------------------------------------------------------------- EnKF analysis


def test_enkf_analysis_mean_is_the_ensemble_kalman_update():
    """With centred perturbations the analysis mean is exactly m_f + K (y - m_f), K from the ddof=1 covariance."""
    rng = np.random.default_rng(1)
    ens = rng.normal(size=(10, 4)) @ rng.normal(size=(4, 4)) + np.array([1.0, -2.0, 0.5, 3.0])
    ens = ens.astype(np.float32)
    y = np.array([0.3, -1.0, 2.0, 2.5], np.float32)
    r = 0.8 ** 2
    out = np.asarray(L.enkf_analysis(jax.random.key(0), ens, y, 0.8), np.float64)
    e = ens.astype(np.float64)
    p = np.cov(e.T, ddof=1)
    k = p @ np.linalg.inv(p + r * np.eye(4))
    m = e.mean(0)
    np.testing.assert_allclose(out.mean(0), m + k @ (y - m), rtol=1e-4, atol=1e-4)
    # a ddof=0 gain would be visibly different at N = 10
    k0 = p * 0.9 @ np.linalg.inv(p * 0.9 + r * np.eye(4))
    assert np.abs(out.mean(0) - (m + k0 @ (y - m))).max() > 1e-2


def test_enkf_analysis_matches_exact_kalman_for_a_large_ensemble():
    rng = np.random.default_rng(2)
    n, dim, obs_std = 20000, 3, 0.7
    mean = np.array([1.0, -1.0, 2.0])
    root = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 1.2]])
    cov = root @ root.T
    ens = (mean + rng.normal(size=(n, dim)) @ root.T).astype(np.float32)
    y = np.array([2.0, 0.0, 1.0], np.float32)
    gain = cov @ np.linalg.inv(cov + obs_std ** 2 * np.eye(dim))
    post_mean = mean + gain @ (y - mean)
    post_cov = (np.eye(dim) - gain) @ cov
    out = np.asarray(L.enkf_analysis(jax.random.key(1), ens, y, obs_std), np.float64)
    sd = np.sqrt(np.diag(post_cov))
    # prior-sampling error of the mean ~ sd / sqrt(n); 5 sigma
    np.testing.assert_allclose(out.mean(0), post_mean, atol=float(5 * np.sqrt(np.diag(cov)).max() / np.sqrt(n)))
    # covariance entries: relative sampling error ~ sqrt(2 / n) ~ 1 %; allow 5 % of sd_i sd_j
    assert np.abs(np.cov(out.T) - post_cov).max() < 0.05 * float(np.outer(sd, sd).max())
    # and it really moved: the prior covariance is far from the posterior one
    assert np.abs(cov - post_cov).max() > 0.2


def test_bad_arguments_raise():
    s = L.SAKOV2012
    obs = np.zeros((5, 3), np.float32)
    x0 = np.zeros(3, np.float32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="members"):
        L.enkf(s, key, obs, 1, 1.01, x0, 1.0)
    with pytest.raises(ValueError, match="inflation"):
        L.enkf(s, key, obs, 10, 0.99, x0, 1.0)
    with pytest.raises(ValueError, match="obs"):
        L.enkf(s, key, np.zeros((5, 4), np.float32), 10, 1.01, x0, 1.0)
    with pytest.raises(ValueError, match="obs"):
        L.enkf(s, key, np.zeros(3, np.float32), 10, 1.01, x0, 1.0)
    with pytest.raises(ValueError, match="x0_mean"):
        L.enkf(s, key, obs, 10, 1.01, np.zeros(40, np.float32), 1.0)
    with pytest.raises(ValueError, match="xb"):
        L.var3d(s, obs, np.eye(3, dtype=np.float32), x0, xb=0.0)
    with pytest.raises(ValueError, match="cov"):
        L.var3d(s, obs, np.eye(4, dtype=np.float32), x0)
    with pytest.raises(ValueError, match="obs_std"):
        L.optimal_interpolation(obs, x0, np.eye(3, dtype=np.float32), -1.0)
    with pytest.raises(ValueError, match="burn_in"):
        L.analysis_rmse(obs, obs, 5)
    with pytest.raises(ValueError, match="model"):
        dataclasses.replace(s, model="lorenz84")
    with pytest.raises(ValueError, match="dim"):
        dataclasses.replace(s, dim=4)


def test_analysis_rmse_is_a_time_mean_of_spatial_rmse():
    truth = np.zeros((4, 2))
    means = np.array([[100.0, 100.0], [3.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
    # per-time RMSE: 100, sqrt(12.5), 1, 0; burn_in = 1 drops the first
    assert L.analysis_rmse(means, truth, 1) == pytest.approx((math.sqrt(12.5) + 1.0) / 3)
    assert L.time_mean_spread(np.array([9.0, 1.0, 2.0]), 1) == pytest.approx(1.5)


# ---------------------------------------------------------------------------------- reproduction


@functools.lru_cache(maxsize=None)
def _benchmark(name: str, seed: int = 0):
    """Run every baseline on the full setup: (setup, data, {method: rmse}, enkf spread, (clim mean, cov))."""
    setup = L.SETUPS[name]
    k_data, k_clim, k_enkf = jax.random.split(jax.random.key(seed), 3)
    data = L.twin_data(setup, k_data)
    mean, cov = L.climatology(L.free_run(setup, k_clim, 5000))
    members, infl = ENKF_ARGS[name]
    means, spreads = L.enkf(setup, k_enkf, data.obs, members, infl, data.x0, setup.init_std)
    rmse = {
        "Climatology": L.analysis_rmse(np.broadcast_to(np.asarray(mean), data.truth.shape), data.truth, setup.burn_in),
        "OptInterp": L.analysis_rmse(L.optimal_interpolation(data.obs, mean, cov, setup.obs_std), data.truth,
                                     setup.burn_in),
        "Var3D": L.analysis_rmse(L.var3d(setup, data.obs, cov, data.x0, XB[name]), data.truth, setup.burn_in),
        "EnKF": L.analysis_rmse(means, data.truth, setup.burn_in),
    }
    print(name, seed, {k: round(v, 3) for k, v in rmse.items()}, "spread", L.time_mean_spread(spreads, setup.burn_in))
    return setup, data, rmse, L.time_mean_spread(spreads, setup.burn_in), (mean, cov)


@pytest.mark.parametrize("name", ["lorenz63", "lorenz96"])
def test_twin_data_is_a_model_trajectory_with_gaussian_obs(name):
    setup, data, *_ = _benchmark(name)
    n = setup.burn_in + setup.cycles
    assert data.truth.shape == data.obs.shape == (n, setup.dim) and data.x0.shape == (setup.dim,)
    np.testing.assert_allclose(L.forecast(setup, data.x0), data.truth[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(L.forecast(setup, data.truth[:-1]), data.truth[1:], rtol=1e-4, atol=1e-4)
    err = (data.obs - data.truth).astype(np.float64)
    assert abs(err.std() / setup.obs_std - 1.0) < 0.05
    assert abs(err.mean()) < 4 * setup.obs_std / math.sqrt(err.size)


@pytest.mark.parametrize("name", ["lorenz63", "lorenz96"])
def test_reproduces_published_rmse(name):
    setup, _, rmse, spread, _ = _benchmark(name)
    published = dict(setup.published)
    labels = {"Climatology": "Climatology", "OptInterp": "OptInterp", "Var3D": VAR3D_LABEL[name],
              "EnKF": ENKF_LABEL[name]}
    for method, label in labels.items():
        assert rmse[method] == pytest.approx(published[label], rel=RTOL[name][method]), (method, rmse)
    assert rmse["EnKF"] < rmse["Var3D"] < rmse["OptInterp"] < rmse["Climatology"]
    # a well-tuned EnKF's spread matches its error
    assert 0.85 < spread / rmse["EnKF"] < 1.35, (spread, rmse["EnKF"])


def test_var3d_and_oi_limits():
    setup, data, _, _, (mean, cov) = _benchmark("lorenz63")
    # a huge background covariance trusts the observations completely
    np.testing.assert_allclose(L.var3d(setup, data.obs, cov, data.x0, xb=1e6), data.obs, atol=1e-2)
    # OI with vanishing observation error returns the observations, with huge error the climatological mean
    np.testing.assert_allclose(L.optimal_interpolation(data.obs, mean, cov, 1e-3), data.obs, atol=1e-3)
    far = L.optimal_interpolation(data.obs, mean, cov, 1e4)
    np.testing.assert_allclose(far, np.broadcast_to(np.asarray(mean), far.shape), atol=1e-2)


def test_enkf_without_information_keeps_a_climatological_spread():
    setup, data, rmse, spread, (_, cov) = _benchmark("lorenz63")
    members, infl = ENKF_ARGS["lorenz63"]
    blind = dataclasses.replace(setup, obs_std=1e4)
    means, spreads = L.enkf(blind, jax.random.key(7), data.obs, members, infl, data.x0, setup.init_std)
    clim_spread = math.sqrt(float(np.trace(np.asarray(cov))) / setup.dim)
    blind_spread = L.time_mean_spread(spreads, setup.burn_in)
    assert 0.8 * clim_spread < blind_spread < 1.2 * clim_spread, (blind_spread, clim_spread)
    assert blind_spread > 5 * spread
    assert L.analysis_rmse(means, data.truth, setup.burn_in) > 0.9 * rmse["Climatology"]
