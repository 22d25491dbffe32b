"""Typed, frozen settings built from an ``ml_collections.ConfigDict`` at the entry point.

The ConfigDict stops at ``train``/``demo``/``assimilate``: :func:`settings_from_config` validates it
(unknown or missing keys, wrong types and values raise an error naming the key) and turns it into the
frozen dataclasses below, which are what the rest of the package takes. A checkpoint stores
``settings_to_dict(settings)`` as JSON, so :func:`settings_from_dict` can rebuild its model without the
config file.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
from typing import Any, Literal, Mapping, Union, get_args, get_origin, get_type_hints

from slams_jax.kolmogorov import KolmogorovConfig
from slams_jax.schedules import VPSchedule

STAGES = ("autoencoder", "score", "pixel_score")
Padding = Literal["circular", "zeros", "edge", "reflect", "pole"]


@dataclasses.dataclass(frozen=True)
class ModalitySettings:
    """One modality: a named group of data variables that become channels.

    Attributes:
        name: Modality name (``state`` for the assimilated state).
        variables: Data variable names stacked as channels, in order.
        weight: Weight of this modality in the reconstruction loss.
    """

    name: str
    variables: tuple[str, ...]
    weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class AuxSourceSettings:
    """A gridded auxiliary modality read from a file (``era5`` source).

    Attributes:
        path: A netCDF file or zarr store (``store``), or a directory of one zarr per day (``chaosbench``).
        variable: Variable name in the file (e.g. ``precip`` for CPC, ``olr`` for NOAA OLR).
        levels: Pressure levels in hPa, by value; empty for a single-level field.
        layout: ``store`` or ``chaosbench``.
        regrid: ``conservative`` (area mean; for fluxes and precipitation) or ``bilinear``.
        aggregation: How the values of one day become one state: ``mean`` or ``first``.
    """

    path: str = ""
    variable: str = ""
    levels: tuple[float, ...] = ()
    layout: Literal["store", "chaosbench"] = "store"
    regrid: Literal["conservative", "bilinear"] = "conservative"
    aggregation: Literal["mean", "first"] = "mean"


@dataclasses.dataclass(frozen=True)
class Era5Settings:
    """Where the ERA5 state comes from, its daily time axis and the date splits (``era5`` source).

    Attributes:
        layout: ``weatherbench2`` (one zarr store or netCDF file, dims time, level, latitude, longitude) or
            ``chaosbench`` (a directory of one zarr per day, named ``...YYYYMMDD.zarr``).
        variable: The state variable in the store (``temperature`` in WeatherBench2, ``t`` in ChaosBench).
        levels: Pressure levels (hPa, by value) that become the state's channels, in order.
        aggregation: Sub-daily states to one daily state: ``mean`` or ``first`` (the 00 UTC analysis).
        train, valid, test: Inclusive date ranges ``(first, last)`` of the splits.
        missing: A day absent from any source: ``error`` (reported, nothing runs) or ``skip`` (reported;
            no window contains it).
        normalization_days: Days of the training period (evenly spaced) the normalization is fitted on.
        prepared: A store written by ``python -m slams_jax.prepare`` to train from; empty: stream from the sources.
        aux: The auxiliary modalities' sources, by modality name (``--config.data.era5.aux.precip.path=...``).
    """

    layout: Literal["weatherbench2", "chaosbench"] = "weatherbench2"
    variable: str = "temperature"
    levels: tuple[float, ...] = ()
    aggregation: Literal["mean", "first"] = "mean"
    train: tuple[str, ...] = ("2000-01-01", "2015-12-31")
    valid: tuple[str, ...] = ("2016-01-01", "2019-12-31")
    test: tuple[str, ...] = ("2021-01-01", "2022-12-31")
    missing: Literal["error", "skip"] = "error"
    normalization_days: int = 366
    prepared: str = ""
    aux: Mapping[str, AuxSourceSettings] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        import numpy as np

        bounds = {}
        for split in ("train", "valid", "test"):
            pair = getattr(self, split)
            if len(pair) != 2:
                raise ValueError(f"{split}={pair!r}: expected (first_date, last_date)")
            try:
                lo, hi = (np.datetime64(d, "D") for d in pair)
            except ValueError as e:
                raise ValueError(f"{split}={pair!r}: not dates ({e})") from e
            if hi < lo:
                raise ValueError(f"{split}={pair!r}: the last date is before the first")
            bounds[split] = (lo, hi)
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            (a0, a1), (b0, b1) = bounds[a], bounds[b]
            if a0 <= b1 and b0 <= a1:
                raise ValueError(f"the {a} period {getattr(self, a)} overlaps the {b} period {getattr(self, b)}")
        if self.normalization_days < 1:
            raise ValueError(f"normalization_days={self.normalization_days}: expected at least 1")


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Where the data come from and how they are split.

    Attributes:
        source: ``kolmogorov`` (generated, the embedded default) or ``era5``.
        era5_path: Path of an ERA5 store (``era5`` source only).
        cache_dir: Where generated data are cached; empty means ``WORKDIR/data``.
        n_train, n_valid, n_test: Trajectories per split (split by trajectory).
        n_states: States per trajectory.
        modalities: The state modality first, then the auxiliary ones.
        kolmogorov: Settings of the Kolmogorov-flow generator.
        era5: Sources, daily time axis and date splits of the ``era5`` source.
    """

    source: Literal["kolmogorov", "era5"] = "kolmogorov"
    era5_path: str = ""
    cache_dir: str = ""
    n_train: int = 48
    n_valid: int = 8
    n_test: int = 8
    n_states: int = 64
    modalities: tuple[ModalitySettings, ...] = ()
    kolmogorov: KolmogorovConfig = KolmogorovConfig()
    era5: Era5Settings = Era5Settings()

    @property
    def state(self) -> ModalitySettings:
        return self.modalities[0]


