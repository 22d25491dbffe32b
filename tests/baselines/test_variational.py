"""3D-Var with a static separable covariance: exact OI update, covariance algebra, fitting, RML posterior samples."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.baselines import covariance_fit, variational
from slams_jax.observation.observations import Observation, ObservationError
from slams_jax.observation.operators import Coarsen, Points, Saturate, TimeIndex, TimeSubsample
from slams_jax.baselines.covariance import StaticCovariance
from slams_jax.baselines.covariance_fit import fit_static_covariance
from slams_jax.baselines.variational import dense_gain, three_dvar, three_dvar_ensemble

SHAPE = (3, 6, 8, 2)  # (time, lat, lon, channel)


# --------------------------------------------------------------------------------------------------- helpers
def _dense_operator(op, shape) -> np.ndarray:
    """The matrix ``(m, n)`` of a linear operator over the flattened trajectory, column by column."""
    n = math.prod(shape)
    basis = jnp.eye(n, dtype=jnp.float32).reshape((n,) + tuple(shape))
    columns = jax.vmap(op)(basis)  # (n, *out): column k is op(e_k)
    return np.asarray(columns, np.float64).reshape(n, -1).T


def _stacked(observations, shape):
    """``H``, ``y`` and the noise variances of a set of observations, stacked (float64)."""
    h = np.concatenate([_dense_operator(o.operator, shape) for o in observations])
    y = np.concatenate([o.values.astype(np.float64).ravel() for o in observations])
    r = np.concatenate([np.square(o.std_array().astype(np.float64)).ravel() for o in observations])
    return h, y, r


def _exact_posterior(observations, background, b):
    """Kalman / OI update in float64: ``(x_a, A)`` over the flattened trajectory."""
    h, y, r = _stacked(observations, background.shape)
    xb = background.astype(np.float64).ravel()
    gain = b @ h.T @ np.linalg.inv(h @ b @ h.T + np.diag(r))
    return xb + gain @ (y - h @ xb), b - gain @ h @ b


def _sample(cov: StaticCovariance, shape, count: int, seed: int) -> np.ndarray:
    """``count`` draws ``B^{1/2} z`` in float64 numpy: ``(count, *shape)``."""
    s_time, s_lat, s_lon = cov.sqrt_matrices(shape)
    z = np.random.default_rng(seed).normal(size=(count,) + tuple(shape))
    x = np.einsum("cst,cai,cbj,ntijc->nsabc", s_time, s_lat, s_lon, z, optimize=True)
    return x * cov.std_field(shape)


def _observation(op, truth, std, seed):
    clean = np.asarray(op(jnp.asarray(truth, jnp.float32)), np.float64)
    noise = np.random.default_rng(seed).normal(size=clean.shape) * np.broadcast_to(np.asarray(std), clean.shape)
    return Observation("state", op, (clean + noise).astype(np.float32), std=std)


COVARIANCES = {
    # per-channel std: B^{1/2} is symmetric; no temporal correlation (every state analysed on its own)
    "per-channel": dict(std=(0.8, 2.0), length_lat=(1.5, 0.8), length_lon=(2.0, 1.2), periodic=(False, True)),
    # per-point std: B^{1/2} = D S is not symmetric; time correlated
    "per-point": dict(std=np.random.default_rng(7).uniform(0.5, 2.0, size=SHAPE[1:]), length_lat=(1.0, 1.5),
                      length_lon=(2.0, 1.0), periodic=(False, True), length_time=(1.5, 0.7)),
}


# ------------------------------------------------------------------------------------------- exact update
@pytest.mark.parametrize("case", sorted(COVARIANCES))
def test_three_dvar_equals_exact_oi_update(case):
    cov = StaticCovariance(**COVARIANCES[case])
    rng = np.random.default_rng(1)
    truth = rng.normal(size=SHAPE)
    background = rng.normal(size=SHAPE).astype(np.float32)
    coarse = TimeIndex((1,)) >> Coarsen(2) if case == "per-point" else TimeSubsample(2) >> Coarsen(2)
    observations = [
        _observation(coarse, truth, (0.3, 0.6), seed=2),
        _observation(Points((0, 2, 5, 5), (7, 3, 0, 6)), truth, 0.2, seed=3),
    ]
    analysis, info = three_dvar(observations, background, cov, return_info=True)
    assert analysis.shape == SHAPE and analysis.dtype == np.float32
    assert info["converged"] and info["residual"] <= 1e-6 and 0 < info["iterations"] < 200

    exact, _ = _exact_posterior(observations, background, cov.dense(SHAPE))
    exact = exact.reshape(SHAPE)
    scale = np.abs(exact - background).max()
    np.testing.assert_allclose(analysis, exact, rtol=0, atol=1e-4 * scale)
    # the update is not trivial: the analysis moved far from the background, towards the observations
    assert np.abs(analysis - background).max() > 0.3
    if case == "per-point":
        # time 0 and 2 are never coarse-observed; only the temporal correlation spreads the coarse information
        plain = StaticCovariance(**{**COVARIANCES[case], "length_time": None})
        exact_plain, _ = _exact_posterior(observations, background, plain.dense(SHAPE))
        assert np.abs(exact_plain.reshape(SHAPE)[0] - exact[0]).max() > 0.05


def test_three_dvar_compiles_once_per_observation_structure():
    # the structure of the per-channel case above: new values, noise levels, background and covariance
    # (same shapes) are runtime arguments of the one compiled solver
    ops = (TimeSubsample(2) >> Coarsen(2), Points((0, 2, 5, 5), (7, 3, 0, 6)))
    rng = np.random.default_rng(0)

    def solve(std, cov_kw, background):
        observations = [_observation(op, rng.normal(size=SHAPE), std, seed=k) for k, op in enumerate(ops)]
        return three_dvar(observations, background, StaticCovariance(**cov_kw))

    first = solve(0.5, COVARIANCES["per-channel"], np.zeros(SHAPE, np.float32))
    size = variational._analysis_jit._cache_size()
    assert size >= 1
    other = dict(std=(3.0, 0.1), length_lat=(0.5, 2.5), length_lon=(1.0, 3.0), periodic=(False, True))
    second = solve((0.2, 0.4), other, np.ones(SHAPE, np.float32))
    assert variational._analysis_jit._cache_size() == size
    assert not np.allclose(first, second)


@pytest.mark.parametrize("case", sorted(COVARIANCES))
def test_matrix_free_and_dense_gain_give_the_same_analysis(case):
    """Every variable observed (H = I, R = r I): three_dvar's control-variable CG with the operator B and the
    dense gain K = B (B + rI)^{-1} of the small-problem path are the same analysis x_b + K (y - x_b)."""
    from slams_jax.observation.operators import Identity

    cov = StaticCovariance(**COVARIANCES[case])
    rng = np.random.default_rng(5)
    background = rng.normal(size=SHAPE).astype(np.float32)
    y = (background + rng.normal(size=SHAPE)).astype(np.float32)
    analysis = three_dvar([Observation("state", Identity(), y, std=0.5)], background, cov)
    gain = np.asarray(dense_gain(jnp.asarray(cov.dense(SHAPE), jnp.float32), 0.25), np.float64)
    dense = background.ravel() + gain @ (y - background).ravel().astype(np.float64)
    np.testing.assert_allclose(analysis.ravel(), dense, atol=2e-4 * np.abs(dense - background.ravel()).max())
    assert np.abs(dense - background.ravel()).max() > 0.5  # a real update


# ------------------------------------------------------------------------------------- covariance algebra
@pytest.mark.parametrize("case", sorted(COVARIANCES))
def test_dense_equals_square_root_twice(case):
    cov = StaticCovariance(**COVARIANCES[case])
    n = math.prod(SHAPE)
    b = cov.dense(SHAPE)
    basis = jnp.eye(n, dtype=jnp.float32).reshape((n,) + SHAPE)
    root = np.asarray(jax.vmap(cov.sqrt_apply)(basis), np.float64).reshape(n, n).T  # column k = B^{1/2} e_k
    np.testing.assert_allclose(b, b.T, atol=1e-12)
    assert np.linalg.eigvalsh(b).min() > -1e-10
    np.testing.assert_allclose(root @ root.T, b, atol=1e-5)
    np.testing.assert_allclose(np.diag(b), np.broadcast_to(np.square(cov.std_field(SHAPE)), SHAPE).ravel(), rtol=1e-6)
    for s in cov.sqrt_matrices(SHAPE):
        np.testing.assert_allclose(s, np.swapaxes(s, 1, 2), atol=1e-12)
    v = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    np.testing.assert_allclose(np.asarray(cov.apply(v)), (b @ v.ravel()).reshape(SHAPE), atol=1e-4)
    np.testing.assert_allclose(np.asarray(cov.sqrt_transpose_apply(v)), (root.T @ v.ravel()).reshape(SHAPE), atol=1e-4)
    if case != "per-point":  # D commutes with S: the square root is symmetric and B = B^{1/2} B^{1/2}
        np.testing.assert_allclose(np.asarray(cov.sqrt_apply(cov.sqrt_apply(v))), np.asarray(cov.apply(v)), atol=1e-4)


def test_latitude_is_not_periodic_and_longitude_is():
    shape = (1, 8, 8, 1)

    def correlation(cov, a, b):
        m = cov.dense(shape)
        return m[a, b] / math.sqrt(m[a, a] * m[b, b])

    def flat(i, j):
        return np.ravel_multi_index((0, i, j, 0), shape)

    cov = StaticCovariance(std=(2.0,), length_lat=(1.5,), length_lon=(1.5,), periodic=(False, True))
    assert abs(correlation(cov, flat(0, 3), flat(7, 3))) < 1e-3  # the poles are not neighbours
    seam = correlation(cov, flat(2, 0), flat(2, 7))
    assert seam > 0.7  # across the longitude seam: one cell apart
    assert seam == pytest.approx(correlation(cov, flat(2, 3), flat(2, 4)), abs=1e-9)
    assert seam == pytest.approx(math.exp(-1 / (2 * 1.5**2)), abs=1e-2)
    wrapped = StaticCovariance(std=(2.0,), length_lat=(1.5,), length_lon=(1.5,), periodic=(True, True))
    assert correlation(wrapped, flat(0, 3), flat(7, 3)) > 0.7  # the flag is what keeps the rows apart


# ----------------------------------------------------------------------------------------------------- fit
def test_fit_recovers_length_scales_and_stds():
    shape = (1, 24, 32, 2)
    truth = StaticCovariance(std=(1.5, 0.4), length_lat=(2.0, 1.5), length_lon=(3.0, 4.0), periodic=(False, True))
    train = _sample(truth, shape, 300, seed=0) + np.array([10.0, -3.0])
    train[5, 0, 3, 4, 0] = np.nan  # missing values are ignored
    train[17, 0, 20, :, 1] = np.nan
    mean, fitted = fit_static_covariance(train.astype(np.float32), periodic=(False, True))
    assert mean.shape == (24, 32, 2) and mean.dtype == np.float32 and np.all(np.isfinite(mean))
    np.testing.assert_allclose(mean.mean((0, 1)), [10.0, -3.0], atol=0.05)
    np.testing.assert_allclose(fitted.std, [1.5, 0.4], rtol=0.03)
    np.testing.assert_allclose(fitted.length_lat, truth.length_lat, rtol=0.1)
    np.testing.assert_allclose(fitted.length_lon, truth.length_lon, rtol=0.1)
    assert fitted.length_time is None and fitted.periodic == (False, True)


def test_fit_per_point_std_and_time_length():
    shape = (12, 6, 8, 1)
    std = np.linspace(0.5, 2.0, 6).reshape(6, 1, 1) * np.ones((6, 8, 1))
    truth = StaticCovariance(std=std, length_lat=(1.0,), length_lon=(1.5,), length_time=(2.5,), periodic=(False, True))
    train = _sample(truth, shape, 150, seed=1)
    _, fitted = fit_static_covariance(train, periodic=(False, True), per_point_std=True, time_correlation=True)
    assert fitted.std.shape == (6, 8, 1)
    assert np.median(np.abs(fitted.std / std - 1)) < 0.05
    np.testing.assert_allclose(fitted.length_time, [2.5], rtol=0.1)
    np.testing.assert_allclose(fitted.length_lat, [1.0], rtol=0.1)
    np.testing.assert_allclose(fitted.length_lon, [1.5], rtol=0.1)


def test_fit_of_white_noise_gives_the_threshold_length():
    train = np.random.default_rng(2).normal(size=(50, 4, 10, 12, 1))
    _, fitted = fit_static_covariance(train, periodic=(False, True), time_correlation=True, max_lag=3)
    short = 1 / math.sqrt(2 * math.log(1 / covariance_fit.CORRELATION_THRESHOLD))
    assert math.exp(-1 / (2 * short**2)) == pytest.approx(covariance_fit.CORRELATION_THRESHOLD)
    for lengths in (fitted.length_lat, fitted.length_lon, fitted.length_time):
        assert lengths == pytest.approx((short,))


# ------------------------------------------------------------------------------------------------ ensemble
def test_rml_ensemble_samples_the_exact_posterior():
    shape = (2, 3, 6, 1)
    n, members = math.prod(shape), 4000
    cov = StaticCovariance(std=(1.2,), length_lat=(1.0,), length_lon=(1.0,), length_time=(1.0,), periodic=(False, True))
    rng = np.random.default_rng(3)
    truth = rng.normal(size=shape)
    background = rng.normal(size=shape).astype(np.float32)
    observations = [
        _observation(TimeIndex((0,)) >> Coarsen(2), truth, 0.4, seed=4),
        _observation(Points((0, 2), (1, 5)), truth, 0.3, seed=5),
    ]
    assert np.linalg.eigvalsh(cov.dense(shape)).min() > 1e-3  # B (hence A) invertible for the whitening below
    ensemble = three_dvar_ensemble(jax.random.key(0), observations, background, cov, members)
    assert ensemble.shape == (members,) + shape and ensemble.dtype == np.float32

    mean, a = _exact_posterior(observations, background, cov.dense(shape))
    x = ensemble.reshape(members, n).astype(np.float64)
    # mean: M (xbar - x_a)^T A^{-1} (xbar - x_a) ~ chi2(n); n + 4 sd is a ~1e-4 false-alarm bound
    error = x.mean(0) - mean
    chi2 = members * error @ np.linalg.solve(a, error)
    assert chi2 < n + 4 * math.sqrt(2 * n)
    # covariance: whitened by A it is ~I with E|W - I|_F^2 ~ n (n + 1) / M; ~300 terms, so the norm is tight
    chol = np.linalg.cholesky(a)
    w = np.linalg.solve(chol, np.linalg.solve(chol, np.cov(x.T)).T)
    ratio = np.linalg.norm(w - np.eye(n)) / math.sqrt(n * (n + 1) / members)
    assert 0.8 < ratio < 1.25
    # the posterior is much tighter than the prior: members are not background draws
    assert np.trace(a) < 0.7 * np.trace(cov.dense(shape))


# -------------------------------------------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors():
    cov = StaticCovariance(**COVARIANCES["per-channel"])
    background = np.zeros(SHAPE, np.float32)
    truth = np.ones(SHAPE)
    good = _observation(Coarsen(2), truth, 0.5, seed=0)
    bad = _observation(Saturate(2.0), truth, 0.5, seed=0)
    with pytest.raises(ValueError, match=r"nonlinear operator Saturate"):
        three_dvar([good, bad], background, cov)
    with pytest.raises(ValueError, match=r"background of shape \(6, 8, 2\).*\(time, lat, lon, channel\)"):
        three_dvar([good], background[0], cov)
    with pytest.raises(ValueError, match=r"2 channels.*shape \(3, 6, 8, 3\) with 3 channels"):
        three_dvar([good], np.zeros((3, 6, 8, 3), np.float32), cov)
    with pytest.raises(ObservationError, match="unknown modality 'latent'"):
        three_dvar([Observation("latent", Coarsen(2), good.values)], background, cov)
    with pytest.raises(ValueError, match=r"values have shape \(3, 3, 4, 2\)"):
        three_dvar([good], np.zeros((3, 4, 8, 2), np.float32), cov)
    with pytest.raises(ValueError, match=r"members=0"):
        three_dvar_ensemble(jax.random.key(0), [good], background, cov, 0)
    with pytest.raises(ValueError, match=r"train of shape \(4, 6, 8, 2\), expected 5 axes"):
        fit_static_covariance(np.zeros((4, 6, 8, 2)), periodic=(False, True))
    with pytest.raises(ValueError, match=r"time_correlation needs trajectories of at least 2 states"):
        fit_static_covariance(np.zeros((4, 1, 6, 8, 2)), periodic=(False, True), time_correlation=True)
    with pytest.raises(ValueError, match=r"2 latitude lengths but 1 longitude lengths"):
        StaticCovariance(std=1.0, length_lat=(1.0, 2.0), length_lon=(1.0,))
    with pytest.raises(ValueError, match=r"std of shape \(3,\).*\(lat, lon, 2\)"):
        StaticCovariance(std=(1.0, 2.0, 3.0), length_lat=(1.0, 2.0), length_lon=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"std of shape \(5, 8, 2\) does not broadcast"):
        three_dvar([good], background, StaticCovariance(std=np.ones((5, 8, 2)), length_lat=(1, 1), length_lon=(1, 1)))
