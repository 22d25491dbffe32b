"""Modulated U-Net and the noise-prediction network of the diffusion prior.

Architecture (SDA, Rozet & Louppe 2023, ``sda/nn.py``; reused by SLAMS, Qu et al. 2024). With hidden widths
``h_0 .. h_{L-1}`` and an embedding ``e`` (e.g. of the diffusion time):

* level ``i`` head: ``Conv(C_in -> h_0)`` for ``i = 0``, else the stride-2 ``Conv(h_{i-1} -> h_i)``;
* ``hidden_blocks[i]`` modulated residual blocks on the way down and as many on the way up, each
  ``x + R(x + W_i e)`` with ``W_i e`` a per-channel shift broadcast over space and the residue
  ``R = [LayerNorm over channels] -> Conv -> act -> Conv``;
* the output of every level's descent except the deepest is kept as a skip; on the way up, after the level's
  ascent blocks, level ``i > 0`` ends with its tail ``[LayerNorm] -> nearest upsample x2 -> Conv(h_i -> h_{i-1})``,
  cropped to the skip's grid (so odd sizes such as 121 x 240 work) and added to the skip;
* the network ends with ``Conv(h_0 -> C_out)``.

The LayerNorms (parameter-free, as in SDA) are present only with ``layer_norm=True``. Every convolution uses
the same per-axis ``padding_modes``; with ``"circular"`` longitude and a longitude count divisible by
``2 ** (L - 1)`` the network is equivariant to longitude rolls by multiples of ``2 ** (L - 1)``.

``ScoreUNet`` is SDA's ``ScoreUNet``: ``eps(x, t) = UNet(x, TimeEmbedding(t))``, the noise predictor of the
VP diffusion prior.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from slams_jax._types import Array, Embedding, Float, Time
from slams_jax.nn.layers import Conv, PaddingMode, TimeEmbedding, activation_fn, pad_spatial


def _channel_norm(x: Array) -> Array:
    # SDA normalises over channels without learned affine parameters; the following conv absorbs them.
    return nn.LayerNorm(epsilon=1e-5, use_bias=False, use_scale=False)(x)


def upsample_nearest(x: Float[Array, "batch *spatial channel"], spatial: int) -> Array:
    """Nearest-neighbour upsampling by 2 of the ``spatial`` axes before the channel axis."""
    for axis in range(x.ndim - 1 - spatial, x.ndim - 1):
        x = jnp.repeat(x, 2, axis=axis)
    return x


def match_spatial(x: Float[Array, "batch *spatial channel"], shape: Sequence[int]) -> Array:
    """Crop (at the end) or edge-pad each spatial axis of ``x`` to ``shape``.

    Cropping at the end keeps fine point ``2 i`` and ``2 i + 1`` attached to coarse point ``i``, which is where
    the stride-2 convolution centred coarse point ``i``.
    """
    spatial = len(shape)
    first = x.ndim - 1 - spatial
    slices = [slice(None)] * x.ndim
    for j, size in enumerate(shape):
        slices[first + j] = slice(0, size)
    x = x[tuple(slices)]
    widths = [(0, max(0, size - x.shape[first + j])) for j, size in enumerate(shape)]
    if any(hi for _, hi in widths):
        x = pad_spatial(x, widths, ["edge"] * spatial)
    return x


class ModResidualBlock(nn.Module):
    """``x + R(x + Dense(e))`` with ``R = [LayerNorm] -> Conv -> act -> Conv`` (width preserved)."""

    kernel_size: int
    padding_modes: Sequence[PaddingMode]
    activation: str
    layer_norm: bool
    compute_dtype: str | None = None

    @nn.compact
    def __call__(
        self, x: Float[Array, "batch *spatial channel"], emb: Float[Array, "batch features"]
    ) -> Float[Array, "batch *spatial channel"]:
        channels = x.shape[-1]
        spatial = len(self.padding_modes)
        shift = nn.Dense(channels, name="project")(emb)
        shift = shift.reshape((shift.shape[0],) + (1,) * spatial + (channels,))
        y = x + shift
        if self.layer_norm:
            y = _channel_norm(y)
        conv = dict(kernel_size=self.kernel_size, padding_modes=self.padding_modes, compute_dtype=self.compute_dtype)
        y = Conv(channels, **conv)(y)
        y = activation_fn(self.activation)(y)
        y = Conv(channels, **conv)(y)
        return x + y


class UNet(nn.Module):
    """Modulated U-Net (see module docstring).

    Attributes:
        out_channels: output channels.
        hidden_channels: width of each level.
        hidden_blocks: residual blocks per level, on each of the way down and the way up.
        kernel_size: convolution kernel size (all axes).
        padding_modes: one :data:`~slams_jax.nn.layers.PaddingMode` per spatial axis; their number (1 or 2) is
            the number of spatial axes.
        activation: activation name (see :func:`~slams_jax.nn.layers.activation_fn`).
        layer_norm: parameter-free channel LayerNorm in residues and tails.
        compute_dtype: operand dtype of every convolution (``"bfloat16"``: mixed precision, see
            :class:`~slams_jax.nn.layers.Conv`); ``None``: float32. Parameters, activations, norms and sums
            stay float32, so the parameters are the same either way.
    """

    out_channels: int
    hidden_channels: Sequence[int] = (32, 64, 128)
    hidden_blocks: Sequence[int] = (2, 3, 5)
    kernel_size: int = 3
    padding_modes: Sequence[PaddingMode] = ("circular", "circular")
    activation: str = "silu"
    layer_norm: bool = False
    compute_dtype: str | None = None

    @nn.compact
    def __call__(
        self, x: Float[Array, "*batch *spatial c_in"], emb: Float[Array, "*batch features"]
    ) -> Float[Array, "*batch *spatial c_out"]:
        """Args:
            x: ``(*batch, *spatial, C_in)``.
            emb: ``(*batch, E)``; a lower-rank embedding (e.g. ``(E,)``) is broadcast to ``*batch``.

        Returns:
            ``(*batch, *spatial, out_channels)``.
        """
        if len(self.hidden_channels) != len(self.hidden_blocks) or not self.hidden_channels:
            raise ValueError(
                f"hidden_channels {tuple(self.hidden_channels)} and hidden_blocks {tuple(self.hidden_blocks)} "
                "must be non-empty and of the same length"
            )
        spatial = len(self.padding_modes)
        if x.ndim < spatial + 1:
            raise ValueError(f"input of shape {x.shape} has fewer than {spatial} spatial axes plus channels")
        batch = x.shape[: x.ndim - spatial - 1]
        try:
            emb = jnp.broadcast_to(emb, batch + emb.shape[-1:])
        except ValueError:
            raise ValueError(
                f"embedding of shape {emb.shape} does not match the batch dims {batch} of input {x.shape}"
            ) from None
        x = x.reshape((math.prod(batch),) + x.shape[len(batch) :])
        emb = emb.reshape((math.prod(batch), emb.shape[-1]))

        conv = dict(kernel_size=self.kernel_size, padding_modes=self.padding_modes, compute_dtype=self.compute_dtype)
        block = dict(
            kernel_size=self.kernel_size,
            padding_modes=self.padding_modes,
            activation=self.activation,
            layer_norm=self.layer_norm,
            compute_dtype=self.compute_dtype,
        )
        levels = len(self.hidden_channels)

        skips = []
        for i, (width, blocks) in enumerate(zip(self.hidden_channels, self.hidden_blocks)):
            x = Conv(width, strides=1 if i == 0 else 2, name=f"head_{i}", **conv)(x)
            for j in range(blocks):
                x = ModResidualBlock(name=f"down_{i}_{j}", **block)(x, emb)
            skips.append(x)
        skips.pop()  # the deepest level feeds the ascent directly

        for i in reversed(range(levels)):
            for j in range(self.hidden_blocks[i]):
                x = ModResidualBlock(name=f"up_{i}_{j}", **block)(x, emb)
            if i > 0:
                skip = skips.pop()
                if self.layer_norm:
                    x = _channel_norm(x)
                x = upsample_nearest(x, spatial)
                x = Conv(self.hidden_channels[i - 1], name=f"tail_{i}", **conv)(x)
                x = match_spatial(x, skip.shape[1:-1]) + skip
        x = Conv(self.out_channels, name="tail_0", **conv)(x)
        return x.reshape(batch + x.shape[1:])


class ScoreUNet(nn.Module):
    """Noise-prediction network ``eps(x, t) = UNet(x, TimeEmbedding(t))`` (SDA ``ScoreUNet``).

    Attributes:
        channels: channels of ``x`` (and of the output).
        embedding: size of the time embedding fed to every residual block.
        hidden_channels, hidden_blocks, kernel_size, padding_modes, activation, layer_norm, compute_dtype: see
            :class:`UNet` (the time embedding is float32 in any case).
    """

    channels: int
    embedding: int = 64
    hidden_channels: Sequence[int] = (32, 64, 128)
    hidden_blocks: Sequence[int] = (2, 3, 5)
    kernel_size: int = 3
    padding_modes: Sequence[PaddingMode] = ("circular", "circular")
    activation: str = "silu"
    layer_norm: bool = False
    compute_dtype: str | None = None

    @nn.compact
    def __call__(self, x: Float[Array, "*batch *spatial channel"], t: Time) -> Float[Array, "*batch *spatial channel"]:
        """Args:
            x: noisy state ``(*batch, *spatial, channels)``.
            t: diffusion time ``(*batch,)`` in ``[0, 1]`` (a scalar is broadcast).

        Returns:
            predicted noise, same shape as ``x``.
        """
        if x.shape[-1] != self.channels:
            raise ValueError(f"input of shape {x.shape} has {x.shape[-1]} channels, expected {self.channels}")
        emb: Embedding = TimeEmbedding(self.embedding)(t)
        return UNet(
            self.channels,
            hidden_channels=self.hidden_channels,
            hidden_blocks=self.hidden_blocks,
            kernel_size=self.kernel_size,
            padding_modes=self.padding_modes,
            activation=self.activation,
            layer_norm=self.layer_norm,
            compute_dtype=self.compute_dtype,
        )(x, emb)


__all__ = ["UNet", "ScoreUNet", "ModResidualBlock", "upsample_nearest", "match_spatial"]
