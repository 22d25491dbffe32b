"""Tests for slams_jax.nn.unet: shapes, boundary conditions, batching, gradients, determinism."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.nn.unet import ScoreUNet, UNet
from helpers import jit, _field, _params


# Two levels are enough to exercise heads, strided convs, skips and tails; three for the roll period 4.
SMALL = dict(hidden_channels=(3, 4), hidden_blocks=(1, 1), kernel_size=3)
DEEP = dict(hidden_channels=(3, 4, 5), hidden_blocks=(1, 1, 2), kernel_size=3)


def test_parameter_structure_follows_the_architecture():
    net = UNet(3, hidden_channels=(4, 6, 8), hidden_blocks=(1, 2, 3), padding_modes=("edge", "circular"))
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 8, 8, 5)), jnp.zeros((1, 7)))["params"]
    expected = {"head_0", "head_1", "head_2", "tail_0", "tail_1", "tail_2"}
    expected |= {f"{d}_{i}_{j}" for d in ("down", "up") for i, n in enumerate((1, 2, 3)) for j in range(n)}
    assert set(shapes) == expected
    assert shapes["head_0"]["Conv_0"]["kernel"].shape == (3, 3, 5, 4)
    assert shapes["head_2"]["Conv_0"]["kernel"].shape == (3, 3, 6, 8)
    assert shapes["tail_2"]["Conv_0"]["kernel"].shape == (3, 3, 8, 6)
    assert shapes["tail_1"]["Conv_0"]["kernel"].shape == (3, 3, 6, 4)
    assert shapes["tail_0"]["Conv_0"]["kernel"].shape == (3, 3, 4, 3)
    assert shapes["up_2_1"]["project"]["kernel"].shape == (7, 8)  # embedding -> per-channel shift


@pytest.mark.parametrize(
    "shape, modes, config",
    [
        ((2, 9, 16, 3), ("edge", "circular"), DEEP),  # odd latitude, cropped at two levels
        ((2, 33, 3), ("circular",), DEEP),  # 1-D, odd
        ((1, 121, 240, 3), ("pole", "circular"), dict(hidden_channels=(2, 2), hidden_blocks=(1, 1))),  # ERA5 1.5 deg
    ],
)
def test_shapes_including_odd_grids(shape, modes, config):
    net = UNet(2, padding_modes=modes, layer_norm=True, **config)
    x, emb = _field(0, shape), _field(1, (shape[0], 5))
    out = jit(net.apply)(_params(net, x, emb), x, emb)
    assert out.shape == shape[:-1] + (2,)
    assert bool(jnp.all(jnp.isfinite(out)))


def test_leading_batch_dims_and_embedding():
    net = UNet(2, padding_modes=("edge", "circular"), **SMALL)
    x, emb = _field(0, (2, 3, 9, 8, 3)), _field(1, (2, 3, 5))
    params = _params(net, x[0], emb[0])
    apply = jit(net.apply)
    out = apply(params, x, emb)
    flat = apply(params, x.reshape(6, 9, 8, 3), emb.reshape(6, 5))
    np.testing.assert_allclose(out, flat.reshape(2, 3, 9, 8, 2), rtol=1e-5, atol=1e-5)
    # Examples are independent: permuting the batch permutes the output.
    perm = np.array([3, 0, 5, 1, 4, 2])
    permuted = apply(params, x.reshape(6, 9, 8, 3)[perm], emb.reshape(6, 5)[perm])
    np.testing.assert_allclose(permuted, flat[perm], rtol=1e-5, atol=1e-5)
    # The embedding modulates the output; a single embedding is broadcast over the batch.
    shifted = apply(params, x, emb + 1.0)
    assert float(jnp.min(jnp.max(jnp.abs(shifted - out), axis=(2, 3, 4)))) > 1e-3
    shared = apply(params, x, emb[0, 0])
    np.testing.assert_allclose(shared, apply(params, x, jnp.broadcast_to(emb[0, 0], (2, 3, 5))), atol=1e-5)
    with pytest.raises(ValueError, match="does not match the batch dims"):
        apply(params, x, emb[:, :2])


def test_longitude_roll_equivariance():
    # "pole" latitude padding rolls rows by half the longitudes, which must commute with longitude rolls.
    net = UNet(2, padding_modes=("pole", "circular"), layer_norm=True, **DEEP)  # 3 levels: period 4
    x, emb = _field(0, (9, 16, 3)), _field(1, (5,))
    shifts = (0, 4, -8, 12, 1, 2)
    stack = jnp.stack([jnp.roll(x, s, axis=1) for s in shifts])
    out = jit(net.apply)(_params(net, x, emb), stack, emb)
    for i, s in enumerate(shifts):
        error = float(jnp.max(jnp.abs(out[i] - jnp.roll(out[0], s, axis=1))))
        if s % 4 == 0:
            assert error < 1e-5, s
        else:  # not a symmetry of the strided grid: the check above is not vacuous
            assert error > 1e-4, s


@pytest.mark.parametrize("lat_mode, wraps", [("edge", False), ("circular", True)])
def test_latitude_does_not_wrap(lat_mode, wraps):
    net = UNet(1, padding_modes=(lat_mode, "circular"), **SMALL)
    x, emb = _field(0, (48, 8, 2)), _field(1, (3,))
    out = jit(net.apply)(_params(net, x, emb), jnp.stack([x, x.at[0].add(5.0)]), emb)
    diff = jnp.max(jnp.abs(out[1] - out[0]), axis=(1, 2))  # per latitude row
    assert float(diff[0]) > 1e-3
    assert float(jnp.max(diff[22:26])) == 0.0  # beyond the receptive field (~18 rows) from either end
    assert (float(jnp.max(diff[-4:])) > 1e-6) == wraps, diff


def test_every_parameter_gets_a_finite_nonzero_gradient():
    net = ScoreUNet(3, embedding=6, padding_modes=("pole", "circular"), layer_norm=True, **SMALL)
    x, t = _field(0, (2, 9, 8, 3)), jnp.array([0.2, 0.8], dtype=jnp.float32)
    params = _params(net, x, t)
    target = _field(2, x.shape)

    def loss(p):
        return jnp.mean(jnp.square(net.apply(p, x, t) - target))

    grads = jit(jax.grad(loss))(params)
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    assert len(leaves) == len(jax.tree.leaves(params))
    nonzero = 0
    total = 0
    for path, g in leaves:
        g = np.asarray(g)  # numpy: eager jnp ops would compile once per leaf shape
        assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
        assert np.max(np.abs(g)) > 0.0, jax.tree_util.keystr(path)
        nonzero += int(np.sum(g != 0))
        total += g.size
    assert nonzero / total > 0.99


def test_jit_matches_eager_and_init_is_deterministic():
    net = ScoreUNet(3, embedding=4, padding_modes=("edge", "circular"), hidden_channels=(3,), hidden_blocks=(1,))
    x, t = _field(0, (2, 6, 8, 3)), jnp.array([0.1, 0.9], dtype=jnp.float32)
    init = jit(net.init)
    params = init(jax.random.key(3), x, t)
    same = init(jax.random.key(3), x, t)
    other = init(jax.random.key(4), x, t)
    jax.tree.map(np.testing.assert_array_equal, params, same)
    assert all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(other)) if a.ndim > 1)
    eager = net.apply(params, x, t)
    np.testing.assert_allclose(jax.jit(net.apply)(params, x, t), eager, rtol=1e-5, atol=1e-5)
    assert eager.shape == x.shape
    # The diffusion time matters, and a scalar time is broadcast over the batch.
    assert float(jnp.max(jnp.abs(net.apply(params, x, t[::-1]) - eager))) > 1e-4
    np.testing.assert_allclose(net.apply(params, x, jnp.float32(0.1)), net.apply(params, x, t.at[1].set(0.1)), atol=1e-5)


def test_configuration_errors():
    x, emb = jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 5))
    with pytest.raises(ValueError, match="same length"):
        jax.eval_shape(UNet(2, hidden_channels=(4, 6), hidden_blocks=(1,)).init, jax.random.key(0), x, emb)
    with pytest.raises(ValueError, match="expected 4"):
        jax.eval_shape(ScoreUNet(4, **SMALL).init, jax.random.key(0), x, jnp.zeros((1,)))
