"""A trained experiment loaded back from its workdir: settings, normalization, autoencoder and priors.

Everything needed is in the checkpoints (the settings that built the models, the data normalization and
the latent statistics travel with them), so no config file is needed to use a trained model.

:meth:`TrainedModel.posterior_prior` (:func:`trained_prior`) hands a trained prior to the sampling core
(:mod:`slams_jax.diffusion`) as a :class:`~slams_jax.diffusion.prior.Prior`: the parameters, latent
statistics and normalization as its arrays, the networks as static Flax modules.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from slams_jax._types import Array, ArrayLike, Float, PRNGKey, PyTree
from slams_jax.pipeline.checkpointing import CheckpointError, StageCheckpointer
from slams_jax.pipeline.configuration import Settings, settings_from_dict
from slams_jax.data.datasets import Normalization
from slams_jax.pipeline.models import (
    SCORE_STAGES, build_autoencoder, build_score, decode_states, decode_with, encode_states, score_stage, standardize,
    unstandardize,
)
from slams_jax.diffusion.prior import Prior
from slams_jax.diffusion.samplers import CORRECTIONS, STEPS, TAU, predictor_corrector
from slams_jax.diffusion.score import MarkovScore
from slams_jax.nn.autoencoder import MultimodalAutoencoder


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
        coordinates: The geographic grid of gridded data, ``{"latitude", "longitude", "periodic"}`` (the
            files' order), or ``None`` (Kolmogorov flow, or a checkpoint written before it was stored).
    """

    settings: Settings
    normalization: Normalization
    grid: tuple[int, ...]
    autoencoder: PyTree
    score: PyTree | None
    latent_mean: Array | None
    latent_std: Array | None
    pixel_score: PyTree | None = None
    coordinates: Mapping[str, Any] | None = None

    def encode(self, values: Mapping[str, Float[ArrayLike, "*batch y x c"]]) -> Float[Array, "*batch h w latent"]:
        """Normalized modalities -> standardized latent state (the space the latent prior lives in)."""
        return standardize(encode_states(self.settings, self.autoencoder, values), self.latent_mean, self.latent_std)

    def decode(self, z: Float[ArrayLike, "*batch h w latent"], modality: str | None = None):
        """Standardized latent state -> normalized modality (or all modalities when ``modality`` is None)."""
        z = unstandardize(z, self.latent_mean, self.latent_std)
        return decode_states(self.settings, self.autoencoder, z, modality)

    def prior(self, stage: str = "score") -> tuple[MarkovScore, PyTree]:
        """The window score model of ``stage`` (``score`` or ``pixel_score``) and its parameters."""
        if stage not in SCORE_STAGES.values():
            raise ValueError(f"stage {stage!r} has no score model")
        params = getattr(self, stage)  # the fields are named after the stages
        if params is None:
            raise CheckpointError(f"the {stage} stage was not trained in this workdir")
        return build_score(self.settings, stage), params

    def latent_shape(self) -> tuple[int, int, int]:
        """Shape ``(h, w, latent_channels)`` of one latent state."""
        d = self.settings.autoencoder.downsample
        return tuple(n // d for n in self.grid) + (self.settings.autoencoder.latent_channels,)

    def sample_prior(
        self, key: PRNGKey, n: int, length: int, shape: tuple[int, ...], stage: str = "score",
        steps: int = STEPS, corrections: int = CORRECTIONS, tau: float = TAU,
    ) -> Float[Array, "..."]:
        """Unconditional trajectories from a diffusion prior (standardized latent or normalized state)."""
        score, params = self.prior(stage)
        eps = lambda x, t: score.trajectory_eps(params, x, t)
        return predictor_corrector(key, eps, (n, length) + tuple(shape), self.settings.sde, steps, corrections, tau,
                                   event_ndim=1 + len(shape))

    def posterior_prior(self, length: int, space: str = "latent", spread_windows: Mesh | None = None) -> Prior:
        """The prior over trajectories of ``length`` states for ``posterior_sample`` (see :func:`trained_prior`)."""
        return trained_prior(self, length, space, spread_windows)


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
        coordinates=ae_meta.get("coordinates"),
    )


