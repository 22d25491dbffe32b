"""Build the Flax models of an experiment from its typed settings.

A checkpoint stores the settings it was trained with, so these builders are also how a checkpoint
rebuilds its own model without the config file.
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax

from slams_jax._types import PyTree
from slams_jax.nn.autoencoder import MultimodalAutoencoder
from slams_jax.pipeline.configuration import ScoreSettings, Settings
from slams_jax.diffusion.score import MarkovScore
from slams_jax.nn.unet import ScoreUNet


def build_autoencoder(settings: Settings) -> MultimodalAutoencoder:
    """The multimodal autoencoder over every modality of ``settings.data``."""
    a = settings.autoencoder
    return MultimodalAutoencoder(
        modalities=tuple((m.name, len(m.variables)) for m in settings.data.modalities),
        latent_channels=a.latent_channels,
        hidden_channels=a.hidden_channels,
        kernel_size=a.kernel_size,
        downsample=a.downsample,
        norm=a.norm,
        activation=a.activation,
        padding_modes=a.padding,
        state=settings.data.state.name,
    )


# The one mapping between the two names of a diffusion prior: the space it lives in (``assimilation.space``,
# ``posterior_sample(space=)``) and the training stage of its score (checkpoint folder and settings section).
SCORE_STAGES = {"latent": "score", "pixel": "pixel_score"}


def score_stage(space: str) -> str:
    """The training stage of the prior over ``space``: ``latent`` -> ``score``, ``pixel`` -> ``pixel_score``."""
    if space not in SCORE_STAGES:
        raise ValueError(f"space={space!r}: expected 'latent' or 'pixel'")
    return SCORE_STAGES[space]


def score_settings(settings: Settings, stage: str) -> ScoreSettings:
    """The settings of the score of ``stage`` (``settings.score`` or ``settings.pixel_score``)."""
    if stage not in SCORE_STAGES.values():
        raise ValueError(f"stage {stage!r} has no score model")
    return getattr(settings, stage)


def state_channels(settings: Settings, stage: str) -> int:
    """Channels of one state of the diffused process: latent channels, or the physical state's."""
    if stage == "score":
        return settings.autoencoder.latent_channels
    if stage == "pixel_score":
        return len(settings.data.state.variables)
    raise ValueError(f"stage {stage!r} has no score model")


def build_score(settings: Settings, stage: str) -> MarkovScore:
    """The Markov-window score of ``stage`` (``score`` in latent space, ``pixel_score`` in data space)."""
    s = score_settings(settings, stage)
    network = ScoreUNet(
        channels=s.window * state_channels(settings, stage),
        embedding=s.embedding,
        hidden_channels=s.hidden_channels,
        hidden_blocks=s.hidden_blocks,
        kernel_size=s.kernel_size,
        padding_modes=s.padding,
        activation=s.activation,
        layer_norm=s.layer_norm,
    )
    skip = settings.sde if s.gaussian_skip else None
    return MarkovScore(network=network, order=s.order, spatial=len(s.padding), skip=skip)


def encode_states(settings: Settings, variables: PyTree, batch: Mapping[str, jax.Array]) -> jax.Array:
    """Encode ``{modality: (*batch, y, x, channel)}`` with the autoencoder in inference mode."""
    model = build_autoencoder(settings)
    first = batch[settings.data.state.name]
    lead = first.shape[:-3]
    flat = {k: v.reshape((-1,) + v.shape[-3:]) for k, v in batch.items()}
    z = model.apply(variables, flat, method="encode", train=False)
    return z.reshape(lead + z.shape[1:])


def decode_states(settings: Settings, variables: PyTree, z: jax.Array, modality: str | None = None):
    """Decode latents ``(*batch, h, w, latent)`` in inference mode: every modality, or only ``modality``."""
    return decode_with(build_autoencoder(settings), variables, z, modality)


def decode_with(model: nn.Module, variables: PyTree, z: jax.Array, modality: str | None = None):
    """:func:`decode_states` with the autoencoder module given (a hashable, static value inside ``jit``)."""
    lead = z.shape[:-3]
    flat = z.reshape((-1,) + z.shape[-3:])
    if modality is None:
        out = model.apply(variables, flat, method="decode", train=False)
        return {k: v.reshape(lead + v.shape[1:]) for k, v in out.items()}
    out = model.apply(variables, flat, modality, method="decode_modality", train=False)
    return out.reshape(lead + out.shape[1:])


def standardize(z: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """Per-channel ``(z - mean) / std`` over the last axis."""
    shape = (1,) * (z.ndim - 1) + (-1,)
    return (z - mean.reshape(shape)) / std.reshape(shape)


def unstandardize(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """Inverse of :func:`standardize`."""
    shape = (1,) * (x.ndim - 1) + (-1,)
    return x * std.reshape(shape) + mean.reshape(shape)


__all__ = [
    "SCORE_STAGES", "score_stage", "score_settings", "build_autoencoder", "build_score", "state_channels",
    "encode_states", "decode_states", "decode_with", "standardize", "unstandardize",
]
