"""The data settings: which source, which modalities, which dates, typed and frozen.

They sit next to the sources that read them (:mod:`slams_jax.data.kolmogorov`, :mod:`slams_jax.data.era5`,
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


__all__ = ["ModalitySettings", "AuxSourceSettings", "Era5Settings", "DataSettings", "to_plain"]
