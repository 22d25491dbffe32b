"""Multimodal convolutional autoencoder: every modality of one time step <-> one latent field.

SLAMS (Qu et al. 2024, "Deep Generative Data Assimilation in Multimodal Setting") runs score-based data
assimilation (Rozet & Louppe 2023) in the latent space of an autoencoder that ingests the state together with
auxiliary modalities (e.g. in-situ and satellite observations). Its reference ``ConvEncoderDecoder`` is a
plain stack of stride-1, kernel-5 convolutions ``(10 + aux) -> 9 -> 8 -> 7 -> 6 -> 5`` with BatchNorm + ReLU
between layers and nothing after the last, mirrored by the decoder.

This module generalises it:

* **Missing data.** Each modality ``m`` with ``C_m`` channels enters the encoder as ``2 C_m`` channels: its
  values with invalid points replaced by 0, and a 0/1 validity mask per channel. The mask lets the encoder tell
  "missing" from "zero". Invalid points are removed with ``where`` (never ``values * mask``: ``NaN * 0`` is
  ``NaN``), so neither their values nor NaNs there reach the output or the parameter gradients.
* **Downsampling.** With ``downsample = 2**s`` the first ``s`` encoder layers have stride 2; the decoder
  mirrors them by nearest upsampling x2 before the matching convolution.
* **One head per modality.** The decoder is a shared trunk (the mirror of the encoder) followed by an own
  ``Conv -> act -> Conv`` head per modality, so each modality has its own map from the shared latent space;
  :meth:`MultimodalAutoencoder.decode_modality` runs only one head (used to guide through one modality).

Normalisation state: with ``norm="batch"`` the running statistics live in the ``batch_stats`` variable
collection (flax ``BatchNorm``, momentum 0.9 as PyTorch's default 0.1). ``train=True`` normalises with batch
statistics and updates ``batch_stats`` (call ``apply(..., mutable=["batch_stats"])``); ``train=False`` uses the
running averages, so each example's output is independent of the rest of the batch.

Shapes: a field is ``(*batch, *spatial, channel)`` with ``len(padding_modes)`` spatial axes (``(lat, lon)`` by
default: ``"edge"`` in latitude, ``"circular"`` in longitude).
"""

from __future__ import annotations

import math
from typing import Literal, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from slams_jax._types import Array, Bool, Float
from slams_jax.nn.layers import Conv, PaddingMode, activation_fn
from slams_jax.nn.unet import upsample_nearest

NormKind = Literal["batch", "group", "none"]


def masked_mse(
    pred: Float[Array, "*shape"],
    target: Float[Array, "*shape"],
    mask: Bool[Array, "..."] | None = None,
    weights: Float[Array, "..."] | None = None,
) -> Float[Array, ""]:
    """Mean squared error over the valid points only (weighted, e.g. by cell area, if ``weights`` is given).

    Args:
        pred: predictions.
        target: targets; may hold NaN (or anything) at invalid points.
        mask: validity, broadcastable to ``pred.shape``; ``None`` means ``isfinite(target)``. Points where the
            target is not finite are treated as invalid in any case.
        weights: Non-negative weights broadcastable to ``pred.shape`` (e.g. area weights ``(lat, 1, 1)``).

    Returns:
        ``sum_valid w (pred - target)^2 / max(sum_valid w, tiny)`` (0 when nothing is valid).
    """
    pred = jnp.asarray(pred)
    target = jnp.broadcast_to(jnp.asarray(target), pred.shape)
    valid = jnp.isfinite(target)
    if mask is not None:
        valid = valid & jnp.broadcast_to(jnp.asarray(mask, dtype=bool), pred.shape)
    # Clean the target before subtracting so that the cotangent of pred is never NaN.
    error = jnp.where(valid, pred - jnp.where(valid, target, jnp.zeros_like(target)), jnp.zeros_like(pred))
    if weights is None:
        count = jnp.sum(valid.astype(pred.dtype))
        return jnp.sum(jnp.square(error)) / jnp.maximum(count, jnp.ones_like(count))
    w = jnp.broadcast_to(jnp.asarray(weights, pred.dtype), pred.shape)
    total = jnp.sum(jnp.where(valid, w, jnp.zeros_like(w)))
    return jnp.sum(w * jnp.square(error)) / jnp.maximum(total, jnp.full_like(total, 1e-12))


