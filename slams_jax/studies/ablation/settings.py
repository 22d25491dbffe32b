"""The ablation study's settings: typed, frozen records built once from the study config.

:func:`ablation_settings` is the entry: it reads ``configs/ablation.py``'s groups with the builder of the
main config (:func:`slams_jax.pipeline.builder.build_settings`), so a wrong key or type is named as on the
command line, and then checks what only the whole study can (a method's model exists, the windows are long
enough for the prior, ...). Past it no code reads the ConfigDict: ``experiment`` is kept only to be handed,
narrowed to one model, to :func:`slams_jax.pipeline.training.train_and_evaluate`.

The groups: ``study`` (:class:`StudySettings`, the sweeps and the windows), ``models`` (:class:`ModelSpec`),
``methods`` (:class:`MethodSpec`), ``aux`` (the auxiliary instruments, as the pipeline's
:class:`~slams_jax.pipeline.configuration.ObservationSettings`), ``sampling`` (the score methods' guidance and
sampler, as :class:`~slams_jax.pipeline.configuration.AssimilationSettings`) and ``threedvar``
(:class:`ThreeDVarSettings`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

import ml_collections

from slams_jax.errors import ConfigError
from slams_jax.pipeline.builder import build_settings, convert
from slams_jax.pipeline.configuration import AssimilationSettings, ObservationSettings, Settings, settings_from_config

KINDS = ("interpolation", "persistence", "climatology", "3dvar", "score")
SWEEPS = ("coarsen", "noise", "gap")
ORDERS = ("sweeps", "spread")


class StudyError(ConfigError):
    """A study config that cannot run; the message names the field."""


def check_order(order: str) -> None:
    if order not in ORDERS:
        raise StudyError(f"config.study.order={order!r}: expected 'sweeps' or 'spread'")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """``config.models.<name>``: a model trained for the study (its own workdir under ``WORKDIR/models/``).

    Attributes:
        modalities: The experiment's modalities it keeps, the state first.
        stages: The training stages it runs.
    """

    modalities: tuple[str, ...]
    stages: tuple[str, ...] = ("autoencoder", "score")


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """``config.methods.<name>``: one method of the study.

    Attributes:
        kind: One of :data:`KINDS`.
        model: The trained model of a ``score`` method (a key of ``config.models``).
        space: ``latent`` (SLAMS) or ``pixel`` (the SDA prior) for a ``score`` method.
        aux: The auxiliary observations (keys of ``config.aux``) a physical score method also receives.
        observe: ``physical`` (compared through the decoder) or ``latent`` (the encoded truth observed).
    """

    kind: str
    model: str = ""
    space: Literal["latent", "pixel"] = "latent"
    aux: tuple[str, ...] = ()
    observe: str = "physical"


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """``config.study``: which methods, which sweeps, which windows, how many members.

    Attributes:
        methods: The methods run (keys of ``config.methods``), in the tables' order.
        sweeps: Some of :data:`SWEEPS`, in the order they run.
        coarsen, coarsen_std: The coarsening factors r swept, at this noise std.
        noise, noise_coarsen: The noise stds swept (relative to the state's), at this coarsening factor.
        gap, gap_std: The gaps g of a regular lattice of points swept, at this noise std.
        every: The state is observed every ``every`` steps.
        windows, length: Test windows of ``length`` states; ``window_spacing`` ``first`` or ``even``.
        members: Ensemble size (at least 2: spread, CRPS).
        confidence: Level of the t-intervals over the windows, in (0, 1).
        example_setting: The setting label (``coarsen=8``) whose first window is drawn in the maps.
        order: ``sweeps`` (as listed) or ``spread`` (every sweep's extremes first); the numbers are the same.
    """

    methods: tuple[str, ...]
    sweeps: tuple[str, ...]
    coarsen: tuple[int, ...]
    coarsen_std: float
    noise: tuple[float, ...]
    noise_coarsen: int
    gap: tuple[int, ...]
    gap_std: float
    every: int
    windows: int
    length: int
    members: int
    confidence: float
    example_setting: str
    window_spacing: str = "first"
    order: str = "sweeps"

    def __post_init__(self):
        for sweep in self.sweeps:
            if sweep not in SWEEPS:
                raise StudyError(f"config.study.sweeps: unknown sweep {sweep!r}; expected some of {SWEEPS}")
        if self.members < 2:
            raise StudyError(f"config.study.members={self.members}: expected at least 2 (spread, CRPS)")
        if not 0 < self.confidence < 1:
            raise StudyError(f"config.study.confidence={self.confidence}: expected a level in (0, 1)")
        if self.every < 1 or self.length < 2:
            raise StudyError(f"config.study.every={self.every}, length={self.length}: expected >= 1 and >= 2")
        check_order(self.order)


@dataclasses.dataclass(frozen=True)
class ThreeDVarSettings:
    """``config.threedvar``: the static-B 3D-Var/OI baseline.

    Attributes:
        time_correlation: Correlate states in time too (so unobserved states are analysed).
        periodic: Whether the correlations wrap in (lat, lon); latitude never does on a geographic grid.
        tol, maxiter: The conjugate-gradient solve of every member.
    """

    time_correlation: bool
    periodic: tuple[bool, ...]
    tol: float
    maxiter: int

    def __post_init__(self):
        if len(self.periodic) != 2:
            raise StudyError(f"config.threedvar.periodic={self.periodic}: expected (lat, lon) flags")


@dataclasses.dataclass(frozen=True)
class AblationSettings:
    """The whole study config, typed.

    Attributes:
        experiment: The experiment config every model is trained from (a ConfigDict, handed to the pipeline).
        experiment_settings: The same, read by :func:`slams_jax.pipeline.configuration.settings_from_config`.
        seed: Seed of the observations, the instruments and the samplers.
        models, methods, study, aux, sampling, threedvar: The groups of the same names.
    """

    experiment: Any
    experiment_settings: Settings
    seed: int
    models: Mapping[str, ModelSpec]
    methods: Mapping[str, MethodSpec]
    study: StudySettings
    aux: Mapping[str, ObservationSettings]
    sampling: AssimilationSettings
    threedvar: ThreeDVarSettings


_GROUPS = {"seed": int, "models": Mapping[str, ModelSpec], "methods": Mapping[str, MethodSpec],
           "aux": Mapping[str, ObservationSettings]}
_RECORDS = {"study": StudySettings, "sampling": AssimilationSettings, "threedvar": ThreeDVarSettings}


def ablation_settings(config: Any) -> AblationSettings:
    """Build and check the study's settings from ``configs/ablation.py``'s config (or pass them through).

    Raises:
        ConfigError: (a :class:`StudyError` for the study's own checks) naming the offending key.
    """
    if isinstance(config, AblationSettings):
        return config
    expected = {"experiment", *_GROUPS, *_RECORDS}
    keys = set(config.keys())
    if keys != expected:
        raise ConfigError(f"config: unknown key(s) {sorted(keys - expected)}, missing {sorted(expected - keys)}; "
                          f"expected {sorted(expected)}")
    experiment = config["experiment"]
    if not isinstance(experiment, ml_collections.ConfigDict):
        experiment = ml_collections.ConfigDict(experiment)
    settings = AblationSettings(
        experiment=experiment, experiment_settings=settings_from_config(experiment),
        **{k: convert(config[k], tp, k) for k, tp in _GROUPS.items()},
        **{k: build_settings(cls, config[k], k) for k, cls in _RECORDS.items()})
    check_settings(settings)
    return settings


def _check_models(s: AblationSettings) -> None:
    known = [m.name for m in s.experiment_settings.data.modalities]
    for name, spec in s.models.items():
        missing = [m for m in spec.modalities if m not in known]
        if missing or not spec.modalities or spec.modalities[0] != known[0]:
            raise StudyError(f"config.models.{name}.modalities={tuple(spec.modalities)}: expected the state "
                             f"{known[0]!r} first, then some of {known[1:]}")


def check_settings(s: AblationSettings) -> None:
    """What only the whole study can check: methods, models, the prior's window, the grid's periodicity."""
    for m in s.study.methods:
        if m not in s.methods:
            raise StudyError(f"config.study.methods: {m!r} is not in config.methods ({sorted(s.methods)})")
        spec = s.methods[m]
        if spec.kind not in KINDS:
            raise StudyError(f"config.methods.{m}.kind={spec.kind!r}: expected one of {KINDS}")
        if spec.kind == "score" and spec.model not in s.models:
            raise StudyError(f"config.methods.{m}.model={spec.model!r}: expected one of {sorted(s.models)}")
    _check_models(s)
    order = s.experiment_settings.score.order
    if s.study.length < 2 * order + 1:
        raise StudyError(f"config.study.length={s.study.length}: the score methods need windows of at least the "
                         f"prior's {2 * order + 1} states (config.experiment.score.order={order})")
    if s.experiment_settings.data.source == "dataset" and s.threedvar.periodic[0]:
        raise StudyError(f"config.threedvar.periodic={s.threedvar.periodic}: latitude is not periodic "
                         "on a geographic grid (the poles must not wrap onto each other); expected (False, True)")


__all__ = ["KINDS", "SWEEPS", "ORDERS", "StudyError", "ModelSpec", "MethodSpec", "StudySettings",
           "ThreeDVarSettings", "AblationSettings", "ablation_settings", "check_settings", "check_order"]
