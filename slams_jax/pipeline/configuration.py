"""Typed, frozen settings built from an ``ml_collections.ConfigDict`` at the entry point.

The ConfigDict stops at ``train``/``demo``/``assimilate``: :func:`settings_from_config` validates it
(unknown or missing keys, wrong types and values raise an error naming the key) and turns it into the
frozen dataclasses below, which are what the rest of the package takes. A checkpoint stores
``settings_to_dict(settings)`` as JSON, so :func:`settings_from_dict` can rebuild its model without the
config file.

The data settings live next to the sources (:mod:`slams_jax.data.settings`) and are re-exported here; the
generic ConfigDict -> dataclass conversion is :func:`slams_jax.pipeline.builder.build_settings`.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Literal, Mapping, Sequence, Union

from slams_jax.data.settings import AuxSettings, DataSettings, ModalitySettings, to_plain
from slams_jax.diffusion.multistep import STEPS as MULTISTEP_STEPS
from slams_jax.diffusion.samplers import CORRECTIONS, TAU
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.errors import ConfigError
from slams_jax.pipeline.builder import as_mapping, build_settings, convert

STAGES = ("autoencoder", "score", "pixel_score")
# "auto": what the data's grid calls for (slams_jax.data.gridded.padding), resolved when training starts
Padding = Literal["auto", "circular", "zeros", "edge", "reflect", "pole"]


@dataclasses.dataclass(frozen=True)
class AutoencoderSettings:
    """The multimodal autoencoder (see :class:`slams_jax.nn.autoencoder.MultimodalAutoencoder`)."""

    latent_channels: int = 5
    hidden_channels: tuple[int, ...] = (9, 8, 7, 6)
    kernel_size: int = 5
    downsample: int = 1
    norm: Literal["batch", "group", "none"] = "batch"
    activation: str = "relu"
    padding: tuple[Padding, ...] = ("edge", "circular")


@dataclasses.dataclass(frozen=True)
class ScoreSettings:
    """The window score network (a modulated U-Net over ``2 * order + 1`` stacked states).

    ``gaussian_skip`` adds the noise predictor that is exact for standardized Gaussian data to the
    network's output (see :mod:`slams_jax.diffusion.score`); the reference has none.
    """

    order: int = 2
    embedding: int = 64
    hidden_channels: tuple[int, ...] = (32, 64, 128)
    hidden_blocks: tuple[int, ...] = (3, 3, 3)
    kernel_size: int = 3
    activation: str = "silu"
    layer_norm: bool = False
    padding: tuple[Padding, ...] = ("edge", "circular")
    gaussian_skip: bool = False

    @property
    def window(self) -> int:
        return 2 * self.order + 1


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Optimisation of one stage.

    Attributes:
        steps: Total optimizer steps of the stage.
        batch_size: Global batch size (states for the autoencoder, windows for the scores).
        learning_rate: Peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay.
        lr_schedule: ``cosine``, ``linear`` (to zero) or ``constant``, after ``warmup_steps``.
        warmup_steps: Linear warm-up steps.
        grad_clip: Global-norm gradient clipping threshold (0 disables).
        ema_decay: Decay of the exponential moving average of the parameters.
        aux_dropout: Probability of hiding each auxiliary modality from the encoder (autoencoder stage),
            so the latent space also works when a modality is missing.
        log_every, eval_every, checkpoint_every: Intervals in steps.
        eval_batches: Validation batches per evaluation.
        max_to_keep: Checkpoints kept per stage.
        area_weighted: Weight the losses by grid-cell area (cos latitude) on geographic grids (the ``dataset`` source), so
            the crowded polar rows do not dominate.
    """

    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 2e-4
    weight_decay: float = 1e-3
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    aux_dropout: float = 0.0
    log_every: int = 50
    eval_every: int = 250
    eval_batches: int = 4
    checkpoint_every: int = 500
    max_to_keep: int = 2
    area_weighted: bool = False


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything an experiment needs, typed and frozen."""

    seed: int
    stages: tuple[str, ...]
    data: DataSettings
    autoencoder: AutoencoderSettings
    score: ScoreSettings
    pixel_score: ScoreSettings
    sde: VPSchedule
    train: Mapping[str, TrainSettings]

    def __post_init__(self):
        for stage in self.stages:
            if stage not in STAGES:
                raise ValueError(f"config.stages: unknown stage {stage!r}; expected some of {STAGES}")
        if not self.data.modalities:
            raise ValueError("config.data.modalities is empty: at least the state modality is required")


@dataclasses.dataclass(frozen=True)
class ObservationSettings:
    """A synthetic observation of a modality of the test truth, built as time -> space -> channels -> saturation.

    Attributes:
        modality: Observed modality (``state``, an auxiliary one, or ``latent`` for the paper's setting).
        every, offset: Observe every ``every``-th state from ``offset`` (``TimeSubsample``).
        times: Explicit state indices (``TimeIndex``); overrides ``every``.
        coarsen: Block-average factor (``Coarsen``); 1 keeps the grid.
        points: Density in (0, 1] of random sparse points (``Points``), drawn among the cells that are
            valid in the truth; 0 observes every cell.
        swath_footprint, swath_width: A satellite swath (``Swath``): footprint-averaged columns, ``width``
            coarse columns per state, moving by ``width`` per state. 0 disables.
        channels: Observed channel indices (``Channels``); empty means all.
        saturate: Scale of a saturating ``Saturate`` operator; 0 disables.
        std: Noise standard deviation in physical units; or
        relative_std: the noise standard deviation as a fraction of the modality's climatological
            standard deviation, per channel (used when ``std`` is 0).
    """

    modality: str = "state"
    every: int = 1
    offset: int = 0
    times: tuple[int, ...] = ()
    coarsen: int = 1
    points: float = 0.0
    swath_footprint: int = 0
    swath_width: int = 1
    channels: tuple[int, ...] = ()
    saturate: float = 0.0
    std: float = 0.0
    relative_std: float = 0.1

    def __post_init__(self):
        if self.every < 1 or self.coarsen < 1:
            raise ValueError(f"every={self.every}, coarsen={self.coarsen}: expected integers >= 1")
        if not 0.0 <= self.points <= 1.0:
            raise ValueError(f"points={self.points}: expected a density in [0, 1]")
        if self.std < 0 or self.relative_std < 0 or (self.std == 0 and self.relative_std == 0):
            raise ValueError(f"std={self.std}, relative_std={self.relative_std}: one must be positive")

    def noise_std(self, modality_std: Sequence[float]) -> float | tuple[float, ...]:
        """The noise std in physical units: ``std`` if set, else ``relative_std`` times ``modality_std`` (the
        modality's climatological std per channel) for each observed channel."""
        if self.std > 0:
            return self.std
        channels = self.channels or range(len(modality_std))
        return tuple(self.relative_std * modality_std[c] for c in channels)


@dataclasses.dataclass(frozen=True)
class ObservationFileSettings:
    """Observations read from a file: ``grid`` (netCDF/zarr field) or ``stations`` (CSV/netCDF table).

    Attributes:
        path: File path.
        kind: ``grid`` or ``stations``.
        modality: Observed modality.
        variable: The observed variable (one of the modality's channels).
        std: Noise standard deviation in physical units.
    """

    path: str
    kind: Literal["grid", "stations"] = "grid"
    modality: str = "state"
    variable: str = ""
    std: float = 1.0


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """The guidance and the sampler of an assimilation, read by :mod:`slams_jax.pipeline.methods`.

    Shared by ``config.assimilation`` of every experiment (the main pipeline, the twins, the ablation).

    Attributes:
        guidance: ``sda``, ``dps`` or ``mmps``; ``gamma``, ``zeta``, ``cg_iterations``, ``cg_tolerance`` are
            their settings, ``mmps_solver`` MMPS's linear solve (``cg``, or ``robust`` for learned priors: see
            :class:`~slams_jax.diffusion.guidance.MMPS`), ``max_shift`` the trust region of all three (0: none).
        sampler: ``multistep`` (default: the second-order sampler, ``eta``, ``order``), ``diffrax_pc`` and ``pc``
            (the reference predictor-corrector, ``corrections``, ``tau``), ``sde`` (reverse SDE) or ``ode``
            (probability flow, ``solver``); ``steps`` is the step count of all
            (``solver``: ``euler``/``heun`` for sde, ``euler``/``heun``/``tsit5`` for ode; empty for the default).
        precision: the networks' convolutions during sampling: ``f32``, ``bf16`` (mixed precision) or ``auto``
            (``bf16`` on accelerators, ``f32`` on a CPU); see :func:`slams_jax.diffusion.prior.with_precision`.
    """

    guidance: Literal["sda", "dps", "mmps"] = "mmps"
    gamma: float = 1e-2
    zeta: float = 1.0
    cg_iterations: int = 16
    cg_tolerance: float = 1e-2
    mmps_solver: Literal["cg", "robust"] = "cg"
    max_shift: float = 3.0
    sampler: Literal["multistep", "diffrax_pc", "pc", "sde", "ode"] = "multistep"
    steps: int = MULTISTEP_STEPS
    corrections: int = CORRECTIONS
    tau: float = TAU
    solver: str = ""
    eta: float = 0.0
    order: int = 2
    precision: Literal["f32", "bf16", "auto"] = "f32"


@dataclasses.dataclass(frozen=True)
class AssimilationSettings(SamplingSettings):
    """``python -m slams_jax.assimilate``: which window, which observations, which sampler.

    Attributes:
        seed: Seed of the observation noise, random points and the sampler.
        space: ``latent`` (SLAMS) or ``pixel`` (the SDA pixel-space prior, if trained).
        trajectory, start, length: The test-split window assimilated (trajectory index, first state, states);
            on gridded data ``start`` may be a date-time of the test split (``"2021-01-25T00"``), and
            empty means its first state.
        members: Ensemble size.
        batch_size: Members sampled at once (0: all).
        guidance, sampler and their settings: see :class:`SamplingSettings`.
        observations: Synthetic observations of the test truth.
        files: Observations read from files.
        figures: Write PNG figures.
        divergence_bound: Largest plausible |value| of a standardized latent (or normalized pixel) sample;
            beyond it the sampling is reported as diverged. 0 disables the check.
        mode: ``smoother`` (one posterior over the whole window, every observation) or ``filter`` (cycled:
            the analysis at each state of the window uses only the observations up to its time, from a
            lag window of ``lag`` states ending there; :mod:`slams_jax.pipeline.filtering`).
        lag: States of a filter cycle's window (0: the score window, ``2 * order + 1``).
        cycle_batch: Filter cycles sampled in one program (0: all of them).
        stations: An observation table of the state (CSV, parquet or netCDF; each row's ``variable`` names its
            channel), assimilated; the same as a ``files`` entry of kind ``stations``. ``stations_std``: the
            noise of rows without a ``std`` column.
        verify: An observation table of withheld stations (CSV, parquet or netCDF; ``time, lat, lon, variable,
            observation``), never assimilated: the analysis and the baselines are scored at them
            (:mod:`slams_jax.pipeline.verification`); empty: none.
        threedvar: Add 3D-Var (static B tuned on held-out training observations) to the verification.
    """

    seed: int = 0
    space: Literal["latent", "pixel"] = "latent"
    trajectory: int = 0
    start: Union[int, str] = 0
    length: int = 16
    members: int = 16
    batch_size: int = 0
    observations: tuple[ObservationSettings, ...] = ()
    files: tuple[ObservationFileSettings, ...] = ()
    figures: bool = True
    divergence_bound: float = 100.0
    mode: Literal["smoother", "filter"] = "smoother"
    lag: int = 0
    cycle_batch: int = 0
    stations: str = ""
    stations_std: float = 1.0
    verify: str = ""
    threedvar: bool = True


@dataclasses.dataclass(frozen=True)
class ParallelSettings:
    """Where the computation runs (not part of the model: read at every entry point, never checkpointed).

    Attributes:
        devices: Devices of the ``data`` mesh; 0 uses every visible device (of every process).
        distributed: Call ``jax.distributed.initialize`` first, so that one process per host forms a
            single multi-host mesh.
        coordinator_address: ``host:port`` of process 0; empty lets JAX detect it (SLURM, Open MPI, TPU pods).
        num_processes: Number of processes; 0: detected.
        process_id: This process's index; -1: detected.
    """

    devices: int = 0
    distributed: bool = False
    coordinator_address: str = ""
    num_processes: int = 0
    process_id: int = -1

    def __post_init__(self):
        if self.devices < 0:
            raise ValueError(f"devices={self.devices}: expected 0 (all) or a positive number")
        if self.distributed and self.coordinator_address and self.num_processes < 1:
            raise ValueError("distributed with a coordinator_address needs num_processes >= 1 (and process_id)")



def _train_settings(config: Mapping[str, Any]) -> dict[str, TrainSettings]:
    """``config.train`` holds defaults; ``config.train.<stage>`` overrides some of them per stage."""
    train = as_mapping(config["train"], "train")
    base = {k: v for k, v in train.items() if k not in STAGES}
    result = {}
    for stage in STAGES:
        override = {k: v for k, v in as_mapping(train.get(stage, {}), f"train.{stage}").items() if v is not None}
        merged = {**base, **override}
        result[stage] = build_settings(TrainSettings, merged, f"train.{stage}" if override else "train")
    return result


def settings_from_config(config: Any) -> Settings:
    """Validate a ConfigDict (or nested dict) and convert it to :class:`Settings`.

    Raises:
        ConfigError: naming the offending key, for unknown, missing or ill-typed keys.
    """
    raw = as_mapping(config, "")
    raw.pop("assimilation", None)  # read by assimilation_settings_from_config
    raw.pop("parallel", None)  # read by parallel_settings_from_config
    expected = {"seed", "stages", "data", "autoencoder", "score", "pixel_score", "sde", "train"}
    unknown = sorted(set(raw) - expected)
    if unknown:
        raise ConfigError(f"config: unknown top-level key(s) {unknown}; expected {sorted(expected)}")
    missing = sorted(expected - set(raw))
    if missing:
        raise ConfigError(f"config: missing top-level key(s) {missing}")
    stages = raw["stages"]
    if isinstance(stages, str):
        stages = tuple(s.strip() for s in stages.split(",") if s.strip())
    return Settings(
        seed=convert(raw["seed"], int, "seed"),
        stages=tuple(stages),
        data=build_settings(DataSettings, raw["data"], "data"),
        autoencoder=build_settings(AutoencoderSettings, raw["autoencoder"], "autoencoder"),
        score=build_settings(ScoreSettings, raw["score"], "score"),
        pixel_score=build_settings(ScoreSettings, raw["pixel_score"], "pixel_score"),
        sde=build_settings(VPSchedule, raw["sde"], "sde"),
        train=types.MappingProxyType(_train_settings(raw)),
    )


def assimilation_settings_from_config(config: Any) -> AssimilationSettings:
    """Validate ``config.assimilation`` (absent: the defaults) into :class:`AssimilationSettings`."""
    raw = as_mapping(config, "")
    return build_settings(AssimilationSettings, raw.get("assimilation", {}), "assimilation")


def parallel_settings_from_config(config: Any) -> ParallelSettings:
    """Validate ``config.parallel`` (absent: every visible device, one process) into :class:`ParallelSettings`."""
    raw = as_mapping(config, "")
    return build_settings(ParallelSettings, raw.get("parallel", {}), "parallel")


def settings_to_dict(settings: Settings) -> dict:
    """JSON-compatible nested dict of the settings (stored with every checkpoint)."""
    return to_plain(settings)


def settings_from_dict(d: Mapping[str, Any]) -> Settings:
    """Inverse of :func:`settings_to_dict`."""
    d = dict(d)
    train = {"train": {**d["train"]["score"], **{s: d["train"][s] for s in STAGES}}}
    return settings_from_config({**d, **train})


# the builder's names before it became public (imported by code written against earlier versions)
_build, _convert, _as_mapping, _plain = build_settings, convert, as_mapping, to_plain

__all__ = [
    "STAGES", "ModalitySettings", "DataSettings", "AutoencoderSettings", "ScoreSettings",
    "TrainSettings", "Settings", "ConfigError", "settings_from_config", "settings_to_dict",
    "settings_from_dict", "ObservationSettings", "ObservationFileSettings", "AssimilationSettings", "SamplingSettings",
    "assimilation_settings_from_config", "ParallelSettings", "parallel_settings_from_config", "AuxSettings",
]
