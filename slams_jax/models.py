"""Build the Flax models of an experiment from its typed settings.

A checkpoint stores the settings it was trained with, so these builders are also how a checkpoint
rebuilds its own model without the config file.
"""

from __future__ import annotations

from slams_jax.autoencoder import MultimodalAutoencoder
from slams_jax.configuration import ScoreSettings, Settings
from slams_jax.score import MarkovScore
from slams_jax.unet import ScoreUNet


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


def state_channels(settings: Settings, stage: str) -> int:
    """Channels of one state of the diffused process: latent channels, or the physical state's."""
    if stage == "score":
        return settings.autoencoder.latent_channels
    if stage == "pixel_score":
        return len(settings.data.state.variables)
    raise ValueError(f"stage {stage!r} has no score model")


def build_score(settings: Settings, stage: str) -> MarkovScore:
    """The Markov-window score of ``stage`` (``score`` in latent space, ``pixel_score`` in data space)."""
    s: ScoreSettings = settings.score if stage == "score" else settings.pixel_score
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


__all__ = ["build_autoencoder", "build_score", "state_channels"]