def _group_count(channels: int) -> int:
    # Largest number of groups (<= 32) that leaves at least two channels per group; 1 (layer norm) otherwise.
    best = 1
    for groups in range(1, min(32, channels // 2) + 1):
        if channels % groups == 0:
            best = groups
    return best


class _NormAct(nn.Module):
    norm: NormKind
    activation: str

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        if self.norm == "batch":
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
        elif self.norm == "group":
            x = nn.GroupNorm(num_groups=_group_count(x.shape[-1]), epsilon=1e-5)(x)
        return activation_fn(self.activation)(x)


class _Encoder(nn.Module):
    widths: Sequence[int]  # hidden widths followed by the latent width
    strided: int  # number of leading stride-2 layers
    kernel_size: int
    padding_modes: Sequence[PaddingMode]
    norm: NormKind
    activation: str
    compute_dtype: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        for i, width in enumerate(self.widths):
            stride = 2 if i < self.strided else 1
            x = Conv(width, self.kernel_size, strides=stride, padding_modes=self.padding_modes,
                     compute_dtype=self.compute_dtype, name=f"conv_{i}")(x)
            if i < len(self.widths) - 1:
                x = _NormAct(self.norm, self.activation, name=f"norm_{i}")(x, train)
        return x


class _DecoderTrunk(nn.Module):
    widths: Sequence[int]  # hidden widths followed by the latent width (as the encoder's)
    strided: int
    kernel_size: int
    padding_modes: Sequence[PaddingMode]
    norm: NormKind
    activation: str
    compute_dtype: str | None = None

    @nn.compact
    def __call__(self, z: Array, train: bool) -> Array:
        spatial = len(self.padding_modes)
        x = z
        # Encoder layer i maps widths[i-1] -> widths[i] (stride 2 if i < strided); its mirror maps back.
        for i in reversed(range(1, len(self.widths))):
            if i < self.strided:
                x = upsample_nearest(x, spatial)
            x = Conv(self.widths[i - 1], self.kernel_size, padding_modes=self.padding_modes,
                     compute_dtype=self.compute_dtype, name=f"conv_{i}")(x)
            x = _NormAct(self.norm, self.activation, name=f"norm_{i}")(x, train)
        # The mirror of encoder layer 0 is the per-modality head, which works at full resolution.
        if self.strided > 0:
            x = upsample_nearest(x, spatial)
        return x


class _Head(nn.Module):
    hidden: int
    channels: int
    kernel_size: int
    padding_modes: Sequence[PaddingMode]
    activation: str
    compute_dtype: str | None = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        conv = dict(kernel_size=self.kernel_size, padding_modes=self.padding_modes, compute_dtype=self.compute_dtype)
        x = Conv(self.hidden, name="conv_0", **conv)(x)
        x = activation_fn(self.activation)(x)
        return Conv(self.channels, name="conv_1", **conv)(x)


class MultimodalAutoencoder(nn.Module):
    """Encode all modalities of a time step into one latent field and decode each modality from it.

    Attributes:
        modalities: ``(name, channels)`` for every modality, in the order they are stacked for the encoder.
        latent_channels: channels of the latent field.
        hidden_channels: encoder widths (the decoder trunk uses them in reverse).
        kernel_size: convolution kernel size.
        downsample: latent grid = grid / downsample; a power of two, at most ``2 ** len(hidden_channels)``.
        norm: ``"batch"`` (``batch_stats`` collection), ``"group"`` or ``"none"``.
        activation: activation name (see :func:`~slams_jax.nn.layers.activation_fn`).
        padding_modes: one padding mode per spatial axis (``("edge", "circular")`` for (lat, lon)).
        state: name of the primary modality; the others are auxiliary. Its batch and grid shape are the
            reference the other modalities are checked against.
        compute_dtype: operand dtype of every convolution (``"bfloat16"``: mixed precision, see
            :class:`~slams_jax.nn.layers.Conv`); ``None``: float32. The parameters are float32 either way.

    Initialise through ``__call__`` (``model.init(key, values)``) so that every head gets parameters.
    """

    modalities: tuple[tuple[str, int], ...]
    latent_channels: int = 5
    hidden_channels: tuple[int, ...] = (9, 8, 7, 6)
    kernel_size: int = 5
    downsample: int = 1
    norm: NormKind = "batch"
    activation: str = "relu"
    padding_modes: tuple[PaddingMode, ...] = ("edge", "circular")
    state: str = "state"
    compute_dtype: str | None = None

    def setup(self):
        names = [name for name, _ in self.modalities]
        if not names:
            raise ValueError("at least one modality is needed")
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must be unique, got {names}")
        if self.state not in names:
            raise ValueError(f"state modality {self.state!r} is not among the modalities {names}")
        if self.norm not in ("batch", "group", "none"):
            raise ValueError(f"unknown norm {self.norm!r}; expected 'batch', 'group' or 'none'")
        activation_fn(self.activation)  # fail early on an unknown name
        d = self.downsample
        if d < 1 or d & (d - 1) or d > 2 ** len(self.hidden_channels):
            raise ValueError(
                f"downsample must be a power of two between 1 and 2**len(hidden_channels) = "
                f"{2 ** len(self.hidden_channels)}, got {d}"
            )
        widths = (*self.hidden_channels, self.latent_channels)
        common = dict(
            widths=widths,
            strided=self._strided,
            kernel_size=self.kernel_size,
            padding_modes=self.padding_modes,
            norm=self.norm,
            activation=self.activation,
            compute_dtype=self.compute_dtype,
        )
        self.encoder = _Encoder(**common)
        self.trunk = _DecoderTrunk(**common)
        self.heads = {
            name: _Head(self.hidden_channels[0], channels, self.kernel_size, self.padding_modes, self.activation,
                        self.compute_dtype)
            for name, channels in self.modalities
        }

    @property
    def _strided(self) -> int:
        return int(round(math.log2(self.downsample)))

    @property
    def _spatial(self) -> int:
        return len(self.padding_modes)

    @property
    def auxiliary(self) -> tuple[str, ...]:
        """Names of the non-state modalities, in declared order."""
        return tuple(name for name, _ in self.modalities if name != self.state)

    def _check_inputs(self, values: Mapping[str, Array], masks: Mapping[str, Array] | None) -> tuple[int, ...]:
        expected = dict(self.modalities)
        missing = [name for name in expected if name not in values]
        unknown = [name for name in values if name not in expected]
        if missing or unknown:
            raise ValueError(
                f"modalities do not match: missing {missing}, unknown {unknown}; expected {list(expected)}"
            )
        if masks is not None:
            unknown = [name for name in masks if name not in expected]
            if unknown:
                raise ValueError(f"masks given for unknown modalities {unknown}; expected {list(expected)}")
        state_shape = jnp.shape(values[self.state])
        if len(state_shape) < self._spatial + 1:
            raise ValueError(
                f"modality {self.state!r} has shape {state_shape}; expected (*batch, {self._spatial} spatial "
                f"axes, {expected[self.state]} channels)"
            )
        lead = tuple(state_shape[:-1])  # batch and grid shared by every modality
        for name, channels in self.modalities:
            shape = tuple(jnp.shape(values[name]))
            want = lead + (channels,)
            if shape != want:
                raise ValueError(
                    f"modality {name!r} has shape {shape}, expected {want} "
                    f"(batch and grid of the state {self.state!r}, {channels} channels)"
                )
        grid = lead[len(lead) - self._spatial :]
        if any(n % self.downsample for n in grid):
            raise ValueError(f"grid {grid} is not divisible by downsample={self.downsample}")
        return lead

    def _encoder_input(
        self, values: Mapping[str, Array], masks: Mapping[str, Array] | None
    ) -> Float[Array, "*lead encoder_channels"]:
        stacked = []
        for name, _ in self.modalities:
            x = jnp.asarray(values[name])
            valid = jnp.isfinite(x)
            if masks is not None and name in masks:
                try:
                    given = jnp.broadcast_to(jnp.asarray(masks[name], dtype=bool), x.shape)
                except ValueError:
                    raise ValueError(
                        f"mask of modality {name!r} has shape {jnp.shape(masks[name])}, "
                        f"not broadcastable to its values' shape {x.shape}"
                    ) from None
                valid = valid & given
            stacked.append(jnp.where(valid, x, jnp.zeros_like(x)))
            stacked.append(valid.astype(x.dtype))
        return jnp.concatenate(stacked, axis=-1)

    def _flatten(self, x: Array) -> tuple[Array, tuple[int, ...]]:
        batch = x.shape[: x.ndim - self._spatial - 1]
        return x.reshape((math.prod(batch),) + x.shape[len(batch) :]), batch

    def encode(
        self,
        values: Mapping[str, Float[Array, "*batch *spatial channel"]],
        masks: Mapping[str, Bool[Array, "*batch *spatial channel"]] | None = None,
        train: bool = False,
    ) -> Float[Array, "*batch *latent_spatial latent"]:
        """Encode all modalities into the latent field.

        Args:
            values: ``{name: (*batch, *spatial, C_m)}`` for every modality; NaN marks missing points.
            masks: optional ``{name: validity}`` (broadcastable to the values); combined with
                ``isfinite(values)``. Modalities without a mask use ``isfinite`` alone.
            train: normalise with batch statistics (and update ``batch_stats``).

        Returns:
            ``(*batch, *spatial / downsample, latent_channels)``.
        """
        self._check_inputs(values, masks)
        x, batch = self._flatten(self._encoder_input(values, masks))
        z = self.encoder(x, train)
        return z.reshape(batch + z.shape[1:])

    def _trunk(self, z: Array, train: bool) -> tuple[Array, tuple[int, ...]]:
        if z.ndim < self._spatial + 1 or z.shape[-1] != self.latent_channels:
            raise ValueError(
                f"latent of shape {z.shape}, expected (*batch, {self._spatial} spatial axes, "
                f"{self.latent_channels} channels)"
            )
        z, batch = self._flatten(z)
        return self.trunk(z, train), batch

    def decode(
        self, z: Float[Array, "*batch *latent_spatial latent"], train: bool = False
    ) -> dict[str, Float[Array, "*batch *spatial channel"]]:
        """Decode every modality: ``{name: (*batch, *spatial, C_m)}``."""
        h, batch = self._trunk(z, train)
        out = {}
        for name, _ in self.modalities:
            y = self.heads[name](h)
            out[name] = y.reshape(batch + y.shape[1:])
        return out

    def decode_modality(
        self, z: Float[Array, "*batch *latent_spatial latent"], name: str, train: bool = False
    ) -> Float[Array, "*batch *spatial channel"]:
        """Decode one modality only (the shared trunk and that modality's head).

        ``name`` (and ``train``) select code paths, so they must be static under ``jax.jit``.
        """
        if name not in dict(self.modalities):
            raise ValueError(f"unknown modality {name!r}; expected one of {[n for n, _ in self.modalities]}")
        h, batch = self._trunk(z, train)
        y = self.heads[name](h)
        return y.reshape(batch + y.shape[1:])

    def __call__(
        self,
        values: Mapping[str, Float[Array, "*batch *spatial channel"]],
        masks: Mapping[str, Bool[Array, "*batch *spatial channel"]] | None = None,
        train: bool = False,
    ) -> tuple[Float[Array, "*batch *latent_spatial latent"], dict[str, Float[Array, "*batch *spatial channel"]]]:
        """Encode then decode: ``(z, {name: reconstruction})``."""
        z = self.encode(values, masks, train)
        return z, self.decode(z, train)


__all__ = ["MultimodalAutoencoder", "masked_mse"]
