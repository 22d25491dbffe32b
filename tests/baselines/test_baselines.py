"""The interpolation baseline: normalized adjoints of linear observations, linear in time, climatology elsewhere."""

import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.baselines.interpolation import interpolation_baseline
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Coarsen, Points, Saturate, TimeIndex, TimeSubsample

SHAPE = (5, 4, 6, 2)  # (time, lat, lon, channel)


def _trajectory(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=SHAPE).astype(np.float32)


def _observe(op, x: np.ndarray, std=0.5) -> Observation:
    """A noise-free observation ``op(x)``."""
    return Observation("state", op, np.asarray(op(jnp.asarray(x))), std=std)


def _block_means(state: np.ndarray) -> np.ndarray:
    """2x2 block means of one state ``(lat, lon, channel)``, replicated back over each block."""
    lat, lon, ch = state.shape
    blocks = state.astype(np.float64).reshape(lat // 2, 2, lon // 2, 2, ch).mean(axis=(1, 3))
    return np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)


@pytest.mark.parametrize("std", [0.5, (0.3, 2.0)])
def test_coarse_subsampled_observations(std):
    x = _trajectory()
    out = interpolation_baseline([_observe(TimeSubsample(2) >> Coarsen(2), x, std)], SHAPE, climatology=100.0)
    assert out.shape == SHAPE and out.dtype == np.float32
    b0, b2, b4 = (_block_means(x[t]) for t in (0, 2, 4))
    expected = np.stack([b0, (b0 + b2) / 2, b2, (b2 + b4) / 2, b4])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # blocks are constant and differ from the truth (the baseline only sees block means)
    assert not np.allclose(out[0], x[0], atol=1e-2)


def test_held_constant_before_first_and_after_last_observed_state():
    x = _trajectory(1)
    out = interpolation_baseline([_observe(TimeSubsample(2, offset=1) >> Coarsen(2), x)], SHAPE)
    b1, b3 = _block_means(x[1]), _block_means(x[3])
    expected = np.stack([b1, b1, (b1 + b3) / 2, b3, b3])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_uneven_time_gaps_interpolate_linearly():
    x = _trajectory(2)
    out = interpolation_baseline([_observe(TimeIndex((0, 3)) >> Coarsen(2), x)], SHAPE)
    b0, b3 = _block_means(x[0]), _block_means(x[3])
    expected = np.stack([b0, (2 * b0 + b3) / 3, (b0 + 2 * b3) / 3, b3, b3])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_points_exact_where_observed_and_climatology_elsewhere():
    x = _trajectory(3)
    lat, lon = (0, 1, 3), (0, 3, 5)
    climatology = np.array([10.0, -3.0], np.float32)  # per channel
    out = interpolation_baseline([_observe(Points(lat, lon), x)], SHAPE, climatology=climatology)
    seen = np.zeros(SHAPE[1:3], bool)
    seen[lat, lon] = True
    np.testing.assert_array_equal(out[:, seen], x[:, seen])
    np.testing.assert_array_equal(out[:, ~seen], np.broadcast_to(climatology, out[:, ~seen].shape))
    # a full climatology field is used point by point
    field = np.random.default_rng(4).normal(size=SHAPE).astype(np.float32)
    out = interpolation_baseline([_observe(Points(lat, lon), x)], SHAPE, climatology=field)
    np.testing.assert_array_equal(out[:, ~seen], field[:, ~seen])
    np.testing.assert_array_equal(out[:, seen], x[:, seen])


def test_points_observed_at_some_times_are_interpolated_in_time():
    x = _trajectory(5)
    op = Points((2, 3), (1, 4)) >> TimeIndex((1, 3))
    out = interpolation_baseline([_observe(op, x)], SHAPE, climatology=7.0)
    cells = x[:, (2, 3), (1, 4)].astype(np.float64)  # (time, point, channel)
    expected = np.stack([cells[1], cells[1], (cells[1] + cells[3]) / 2, cells[3], cells[3]])
    np.testing.assert_allclose(out[:, (2, 3), (1, 4)], expected, rtol=1e-6)
    others = np.ones(SHAPE[1:3], bool)
    others[(2, 3), (1, 4)] = False
    np.testing.assert_array_equal(out[:, others], 7.0)


def test_inverse_variance_weighting_of_repeated_observations():
    x, y = _trajectory(6), _trajectory(7)
    lat, lon = (0, 2, 3), (1, 1, 5)
    op = Points(lat, lon)
    s1, s2 = np.array([0.5, 2.0]), np.array([1.5, 1.0])  # per-channel stds: the weights differ by channel
    obs = [_observe(op, x, tuple(s1)), _observe(op, y, tuple(s2))]
    out = interpolation_baseline(obs, SHAPE)
    w1, w2 = 1 / s1**2, 1 / s2**2
    expected = (w1 * x[:, lat, lon].astype(np.float64) + w2 * y[:, lat, lon]) / (w1 + w2)
    np.testing.assert_allclose(out[:, lat, lon], expected, rtol=1e-5, atol=1e-6)
    # order does not matter; not the plain mean
    np.testing.assert_allclose(interpolation_baseline(obs[::-1], SHAPE), out, rtol=1e-6)
    assert not np.allclose(out[:, lat, lon], (x[:, lat, lon] + y[:, lat, lon]) / 2, atol=1e-2)

    # the same with block means: a coarse and a fine (point) observation of one cell combine likewise
    coarse = _observe(Coarsen(2), x, 0.5)
    point = _observe(Points((0,), (0,)), y, 0.25)
    out = interpolation_baseline([coarse, point], SHAPE)
    # adjoints: the block mean spreads w / 4 over the 4 cells, the point puts w on its cell
    wc, wp = 4.0 / 4, 16.0
    block = _block_means(x[2])
    cell = (wc * block[0, 0] + wp * y[2, 0, 0]) / (wc + wp)
    np.testing.assert_allclose(out[2, 0, 0], cell, rtol=1e-5)
    np.testing.assert_allclose(out[2, 1, 1], block[1, 1], rtol=1e-5)


def test_nonlinear_observations_are_ignored():
    x = _trajectory(8)
    linear = _observe(Points((1,), (2,)), x)
    wild = Observation("state", Saturate(0.1), np.full(SHAPE, 0.05, np.float32), std=0.01)
    composed = Observation("state", Coarsen(2) >> Saturate(), np.full((5, 2, 3, 2), -0.9, np.float32), std=0.01)
    alone = interpolation_baseline([linear], SHAPE, climatology=1.5)
    np.testing.assert_array_equal(interpolation_baseline([wild, linear, composed], SHAPE, climatology=1.5), alone)
    # with no linear observation the climatology is returned
    clim = np.random.default_rng(9).normal(size=SHAPE).astype(np.float32)
    np.testing.assert_array_equal(interpolation_baseline([wild, composed], SHAPE, climatology=clim), clim)
    np.testing.assert_array_equal(interpolation_baseline([], SHAPE, climatology=2.0), np.full(SHAPE, 2.0, np.float32))
