"""Tests for slams_jax.nn.autoencoder: masking, BatchNorm state, heads, validation, masked loss."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.nn.autoencoder import MultimodalAutoencoder, masked_mse
from slams_jax.nn.layers import Conv
from helpers import jit, _field

MODALITIES = (("state", 2), ("sst", 1), ("obs", 3))
SMALL = dict(latent_channels=2, hidden_channels=(4, 3), kernel_size=3)


def _values(seed=0, batch=2, grid=(8, 16)):
    values = {name: _field(seed + i, (batch, *grid, c)) for i, (name, c) in enumerate(MODALITIES)}
    lat = np.arange(grid[0]).reshape(-1, 1, 1)
    lon = np.arange(grid[1]).reshape(1, -1, 1)
    land = jnp.asarray((lat >= 2) & (lat < 5) & (lon < 6))  # no sea surface temperature over "land"
    values["sst"] = jnp.where(land, jnp.nan, values["sst"])
    values["obs"] = values["obs"].at[:, ::3, ::2, 1].set(jnp.nan)  # sparse gaps in one channel
    return values


def _variables(model, values, seed=0):
    """Random parameters (and unit running statistics) with the structure of model.init, uncompiled."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), values)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if "batch_stats" in name:
            return jnp.ones(leaf.shape, leaf.dtype) if name.endswith("['var']") else jnp.zeros(leaf.shape, leaf.dtype)
        noise = rng.standard_normal(leaf.shape)
        if name.endswith("['scale']"):
            return jnp.asarray(1.0 + 0.1 * noise, dtype=leaf.dtype)
        scale = 1.0 / math.sqrt(math.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 0.1
        return jnp.asarray(noise * scale, dtype=leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


# One BatchNorm model shared by most tests, with its jitted eval/train functions compiled once per module.
MODEL = MultimodalAutoencoder(MODALITIES, downsample=2, **SMALL)
VARIABLES = _variables(MODEL, _values())
EVAL = jit(MODEL.apply)


def _train(variables, values, masks):
    return MODEL.apply(variables, values, masks, train=True, mutable=["batch_stats"])


TRAIN = jit(_train)


@pytest.mark.parametrize("downsample, norm", [(1, "batch"), (2, "none"), (4, "group")])
def test_shapes_and_structure(downsample, norm):
    model = MultimodalAutoencoder(MODALITIES, downsample=downsample, norm=norm, **SMALL)
    values = _values()
    variables = jax.eval_shape(model.init, jax.random.key(0), values)
    z, rec = jax.eval_shape(model.apply, variables, values)
    assert z.shape == (2, 8 // downsample, 16 // downsample, 2)
    assert {k: v.shape for k, v in rec.items()} == {k: v.shape for k, v in values.items()}
    assert set(variables) == ({"params", "batch_stats"} if norm == "batch" else {"params"})
    params = variables["params"]
    assert set(params) == {"encoder", "trunk", "heads_state", "heads_sst", "heads_obs"}
    # Encoder input: values and a validity mask for every channel of every modality.
    assert params["encoder"]["conv_0"]["Conv_0"]["kernel"].shape == (3, 3, 2 * (2 + 1 + 3), 4)
    assert params["encoder"]["conv_2"]["Conv_0"]["kernel"].shape == (3, 3, 3, 2)  # -> latent, no norm after
    assert set(params["encoder"]) == {"conv_0", "norm_0", "conv_1", "norm_1", "conv_2"} - (
        set() if norm != "none" else {"norm_0", "norm_1"}
    )
    assert params["heads_obs"]["conv_1"]["Conv_0"]["kernel"].shape == (3, 3, 4, 3)


def test_leading_batch_dims_match_flattened_call():
    values = _values()
    z, rec = EVAL(VARIABLES, values)
    z2, rec2 = EVAL(VARIABLES, jax.tree.map(lambda v: v[None], values))
    np.testing.assert_allclose(z2[0], z, atol=1e-6)
    np.testing.assert_allclose(rec2["obs"][0], rec["obs"], atol=1e-6)


def test_masked_points_have_no_influence_and_nan_does_not_leak():
    values = _values()
    z, rec = EVAL(VARIABLES, values)
    assert bool(jnp.all(jnp.isfinite(z))) and all(bool(jnp.all(jnp.isfinite(v))) for v in rec.values())
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in TRAIN(VARIABLES, values, None)[0][1].values())
    # Also op by op: XLA may rewrite `x * mask` into a select, which would hide a NaN leak under jit only.
    np.testing.assert_allclose(MODEL.apply(VARIABLES, values, method=MODEL.encode), z, rtol=1e-5, atol=1e-5)

    # Replacing the NaN by arbitrary numbers and passing the same validity as masks changes nothing.
    masks = {name: jnp.isfinite(v) for name, v in values.items()}
    filled = {name: jnp.where(masks[name], v, 1e4) for name, v in values.items()}
    z2, rec2 = EVAL(VARIABLES, filled, masks)
    np.testing.assert_array_equal(z2, z)
    np.testing.assert_array_equal(rec2["sst"], rec["sst"])
    # Without the masks the filled values are seen: the check above is not vacuous.
    assert float(jnp.max(jnp.abs(EVAL(VARIABLES, filled)[0] - z))) > 1e-2

    # An explicit mask can also hide finite values.
    hide = {**masks, "state": jnp.ones((2, 8, 16, 2), bool).at[:, :4].set(False)}
    z_hidden, _ = EVAL(VARIABLES, values, hide)
    z_changed, _ = EVAL(VARIABLES, {**values, "state": values["state"].at[:, :4].add(7.0)}, hide)
    np.testing.assert_array_equal(z_changed, z_hidden)
    assert float(jnp.max(jnp.abs(z_hidden - z))) > 1e-3

    # Gradients w.r.t. every parameter stay finite with NaN in the data (training mode, masked loss).
    def loss(params):
        (z, rec), _ = _train({**VARIABLES, "params": params}, values, None)
        return sum(masked_mse(rec[name], values[name]) for name in rec)

    value, grads = jit(jax.value_and_grad(loss))(VARIABLES["params"])
    assert bool(jnp.isfinite(value))
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        g = np.asarray(g)  # numpy: eager jnp ops would compile once per leaf shape
        assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
        assert np.max(np.abs(g)) > 0.0, jax.tree_util.keystr(path)


def test_batchnorm_state():
    values = _values()
    # train=True normalises with batch statistics and updates the running averages (momentum 0.9).
    (z, _), updates = TRAIN(VARIABLES, values, None)
    assert set(updates) == {"batch_stats"}
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(VARIABLES["batch_stats"])
    channels = []
    for name, _ in MODALITIES:
        valid = jnp.isfinite(values[name])
        channels += [jnp.where(valid, values[name], 0.0), valid.astype(jnp.float32)]
    first = Conv(4, 3, strides=2, padding_modes=("edge", "circular")).apply(
        {"params": VARIABLES["params"]["encoder"]["conv_0"]}, jnp.concatenate(channels, axis=-1)
    )
    new = updates["batch_stats"]["encoder"]["norm_0"]["BatchNorm_0"]
    np.testing.assert_allclose(new["mean"], 0.1 * jnp.mean(first, axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new["var"], 0.9 + 0.1 * jnp.var(first, axis=(0, 1, 2)), rtol=1e-4)

    # train=False uses the running averages: an example's output ignores the rest of the batch ...
    other = {name: v.at[1].set(3.0 * v[0] + 1.0) for name, v in values.items()}
    z_eval, _ = EVAL(VARIABLES, values)
    np.testing.assert_allclose(EVAL(VARIABLES, other)[0][0], z_eval[0], atol=1e-6)
    # ... while in training mode it does not.
    (z_train_other, _), _ = TRAIN(VARIABLES, other, None)
    assert float(jnp.max(jnp.abs(z_train_other[0] - z[0]))) > 1e-3
    # The updated running statistics are then used in evaluation.
    z_updated, _ = EVAL({**VARIABLES, **updates}, values)
    assert float(jnp.max(jnp.abs(z_updated - z_eval))) > 1e-3


def test_decode_modality_equals_decode():
    model = MultimodalAutoencoder(MODALITIES, downsample=4, norm="group", **SMALL)
    variables = _variables(model, _values())
    z = _field(9, (2, 2, 4, 2))
    decoded = jit(functools.partial(model.apply, method=model.decode))(variables, z)
    for name, channels in MODALITIES:
        single = jit(functools.partial(model.apply, method=model.decode_modality), static_argnums=2)(variables, z, name)
        assert single.shape == (2, 8, 16, channels)
        np.testing.assert_allclose(single, decoded[name], atol=1e-6)
    assert float(jnp.max(jnp.abs(decoded["state"][..., :1] - decoded["sst"]))) > 1e-3  # distinct heads
    with pytest.raises(ValueError, match="unknown modality 'wind'"):
        model.apply(variables, z, "wind", method=model.decode_modality)
    with pytest.raises(ValueError, match=r"latent of shape \(2, 2, 4, 3\)"):
        model.apply(variables, jnp.zeros((2, 2, 4, 3)), method=model.decode)


def test_input_validation_names_the_modality():
    model = MultimodalAutoencoder(MODALITIES, downsample=4, **SMALL)
    values = _values()
    init = lambda v, masks=None: jax.eval_shape(model.init, jax.random.key(0), v, masks)  # noqa: E731
    with pytest.raises(ValueError, match=r"missing \['sst'\]"):
        init({k: v for k, v in values.items() if k != "sst"})
    with pytest.raises(ValueError, match=r"unknown \['wind'\]"):
        init({**values, "wind": values["sst"]})
    with pytest.raises(ValueError, match=r"modality 'obs' has shape \(2, 8, 16, 2\), expected \(2, 8, 16, 3\)"):
        init({**values, "obs": values["obs"][..., :2]})
    with pytest.raises(ValueError, match=r"modality 'sst' has shape \(2, 8, 12, 1\)"):
        init({**values, "sst": values["sst"][:, :, :12]})
    with pytest.raises(ValueError, match="not divisible by downsample=4"):
        init({k: v[:, :6] for k, v in values.items()})
    with pytest.raises(ValueError, match="mask of modality 'obs'"):
        init(values, {"obs": jnp.ones((2, 8, 16, 2), bool)})
    with pytest.raises(ValueError, match="downsample must be a power of two"):
        jax.eval_shape(MultimodalAutoencoder(MODALITIES, downsample=8, **SMALL).init, jax.random.key(0), values)
    with pytest.raises(ValueError, match="state modality 'state'"):
        jax.eval_shape(MultimodalAutoencoder((("u", 1),)).init, jax.random.key(0), {"u": values["sst"]})
    with pytest.raises(ValueError, match="unknown norm"):
        jax.eval_shape(MultimodalAutoencoder(MODALITIES, norm="layer").init, jax.random.key(0), values)


def test_masked_mse():
    mse = jit(masked_mse)
    pred = jnp.array([[1.0, 2.0], [3.0, 4.0]], dtype=jnp.float32)
    target = jnp.array([[0.0, jnp.nan], [1.0, 10.0]], dtype=jnp.float32)
    mask = jnp.array([[True, False], [True, False]])
    np.testing.assert_allclose(mse(pred, target, mask), (1.0 + 4.0) / 2)
    # Default mask: the finite targets; a NaN under a True mask is still ignored.
    np.testing.assert_allclose(mse(pred, target), (1.0 + 4.0 + 36.0) / 3)
    np.testing.assert_allclose(mse(pred, target, jnp.ones((2, 2), bool)), (1.0 + 4.0 + 36.0) / 3)
    grad = jit(jax.grad(masked_mse))(pred, target, mask)
    np.testing.assert_allclose(grad, [[1.0, 0.0], [2.0, 0.0]])
    assert float(mse(pred, target, jnp.zeros((2, 2), bool))) == 0.0
    # A per-point mask broadcasts over channels.
    pred3, target3 = jnp.stack([pred] * 3, axis=-1), jnp.stack([target] * 3, axis=-1)
    np.testing.assert_allclose(mse(pred3, target3, mask[..., None]), 2.5)
