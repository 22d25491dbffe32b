"""Building blocks shared by the score network and the autoencoder.

Padding
-------
Convolutions here never rely on ``nn.Conv``'s implicit zero padding alone: every spatial axis has its own
boundary condition, a model choice, which matters on the sphere:

* longitude is periodic -> ``"circular"``;
* latitude is not; ``"zeros"``, ``"edge"`` or ``"reflect"`` keep the poles apart, and ``"pole"`` continues the
  field across the pole. On a regular latitude-longitude grid the point at distance ``d`` beyond a pole,
  along the meridian ``lon``, is the point at distance ``d`` before the pole on the meridian ``lon + 180°``.
  With ``H`` latitude rows whose outermost rows lie half a row spacing from the poles (cell-centred grids,
  e.g. 32x64 at 5.625°), the padded row ``-k`` (``k = 1, 2, ...``) is therefore row ``k - 1`` rolled by
  ``W / 2`` longitudes, and symmetrically at the other pole: row ``H - 1 + k`` is row ``H - k`` rolled.
  (For grids that *contain* the pole rows, e.g. 121x240 at 1.5°, the exact neighbour would be row ``k``;
  the cell-centred convention then repeats the degenerate pole row once, an O(grid spacing) shift.)

A kernel of size ``k`` is padded by ``(k - 1) // 2`` before and ``k // 2`` after, so a stride-1 convolution
keeps the grid size and a stride-2 convolution maps ``n`` points to ``ceil(n / 2)`` with output ``i``
centred on input ``2 i`` (as PyTorch's ``Conv(padding=k // 2)`` for odd ``k``).

Every boundary condition but ``"zeros"`` maps each padded point to one grid point, so :func:`pad_spatial` is
a single gather with an index computed once in numpy (one op forward, one scatter-add backward, where chains
of slices, flips, rolls and concatenates cost hundreds of ops per network and slow its compilation); in
:class:`Conv` the ``"zeros"`` axes are padded by the convolution itself.

Time embedding
--------------
Following SDA (Rozet & Louppe, 2023, ``sda/nn.py``), a diffusion time ``t in [0, 1]`` is embedded by the
Fourier features ``[cos(pi k t), sin(pi k t)]_{k=1..K}`` (all cosines first, then all sines) followed by an
MLP ``Dense(hidden) -> SiLU -> Dense(features)``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype
from jax.custom_derivatives import SymbolicZero

from slams_jax._types import Array, Embedding, Float, Time

PaddingMode = Literal["circular", "zeros", "edge", "reflect", "pole"]

_NP_PAD_MODES = {"circular": "wrap", "edge": "edge", "reflect": "reflect"}
_VALID_MODES = ("circular", "zeros", "edge", "reflect", "pole")

_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "silu": nn.silu,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
}


def activation_fn(name: str) -> Callable[[Array], Array]:
    """Elementwise activation by name: one of ``"silu"``, ``"relu"``, ``"gelu"``, ``"tanh"``."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}") from None