@dataclasses.dataclass(frozen=True)
class AutoencoderSettings:
    """The multimodal autoencoder (see :class:`slams_jax.autoencoder.MultimodalAutoencoder`)."""

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
    network's output (see :mod:`slams_jax.score`); the reference has none.
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
        area_weighted: Weight the losses by grid-cell area (cos latitude) on geographic grids (``era5``), so
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
class AssimilationSettings:
    """``python -m slams_jax.assimilate``: which window, which observations, which sampler.

    Attributes:
        seed: Seed of the observation noise, random points and the sampler.
        space: ``latent`` (SLAMS) or ``pixel`` (the SDA pixel-space prior, if trained).
        trajectory, start, length: The test-split window assimilated (trajectory index, first state, states).
        members: Ensemble size.
        batch_size: Members sampled at once (0: all).
        guidance: ``sda``, ``dps`` or ``mmps``; ``gamma``, ``zeta``, ``cg_iterations`` are their settings.
        sampler: ``diffrax_pc`` (default), ``pc`` (plain ``lax.scan``), ``sde`` (reverse SDE) or ``ode``
            (probability flow); ``steps``, ``corrections``, ``tau``, ``solver`` are their settings
            (``solver``: ``euler``/``heun`` for sde, ``euler``/``heun``/``tsit5`` for ode; empty for the default).
        observations: Synthetic observations of the test truth.
        files: Observations read from files.
        figures: Write PNG figures.
        divergence_bound: Largest plausible |value| of a standardized latent (or normalized pixel) sample;
            beyond it the sampling is reported as diverged. 0 disables the check.
    """

    seed: int = 0
    space: Literal["latent", "pixel"] = "latent"
    trajectory: int = 0
    start: int = 0
    length: int = 16
    members: int = 16
    batch_size: int = 0
    guidance: Literal["sda", "dps", "mmps"] = "sda"
    gamma: float = 1e-2
    zeta: float = 1.0
    cg_iterations: int = 3
    sampler: Literal["diffrax_pc", "pc", "sde", "ode"] = "diffrax_pc"
    steps: int = 64
    corrections: int = 1
    tau: float = 1.0
    solver: str = ""
    observations: tuple[ObservationSettings, ...] = ()
    files: tuple[ObservationFileSettings, ...] = ()
    figures: bool = True
    divergence_bound: float = 100.0


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


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the key."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = get_origin(tp)
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        return _build(tp, value, path)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"config.{path}={value!r}: expected one of {choices}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            try:
                return _convert(value, arg, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config.{path}={value!r}: no accepted type ({'; '.join(errors)})")
    if origin is tuple:
        args = get_args(tp)
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ConfigError(f"config.{path}={value!r}: expected a sequence")
        items = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(items))
        if len(args) != len(items):
            raise ConfigError(f"config.{path}={value!r}: expected {len(args)} items")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(args, items)))
    if origin in (collections.abc.Mapping, dict):
        _, vtype = get_args(tp)
        return types.MappingProxyType({k: _convert(v, vtype, f"{path}.{k}") for k, v in dict(value).items()})
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config.{path}={value!r}: expected a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config.{path}={value!r}: expected an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config.{path}={value!r}: expected true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config.{path}={value!r}: expected a string")
        return value
    return value


