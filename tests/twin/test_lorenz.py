"""Lorenz-63/96 twin experiments (slams_jax.twin.lorenz): the setups, dynamics, integrator order, twin data
and scores. The classical filters and their reproduction of DAPPER's RMSEs: tests/baselines/test_filters.py."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from slams_jax.twin import lorenz as L


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


# ------------------------------------------------------------------------------------ data and scores


@pytest.mark.parametrize("name", ["lorenz63", "lorenz96"])
def test_twin_data_is_a_model_trajectory_with_gaussian_obs(name):
    setup = L.SETUPS[name]
    data = L.twin_data(setup, jax.random.key(0))
    n = setup.burn_in + setup.cycles
    assert data.truth.shape == data.obs.shape == (n, setup.dim) and data.x0.shape == (setup.dim,)
    np.testing.assert_allclose(L.forecast(setup, data.x0), data.truth[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(L.forecast(setup, data.truth[:-1]), data.truth[1:], rtol=1e-4, atol=1e-4)
    err = (data.obs - data.truth).astype(np.float64)
    assert abs(err.std() / setup.obs_std - 1.0) < 0.05
    assert abs(err.mean()) < 4 * setup.obs_std / math.sqrt(err.size)
    # the same key gives the same data
    np.testing.assert_array_equal(L.twin_data(setup, jax.random.key(0)).obs, data.obs)


def test_bad_arguments_raise():
    s = L.SAKOV2012
    obs = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match="burn_in"):
        L.analysis_rmse(obs, obs, 5)
    with pytest.raises(ValueError, match="burn_in"):
        L.time_mean_spread(np.zeros(5), 5)
    with pytest.raises(ValueError, match="cycles"):
        L.forecast(s, np.zeros(3, np.float32), cycles=-1)
    with pytest.raises(ValueError, match="x must have shape"):
        L.forecast(s, np.zeros(4, np.float32))
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
