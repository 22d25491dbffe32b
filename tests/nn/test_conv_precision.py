"""``compute_dtype="bfloat16"``: bf16 convolutions, float32 parameters, results and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import conv_dtypes
from slams_jax.nn.autoencoder import MultimodalAutoencoder
from slams_jax.nn.layers import Conv
from slams_jax.nn.unet import ScoreUNet


def _random_init(module, *args, **kwargs):
    """Random float32 variables of ``module`` without compiling its initializer (20 s on a CPU)."""
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *args, **kwargs)
    return jax.tree_util.tree_map(lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype), shapes)


def _relative(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("modes", [("edge", "circular"), ("zeros", "circular"), ("pole", "circular")])
def test_conv_sums_bf16_products_in_float32(modes):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 16, 3))
    f32, bf16 = Conv(5, 3, padding_modes=modes), Conv(5, 3, padding_modes=modes, compute_dtype="bfloat16")
    params = f32.init(jax.random.PRNGKey(1), x)
    assert jax.tree_util.tree_structure(bf16.init(jax.random.PRNGKey(1), x)) == jax.tree_util.tree_structure(params)
    y32, y16 = f32.apply(params, x), bf16.apply(params, x)
    assert y16.dtype == jnp.float32
    assert 1e-4 < _relative(y16, y32) < 2e-2  # rounded operands (bf16 keeps 8 bits), not garbage


def test_unet_forward_and_input_gradient_convolve_bf16_only():
    net32 = ScoreUNet(channels=4, embedding=16, hidden_channels=(8, 16), hidden_blocks=(1, 1))
    net16 = net32.clone(compute_dtype="bfloat16")
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 16, 4))
    t = jnp.full((2,), 0.3, jnp.float32)
    params = _random_init(net32, x, t)
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), params)
    assert shapes == jax.tree_util.tree_map(lambda a: (a.shape, a.dtype),
                                            jax.eval_shape(net16.init, jax.random.PRNGKey(1), x, t))
    assert all(d == jnp.float32 for _, d in jax.tree_util.tree_leaves(shapes, is_leaf=lambda v: isinstance(v, tuple)))

    def grad(net):
        return jax.jit(lambda x: jax.grad(lambda x: jnp.sum(jnp.square(net.apply(params, x, t))))(x))

    convs = conv_dtypes(grad(net16), x)
    assert len(convs) >= 2 * 9 and all(ins == ("bfloat16", "bfloat16") for ins, _ in convs), convs
    assert all(ins == ("float32", "float32") for ins, _ in conv_dtypes(grad(net32), x))
    y16, y32 = jax.jit(net16.apply)(params, x, t), jax.jit(net32.apply)(params, x, t)
    assert y16.dtype == jnp.float32 and 1e-4 < _relative(y16, y32) < 5e-2
    g16, g32 = grad(net16)(x), grad(net32)(x)
    assert g16.dtype == jnp.float32 and _relative(g16, g32) < 0.1  # measured 0.058 (random weights, 10 convs deep)


def test_autoencoder_decoder_in_bf16_keeps_its_float32_variables():
    model = MultimodalAutoencoder(modalities=(("state", 3), ("aux", 2)), latent_channels=2, hidden_channels=(6, 5),
                                  kernel_size=3, norm="group")
    fields = {"state": jnp.ones((2, 8, 16, 3)), "aux": jnp.zeros((2, 8, 16, 2))}
    variables = _random_init(model, fields)
    z = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 16, 2))
    half = model.clone(compute_dtype="bfloat16")
    decode = lambda m: jax.jit(lambda v, z: m.apply(v, z, "state", method="decode_modality"))
    y32, y16 = decode(model)(variables, z), decode(half)(variables, z)
    assert y16.dtype == jnp.float32 and 1e-4 < _relative(y16, y32) < 5e-2
    convs = conv_dtypes(lambda z: half.apply(variables, z, "state", method="decode_modality"), z)
    assert convs and all(ins == ("bfloat16", "bfloat16") and out == "float32" for ins, out in convs)
    encode = lambda m: jax.jit(lambda v, f: m.apply(v, f, method="encode"))
    np.testing.assert_allclose(encode(half)(variables, fields), encode(model)(variables, fields), rtol=5e-2, atol=5e-2)
