"""Tests for slams_jax.nn.layers: boundary conditions, convolutions, time embedding."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.nn.layers import Conv, TimeEmbedding, activation_fn, pad_spatial, time_features
from helpers import _field, _params


@pytest.mark.parametrize(
    "mode, np_mode", [("circular", "wrap"), ("zeros", "constant"), ("edge", "edge"), ("reflect", "reflect")]
)
def test_pad_spatial_matches_numpy_per_axis(mode, np_mode):
    x = np.asarray(_field(0, (2, 5, 6, 3)))
    out = pad_spatial(jnp.asarray(x), [(2, 1), (0, 3)], [mode, "circular"])
    expected = np.pad(x, [(0, 0), (2, 1), (0, 0), (0, 0)], mode=np_mode)
    expected = np.pad(expected, [(0, 0), (0, 0), (0, 3), (0, 0)], mode="wrap")
    np.testing.assert_array_equal(np.asarray(out), expected)


def _pole_brute_force(x, lat_pad, lon_pad):
    """Geographic neighbour of every padded point by explicit index arithmetic."""
    *batch, H, W, C = x.shape
    (n, s), (w, e) = lat_pad, lon_pad
    out = np.empty((*batch, H + n + s, W + w + e, C), x.dtype)
    for r in range(-n, H + s):
        for j in range(-w, W + e):
            if r < 0:  # beyond the first pole: mirror (half a row from the pole) and go half way round
                src_r, src_j = -r - 1, j + W // 2
            elif r >= H:
                src_r, src_j = 2 * H - 1 - r, j + W // 2
            else:
                src_r, src_j = r, j
            out[..., r + n, j + w, :] = x[..., src_r, src_j % W, :]
    return out


@pytest.mark.parametrize("lat_pad, lon_pad", [((1, 1), (1, 1)), ((2, 3), (0, 2)), ((5, 0), (3, 3)), ((0, 0), (1, 0))])
def test_pole_padding_equals_brute_force(lat_pad, lon_pad):
    x = np.asarray(_field(1, (2, 5, 8, 2)))
    out = pad_spatial(jnp.asarray(x), [lat_pad, lon_pad], ["pole", "circular"])
    np.testing.assert_array_equal(np.asarray(out), _pole_brute_force(x, lat_pad, lon_pad))


def test_pole_padding_rows_are_rotated_mirrors():
    # One explicit case: the row beyond the north pole at longitude j is row 0 at longitude j + W/2.
    x = jnp.arange(4 * 6, dtype=jnp.float32).reshape(4, 6, 1)
    out = pad_spatial(x, [(2, 1), (0, 0)], ["pole", "zeros"])
    np.testing.assert_array_equal(out[1, :, 0], jnp.roll(x[0, :, 0], 3))
    np.testing.assert_array_equal(out[0, :, 0], jnp.roll(x[1, :, 0], 3))
    np.testing.assert_array_equal(out[-1, :, 0], jnp.roll(x[-1, :, 0], 3))
    assert not np.array_equal(out[1, :, 0], x[0, :, 0])  # it is not plain reflection


def test_pad_spatial_errors():
    x = jnp.zeros((1, 4, 6, 1))
    with pytest.raises(ValueError, match="unknown padding mode 'periodic'"):
        pad_spatial(x, [(1, 1), (1, 1)], ["periodic", "circular"])
    with pytest.raises(ValueError, match="latitude axis"):
        pad_spatial(x, [(1, 1), (1, 1)], ["edge", "pole"])
    with pytest.raises(ValueError, match="latitude axis"):
        pad_spatial(jnp.zeros((1, 6, 1)), [(1, 1)], ["pole"])
    with pytest.raises(ValueError, match="even number of longitudes"):
        pad_spatial(jnp.zeros((1, 4, 5, 1)), [(1, 1), (1, 1)], ["pole", "circular"])
    with pytest.raises(ValueError, match="exceeds"):
        pad_spatial(x, [(5, 1), (1, 1)], ["pole", "circular"])
    with pytest.raises(ValueError, match="2 padding modes"):
        pad_spatial(x, [(1, 1)], ["edge", "circular"])
    with pytest.raises(ValueError, match="unknown padding mode"):
        Conv(2, 3, padding_modes=("edge", "wrap")).init(jax.random.key(0), x)


def test_activation_lookup():
    y = jnp.linspace(-2.0, 2.0, 5)
    np.testing.assert_allclose(activation_fn("relu")(y), np.maximum(np.asarray(y), 0.0))
    np.testing.assert_allclose(activation_fn("tanh")(y), np.tanh(np.asarray(y)), rtol=1e-6)
    assert activation_fn("silu") is nn.silu and activation_fn("gelu") is nn.gelu
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activation_fn("swish")


def test_conv_zeros_equals_same_convolution():
    # With zero padding and an odd kernel the explicit padding must reproduce nn.Conv(padding="SAME").
    x = _field(2, (2, 7, 10, 3))
    conv = Conv(4, (3, 5), padding_modes=("zeros", "zeros"))
    params = _params(conv, x)
    reference = nn.Conv(4, (3, 5), padding="SAME")
    out = conv.apply(params, x)
    np.testing.assert_allclose(out, reference.apply({"params": params["params"]["Conv_0"]}, x), atol=1e-5)


def test_conv_circular_equals_manual_periodic_convolution_1d():
    x = _field(3, (2, 11, 2))
    conv = Conv(3, 3, padding_modes=("circular",))
    params = _params(conv, x)
    kernel = params["params"]["Conv_0"]["kernel"]  # (3, 2, 3)
    bias = params["params"]["Conv_0"]["bias"]
    # y[i] = sum_k x[i + k - 1] W[k] + b with periodic indices.
    manual = sum(jnp.einsum("bic,co->bio", jnp.roll(x, 1 - k, axis=1), kernel[k]) for k in range(3))
    manual = manual + bias.reshape(1, 1, 3)
    np.testing.assert_allclose(conv.apply(params, x), manual, atol=1e-5)


@pytest.mark.parametrize("kernel", [3, 4, 5])
def test_conv_keeps_grid_and_stride_halves(kernel):
    x = _field(4, (1, 9, 12, 2))
    for strides, shape in [(1, (1, 9, 12, 5)), (2, (1, 5, 6, 5))]:
        conv = Conv(5, kernel, strides=strides, padding_modes=("edge", "circular"))
        out = conv.apply(_params(conv, x), x)
        assert out.shape == shape


@pytest.mark.parametrize("lat_mode", ["zeros", "edge", "reflect", "pole"])
def test_conv_longitude_roll_equivariance(lat_mode):
    x = _field(5, (2, 6, 16, 3))
    conv = Conv(4, 3, padding_modes=(lat_mode, "circular"))
    params = _params(conv, x)
    y = conv.apply(params, x)
    for s in (1, 5):
        np.testing.assert_allclose(conv.apply(params, jnp.roll(x, s, axis=2)), jnp.roll(y, s, axis=2), atol=1e-5)
    strided = Conv(4, 3, strides=2, padding_modes=(lat_mode, "circular"))
    params = _params(strided, x)
    y = strided.apply(params, x)
    np.testing.assert_allclose(strided.apply(params, jnp.roll(x, 4, axis=2)), jnp.roll(y, 2, axis=2), atol=1e-5)


@pytest.mark.parametrize("lat_mode, wraps", [("zeros", False), ("edge", False), ("reflect", False), ("circular", True)])
def test_conv_latitude_does_not_wrap(lat_mode, wraps):
    x = _field(6, (1, 8, 6, 2))
    bumped = x.at[:, 0].add(10.0)
    conv = Conv(3, 3, padding_modes=(lat_mode, "circular"))
    params = _params(conv, x)
    diff = jnp.abs(conv.apply(params, bumped) - conv.apply(params, x))
    assert float(jnp.max(diff[:, 0])) > 1e-3
    assert float(jnp.max(diff[:, 2:-1])) == 0.0  # beyond the kernel's reach from row 0, on either side
    assert (float(jnp.max(diff[:, -1])) > 1e-3) == wraps


def test_pole_conv_couples_opposite_longitudes_not_opposite_pole():
    x = _field(7, (1, 8, 8, 1))
    bumped = x.at[:, 0, 1].add(10.0)  # one point next to the north pole, longitude 1
    conv = Conv(1, 3, padding_modes=("pole", "circular"))
    params = _params(conv, x)
    diff = jnp.abs(conv.apply(params, bumped) - conv.apply(params, x))[0, :, :, 0]
    changed = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.asarray(diff) > 1e-6))}
    across = {(0, (1 + 4 + dj) % 8) for dj in (-1, 0, 1)}  # seen across the pole at longitude 1 + W/2
    local = {(i, (1 + dj) % 8) for i in (0, 1) for dj in (-1, 0, 1)}
    assert across <= changed <= across | local
    assert all(i < 2 for i, _ in changed)


def test_time_features_closed_form():
    t = jnp.array([[0.0, 0.25], [0.5, 1.0]], dtype=jnp.float32)
    f = time_features(t, 3)
    assert f.shape == (2, 2, 6)
    for idx in np.ndindex(2, 2):
        tv = float(t[idx])
        expected = [math.cos(math.pi * k * tv) for k in (1, 2, 3)] + [math.sin(math.pi * k * tv) for k in (1, 2, 3)]
        np.testing.assert_allclose(f[idx], expected, atol=1e-6)
    assert time_features(jnp.float32(0.5), 4).shape == (8,)


def test_time_embedding_is_mlp_of_features():
    t = jnp.array([0.1, 0.7, 0.9], dtype=jnp.float32)
    module = TimeEmbedding(features=5, frequencies=4, hidden=7)
    params = _params(module, t)
    out = module.apply(params, t)
    assert out.shape == (3, 5)
    p = params["params"]
    h = time_features(t, 4) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"].reshape(1, 7)
    h = h * jax.nn.sigmoid(h)
    manual = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"].reshape(1, 5)
    np.testing.assert_allclose(out, manual, atol=1e-5)
    assert p["Dense_0"]["kernel"].shape == (8, 7)
    # Distinct times give distinct embeddings.
    assert float(jnp.min(jnp.abs(out[0] - out[1]))) >= 0.0 and not np.allclose(out[0], out[1])


@pytest.mark.parametrize("ndim", [1, 2])
def test_conv_cpu_fast_path_matches_valid_convolution(monkeypatch, ndim):
    # The CPU-only padded-then-cropped kernel must give exactly what the plain VALID convolution gives.
    import slams_jax.nn.layers as layers

    modes = ("pole", "circular") if ndim == 2 else ("circular",)
    x = _field(8, (2, 6, 8, 3) if ndim == 2 else (2, 10, 3))
    conv = Conv(4, 3, padding_modes=modes)
    params = _params(conv, x)
    monkeypatch.setattr(layers, "_cpu_valid_workaround", lambda: True)
    fast = conv.apply(params, x)
    monkeypatch.setattr(layers, "_cpu_valid_workaround", lambda: False)
    plain = conv.apply(params, x)
    assert fast.shape == plain.shape == x.shape[:-1] + (4,)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5)