@dataclasses.dataclass(frozen=True)
class _TrajectoryEps:
    """``(params, x, t) -> eps`` of a trajectory from a window score (static: compared by value)."""

    score: MarkovScore
    spread_windows: Mesh | None

    def __call__(self, params, x, t):
        return self.score.trajectory_eps(params["score"], x, t, spread_windows=self.spread_windows)

    def with_compute_dtype(self, dtype: str | None) -> _TrajectoryEps:
        """The same score with its convolutions in ``dtype`` (mixed precision; same parameters)."""
        network = self.score.network.clone(compute_dtype=dtype)
        return dataclasses.replace(self, score=dataclasses.replace(self.score, network=network))


@dataclasses.dataclass(frozen=True)
class _Physical:
    """``(params, x) -> `` a modality in physical units: decoded from the standardized latent (``autoencoder``
    given), or the normalized state itself, then de-normalized."""

    modality: str
    autoencoder: MultimodalAutoencoder | None = None

    def __call__(self, params, x):
        if self.autoencoder is not None:
            z = unstandardize(x, params["latent_mean"], params["latent_std"])
            x = decode_with(self.autoencoder, params["autoencoder"], z, self.modality)
        # the normalization is per channel over the last axis, as the latent standardization
        return unstandardize(x, params["mean"][self.modality], params["std"][self.modality])

    def with_compute_dtype(self, dtype: str | None) -> _Physical:
        """The same decoder with its convolutions in ``dtype`` (mixed precision; same parameters)."""
        if self.autoencoder is None:
            return self
        return dataclasses.replace(self, autoencoder=self.autoencoder.clone(compute_dtype=dtype))


def _latent(params, z):
    return z


def trained_prior(model: TrainedModel, length: int, space: str = "latent", spread_windows: Mesh | None = None
                  ) -> Prior:
    """The prior of a trained experiment over trajectories of ``length`` states.

    Args:
        model: A trained experiment (:func:`load_trained`).
        length: Number of states of the trajectory to sample (at least the score window).
        space: ``latent`` (SLAMS: the latent prior, observations through the decoder heads) or ``pixel``
            (SDA baseline: the prior over the normalized state; only the state is observable).
        spread_windows: Split the score windows of each trajectory over the devices of this mesh (ignored for
            one device or one window).
    """
    norm, settings = model.normalization, model.settings
    state = settings.data.state.name
    score, score_params = model.prior(score_stage(space))
    if length < score.window:
        raise ValueError(f"length={length}: the trajectory must hold at least one score window of {score.window} states")
    if spread_windows is not None and (spread_windows.size == 1 or length - score.window + 1 == 1):
        spread_windows = None
    names = [m.name for m in settings.data.modalities] if space == "latent" else [state]
    params = {"score": score_params,
              "mean": {k: np.asarray(norm.mean[k], np.float32) for k in names},
              "std": {k: np.asarray(norm.std[k], np.float32) for k in names}}
    scales = {k: np.asarray(norm.std[k], np.float32) for k in names}
    if space == "latent":
        params.update(autoencoder=model.autoencoder, latent_mean=model.latent_mean, latent_std=model.latent_std)
        autoencoder = build_autoencoder(settings)
        decoders = tuple((k, _Physical(k, autoencoder)) for k in names) + (("latent", _latent),)
        shape = (length,) + tuple(model.latent_shape())
        scales["latent"] = np.asarray(1.0, np.float32)
    else:
        decoders = ((state, _Physical(state)),)
        shape = (length,) + tuple(model.grid) + (len(settings.data.state.variables),)
    return Prior(params=params, scales=scales, bound=100.0, eps_fn=_TrajectoryEps(score, spread_windows),
                 schedule=settings.sde, shape=shape, decoders=decoders, state=state,
                 channels=tuple(settings.data.state.variables), spread_windows=spread_windows)


__all__ = ["TrainedModel", "load_trained", "autoencoder_variables", "trained_prior"]
