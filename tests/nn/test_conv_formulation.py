"""The padding gather and the loop-friendly convolution derivative equal the plain formulation they replace.

``_reference_pad`` and ``_ReferenceConv`` are the previous implementation (flip, roll and concatenate for the
poles, ``jnp.pad`` per axis, then a ``VALID`` convolution): values, gradients and parameter trees must match
it, so that trained checkpoints keep loading and giving the same outputs.
"""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import slams_jax.nn.autoencoder as autoencoder
import slams_jax.nn.unet as unet
from slams_jax.nn import layers
from slams_jax.nn.layers import Conv, pad_spatial
from helpers import _field, _params

NP_MODES = {"circular": "wrap", "zeros": "constant", "edge": "edge", "reflect": "reflect"}


def _reference_pad(x, pads, modes):
    n = len(modes)
    for i, (mode, (lo, hi)) in enumerate(zip(modes, pads)):
        if mode == "pole":
            lat, lon = x.shape[-3], x.shape[-2]
            across = jnp.roll(jnp.flip(x, axis=-3), lon // 2, axis=-2)
            x = jnp.concatenate([across[..., lat - lo :, :, :], x, across[..., :hi, :, :]], axis=-3)
        else:
            widths = [(0, 0)] * x.ndim
            widths[x.ndim - 1 - n + i] = (lo, hi)
            x = jnp.pad(x, widths, mode=NP_MODES[mode])
    return x


class _ReferenceConv(nn.Module):
    features: int
    kernel_size: int
    strides: int = 1
    padding_modes: tuple = ("circular", "circular")
    use_bias: bool = True
    compute_dtype: str | None = None  # the networks pass it; float32 (None) only

    @nn.compact
    def __call__(self, x):
        assert self.compute_dtype is None
        n = len(self.padding_modes)
        x = _reference_pad(x, [((self.kernel_size - 1) // 2, self.kernel_size // 2)] * n, self.padding_modes)
        return nn.Conv(self.features, (self.kernel_size,) * n, strides=self.strides, padding="VALID",
                       use_bias=self.use_bias)(x)


_ReferenceConv.__name__ = "Conv"  # flax names submodules after their class: the same parameter tree


LAT = ("circular", "zeros", "edge", "reflect", "pole")
LON = ("circular", "zeros", "edge", "reflect")


@pytest.mark.parametrize("lat_mode, lon_mode", list(itertools.product(LAT, LON)))
def test_pad_spatial_equals_the_reference_formulation(lat_mode, lon_mode):
    shape = (2, 3, 5, 8, 2) if lat_mode == "pole" else (2, 3, 5, 7, 2)  # pole: even longitudes; batch dims
    x = _field(0, shape)
    for pads in ([(1, 1), (1, 1)], [(2, 1), (0, 3)], [(0, 2), (2, 0)], [(3, 3), (4, 4)], [(5, 4), (1, 0)]):
        got = pad_spatial(x, pads, (lat_mode, lon_mode))
        np.testing.assert_array_equal(got, _reference_pad(x, pads, (lat_mode, lon_mode)), err_msg=str(pads))
    for mode in LON:  # 1-D, odd, and wider than the axis for the periodic one
        for pads in [(1, 1), (2, 3), (0, 4)] + ([(6, 9)] if mode == "circular" else []):
            y = _field(1, (2, 5, 3))
            np.testing.assert_array_equal(pad_spatial(y, [pads], (mode,)), _reference_pad(y, [pads], (mode,)))


def _primitives(fn, *args):
    """Every primitive of ``fn``'s jaxpr, nested calls (``jit``, ``custom_jvp_call``) included."""

    def walk(jaxpr):
        for e in jaxpr.eqns:
            yield str(e.primitive)
            for v in e.params.values():
                inner = getattr(v, "jaxpr", v)
                if hasattr(inner, "eqns"):
                    yield from walk(inner)

    return list(walk(jax.make_jaxpr(fn)(*args).jaxpr))


def test_padding_is_one_gather_and_zeros_go_into_the_convolution():
    x = _field(2, (2, 6, 8, 3))
    ops = _primitives(lambda x: pad_spatial(x, [(1, 1), (1, 1)], ("pole", "circular")), x)
    assert ops.count("gather") == 1 and not {"concatenate", "rev", "slice", "pad"} & set(ops)
    conv = Conv(4, 3, padding_modes=("zeros", "circular"))
    params = _params(conv, x)
    ops = _primitives(lambda x: conv.apply(params, x), x)
    assert ops.count("gather") == 1 and "pad" not in ops and "concatenate" not in ops


CASES = [(k, s, modes) for k in (3, 4, 5) for s in (1, 2)
         for modes in (("pole", "circular"), ("circular", "circular"), ("zeros", "circular"), ("edge", "reflect"))]


@pytest.mark.parametrize("kernel, stride, modes", CASES)
def test_conv_values_gradients_and_parameters_equal_the_reference(kernel, stride, modes):
    x = _field(3, (2, 7, 10, 3))  # odd latitude; even longitude (for "pole")
    new = Conv(4, kernel, strides=stride, padding_modes=modes)
    old = _ReferenceConv(4, kernel, strides=stride, padding_modes=modes)
    params = _params(new, x)
    shapes = lambda p: jax.tree_util.tree_map(jnp.shape, p)
    assert shapes(params) == shapes(jax.eval_shape(old.init, jax.random.key(0), x))  # checkpoints still load
    f_new, f_old = (lambda p, x: new.apply(p, x)), (lambda p, x: old.apply(p, x))
    np.testing.assert_allclose(f_new(params, x), f_old(params, x), rtol=1e-5, atol=1e-5)
    g = _field(4, f_old(params, x).shape)
    (gp_new, gx_new), (gp_old, gx_old) = (jax.vjp(f, params, x)[1](g) for f in (f_new, f_old))
    np.testing.assert_allclose(gx_new, gx_old, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(gp_new), jax.tree_util.tree_leaves(gp_old)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    dx = _field(5, x.shape)
    np.testing.assert_allclose(jax.jvp(lambda x: f_new(params, x), (x,), (dx,))[1],
                               jax.jvp(lambda x: f_old(params, x), (x,), (dx,))[1], rtol=1e-5, atol=1e-5)


def test_conv_derivatives_inside_loops_vmap_linearize_and_second_order():
    x = _field(6, (2, 6, 8, 3))
    new, old = Conv(3, 3, padding_modes=("pole", "circular")), _ReferenceConv(3, 3, padding_modes=("pole", "circular"))
    params = _params(new, x)

    def loop(conv):  # what a sampler does: a vjp per step of a while loop, one trajectory vmapped
        step = lambda i, x: x - 0.1 * jax.vjp(lambda x: jnp.tanh(conv.apply(params, x)), x)[1](x)[0]
        return jax.jit(jax.vmap(lambda x: jax.lax.fori_loop(0, 3, step, x[None])[0]))(x)

    np.testing.assert_allclose(loop(new), loop(old), rtol=1e-5, atol=1e-5)
    y, lin = jax.linearize(lambda x: new.apply(params, x), x)  # MMPS linearizes the decoder this way
    g = _field(7, y.shape)
    np.testing.assert_allclose(jax.linear_transpose(lin, x)(g)[0],
                               jax.vjp(lambda x: old.apply(params, x), x)[1](g)[0], rtol=1e-5, atol=1e-5)
    second = lambda conv: jax.grad(lambda x: jnp.sum(jax.grad(lambda x: jnp.sum(conv.apply(params, x) ** 3))(x) ** 2))(x)
    np.testing.assert_allclose(second(new), second(old), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU layout rule")
def test_input_gradient_in_a_loop_is_a_canonical_convolution():
    # XLA:CPU puts convolutions into its fast kernel layout (kernel dims 01io) only at top level: the plain
    # transpose, 01oi, inside a while loop runs a naive loop ~25x slower (93% of a sampling call).
    x = _field(8, (1, 6, 8, 3))
    text = {}
    for name, conv in (("new", Conv(3, 3)), ("old", _ReferenceConv(3, 3))):
        params = _params(conv, x)
        step = lambda i, x: jax.vjp(lambda x: conv.apply(params, x), x)[1](x)[0]
        text[name] = jax.jit(lambda x: jax.lax.fori_loop(0, 2, step, x)).lower(x).compile().as_text()
    assert "01oi" in text["old"]  # the case exists: the test can tell
    assert "01oi" not in text["new"] and "01io" in text["new"]


@pytest.mark.parametrize("modes", [("pole", "circular"), ("circular", "circular")])
def test_networks_are_unchanged(monkeypatch, modes):
    x = _field(9, (2, 9, 16, 4))  # odd latitude: the U-Net crops at two levels
    net = unet.ScoreUNet(4, embedding=6, hidden_channels=(3, 4, 5), hidden_blocks=(1, 1, 1), padding_modes=modes)
    ae = autoencoder.MultimodalAutoencoder((("state", 4),), latent_channels=2, hidden_channels=(3, 3),
                                           downsample=2, padding_modes=modes, norm="none")
    t = jnp.array([0.3, 0.8], jnp.float32)
    z = _field(10, (2, 8, 8, 2))
    xe = _field(11, (2, 16, 16, 4))
    p_net, p_ae = _params(net, x, t), _params(ae, {"state": xe})
    run = lambda: (net.apply(p_net, x, t), ae.apply(p_ae, z, method="decode")["state"],
                   jax.grad(lambda x: jnp.sum(net.apply(p_net, x, t) ** 2))(x))
    new = run()
    for module in (unet, autoencoder):
        monkeypatch.setattr(module, "Conv", _ReferenceConv)
    old = run()
    for a, b in zip(new, old):  # float32 rounding of the largest value (the gradient reaches ~1e3)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * float(jnp.max(jnp.abs(b))))
    assert layers.Conv is Conv  # the library's own class was left alone
