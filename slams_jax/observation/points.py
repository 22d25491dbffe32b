"""The analysis at arbitrary points: :func:`to_points` samples gridded fields at the rows of a table.

Each row ``(time, lat, lon, variable)`` of an observation table (:mod:`slams_jax.observation.files.tables`)
reads its variable's field at the state matched to its time (nearest within a tolerance, as observations
are matched) and bilinearly at its position, through the same corners and weights as the
:class:`~slams_jax.observation.operators.Stations` operator, so a station's value here is exactly what an
observation of it would see. With an ensemble (a ``member`` dimension), the rows get its mean, its spread
and every member, ready for scores at withheld stations (RMSE of the mean, spread, CRPS).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from slams_jax import coords
from slams_jax.errors import ObservationError
from slams_jax.observation.files.common import existing
from slams_jax.observation.files.stations import check_time_kind
from slams_jax.observation.files.tables import read_table, row_label, table_source, validate_table
from slams_jax.observation.files.times import match_times
from slams_jax.observation.operators import Stations

_MEMBER = "member"


def to_points(
    analysis: xr.Dataset | xr.DataArray | str | os.PathLike,
    table: pd.DataFrame | str | os.PathLike,
    *,
    tolerance: float | np.timedelta64 | None = None,
    periodic: bool | None = None,
    period: float = 360.0,
) -> pd.DataFrame:
    """Sample gridded fields (an analysis ensemble) at the rows of an observation table.

    Args:
        analysis: What ``analysis.nc`` holds (its path, or the Dataset: the ``analysis`` variable
            ``(member, time, lat, lon, channel)`` is sampled), a DataArray with a ``channel`` dimension whose
            labels are variable names, a DataArray ``([member,] time, lat, lon)`` of the variable it is named
            after, or a Dataset of such DataArrays, one per variable. Dimensions are spelled as
            :mod:`slams_jax.coords` accepts (``latitude``, ``y``...), in any order; others must have size 1.
        table: Points to sample (:func:`~slams_jax.observation.files.tables.read_table`'s schema; the
            ``observation`` column may be absent, and ``variable`` too when the analysis has one variable):
            a DataFrame or a file.
        tolerance: Largest accepted ``|row time - analysis time|``; ``None``: half the smallest spacing.
        periodic: Whether the grid's longitude wraps; ``None`` detects it (global grids only).
        period: Period of the longitude.

    Returns:
        The table's rows and columns (canonical names, same index) plus ``mean`` (the field itself without a
        member dimension) and, with members, ``spread`` (standard deviation over members, ddof 1; 0 for one
        member) and ``member_0``, ``member_1``, ... Rows whose time matches no analysis time get NaN.

    Raises:
        ObservationError: A variable of the table that the analysis lacks (the available ones listed), bad
            dimensions, no row at an analysis time, a row outside the grid (named).
    """
    fields = _fields(analysis)
    only = next(iter(fields)) if len(fields) == 1 else None  # the variable of a table without that column
    if isinstance(table, pd.DataFrame):
        table = validate_table(table, variable=only, observed=False)
    else:
        table = read_table(table, variable=only, observed=False)
    source = table_source(table)
    unknown = sorted(set(table["variable"]) - set(fields))
    if unknown:
        raise ObservationError(f"{source}: the analysis has no variable(s) {unknown}; it has {sorted(fields)}")
    members = {_members(field) for field in fields.values()}
    if len(members) > 1:
        raise ObservationError(f"analysis: its variables have different numbers of members {sorted(members)}")
    (n_members,) = members
    samples = np.full((max(n_members, 1), len(table)), np.nan)
    variables = table["variable"].to_numpy()
    for variable in sorted(set(variables)):
        rows = np.flatnonzero(variables == variable)
        samples[:, rows] = _sample(fields[variable], table.iloc[rows], tolerance, periodic, period)
    out = table.copy()
    out["mean"] = samples.mean(0)
    if n_members:
        out["spread"] = samples.std(0, ddof=1) if n_members > 1 else np.zeros(len(table))
        members_frame = pd.DataFrame(samples.T, index=out.index, columns=[f"member_{k}" for k in range(n_members)])
        out = pd.concat([out, members_frame], axis=1)
    out.attrs = dict(table.attrs)
    return out


def _fields(analysis: Any) -> dict[str, xr.DataArray]:
    """``{variable: DataArray without a channel dimension}`` of what :func:`to_points` accepts."""
    if isinstance(analysis, (str, os.PathLike)):
        path = existing(Path(analysis))
        try:
            analysis = xr.open_dataset(path)
        except Exception as e:  # the backends raise many types; the message carries the cause
            raise ObservationError(f"analysis file {str(path)!r}: could not be read as netCDF: {e}") from e
    if isinstance(analysis, xr.Dataset):
        if "analysis" in analysis.data_vars and "channel" in analysis["analysis"].dims:
            analysis = analysis["analysis"]
        else:
            return {str(k): v for k, v in analysis.data_vars.items() if _has_grid(v)}
    if not isinstance(analysis, xr.DataArray):
        raise ObservationError(f"analysis: expected an xarray Dataset or DataArray (or a netCDF path), got "
                               f"{type(analysis).__name__}")
    if "channel" in analysis.dims:
        labels = analysis["channel"].values if "channel" in analysis.coords else range(analysis.sizes["channel"])
        return {str(c): analysis.isel(channel=k, drop=True) for k, c in enumerate(labels)}
    if analysis.name is None:
        raise ObservationError("analysis: a DataArray without a channel dimension must be named after its variable")
    return {str(analysis.name): analysis}


def _has_grid(field: xr.DataArray) -> bool:
    dims = [str(d) for d in field.dims]
    return all(coords.find(dims, role, grid=role != "time") for role in ("time", "latitude", "longitude"))


def _members(field: xr.DataArray) -> int:
    """Ensemble size, 0 without a member dimension."""
    return int(field.sizes[_MEMBER]) if _MEMBER in field.dims else 0


def _grid_field(field: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(values (member, time, lat, lon), times, lat, lon)`` of one variable's field."""
    dims = [str(d) for d in field.dims]
    time = coords.find(dims, "time")
    lat, lon = coords.find(dims, "latitude", grid=True), coords.find(dims, "longitude", grid=True)
    extra = [d for d in dims if d not in (time, lat, lon, _MEMBER)]
    if None in (time, lat, lon) or any(field.sizes[d] != 1 for d in extra):
        raise ObservationError(
            f"analysis variable {field.name!r}: has dims {dict(field.sizes)}; expected ([member,] time, lat, lon) "
            f"spelled as {coords.spellings('time')}, {coords.spellings('latitude', grid=True)}, "
            f"{coords.spellings('longitude', grid=True)} (other dims of size 1)"
        )
    for d in (time, lat, lon):
        if d not in field.coords:
            raise ObservationError(f"analysis variable {field.name!r}: dimension {d!r} has no coordinate values")
    field = field.isel({d: 0 for d in extra}, drop=True)
    if _MEMBER not in field.dims:
        field = field.expand_dims(_MEMBER)
    values = np.asarray(field.transpose(_MEMBER, time, lat, lon).values, np.float64)
    return values, np.asarray(field[time].values), np.asarray(field[lat].values), np.asarray(field[lon].values)


def _sample(field: xr.DataArray, rows: pd.DataFrame, tolerance: Any, periodic: bool | None, period: float
            ) -> np.ndarray:
    """The field at the rows of one variable, ``(member, row)``; NaN where a row's time matches none."""
    values, times, grid_lat, grid_lon = _grid_field(field)
    source = table_source(rows)
    check_time_kind(rows, times, source)
    state = match_times(source, rows["time"].to_numpy(), times, tolerance)
    labels = [row_label(rows, k) for k in range(len(rows))]
    if "station" in rows:
        labels = [f"{s} ({p})" for s, p in zip(rows["station"].to_numpy(), labels)]
    try:
        stations = Stations(tuple(rows["lat"].tolist()), tuple(rows["lon"].tolist()), tuple(grid_lat.tolist()),
                            tuple(grid_lon.tolist()), period, periodic, names=tuple(labels))
    except ValueError as e:
        raise ObservationError(f"{source}, against the analysis grid: {e}") from e
    lat_index, lon_index, weight = stations.corners
    t = np.maximum(state, 0)[:, None]
    out = np.sum(values[:, t, lat_index, lon_index] * weight, axis=-1)  # (member, row)
    out[:, state < 0] = np.nan
    return out


__all__ = ["to_points"]
