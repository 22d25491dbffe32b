"""Building blocks shared by the score network and the autoencoder.

Padding
-------
Convolutions here never rely on ``nn.Conv``'s implicit zero padding: every spatial axis is padded explicitly
with :func:`pad_spatial` and the convolution itself is ``VALID``. This makes the boundary condition of each
axis a model choice, which matters on the sphere:

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

Time embedding
--------------
Following SDA (Rozet & Louppe, 2023, ``sda/nn.py``), a diffusion time ``t in [0, 1]`` is embedded by the
Fourier features ``[cos(pi k t), sin(pi k t)]_{k=1..K}`` (all cosines first, then all sines) followed by an
MLP ``Dense(hidden) -> SiLU -> Dense(features)``.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from slams_jax._types import Array, Embedding, Float, Time

PaddingMode = Literal["circular", "zeros", "edge", "reflect", "pole"]

_JNP_PAD_MODES = {"circular": "wrap", "zeros": "constant", "edge": "edge", "reflect": "reflect"}
_VALID_MODES = (*_JNP_PAD_MODES, "pole")

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


def _pad_pole(x: Float[Array, "*batch lat lon channel"], before: int, after: int) -> Array:
    lat, lon = x.shape[-3], x.shape[-2]
    if lon % 2:
        raise ValueError(
            f"'pole' padding needs an even number of longitudes (to shift by half of them); got {lon} "
            f"(input shape {x.shape})"
        )
    if before > lat or after > lat:
        raise ValueError(
            f"'pole' padding of ({before}, {after}) rows exceeds the {lat} latitude rows of shape {x.shape}"
        )
    # Reversed rows rotated by 180 degrees of longitude: reversed[i] is row lat-1-i seen across a pole.
    across = jnp.roll(jnp.flip(x, axis=-3), lon // 2, axis=-2)
    north = across[..., lat - before :, :, :]
    south = across[..., :after, :, :]
    return jnp.concatenate([north, x, south], axis=-3)


def pad_spatial(
    x: Float[Array, "*batch *spatial channel"],
    pads: Sequence[tuple[int, int]],
    modes: Sequence[PaddingMode],
) -> Float[Array, "*batch *padded channel"]:
    """Pad each spatial axis of a channels-last array with its own boundary condition.

    Args:
        x: ``(*batch, *spatial, channel)``; the spatial axes are the ``len(modes)`` axes before the last.
        pads: ``(before, after)`` widths, one pair per spatial axis.
        modes: one :data:`PaddingMode` per spatial axis (e.g. ``("edge", "circular")`` for (lat, lon)).
            ``"pole"`` is only valid for the latitude axis of a 2-D grid with an even number of longitudes.

    Returns:
        ``(*batch, *padded, channel)`` with ``padded[i] = spatial[i] + before_i + after_i``.
    """
    modes = tuple(modes)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    n = len(modes)
    if len(pads) != n:
        raise ValueError(f"got {len(pads)} padding widths for {n} padding modes {modes}")
    if x.ndim < n + 1:
        raise ValueError(f"input of shape {x.shape} has fewer than {n} spatial axes plus a channel axis")
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
    # Latitude first: pole padding rolls whole rows, and the circular longitude padding applied afterwards
    # then fills the corners consistently.
    for i, (mode, (lo, hi)) in enumerate(zip(modes, pads)):
        if lo == 0 and hi == 0:
            continue
        axis = x.ndim - 1 - n + i
        if mode == "pole":
            x = _pad_pole(x, lo, hi)
        else:
            widths = [(0, 0)] * x.ndim
            widths[axis] = (lo, hi)
            x = jnp.pad(x, widths, mode=_JNP_PAD_MODES[mode])
    return x


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
    """

    features: int
    kernel_size: int | tuple[int, ...]
    strides: int | tuple[int, ...] = 1
    padding_modes: Sequence[PaddingMode] = ("circular", "circular")
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: Float[Array, "*batch *spatial c_in"]) -> Float[Array, "*batch *out c_out"]:
        n = len(self.padding_modes)
        kernel = _as_tuple(self.kernel_size, n, "kernel_size")
        strides = _as_tuple(self.strides, n, "strides")
        x = pad_spatial(x, [((k - 1) // 2, k // 2) for k in kernel], self.padding_modes)
        if _cpu_valid_workaround() and all(s == 1 for s in strides):
            # XLA:CPU (YNNPACK) runs unpadded stride-1 convolutions ~2.5x slower than padded ones; one extra
            # zero row/column in front (whose outputs are cropped) selects the fast kernel, same values.
            y = nn.Conv(self.features, kernel, padding=((1, 0),) * n, use_bias=self.use_bias)(x)
            return y[(Ellipsis, *([slice(1, None)] * n), slice(None))]
        return nn.Conv(self.features, kernel, strides=strides, padding="VALID", use_bias=self.use_bias)(x)


def _cpu_valid_workaround() -> bool:
    return jax.default_backend() == "cpu"


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
