"""Gridded observation files: a netCDF or zarr field on the model grid, or on a grid coarser by integer factors.

The data flow of :func:`read_gridded`: open the file, find the variable's time, latitude and longitude dims
(:mod:`slams_jax.coords`; a scalar time coordinate counts as a time dim of size 1), decide how the file's
grid relates to the model grid (the same grid, or block means of it: :class:`~slams_jax.observation.operators.Coarsen`),
flip a latitude axis running the other way, match the file times to the trajectory, and turn each matched
time into one observation of its finite cells (:class:`~slams_jax.observation.operators.Points`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from slams_jax import coords
from slams_jax.errors import ObservationError
from slams_jax.observation.files.common import Target, open_dataset, target
from slams_jax.observation.files.times import format_time, match_times, time_range
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Coarsen, Operator, Points


def read_gridded(
    path: str | os.PathLike,
    *,
    modality: str,
    variables: Sequence[str],
    variable: str,
    std: float,
    grid_lat: np.ndarray,
    grid_lon: np.ndarray,
    times: np.ndarray,
    time_tolerance: float | np.timedelta64 | None = None,
) -> list[Observation]:
    """Read a gridded field (netCDF or zarr) into one observation per matched time.

    The file variable named ``variable`` must have dims ``(time, <lat>, <lon>)`` (any order, spelled as
    :mod:`slams_jax.coords` accepts them, ``y``/``x`` included; other dims of size 1 are dropped) and either the model grid's shape ``(lat, lon)``, observed cell by cell, or a
    shape that divides it, ``(lat / f_lat, lon / f_lon)``, observed as block means of the model grid. A
    latitude coordinate running the other way than ``grid_lat`` is flipped. Times with no finite value are
    skipped.

    Args:
        path: netCDF file, or zarr store (a directory or a path ending in ``.zarr``; needs ``zarr``).
        modality: Observed modality (``state`` or an auxiliary one).
        variables: Channel names of that modality, e.g. ``("u", "v")``.
        variable: The observed channel; also the name of the variable in the file.
        std: Noise standard deviation (physical units).
        grid_lat: Model grid latitudes ``(lat,)``; only their order is used.
        grid_lon: Model grid longitudes ``(lon,)``.
        times: Times of the trajectory states ``(time,)``, numeric or ``datetime64``.
        time_tolerance: Largest accepted ``|file time - state time|`` (a number, or a ``timedelta64`` for
            datetime times); ``None`` for half the smallest spacing of ``times`` (exact for a single time).

    Returns:
        Observations with operator ``TimeIndex((i,)) >> Channels((c,)) [>> Coarsen(f)] >> Points(...)`` and
        values ``(1, n_finite_cells, 1)``, in file time order, named ``"<file name>:<variable>@<file time>"``.

    Raises:
        FileNotFoundError: The file does not exist.
        ObservationError: Unknown variable, wrong dims or shape, no matching time or no finite value.
    """
    request, grid_lat, _, times = target(path, modality, variables, variable, std, grid_lat, grid_lon, times)
    path = request.path
    where = f"observation file {str(path)!r}, variable {variable!r}"
    with open_dataset(path) as ds:
        da, time_dim, lat_dim = _field(ds, path, variable, where)
        coarsen = _coarsening(where, da.shape[1:], request.shape[1:3])
        flip = _lat_flipped(da, lat_dim, grid_lat)
        file_times = np.asarray(da[time_dim].values)
        index = match_times(path, file_times, times, time_tolerance)
        keep = np.flatnonzero(index >= 0)
        data = _numbers(da, {time_dim: keep}, where)
    if flip:
        data = data[:, ::-1, :]
    return _observations(request, where, data, index[keep], file_times[keep], coarsen)


def _field(ds: xr.Dataset, path: Path, variable: str, where: str) -> tuple[xr.DataArray, str, str]:
    """The file variable as ``(time, lat, lon)``, with the names of its time and latitude dims.

    A scalar time coordinate becomes a time dim of size 1; other dims of size 1 are dropped.
    """
    if variable not in ds.variables:
        raise ObservationError(
            f"observation file {str(path)!r}: no variable {variable!r}; it has {sorted(map(str, ds.data_vars))}"
        )
    da = ds[variable]
    time_dim = coords.find(da.dims, "time")
    if time_dim is None:
        scalar = coords.find([str(k) for k in da.coords if da[k].ndim == 0], "time")
        if scalar is not None:
            da, time_dim = da.expand_dims(scalar), scalar
    lat_dim, lon_dim = coords.find(da.dims, "latitude", grid=True), coords.find(da.dims, "longitude", grid=True)
    extra = [d for d in da.dims if d not in (time_dim, lat_dim, lon_dim)]
    if None in (time_dim, lat_dim, lon_dim) or any(da.sizes[d] != 1 for d in extra):
        raise ObservationError(
            f"{where}: has dims {dict(da.sizes)}; expected (time, lat, lon) with time one of "
            f"{coords.spellings('time')}, lat one of {coords.spellings('latitude', grid=True)} and lon one of "
            f"{coords.spellings('longitude', grid=True)} (other dims must have size 1)"
        )
    return da.isel({d: 0 for d in extra}, drop=True).transpose(time_dim, lat_dim, lon_dim), time_dim, lat_dim


def _coarsening(where: str, file_grid: tuple[int, int], model_grid: tuple[int, int]) -> Coarsen | None:
    """``None`` for a file on the model grid, the :class:`Coarsen` it observes for a coarser one."""
    (f_lat, f_lon), (n_lat, n_lon) = file_grid, model_grid
    if (f_lat, f_lon) == (n_lat, n_lon):
        return None
    if f_lat and f_lon and n_lat % f_lat == 0 and n_lon % f_lon == 0:
        factors = (n_lat // f_lat, n_lon // f_lon)
        return Coarsen(factors[0] if factors[0] == factors[1] else factors)
    raise ObservationError(
        f"{where}: spatial shape (lat, lon) = ({f_lat}, {f_lon}) is neither the model grid ({n_lat}, "
        f"{n_lon}) nor a coarsening of it by integer factors"
    )


def _lat_flipped(da: xr.DataArray, lat_dim: str, grid_lat: np.ndarray) -> bool:
    """Whether the file's latitude coordinate runs the other way than the model grid's."""
    if lat_dim in da.coords and da.sizes[lat_dim] >= 2 and grid_lat.size >= 2:
        file_lat = np.asarray(da[lat_dim].values, np.float64)
        return bool(np.sign(file_lat[-1] - file_lat[0]) * np.sign(grid_lat[-1] - grid_lat[0]) < 0)
    return False


def _numbers(da: xr.DataArray, rows: dict[str, np.ndarray], where: str) -> np.ndarray:
    """The values at ``rows`` (``{dim: indices}``), loaded, as float32."""
    try:
        return np.asarray(da.isel(rows).values, np.float32)
    except (TypeError, ValueError) as e:
        raise ObservationError(f"{where}: values could not be read as numbers: {e}") from e


def _observations(
    request: Target,
    where: str,
    data: np.ndarray,
    states: np.ndarray,
    file_times: np.ndarray,
    coarsen: Coarsen | None,
) -> list[Observation]:
    """One observation of the finite cells of each matched time; an error if every one is all NaN.

    Args:
        request: What is observed.
        where: The file and variable, for messages.
        data: Values of the matched times on the file grid, latitude as the model's ``(matched, lat', lon')``.
        states: Trajectory state of each matched time ``(matched,)``.
        file_times: The matched file times ``(matched,)``.
        coarsen: The block means the file grid observes, ``None`` on the model grid.
    """
    observations = []
    for field, state, when in zip(data, states, file_times):
        finite = np.isfinite(field)
        if not finite.any():
            continue
        lat_index, lon_index = np.nonzero(finite)
        operator: Operator = request.selection(int(state))
        if coarsen is not None:
            operator = operator >> coarsen
        operator = operator >> Points(tuple(lat_index.tolist()), tuple(lon_index.tolist()))
        values = field[finite].reshape(1, -1, 1)
        expected = operator.check(request.shape)
        if values.shape != expected:  # pragma: no cover - guards the construction above
            raise ObservationError(f"{where}: values {values.shape} do not fit {operator!r} -> {expected}")
        observations.append(request.observation(operator, values, format_time(when)))
    if not observations:
        raise ObservationError(
            f"{where}: every matched time {time_range(file_times)} has only NaN values; nothing to observe"
        )
    return observations


__all__ = ["read_gridded"]