def _source_index(size: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Grid index each padded position of one axis copies (-1: a zero); ``"pole"`` rows before the roll."""
    if mode == "pole":
        rows = np.arange(-lo, size + hi)
        return np.where(rows < 0, -rows - 1, np.where(rows >= size, 2 * size - 1 - rows, rows))
    if mode == "zeros":
        return np.pad(np.arange(size), (lo, hi), constant_values=-1)
    return np.pad(np.arange(size), (lo, hi), mode=_NP_PAD_MODES[mode])  # jnp.pad's arithmetic is numpy's


@functools.lru_cache(maxsize=None)
def _padding_index(sizes: tuple[int, ...], pads: tuple[tuple[int, int], ...], modes: tuple[str, ...]) -> np.ndarray:
    """Flat grid index of every padded point, row-major; ``prod(sizes)`` (out of bounds) marks a zero."""
    grids = np.meshgrid(*(_source_index(n, lo, hi, m) for n, (lo, hi), m in zip(sizes, pads, modes)), indexing="ij")
    if modes[0] == "pole":  # rows beyond a pole are seen half way round: shift their longitudes by W / 2
        lat, lon = grids
        rows = np.arange(-pads[0][0], sizes[0] + pads[0][1])[:, None]
        crossed = ((rows < 0) | (rows >= sizes[0])) & (lon >= 0)
        grids = [lat, np.where(crossed, (lon + sizes[1] // 2) % sizes[1], lon)]
    zero = np.any([g < 0 for g in grids], axis=0)
    flat = np.ravel_multi_index([np.maximum(g, 0) for g in grids], sizes)
    index = np.where(zero, math.prod(sizes), flat).astype(np.int32).reshape(-1)
    index.flags.writeable = False
    return index


def _check_padding(shape: tuple[int, ...], pads: tuple[tuple[int, int], ...], modes: tuple[str, ...]) -> None:
    n = len(modes)
    if len(pads) != n:
        raise ValueError(f"got {len(pads)} padding widths for {n} padding modes {modes}")
    if len(shape) < n + 1:
        raise ValueError(f"input of shape {shape} has fewer than {n} spatial axes plus a channel axis")
    for i, (mode, (lo, hi)) in enumerate(zip(modes, pads)):
        if mode not in _VALID_MODES:
            raise ValueError(f"unknown padding mode {mode!r} for spatial axis {i}; expected one of {_VALID_MODES}")
        if lo < 0 or hi < 0:
            raise ValueError(f"negative padding {(lo, hi)} for spatial axis {i}")
        if mode == "pole" and (n != 2 or i != 0):
            raise ValueError(
                f"'pole' padding is only defined for the latitude axis (first of two spatial axes); "
                f"got it for spatial axis {i} of modes {modes}"
            )
    if modes and modes[0] == "pole" and any(pads[0]):
        lat, lon = shape[-3], shape[-2]
        if lon % 2:
            raise ValueError(
                f"'pole' padding needs an even number of longitudes (to shift by half of them); got {lon} "
                f"(input shape {shape})"
            )
        if max(pads[0]) > lat:
            raise ValueError(f"'pole' padding of {pads[0]} rows exceeds the {lat} latitude rows of shape {shape}")


def pad_spatial(
    x: Float[Array, "*batch *spatial channel"],
    pads: Sequence[tuple[int, int]],
    modes: Sequence[PaddingMode],
) -> Float[Array, "*batch *padded channel"]:
    """Pad each spatial axis of a channels-last array with its own boundary condition (one gather).

    Args:
        x: ``(*batch, *spatial, channel)``; the spatial axes are the ``len(modes)`` axes before the last.
        pads: ``(before, after)`` widths, one pair per spatial axis.
        modes: one :data:`PaddingMode` per spatial axis (e.g. ``("edge", "circular")`` for (lat, lon)).
            ``"pole"`` is only valid for the latitude axis of a 2-D grid with an even number of longitudes;
            its padded rows are rolled as whole rows, so the longitude padding fills the corners from them.

    Returns:
        ``(*batch, *padded, channel)`` with ``padded[i] = spatial[i] + before_i + after_i``.
    """
    modes = tuple(modes)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    _check_padding(x.shape, pads, modes)
    n = len(modes)
    if not any(lo or hi for lo, hi in pads):
        return x
    if all(m == "zeros" for m, p in zip(modes, pads) if any(p)):
        return jnp.pad(x, [(0, 0)] * (x.ndim - 1 - n) + list(pads) + [(0, 0)])
    lead, sizes = x.shape[: x.ndim - 1 - n], x.shape[x.ndim - 1 - n : -1]
    index = _padding_index(sizes, pads, modes)
    zeros = "zeros" in (m for m, p in zip(modes, pads) if any(p))
    y = jnp.take(x.reshape(lead + (-1, x.shape[-1])), index, axis=-2,
                 mode="fill" if zeros else "clip", fill_value=0 if zeros else None)
    return y.reshape(lead + tuple(s + lo + hi for s, (lo, hi) in zip(sizes, pads)) + x.shape[-1:])


def _as_tuple(value: int | Sequence[int], n: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{what} {value} does not match the {n} spatial axes")
    return value


class Conv(nn.Module):
    """Convolution with explicit per-axis boundary conditions (1-D or 2-D, channels last).

    Attributes:
        features: output channels.
        kernel_size: an int (same for every spatial axis) or one size per axis.
        strides: an int or one stride per axis.
        padding_modes: one :data:`PaddingMode` per spatial axis; their number sets 1-D or 2-D.
        use_bias: add a learned bias.
        compute_dtype: dtype of the convolution's operands (e.g. ``"bfloat16"``); ``None``: the input's. The
            parameters stay float32, the product is accumulated and returned in the input's dtype, so only
            the multiplications are rounded (see :func:`conv_general_dilated`).
    """

    features: int
    kernel_size: int | tuple[int, ...]
    strides: int | tuple[int, ...] = 1
    padding_modes: Sequence[PaddingMode] = ("circular", "circular")
    use_bias: bool = True
    compute_dtype: str | None = None

    @nn.compact
    def __call__(self, x: Float[Array, "*batch *spatial c_in"]) -> Float[Array, "*batch *out c_out"]:
        modes = tuple(self.padding_modes)
        n = len(modes)
        kernel = _as_tuple(self.kernel_size, n, "kernel_size")
        strides = _as_tuple(self.strides, n, "strides")
        pads = tuple(((k - 1) // 2, k // 2) for k in kernel)
        dtype = x.dtype
        if self.compute_dtype is not None:
            x = x.astype(self.compute_dtype)  # before the padding gather: it moves half the bytes
        # "zeros" axes are padded by the convolution itself; the others by one gather
        x = pad_spatial(x, [(0, 0) if m == "zeros" else p for m, p in zip(modes, pads)], modes)
        implicit = [p if m == "zeros" else (0, 0) for m, p in zip(modes, pads)]
        crop = _cpu_valid_workaround() and all(s == 1 for s in strides) and not any(map(any, implicit))
        if crop:
            # XLA:CPU (YNNPACK) runs unpadded stride-1 convolutions 15-20% slower than padded ones (measured on
            # the U-Net, forward and training step); one zero row/column in front, whose outputs are cropped,
            # selects the fast kernel, same values.
            implicit = [(1, 0)] * n
        convolve = None
        if _cpu() or self.compute_dtype is not None:
            convolve = functools.partial(conv_general_dilated, result_dtype=dtype, loop_layout=_cpu())
        # float32 parameters; the kernel is rounded to the compute dtype for the product, the bias is added to
        # the (input-dtype) result as it is
        y = nn.Conv(self.features, kernel, strides=strides, padding=implicit, use_bias=self.use_bias,
                    param_dtype=jnp.float32, promote_dtype=_promoter(self.compute_dtype),
                    conv_general_dilated=convolve)(x)
        return y[(Ellipsis, *([slice(1, None)] * n), slice(None))] if crop else y


@functools.lru_cache(maxsize=None)
def _promoter(compute_dtype: str | None):
    """flax's ``promote_dtype`` hook: inputs and kernel in ``compute_dtype``, the bias untouched."""
    if compute_dtype is None:
        return promote_dtype  # flax's default: every operand in their common dtype

    def promote(inputs, kernel, bias, dtype=None, inexact=True):
        return [inputs.astype(compute_dtype), kernel.astype(compute_dtype), bias]

    return promote


def _cpu() -> bool:
    return jax.default_backend() == "cpu"


def _cpu_valid_workaround() -> bool:
    return _cpu()


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _convolve(x: Array, kernel: Array, options: tuple, swap: bool) -> Array:
    return jax.lax.conv_general_dilated(x, kernel, **dict(options))


@functools.partial(_convolve.defjvp, symbolic_zeros=True)
def _convolve_jvp(options, swap, primals, tangents):
    (x, kernel), (dx, dkernel) = primals, tangents
    kw = dict(options)
    y = jax.lax.conv_general_dilated(x, kernel, **kw)
    terms = []
    if not isinstance(dx, SymbolicZero):
        # Mixed precision: the input tangent comes out in the operands' dtype and is then widened, so that its
        # transpose (the input gradient) gets a narrow cotangent and convolves narrow operands too; JAX's own
        # rule would widen the kernel to the float32 cotangent instead.
        tkw = {k: v for k, v in kw.items() if k != "preferred_element_type"}
        if swap:
            # The same map, spelled with the kernel's feature axes exchanged: JAX transposes a convolution by
            # exchanging them, so the input gradient comes out in the (spatial, in, out) layout again.
            dn = kw["dimension_numbers"]
            out, inp, *spatial = dn.rhs_spec
            tkw["dimension_numbers"] = dn._replace(rhs_spec=(inp, out, *spatial))
            t = jax.lax.conv_general_dilated(dx, jnp.swapaxes(kernel, out, inp), **tkw)
        else:
            t = jax.lax.conv_general_dilated(dx, kernel, **tkw)
        terms.append(t.astype(y.dtype))
    if not isinstance(dkernel, SymbolicZero):
        terms.append(jax.lax.conv_general_dilated(x, dkernel, **kw))
    return y, (sum(terms[1:], terms[0]) if terms else jnp.zeros_like(y))


def conv_general_dilated(lhs: Array, rhs: Array, window_strides, padding, *, dimension_numbers,
                         result_dtype=None, loop_layout: bool = True, **options) -> Array:
    """``jax.lax.conv_general_dilated`` (same values) whose input gradient XLA:CPU runs fast inside loops.

    JAX transposes a convolution (its input gradient, which guided sampling takes at every step) by exchanging
    the kernel's input and output feature axes. XLA:CPU rewrites convolutions into the layout of its fast
    kernels only in a program's top-level computation, so inside a ``while`` loop (every sampler) that
    gradient ran a naive loop, ~25x slower: 93% of a sampling call. Here the derivative is the same map spelled
    so that its transpose comes out in the fast layout; the forward tangent (``jax.jvp`` inside a loop, e.g.
    MMPS's linearized decoder) takes the exchanged layout instead. The kernel gradient is JAX's own.

    Mixed precision: with ``lhs`` (and ``rhs``) narrower than ``result_dtype`` (bfloat16 operands, a float32
    result), the convolution sums in ``result_dtype`` (``preferred_element_type``). Its input tangent and that
    tangent's transpose (the guidance's gradient) convolve bfloat16 operands to a bfloat16 result, widened at
    once; every other sum of the network (norms, residuals, the guidance's reductions) stays float32.

    Args:
        result_dtype: dtype of the result (default: the operands').
        loop_layout: spell the derivative as above (XLA:CPU); ``False``: the derivative in JAX's layout.
    """
    if result_dtype is not None and jnp.dtype(result_dtype) != lhs.dtype:
        rhs = rhs.astype(lhs.dtype)
        options["preferred_element_type"] = jnp.dtype(result_dtype)
    elif not loop_layout:
        return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, dimension_numbers=dimension_numbers,
                                            **options)
    dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    padding = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    static = (("window_strides", tuple(window_strides)), ("padding", padding), ("dimension_numbers", dn),
              *sorted(options.items()))
    return _convolve(lhs, rhs, static, bool(loop_layout))


