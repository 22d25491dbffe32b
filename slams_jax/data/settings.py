"""The data settings: which source, which modalities, which dates, typed and frozen.

They sit next to the sources that read them (:mod:`slams_jax.data.kolmogorov`, :mod:`slams_jax.data.gridded`,
:mod:`slams_jax.data.datasets`), so the data package needs nothing from the runtime
(:mod:`slams_jax.pipeline`), which builds them from the config
(:func:`slams_jax.pipeline.configuration.settings_from_config`) and re-exports them.
:func:`to_plain` is their JSON form, the one a checkpoint stores and a prepared store's fingerprint is
made of.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

import numpy as np

from slams_jax.data.kolmogorov import KolmogorovConfig


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
class AuxSettings:
    """An auxiliary modality of the ``dataset`` source, on its own files or the state's.

    Attributes:
        path: Its files (a netCDF file, zarr store, directory or glob); empty: the state's own
            (``config.data.path``), e.g. precipitation stored next to temperature.
        variables: Its channels, spelled as ``config.data.variables`` (``name``, ``name@level``,
            ``channel=name@level``).
        aggregation: How its values become a state at the state's cadence: ``instant``, ``mean``, or empty
            for the state's own rule.
        regrid: Onto the state's grid: ``conservative`` (area mean; fluxes and precipitation) or ``bilinear``.
        weight: Weight of the modality in the reconstruction loss.
    """

    path: str = ""
    variables: tuple[str, ...] = ()
    aggregation: Literal["", "instant", "mean"] = ""
    regrid: Literal["conservative", "bilinear"] = "conservative"
    weight: float = 1.0


def period_end(last: str) -> np.datetime64:
    """The last instant of an inclusive period end, at the string's own precision: ``"2021-01-20"`` is the end
    of that day, ``"2021-02"`` of February, ``"2021"`` of the year, ``"2021-01-20T06:00"`` of that minute."""
    end = np.datetime64(str(last).strip())
    return (end + 1).astype("datetime64[ns]") - np.timedelta64(1, "ns")


def _check_periods(periods: Mapping[str, tuple[str, ...]]) -> None:
    """Every split a ``(first, last)`` pair of dates, the last not before the first, no two overlapping."""
    bounds = {}
    for split, pair in periods.items():
        if len(pair) != 2:
            raise ValueError(f"{split}={pair!r}: expected (first_date, last_date), e.g. ('2021-01-01', '2021-01-20')")
        try:
            lo, hi = np.datetime64(pair[0], "ns"), period_end(pair[1])
        except ValueError as e:
            raise ValueError(f"{split}={pair!r}: not dates ({e})") from e
        if hi < lo:
            raise ValueError(f"{split}={pair!r}: the last date is before the first")
        bounds[split] = (lo, hi)
    names = list(bounds)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (a0, a1), (b0, b1) = bounds[a], bounds[b]
            if a0 <= b1 and b0 <= a1:
                raise ValueError(f"the {a} period {periods[a]} overlaps the {b} period {periods[b]}")


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Where the data come from and how they are split.

    Two sources: ``kolmogorov``, the embedded default (generated trajectories, split by trajectory:
    ``n_train``, ``n_valid``, ``n_test``, ``n_states``), and ``dataset``, any gridded netCDF or zarr data
    (:mod:`slams_jax.data.gridded`; one trajectory per split, split by date).

    Attributes:
        source: ``kolmogorov`` or ``dataset``.
        path: The dataset's files: a netCDF file, a zarr store, a directory of them or a glob.
        variables: The state's channels: ``name``, ``name@level`` (one level, by value) or
            ``channel=name@level``.
        cadence: The state spacing: empty for the files' own, or a resampling such as ``6h`` or ``1D``.
        aggregation: A state at ``t``: the value at ``t`` (``instant``) or the mean over ``[t, t + cadence)``.
        train, valid, test: Inclusive ``(first, last)`` dates (or date-times) of the splits.
        periodic: Whether longitude wraps: ``"auto"`` (when the grid spans the globe), ``"yes"`` or ``"no"``.
        missing: A state time with no data: ``error`` (reported, nothing runs) or ``skip`` (no window holds it).
        normalization_states: Training states (drawn at random, seeded) the normalization is fitted on.
        prepared: A store written by ``python -m slams_jax.prepare`` to train from; empty: read the files.
        aux: Auxiliary modalities by name (``--config.data.aux.precip.path=...``).
        cache_dir: Where generated (Kolmogorov) data are cached; empty means ``WORKDIR/data``.
        n_train, n_valid, n_test, n_states: The Kolmogorov trajectories per split and their states.
        modalities: The state modality first, then the auxiliary ones; for ``dataset`` they follow from
            ``variables`` and ``aux`` when left empty.
        kolmogorov: Settings of the Kolmogorov-flow generator.
    """

    source: Literal["kolmogorov", "dataset"] = "kolmogorov"
    path: str = ""
    variables: tuple[str, ...] = ()
    cadence: str = ""
    aggregation: Literal["instant", "mean"] = "instant"
    train: tuple[str, ...] = ()
    valid: tuple[str, ...] = ()
    test: tuple[str, ...] = ()
    periodic: Literal["auto", "yes", "no"] = "auto"
    missing: Literal["error", "skip"] = "error"
    normalization_states: int = 366
    prepared: str = ""
    aux: Mapping[str, AuxSettings] = dataclasses.field(default_factory=dict)
    cache_dir: str = ""
    n_train: int = 48
    n_valid: int = 8
    n_test: int = 8
    n_states: int = 64
    modalities: tuple[ModalitySettings, ...] = ()
    kolmogorov: KolmogorovConfig = KolmogorovConfig()

    def __post_init__(self):
        if self.source != "dataset":
            return
        from slams_jax.data.gridded.source import parse_variables

        periods = {s: getattr(self, s) for s in ("train", "valid", "test")}
        empty = [s for s, p in periods.items() if not p]
        if empty:
            raise ValueError(f"the dataset source needs date ranges: set config.data.{empty[0]}, e.g. "
                             "('2021-01-01', '2021-01-20')")
        _check_periods(periods)
        if self.normalization_states < 1:
            raise ValueError(f"normalization_states={self.normalization_states}: expected at least 1")
        derived = [ModalitySettings("state", tuple(v.channel for v in parse_variables(self.variables,
                                                                                      "config.data.variables")))]
        for name, a in self.aux.items():
            channels = tuple(v.channel for v in parse_variables(a.variables, f"config.data.aux.{name}.variables"))
            derived.append(ModalitySettings(name, channels, a.weight))
        seen: dict[str, str] = {}
        for m in derived:  # channel names key the truth window and the tables' variables: one modality each
            for channel in m.variables:
                if channel in seen:
                    raise ValueError(f"channel {channel!r} is named by modalities {seen[channel]!r} and {m.name!r}; "
                                     "give one an alias (alias=name@level)")
                seen[channel] = m.name
        if not self.modalities:
            object.__setattr__(self, "modalities", tuple(derived))
            return
        given = [(m.name, m.variables) for m in self.modalities]
        if given != [(m.name, m.variables) for m in derived]:
            raise ValueError(f"modalities {given} do not match config.data.variables and config.data.aux "
                             f"({[(m.name, m.variables) for m in derived]}); leave config.data.modalities empty")

    @property
    def state(self) -> ModalitySettings:
        return self.modalities[0]


def to_plain(value: Any) -> Any:
    """A settings dataclass as nested dicts and lists (JSON-compatible); only the ``__init__`` fields.

    Mappings become dicts and tuples lists, recursively, so ``json.dumps`` takes the result and
    :func:`slams_jax.pipeline.builder.build_settings` turns it back into the same dataclass.
    """
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    return value


__all__ = ["ModalitySettings", "AuxSettings", "DataSettings", "period_end", "to_plain"]
