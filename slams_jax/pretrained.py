"""A trained experiment loaded back from its workdir: settings, normalization, autoencoder and priors.

Everything needed is in the checkpoints (the settings that built the models, the data normalization and
the latent statistics travel with them), so no config file is needed to use a trained model.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping

import jax
import jax.numpy as jnp

from slams_jax._types import Array, Float, PRNGKey, PyTree
from slams_jax.checkpointing import CheckpointError, StageCheckpointer
from slams_jax.configuration import Settings, settings_from_dict
from slams_jax.datasets import Normalization
from slams_jax.models import build_score, decode_states, encode_states, standardize, unstandardize
from slams_jax.samplers import predictor_corrector
from slams_jax.score import MarkovScore


def _restore_stage(workdir: Path, stage: str) -> tuple[dict, dict]:
    ckpt = StageCheckpointer(workdir / "checkpoints" / stage)
    try:
        if ckpt.latest_step() is None:
            raise CheckpointError(
                f"no {stage} checkpoint in {ckpt.directory}: train it first with "
                f"python -m slams_jax.train --workdir={workdir}"
            )
        state, meta = ckpt.restore(None)
    finally:
        ckpt.close()
    return state, meta


def autoencoder_variables(workdir: str | os.PathLike) -> tuple[dict, dict]:
    """Inference variables (EMA parameters, batch statistics) and metadata of the trained autoencoder."""
    state, meta = _restore_stage(Path(workdir), "autoencoder")
    variables = {"params": state["ema_params"]}
    if state.get("batch_stats"):
        variables["batch_stats"] = state["batch_stats"]
    return jax.tree_util.tree_map(jnp.asarray, variables), meta


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """Inference-time pieces of a trained experiment (EMA parameters, inference-mode normalization).

    Attributes:
        settings: The settings the models were trained with.
        normalization: Per-modality data normalization (fitted on the training split).
        autoencoder: Variables of the multimodal autoencoder.
        score: Parameters of the latent window score, or ``None`` if not trained.
        latent_mean, latent_std: Statistics standardizing the latent space for the score.
        pixel_score: Parameters of the pixel-space window score, or ``None``.
        grid: Spatial shape ``(y, x)`` of the data.
    """

    settings: Settings
    normalization: Normalization
    grid: tuple[int, ...]
    autoencoder: PyTree
    score: PyTree | None
    latent_mean: Array | None
    latent_std: Array | None
    pixel_score: PyTree | None = None

    def encode(self, values: Mapping[str, Float[Array, "*batch y x c"]]) -> Float[Array, "*batch h w latent"]:
        """Normalized modalities -> standardized latent state (the space the latent prior lives in)."""
        return standardize(encode_states(self.settings, self.autoencoder, values), self.latent_mean, self.latent_std)

    def decode(self, z: Float[Array, "*batch h w latent"], modality: str | None = None):
        """Standardized latent state -> normalized modality (or all modalities when ``modality`` is None)."""
        z = unstandardize(z, self.latent_mean, self.latent_std)
        return decode_states(self.settings, self.autoencoder, z, modality)

    def prior(self, stage: str = "score") -> tuple[MarkovScore, PyTree]:
        """The window score model of ``stage`` and its parameters."""
        params = self.score if stage == "score" else self.pixel_score
        if params is None:
            raise CheckpointError(f"the {stage} stage was not trained in this workdir")
        return build_score(self.settings, stage), params

    def latent_shape(self) -> tuple[int, int, int]:
        """Shape ``(h, w, latent_channels)`` of one latent state."""
        d = self.settings.autoencoder.downsample
        return tuple(n // d for n in self.grid) + (self.settings.autoencoder.latent_channels,)

    def sample_prior(
        self, key: PRNGKey, n: int, length: int, shape: tuple[int, ...], stage: str = "score",
        steps: int = 64, corrections: int = 1, tau: float = 1.0,
    ) -> Float[Array, "..."]:
        """Unconditional trajectories from a diffusion prior (standardized latent or normalized state)."""
        score, params = self.prior(stage)
        eps = lambda x, t: score.trajectory_eps(params, x, t)
        return predictor_corrector(key, eps, (n, length) + tuple(shape), self.settings.sde, steps, corrections, tau,
                                   event_ndim=1 + len(shape))


def load_trained(workdir: str | os.PathLike) -> TrainedModel:
    """Load the autoencoder and whichever priors were trained in ``workdir``."""
    workdir = Path(workdir)
    variables, ae_meta = autoencoder_variables(workdir)
    settings = settings_from_dict(ae_meta["settings"])
    score = mean = std = pixel = None
    if (workdir / "checkpoints" / "score").exists():
        state, meta = _restore_stage(workdir, "score")
        score = state["ema_params"]
        mean = jnp.asarray(meta["latent_mean"], jnp.float32)
        std = jnp.asarray(meta["latent_std"], jnp.float32)
        settings = settings_from_dict(meta["settings"])
    if (workdir / "checkpoints" / "pixel_score").exists():
        pixel = _restore_stage(workdir, "pixel_score")[0]["ema_params"]
    return TrainedModel(
        settings=settings,
        normalization=Normalization.from_dict(ae_meta["normalization"]),
        grid=tuple(ae_meta["grid"]),
        autoencoder=variables,
        score=None if score is None else jax.tree_util.tree_map(jnp.asarray, score),
        latent_mean=mean,
        latent_std=std,
        pixel_score=None if pixel is None else jax.tree_util.tree_map(jnp.asarray, pixel),
    )


__all__ = ["TrainedModel", "load_trained", "autoencoder_variables"]