def _as_mapping(value: Any, path: str) -> dict:
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise ConfigError(f"config.{path}: expected a group of keys, got {value!r}")
    return dict(value)


def _build(cls: type, value: Any, path: str) -> Any:
    raw = _as_mapping(value, path)
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"config.{path}" if path else "config"
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected keys: {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        sub = f"{path}.{name}" if path else name
        if name not in raw or raw[name] is None:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"config.{sub} is missing")
            continue
        kwargs[name] = _convert(raw[name], hints[name], sub)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config.{path or cls.__name__}: {e}") from e


def _train_settings(config: Mapping[str, Any]) -> dict[str, TrainSettings]:
    """``config.train`` holds defaults; ``config.train.<stage>`` overrides some of them per stage."""
    train = _as_mapping(config["train"], "train")
    base = {k: v for k, v in train.items() if k not in STAGES}
    result = {}
    for stage in STAGES:
        override = {k: v for k, v in _as_mapping(train.get(stage, {}), f"train.{stage}").items() if v is not None}
        merged = {**base, **override}
        result[stage] = _build(TrainSettings, merged, f"train.{stage}" if override else "train")
    return result


def settings_from_config(config: Any) -> Settings:
    """Validate a ConfigDict (or nested dict) and convert it to :class:`Settings`.

    Raises:
        ConfigError: naming the offending key, for unknown, missing or ill-typed keys.
    """
    raw = _as_mapping(config, "")
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
        seed=_convert(raw["seed"], int, "seed"),
        stages=tuple(stages),
        data=_build(DataSettings, raw["data"], "data"),
        autoencoder=_build(AutoencoderSettings, raw["autoencoder"], "autoencoder"),
        score=_build(ScoreSettings, raw["score"], "score"),
        pixel_score=_build(ScoreSettings, raw["pixel_score"], "pixel_score"),
        sde=_build(VPSchedule, raw["sde"], "sde"),
        train=types.MappingProxyType(_train_settings(raw)),
    )


def assimilation_settings_from_config(config: Any) -> AssimilationSettings:
    """Validate ``config.assimilation`` (absent: the defaults) into :class:`AssimilationSettings`."""
    raw = _as_mapping(config, "")
    return _build(AssimilationSettings, raw.get("assimilation", {}), "assimilation")


def parallel_settings_from_config(config: Any) -> ParallelSettings:
    """Validate ``config.parallel`` (absent: every visible device, one process) into :class:`ParallelSettings`."""
    raw = _as_mapping(config, "")
    return _build(ParallelSettings, raw.get("parallel", {}), "parallel")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def settings_to_dict(settings: Settings) -> dict:
    """JSON-compatible nested dict of the settings (stored with every checkpoint)."""
    return _plain(settings)


def settings_from_dict(d: Mapping[str, Any]) -> Settings:
    """Inverse of :func:`settings_to_dict`."""
    d = dict(d)
    train = {"train": {**d["train"]["score"], **{s: d["train"][s] for s in STAGES}}}
    return settings_from_config({**d, **train})


__all__ = [
    "STAGES", "ModalitySettings", "DataSettings", "AutoencoderSettings", "ScoreSettings",
    "TrainSettings", "Settings", "ConfigError", "settings_from_config", "settings_to_dict",
    "settings_from_dict", "ObservationSettings", "ObservationFileSettings", "AssimilationSettings",
    "assimilation_settings_from_config", "ParallelSettings", "parallel_settings_from_config", "Era5Settings",
    "AuxSourceSettings",
]
