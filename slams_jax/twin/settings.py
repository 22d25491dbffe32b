"""Typed, frozen settings of a twin experiment, built from ``configs/lorenz*.py`` at the entry point.

A twin config has the top-level groups ``seed``, ``twin``, ``autoencoder``, ``score``, ``train`` and
``assimilation``; :func:`twin_settings_from_config` validates it with the one settings builder
(:func:`slams_jax.pipeline.builder.build_settings`: unknown, missing or ill-typed keys are refused naming
the key) and returns a :class:`TwinSettings`, which is all the rest of :mod:`slams_jax.twin` reads. Every
refusal is a :class:`~slams_jax.errors.TwinError` (a :class:`~slams_jax.errors.ConfigError`) naming the field.

The guidance and sampler fields of :class:`TwinAssimilationSettings` carry the names of the main
pipeline's :class:`~slams_jax.pipeline.configuration.AssimilationSettings`, so the one factory
(:func:`slams_jax.pipeline.methods.make_guidance`, ``make_sampler``) builds both pipelines' samplers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from slams_jax.diffusion.samplers import STEPS
from slams_jax.diffusion.schedules import AlphaName, VPSchedule
from slams_jax.errors import ConfigError, TwinError
from slams_jax.pipeline.builder import build_settings
from slams_jax.pipeline.configuration import SamplingSettings
from slams_jax.twin import lorenz

SPACES = ("pixel", "latent")
MODES = ("filter", "cycled", "smoother")


@dataclasses.dataclass(frozen=True)
class TwinDataSettings:
    """``config.twin``: the setup, its training run and test, the prior spaces.

    Attributes:
        setup: A key of :data:`slams_jax.twin.lorenz.SETUPS` (``lorenz63``: sakov2012, ``lorenz96``: sakov2008).
        train_states: States of the training free run, at the observation cadence.
        cycles: Scored cycles of the test; 0: the setup's own number.
        test_seed: Seed of the truth run and its observations (independent of the training run).
        spaces: The priors to train and assimilate with: ``pixel`` (the standardized state) and/or
            ``latent`` (an autoencoder's standardized latent, observations compared with the decoded state).
        augment_shifts: Train on random rotations of the ring (Lorenz-96 only: its dynamics are rotation
            invariant).
    """

    setup: str = "lorenz63"
    train_states: int = 50_000
    cycles: int = 0
    test_seed: int = 1
    spaces: tuple[str, ...] = SPACES
    augment_shifts: bool = False

    def __post_init__(self):
        if self.setup not in lorenz.SETUPS:
            raise TwinError(f"config.twin.setup={self.setup!r}: expected one of {sorted(lorenz.SETUPS)}")
        if self.cycles < 0:
            raise TwinError(f"config.twin.cycles={self.cycles}: expected a positive number of scored cycles, or 0 "
                            f"for the setup's {lorenz.SETUPS[self.setup].cycles}")
        if not self.spaces or [s for s in self.spaces if s not in SPACES]:
            raise TwinError(f"config.twin.spaces={self.spaces}: expected a non-empty subset of {SPACES}")
        model = lorenz.SETUPS[self.setup].model
        if self.augment_shifts and model != "lorenz96":
            raise TwinError(f"config.twin.augment_shifts=True: only the periodic lorenz96 ring is rotation "
                            f"invariant, not {model}")

    @property
    def twin_setup(self) -> lorenz.TwinSetup:
        """The setup, with ``cycles`` scored cycles if set."""
        setup = lorenz.SETUPS[self.setup]
        return dataclasses.replace(setup, cycles=self.cycles) if self.cycles else setup


@dataclasses.dataclass(frozen=True)
class TwinAutoencoderSettings:
    """``config.autoencoder``: the state autoencoder of the latent space and its training.

    Attributes:
        kind: ``mlp`` (latent ``(latent, 1)``) or ``conv`` (circular 1-D convolutions, latent
            ``(dim // downsample, latent)``).
        downsample: ``conv`` only: 2 (one stride-2 convolution) or 1 (no spatial compression).
        latent, hidden: Latent size (channels for ``conv``) and hidden width.
        latent_noise: Std of the noise added to the latents during training (keeps the decoder smooth).
        latent_penalty: Weight of the latents' mean square in the loss.
        steps, learning_rate: Adam steps and peak learning rate (cosine decay).
    """

    kind: Literal["mlp", "conv"] = "mlp"
    latent: int = 4
    hidden: int = 64
    downsample: int = 2
    latent_noise: float = 0.01
    latent_penalty: float = 1e-4
    steps: int = 4000
    learning_rate: float = 2e-3


@dataclasses.dataclass(frozen=True)
class TwinNetworkSettings:
    """``config.score.network``: ``mlp`` over the flattened window, or a circular 1-D ``unet``.

    ``hidden`` are the MLP's widths or the U-Net's channels per level; ``blocks`` and ``kernel_size`` are
    the U-Net's only.
    """

    kind: Literal["mlp", "resnet", "unet"] = "mlp"
    hidden: tuple[int, ...] = (256, 256, 256)
    embedding: int = 64
    blocks: tuple[int, ...] = ()
    kernel_size: int = 3


@dataclasses.dataclass(frozen=True)
class TwinScoreSettings:
    """``config.score``: windows of ``2 * order + 1`` states, the VP schedule and the network."""

    order: int = 2
    schedule: AlphaName = "cos"
    eta: float = 1e-3
    network: TwinNetworkSettings = TwinNetworkSettings()

    @property
    def window(self) -> int:
        return 2 * self.order + 1

    @property
    def vp_schedule(self) -> VPSchedule:
        return VPSchedule(alpha=self.schedule, eta=self.eta)


@dataclasses.dataclass(frozen=True)
class TwinTrainSettings:
    """``config.train``: Adam with a cosine decay for the window priors, ``chunk`` steps per checkpoint."""

    steps: int = 6000
    batch_size: int = 256
    learning_rate: float = 1e-3
    chunk: int = 1000


@dataclasses.dataclass(frozen=True)
class TwinAssimilationSettings(SamplingSettings):
    """``config.assimilation``: the score-based filter and smoother.

    Attributes:
        modes: ``filter``, ``cycled`` and/or ``smoother`` (see :mod:`slams_jax.twin.assimilation`).
        lag: States of the filter's window ending at the analysis time.
        members: Ensemble size.
        guidance, gamma, zeta, cg_iterations, mmps_solver: The guidance and its settings, as in the main
            pipeline.
        sampler, steps, corrections, tau, solver: The sampler and its settings, as in the main pipeline
            (``pc``, the plain ``lax.scan`` predictor-corrector, by default).
        batch_windows: Filter windows sampled at once.
        cycled_lag: ``cycled``: states of its lag window (0: ``lag``); the background carries what lies before.
        background_inflation: ``cycled``: factor on the variance of the analysis ensemble used as the next
            windows' background.
    """

    modes: tuple[str, ...] = ("filter", "smoother")
    lag: int = 8
    members: int = 10
    # the published twin tables (docs/twin.md) were measured with SDA, the 64-step scan predictor-corrector, 3
    # fixed CG iterations for MMPS and no trust region: the twins keep those defaults
    guidance: Literal["sda", "dps", "mmps"] = "sda"
    cg_iterations: int = 3
    cg_tolerance: float = 0.0
    max_shift: float = 0.0
    sampler: Literal["multistep", "diffrax_pc", "pc", "sde", "ode"] = "pc"
    steps: int = STEPS
    tau: float = 0.1  # tau 1 doubles a Gaussian posterior's variance at each correction (docs/twin.md)
    batch_windows: int = 64
    background_inflation: float = 1.0
    cycled_lag: int = 0

    def __post_init__(self):
        if not self.modes or [m for m in self.modes if m not in MODES]:
            raise TwinError(f"config.assimilation.modes={self.modes}: expected a non-empty subset of {MODES}")
        if self.cycled_lag < 0:
            raise TwinError(f"config.assimilation.cycled_lag={self.cycled_lag}: expected >= 0 (0: the filter's lag)")
        if self.background_inflation <= 0:
            raise TwinError(f"config.assimilation.background_inflation={self.background_inflation}: expected > 0")
        if self.members < 2:
            raise TwinError(f"config.assimilation.members={self.members}: expected at least 2")


@dataclasses.dataclass(frozen=True)
class TwinSettings:
    """Everything a twin experiment reads, typed and frozen (one per ``configs/lorenz*.py``)."""

    seed: int = 0
    twin: TwinDataSettings = TwinDataSettings()
    autoencoder: TwinAutoencoderSettings = TwinAutoencoderSettings()
    score: TwinScoreSettings = TwinScoreSettings()
    train: TwinTrainSettings = TwinTrainSettings()
    assimilation: TwinAssimilationSettings = TwinAssimilationSettings()

    def __post_init__(self):
        window, burn_in = self.score.window, self.setup.burn_in
        for name, lag in (("lag", self.assimilation.lag), ("cycled_lag", self.assimilation.cycled_lag)):
            if name == "cycled_lag" and lag == 0:
                continue
            if lag < window:
                raise TwinError(f"config.assimilation.{name}={lag}: the filter's lag window must hold at least one "
                                f"score window of {window} states")
            if lag - 1 > burn_in:
                raise TwinError(f"config.assimilation.{name}={lag}: at most burn_in + 1 = {burn_in + 1}, so that "
                                "every scored cycle has a full lag window of observations before it")

    @property
    def setup(self) -> lorenz.TwinSetup:
        return self.twin.twin_setup


def twin_settings_from_config(config: Any) -> TwinSettings:
    """Validate a twin config (a ConfigDict or nested dict) into :class:`TwinSettings`.

    Raises:
        TwinError: naming the offending key, for unknown, missing, ill-typed or inconsistent keys.
    """
    try:
        return build_settings(TwinSettings, config, "")
    except TwinError:
        raise
    except ConfigError as e:
        raise TwinError(str(e)) from e


def maybe_twin_settings(config: Any) -> TwinSettings | None:
    """The :class:`TwinSettings` of a config with a ``twin`` group; ``None`` for any other config."""
    return twin_settings_from_config(config) if "twin" in config else None


__all__ = ["TwinSettings", "TwinDataSettings", "TwinAutoencoderSettings", "TwinNetworkSettings", "TwinScoreSettings",
           "TwinTrainSettings", "TwinAssimilationSettings", "twin_settings_from_config", "maybe_twin_settings",
           "SPACES", "MODES"]
