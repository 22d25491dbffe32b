"""Tests of the Kolmogorov-flow solver, its auxiliary products and the energy spectrum.

Physics checks use exact solutions (one-shell free decay, forced laminar flow), the energy budget of
the Galerkin system, and statistics of the turbulent state at Re = 1000.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from slams_jax.data import kolmogorov as K
from slams_jax.data.kolmogorov import solver, spectral
from slams_jax.metrics import isotropic_energy_spectrum

# Cheap settings for tests that only need a trajectory, not the Re = 1000 attractor.
TINY = K.KolmogorovConfig(grid=32, out_grid=16, spinup_grid=None, spinup_time=0.4, relax_time=0.0)


def _solver(n, **kwargs):
    """Configuration for integrating on an n grid directly (no output / spin-up grids involved)."""
    return K.KolmogorovConfig(grid=n, out_grid=n, spinup_grid=None, **kwargs)


def _mesh(n):
    c = K.grid_coordinates(n)
    return np.meshgrid(c, c, indexing="ij")  # (y, x)


def _energy(omega):
    return K.energy_budget(omega, K.KolmogorovConfig())["energy"]


@pytest.fixture(scope="module")
def turbulent():
    """Default configuration (128 grid, Re = 1000), 2 trajectories x 4 states after spin-up."""
    config = K.KolmogorovConfig()
    return config, K.simulate(jax.random.key(0), 2, 4, config)


# ---------------------------------------------------------------------------------- solver core


def test_basdevant_term_equals_advection():
    n = 32
    omega = K.random_vorticity(jax.random.key(3), _solver(n))
    w_hat = jnp.fft.rfft2(omega)
    got = jnp.fft.irfft2(solver._tendency(w_hat, jnp.zeros_like(w_hat), n), s=(n, n))
    # Advective form -(u w_x + v w_y); the field is dealiased, so the product is exact on kept modes.
    uv = K.velocity_from_vorticity(omega)
    grad_x = K.vorticity(jnp.stack([jnp.zeros_like(omega), omega], -1))  # d omega / dx
    grad_y = -K.vorticity(jnp.stack([omega, jnp.zeros_like(omega)], -1))  # d omega / dy
    adv = -(uv[..., 0] * grad_x + uv[..., 1] * grad_y)
    want = jnp.fft.irfft2(jnp.fft.rfft2(adv) * jnp.asarray(spectral.dealias_mask(n)), s=(n, n))
    scale = float(jnp.max(jnp.abs(want)))
    assert scale > 1.0
    np.testing.assert_allclose(got, want, atol=1e-5 * scale)


@pytest.mark.slow
def test_one_shell_field_decays_exactly():
    # Modes on one shell |k| = 5 make u.grad(w) vanish identically, so the nonlinear solver must
    # reproduce pure viscous + drag decay; any sign error in the advection term breaks this.
    config = _solver(32, forcing_amplitude=0.0, reynolds=50.0)
    y, x = _mesh(32)
    omega0 = np.cos(3 * x + 4 * y) + 0.5 * np.sin(5 * x) + 0.7 * np.cos(5 * y + 1) + np.sin(4 * x - 3 * y)
    omega0 = jnp.asarray(omega0, jnp.float32)
    t = 3.0
    got = K.evolve(omega0, t, config, n_steps=7)
    want = omega0 * math.exp(-(config.viscosity * 25 + config.drag) * t)
    np.testing.assert_allclose(got, want, atol=2e-6 * float(jnp.max(jnp.abs(omega0))))
    # Control: two different shells do interact, so the test above is not trivially satisfied.
    mixed = omega0 + jnp.asarray(np.cos(x + y), jnp.float32)
    decay = jnp.asarray(math.exp(-(config.viscosity * 25 + config.drag) * t), jnp.float32)
    lin = omega0 * decay + jnp.asarray(np.cos(x + y), jnp.float32) * math.exp(
        -(config.viscosity * 2 + config.drag) * t)
    assert float(jnp.max(jnp.abs(K.evolve(mixed, t, config, n_steps=7) - lin))) > 1e-2


@pytest.mark.slow
def test_forced_laminar_flow_converges_at_fourth_order():
    # From rest, w(t) = w_s (1 - exp(-lam t)) with w_s = -A k_f cos(k_f y) / lam, lam = nu k_f^2 + alpha;
    # the nonlinear term vanishes for a y-only field, so this is exact at any Reynolds number.
    config = _solver(16, reynolds=10.0)
    k, lam, t = 4, config.viscosity * 16 + config.drag, 2.0
    y, _ = _mesh(16)
    exact = -k * np.cos(k * y) / lam * (1 - math.exp(-lam * t))
    zero = jnp.zeros((16, 16), jnp.float32)
    errors = [float(jnp.max(jnp.abs(K.evolve(zero, t, config, n_steps=s) - exact)))
              for s in (2, 4, 8)]
    orders = [math.log2(a / b) for a, b in zip(errors[:-1], errors[1:])]
    assert all(o > 3.5 for o in orders), (errors, orders)
    # At Re = 1000 and the default time step the laminar solution is reproduced to float32 precision.
    config = _solver(16)
    lam = config.viscosity * 16 + config.drag
    exact = -k * np.cos(k * y) / lam * (1 - math.exp(-lam * t))
    got = K.evolve(zero, t, config)
    np.testing.assert_allclose(got, exact, atol=1e-5 * np.abs(exact).max())


@pytest.mark.slow
def test_nonlinear_flow_converges_at_fourth_order():
    # Turbulent-ish field with strong viscosity: exercises the coupling of the integrating factor with
    # the nonlinear stages (a wrong stage factor drops the order to 2 while the exact tests still pass).
    config = _solver(32, reynolds=20.0, init_velocity=1.0)
    omega = K.random_vorticity(jax.random.key(5), config)
    ref = K.evolve(omega, 1.0, config, n_steps=256)
    errors = [float(jnp.max(jnp.abs(K.evolve(omega, 1.0, config, n_steps=s) - ref)))
              for s in (4, 8, 16)]
    orders = [math.log2(a / b) for a, b in zip(errors[:-1], errors[1:])]
    assert all(o > 3.3 for o in orders), (errors, orders)


@pytest.mark.slow
@pytest.mark.parametrize("forced", [True, False])
def test_energy_budget_matches_finite_difference(forced):
    config = _solver(32, forcing_amplitude=1.0 if forced else 0.0)
    omega = K.random_vorticity(jax.random.key(1), config)
    h = 2e-3
    e0, e1, e2 = (_energy(K.evolve(omega, s * h, config, n_steps=s)) if s else _energy(omega)
                  for s in (0, 1, 2))
    fd = (-3 * e0 + 4 * e1 - e2) / (2 * h)  # second-order one-sided derivative at t = 0
    budget = K.energy_budget(omega, config)
    terms = abs(float(budget["forcing_power"])) + float(budget["dissipation"])
    assert float(budget["dissipation"]) > 0.1
    assert abs(float(fd - budget["denergy_dt"])) < 1e-2 * terms
    # Inviscid, unforced, undamped: the Galerkin truncation conserves energy and enstrophy.
    euler = _solver(32, reynolds=1e12, drag=0.0, forcing_amplitude=0.0)
    later = K.evolve(omega, 0.5, euler)
    b0, b1 = K.energy_budget(omega, euler), K.energy_budget(later, euler)
    assert float(jnp.max(jnp.abs(later - omega))) > 0.5  # the flow did evolve
    np.testing.assert_allclose(b1["energy"], b0["energy"], rtol=1e-4)
    np.testing.assert_allclose(b1["enstrophy"], b0["enstrophy"], rtol=1e-4)


@pytest.mark.slow
def test_energy_monotone_with_and_without_forcing():
    config = _solver(32)
    unforced = dataclasses.replace(config, forcing_amplitude=0.0)
    omega = K.random_vorticity(jax.random.key(2), config)
    rest = jnp.zeros_like(omega)
    decay, growth = [], []
    for _ in range(8):
        decay.append(float(_energy(omega)))
        growth.append(float(_energy(rest)))
        omega = K.evolve(omega, 0.25, unforced)
        rest = K.evolve(rest, 0.25, config)
    assert np.all(np.diff(decay) < 0), decay
    assert np.all(np.diff(growth) > 0), growth
    # From rest the flow stays laminar, u = A sin(k_f y) (1 - exp(-lam t)) / lam: E = <u^2> / 2.
    lam = config.viscosity * 16 + config.drag
    t = 0.25 * np.arange(8)
    np.testing.assert_allclose(growth, 0.25 * ((1 - np.exp(-lam * t)) / lam) ** 2, rtol=1e-4)


def test_spectral_resample_interpolates_on_shared_nodes():
    # Nodes 2 pi j / n: the coarse nodes are the even fine nodes, so zero padding must interpolate
    # (no half-cell phase shift) and truncating back must be the identity on a band-limited field.
    omega = K.random_vorticity(jax.random.key(4), _solver(32))
    fine = jnp.fft.irfft2(K.spectral_resample(jnp.fft.rfft2(omega), 64), s=(64, 64))
    np.testing.assert_allclose(fine[::2, ::2], omega, atol=1e-5 * float(jnp.max(jnp.abs(omega))))
    back = jnp.fft.irfft2(K.spectral_resample(jnp.fft.rfft2(fine), 32), s=(32, 32))
    np.testing.assert_allclose(back, omega, atol=1e-5 * float(jnp.max(jnp.abs(omega))))


# ---------------------------------------------------------------------------------- trajectories


@pytest.mark.slow
def test_simulate_is_incompressible_and_deterministic():
    a = K.simulate(jax.random.key(7), 4, 3, TINY)
    assert a.shape == (4, 3, 16, 16, 2) and a.dtype == jnp.float32
    div = K.divergence(a)
    vort = K.vorticity(a)
    assert float(jnp.max(jnp.abs(div))) < 1e-5 * float(jnp.max(jnp.abs(vort)))
    np.testing.assert_array_equal(a, K.simulate(jax.random.key(7), 4, 3, TINY))
    assert float(jnp.max(jnp.abs(a - K.simulate(jax.random.key(8), 4, 3, TINY)))) > 0.1
    # Trajectory i only depends on split(key)[i]: chunking does not change the result.
    chunked = K.simulate(jax.random.key(7), 4, 3, TINY, chunk_size=2)
    np.testing.assert_allclose(chunked, a, atol=1e-5)
    assert not np.allclose(a[0], a[1])  # trajectories are independent draws


@pytest.mark.slow
def test_turbulent_state_is_sane(turbulent):
    config, uv = turbulent
    assert uv.shape == (2, 4, 64, 64, 2)
    assert bool(jnp.all(jnp.isfinite(uv)))
    # RMS velocity per component measured ~1.0 (64 trajectories); the unstable laminar state has
    # amplitude 1 / (nu k_f^2 + alpha) ~ 8.6, i.e. RMS ~6.1, which the turbulent state is far below.
    rms = float(jnp.sqrt(jnp.mean(uv**2)))
    assert 0.6 < rms < 1.5, rms
    assert float(K.courant_number(uv, config)) < 1.0
    _, spec = isotropic_energy_spectrum(uv)
    spec = np.asarray(spec.mean(axis=(0, 1)))
    energy = spec.sum()
    assert spec[4] < 0.5 * energy  # not laminar: the forced shell does not hold the energy
    assert np.count_nonzero(spec > 1e-4 * spec.max()) >= 20  # many active wavenumbers
    assert spec[1:8].sum() > 10 * spec[16:].sum()  # decaying (cascade) spectrum
    # Saved states are 0.2 apart and evolve, but are still correlated.
    step = float(jnp.sqrt(jnp.mean((uv[:, 1:] - uv[:, :-1]) ** 2)))
    assert 0.02 * rms < step < rms


# ---------------------------------------------------------------------------------- auxiliary fields


@pytest.mark.slow
def test_precipitation_and_olr(turbulent):
    _, uv = turbulent
    precip = K.precipitation(uv)
    olr = K.outgoing_longwave(uv)
    mask = np.asarray(K.ocean_mask(64))
    assert 0.3 < mask.mean() < 0.4
    nan = np.isnan(np.asarray(precip))
    np.testing.assert_array_equal(nan, np.broadcast_to(mask, nan.shape))
    land = np.asarray(precip)[~nan]
    assert land.min() >= 0.0 and 0.05 < (land > 0).mean() < 0.6
    # Rain falls where vorticity is high.
    vort = np.asarray(K.vorticity(uv))[~nan]
    assert vort[land > 0].mean() > vort.mean() + 2.0
    assert olr.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(olr)))
    assert 180.0 <= float(olr.min()) and float(olr.max()) <= 300.0 and float(olr.std()) > 5.0

    def scalar_spectrum(f):
        f = f - f.mean(axis=(-2, -1), keepdims=True)
        return np.asarray(isotropic_energy_spectrum(jnp.stack([f, jnp.zeros_like(f)], -1))[1]
                          .mean(axis=(0, 1)))

    s_olr, s_vort = scalar_spectrum(olr), scalar_spectrum(K.vorticity(uv))
    ratio = lambda s: s[12:33].sum() / s[1:5].sum()  # noqa: E731
    assert ratio(s_olr) < 1e-3 * ratio(s_vort)


@pytest.mark.slow
def test_make_dataset(tmp_path):
    ds = K.make_dataset(jax.random.key(0), 2, 3, TINY)
    assert set(ds.data_vars) == {"u", "v", "precip", "olr"}
    for name in ds.data_vars:
        assert ds[name].dims == ("trajectory", "time", "y", "x")
        assert ds[name].shape == (2, 3, 16, 16)
        assert ds[name].dtype == np.float32
        assert "units" in ds[name].attrs and "long_name" in ds[name].attrs
    np.testing.assert_allclose(ds.time.values, [0.0, 0.2, 0.4], atol=1e-6)
    np.testing.assert_allclose(ds.x.values, 2 * np.pi * np.arange(16) / 16, atol=1e-6)
    assert ds.attrs["reynolds_number"] == 1000.0 and ds.attrs["config_grid"] == 32
    uv = np.stack([ds.u.values, ds.v.values], -1)
    np.testing.assert_array_equal(uv, K.simulate(jax.random.key(0), 2, 3, TINY))
    ds.to_netcdf(tmp_path / "kolmogorov.nc")  # attributes must be netCDF-serializable
    with xr.open_dataset(tmp_path / "kolmogorov.nc") as back:
        np.testing.assert_array_equal(back.precip.values, ds.precip.values)


# ---------------------------------------------------------------------------------- spectrum


@pytest.mark.parametrize("n", [16, 15])
def test_spectrum_parseval(n):
    uv = jax.random.normal(jax.random.key(0), (3, n, n, 2), jnp.float32)
    k, spec = jax.jit(isotropic_energy_spectrum)(uv)
    assert spec.shape == (3, k.shape[0])
    np.testing.assert_allclose(spec.sum(-1), 0.5 * jnp.mean(jnp.sum(uv**2, -1), axis=(1, 2)),
                               rtol=1e-5)


def test_spectrum_single_mode():
    y, x = _mesh(32)
    phase = np.sin(3 * x + 4 * y + 0.3)  # velocity of psi = cos(3x + 4y + 0.3), |k| = 5
    uv = jnp.asarray(np.stack([-4 * phase, 3 * phase], -1), jnp.float32)
    k, spec = jax.jit(isotropic_energy_spectrum)(uv)
    assert int(jnp.argmax(spec)) == 5 and float(k[5]) == 5.0
    np.testing.assert_allclose(spec[5], 0.5 * 25 * 0.5, rtol=1e-5)  # <(u^2+v^2)/2> = 25/4
    np.testing.assert_allclose(jnp.sum(spec) - spec[5], 0.0, atol=1e-5)
