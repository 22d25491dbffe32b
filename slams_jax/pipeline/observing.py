"""The observations of an assimilation: synthetic ones made from the true window, and ones read from files.

A synthetic observation (``config.assimilation.observations``) is ``y = A(x) + noise`` of one modality of
the truth ``x``, with ``A`` composed as time -> channels -> space -> saturation
(:mod:`slams_jax.observation.operators`) and Gaussian noise whose standard deviation is given in physical
units (``std``) or as a fraction of the modality's climatological standard deviation, per channel
(``relative_std``). A ``latent`` observation observes the standardized latent state itself (the paper's
setting). Observation files (``config.assimilation.files``) are gridded fields or station tables, placed on
the truth's grid and times (:mod:`slams_jax.observation.files`).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax import coords
from slams_jax.diffusion.posterior import latent_observation
from slams_jax.errors import ConfigError
from slams_jax.observation.files import read_gridded, read_stations, read_table, table_observations
from slams_jax.observation.observations import Observation, observe
from slams_jax.observation.operators import (
    Channels,
    Coarsen,
    Identity,
    Operator,
    Saturate,
    Swath,
    TimeIndex,
    TimeSubsample,
    random_points,
)
from slams_jax.pipeline.configuration import AssimilationSettings, ObservationFileSettings, ObservationSettings
from slams_jax.pipeline.pretrained import TrainedModel


def build_operator(o: ObservationSettings, truth: np.ndarray, key) -> Operator:
    """The operator of one configured observation: time -> channels -> space -> saturation.

    Random points are drawn among the cells where ``truth`` (``(time, lat, lon, channel)``) is finite at
    every time, so that a modality with missing values (precipitation over the ocean) is observed only where
    it exists.
    """
    ops: list[Operator] = []
    if o.times:
        ops.append(TimeIndex(o.times))
    elif o.every > 1 or o.offset > 0:
        ops.append(TimeSubsample(o.every, o.offset))
    if o.channels:
        ops.append(Channels(o.channels))
    if o.swath_footprint:
        ops.append(Swath(o.swath_footprint, o.swath_width))
    else:
        valid = np.isfinite(truth).all(axis=(0, 3))
        if o.coarsen > 1:
            coarsen = Coarsen(o.coarsen)
            ops.append(coarsen)
            valid = np.asarray(coarsen(jnp.asarray(valid, jnp.float32)[None, ..., None]))[0, ..., 0] == 1.0
        if o.points > 0:
            ops.append(random_points(key, valid.shape, o.points, valid=valid))
    if o.saturate > 0:
        ops.append(Saturate(o.saturate))
    if not ops:
        return Identity()
    op = ops[0]
    for nxt in ops[1:]:
        op = op >> nxt
    return op


def make_observations(
    a: AssimilationSettings, model: TrainedModel, truth: Mapping[str, np.ndarray], key
) -> list[Observation]:
    """Synthetic observations of the true window ``truth`` (physical units, per modality)."""
    norm = model.normalization
    modalities = {m.name: m for m in model.settings.data.modalities}
    out = []
    for i, o in enumerate(a.observations):
        k_op, k_noise = jax.random.split(jax.random.fold_in(key, i))
        where = f"config.assimilation.observations[{i}]"
        if o.modality == "latent":
            if a.space != "latent":
                raise ConfigError(f"{where}: latent observations need assimilation.space='latent'")
            normalized = {k: norm.normalize(k, v) for k, v in truth.items()}
            z_shape = (next(iter(truth.values())).shape[0],) + tuple(model.latent_shape())
            op = build_operator(o, np.zeros(z_shape, np.float32), k_op)
            out.append(latent_observation(k_noise, model, normalized, op, o.std or o.relative_std,
                                          name=f"obs{i}:latent"))
            continue
        if o.modality not in modalities:
            raise ConfigError(f"{where}.modality={o.modality!r}: expected one of {sorted(modalities)} or 'latent'")
        if a.space == "pixel" and o.modality != model.settings.data.state.name:
            raise ConfigError(f"{where}: pixel-space assimilation observes only the state, not {o.modality!r}")
        op = build_operator(o, truth[o.modality], k_op)
        std = o.noise_std(norm.std[o.modality])
        out.append(observe(k_noise, truth[o.modality], op, std, modality=o.modality, name=f"obs{i}:{o.modality}"))
    return out


def read_observation_files(a: AssimilationSettings, model: TrainedModel, window) -> list[Observation]:
    """The observations of ``a.files`` and ``a.stations``, on the grid and at the times of the truth ``window``.

    A ``stations`` file is an observation table (:func:`slams_jax.read_table`). With ``variable`` set, only
    its rows of that channel of ``modality`` are read (every row, without a ``variable`` column); without,
    each row's ``variable`` names its channel: one of ``modality``'s, else one of another modality's.
    ``a.stations`` is such a table of the state. The grid's longitude is periodic as the data say
    (``config.data.periodic``; on Kolmogorov flow, where it spans the globe).
    """
    files = tuple(a.files)
    if a.stations:
        files += (ObservationFileSettings(a.stations, kind="stations", modality=model.settings.data.state.name,
                                          std=a.stations_std),)
    lat_name = coords.find(window.coords, "latitude", grid=True)
    lon_name = coords.find(window.coords, "longitude", grid=True)
    grid_lat, grid_lon = window[lat_name].values, window[lon_name].values
    out = []
    modalities = {m.name: m for m in model.settings.data.modalities}
    periodic = bool(window.attrs["periodic_longitude"]) if "periodic_longitude" in window.attrs else None
    for i, f in enumerate(files):
        if f.modality not in modalities:
            raise ConfigError(f"config.assimilation.files[{i}].modality={f.modality!r}: expected one of {sorted(modalities)}")
        variables = modalities[f.modality].variables
        kwargs = dict(modality=f.modality, variables=variables, variable=f.variable or variables[0], std=f.std,
                      grid_lat=grid_lat, grid_lon=grid_lon, times=window["time"].values)
        if f.kind == "grid":
            out.extend(read_gridded(f.path, **kwargs))
        elif f.variable:
            out.extend(read_stations(f.path, periodic=periodic, **kwargs))
        else:
            # the file's modality first, so a channel name it shares with another modality is its own
            names = {f.modality: tuple(variables)}
            names.update({m: tuple(v for v in s.variables if v not in variables)
                          for m, s in modalities.items() if m != f.modality})
            table = read_table(f.path, variable=variables[0])
            out.extend(table_observations(table, grid_lat=grid_lat, grid_lon=grid_lon, times=kwargs["times"],
                                          modalities=names, std=f.std, periodic=periodic))
    return out


__all__ = ["build_operator", "make_observations", "read_observation_files"]