def time_features(t: Time, frequencies: int) -> Float[Array, "*batch 2*{frequencies}"]:
    """Fourier features ``[cos(pi k t) for k=1..K] + [sin(pi k t) for k=1..K]`` of ``t`` (``*batch``)."""
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.float32)
    k = jnp.arange(1, frequencies + 1, dtype=t.dtype) * math.pi
    angles = t[..., None] * k.reshape((1,) * t.ndim + (frequencies,))
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class TimeEmbedding(nn.Module):
    """Embedding of a diffusion time ``t in [0, 1]`` (SDA): Fourier features -> Dense -> SiLU -> Dense.

    Attributes:
        features: output size.
        frequencies: number ``K`` of frequencies ``pi k``; the MLP sees ``2 K`` features.
        hidden: width of the MLP.
    """

    features: int
    frequencies: int = 16
    hidden: int = 256

    @nn.compact
    def __call__(self, t: Time) -> Embedding:
        """Map ``t`` (``*batch``) to ``(*batch, features)``."""
        h = time_features(t, self.frequencies)
        h = nn.silu(nn.Dense(self.hidden)(h))
        return nn.Dense(self.features)(h)


__all__ = ["PaddingMode", "pad_spatial", "Conv", "TimeEmbedding", "time_features", "activation_fn"]

