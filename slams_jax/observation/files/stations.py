"""Observation tables to observations: each (trajectory state, variable) becomes one bilinear interpolation.

The data flow of :func:`table_observations`: validate the table (:mod:`.tables`), map each row's
``variable`` to a channel of a modality by name, drop rows with a missing observation, match the rows'
times to the trajectory (:mod:`.times`; rows matching no state are dropped, with a warning that counts
them), take each row's noise std from its ``std`` column or the ``std`` argument, and group the rows by
(state, modality, channel) into one observation each, observed through
``TimeIndex((i,)) >> Channels((c,)) >>`` :class:`~slams_jax.observation.operators.Stations`. Station
files of ``config.assimilation.files`` (:func:`read_stations`) go through the same code.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from slams_jax import coords
from slams_jax.errors import ObservationError
from slams_jax.observation.files.common import target
from slams_jax.observation.files.tables import read_table, row_label, table_source
from slams_jax.observation.files.times import format_time, match_times, time_kind, time_range
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Channels, Stations, TimeIndex

StdLike = float | Mapping[str, float] | None  # one std, or one per variable name


def table_observations(
    table: pd.DataFrame | str | os.PathLike,
    *,
    grid_lat: Any,
    grid_lon: Any,
    times: Any,
    modalities: Mapping[str, Sequence[str]],
    tolerance: float | np.timedelta64 | None = None,
    std: StdLike = None,
    periodic: bool | None = None,
    period: float = 360.0,
) -> list[Observation]:
    """The observations of an observation table on a trajectory's grid and times.

    Args:
        table: A DataFrame (earth2studio's schema: ``time, lat, lon, variable, observation``, optionally
            ``std``, ``station``) or a file :func:`~slams_jax.observation.files.tables.read_table` reads.
        grid_lat: Latitudes of the model grid ``(lat,)``, strictly monotonic, any spacing.
        grid_lon: Longitudes of the model grid ``(lon,)``, strictly monotonic modulo ``period``, regional or
            global (see :class:`~slams_jax.observation.operators.Stations`).
        times: Times of the trajectory states ``(time,)``, numeric or ``datetime64``.
        modalities: The channel names of each observable modality, ``{modality: (variable, ...)}``; a row's
            ``variable`` picks the modality and channel of that name.
        tolerance: Largest accepted ``|row time - state time|`` (a number, or a ``timedelta64`` for dates);
            ``None``: half the smallest spacing of ``times``.
        std: Noise std of the rows without one in a ``std`` column: a number, or ``{variable: std}``.
        periodic: Whether the grid's longitude wraps; ``None`` detects it (global grids only).
        period: Period of the longitude.

    Returns:
        One observation per (state, modality, channel) with rows, in that order: operator
        ``TimeIndex((i,)) >> Channels((c,)) >> Stations(...)``, values ``(1, station, 1)`` in table row order,
        std a scalar (from ``std``) or ``(1, station, 1)`` (a ``std`` column), named
        ``"<file name or 'table'>:<variable>@<state time>"``.

    Raises:
        ObservationError: A bad table (row, column, value named), an unknown variable (the known ones
            listed), no row at a trajectory time, a row without a std, stations outside the grid (named).
    """
    table = read_table(table)
    source = table_source(table)
    grid_lat, grid_lon, times = _axes(source, grid_lat, grid_lon, times)
    modality, channel = _channels(table, modalities, source)
    finite = ~np.isnan(table["observation"].to_numpy())
    if not finite.any():
        raise ObservationError(f"{source}: every observation is missing (empty or NaN)")
    table, modality, channel = table[finite], modality[finite], channel[finite]
    check_time_kind(table, times, source)
    state = match_times(source, table["time"].to_numpy(), times, tolerance)
    if (state < 0).any():
        warnings.warn(f"{source}: {int((state < 0).sum())} of {state.size} rows match no trajectory time "
                      f"{time_range(times)} and are dropped", stacklevel=2)
    stds = _stds(table, std, source)
    order = sorted({(int(i), list(modalities).index(m), int(c)) for i, m, c in zip(state, modality, channel) if i >= 0})
    names = list(modalities)
    return [
        _observation(table, np.flatnonzero((state == i) & (modality == names[m]) & (channel == c)), names[m], c,
                     (i, format_time(times[i])), (grid_lat, grid_lon, period, periodic), stds)
        for i, m, c in order
    ]


def _axes(source: str, grid_lat: Any, grid_lon: Any, times: Any) -> tuple[tuple, tuple, np.ndarray]:
    """The grid as tuples of floats, the trajectory times as a non-empty 1-D array."""
    axes = []
    for name, value in (("grid_lat", grid_lat), ("grid_lon", grid_lon)):
        value = np.asarray(value, np.float64)
        if value.ndim != 1 or value.size < 1:
            raise ObservationError(f"{source}: {name} must be a non-empty 1-D array of model grid coordinates, "
                                   f"got shape {value.shape}")
        axes.append(tuple(value.tolist()))
    return axes[0], axes[1], np.atleast_1d(np.asarray(times))


def _channels(table: pd.DataFrame, modalities: Mapping[str, Sequence[str]], source: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """The modality and channel index of every row ``(row,)``; an error listing unknown or ambiguous names."""
    owners: dict[str, list[tuple[str, int]]] = {}
    for m, variables in modalities.items():
        for c, v in enumerate(variables):
            owners.setdefault(str(v), []).append((str(m), c))
    names = table["variable"].to_numpy()
    unknown = sorted(set(names) - set(owners))
    if unknown:
        first = row_label(table, int(np.flatnonzero(names == unknown[0])[0]))
        known = {str(m): [str(v) for v in vs] for m, vs in modalities.items()}
        raise ObservationError(f"{source}: unknown variable(s) {unknown} (first at {first}); the observed "
                               f"variables are {known}")
    ambiguous = sorted(v for v in set(names) if len(owners[v]) > 1)
    if ambiguous:
        raise ObservationError(f"{source}: variable {ambiguous[0]!r} is a channel of modalities "
                               f"{[m for m, _ in owners[ambiguous[0]]]}; pass only the modality it observes")
    modality = np.asarray([owners[v][0][0] for v in names], object)
    return modality, np.asarray([owners[v][0][1] for v in names], np.int64)


def check_time_kind(table: pd.DataFrame, times: np.ndarray, source: str) -> None:
    """Dates against numeric trajectory times (or the reverse): an error naming the first row."""
    rows, states = time_kind(table["time"].to_numpy()), time_kind(times)
    if rows == states or "other" in (rows, states):
        return
    first = f"{source}, {row_label(table, 0)}: time {format_time(table['time'].to_numpy()[0])}"
    if rows == "datetime" and states == "numeric":
        raise ObservationError(f"{first} is a date but the trajectory times are numeric; give both as numbers "
                               "or both as datetime64")
    raise ObservationError(f"{first} is {rows} but the trajectory times are {states} ({times.dtype}); write "
                           "ISO 8601 dates such as 2020-01-01T06:00 for datetime trajectories")


def _stds(table: pd.DataFrame, std: StdLike, source: str) -> np.ndarray | float:
    """The noise std of every row ``(row,)`` (a ``std`` column filled from ``std``), or one float for all."""
    if "std" not in table and isinstance(std, (int, float, np.number)) and not isinstance(std, bool):
        return float(std)
    column = table["std"].to_numpy(np.float64) if "std" in table else np.full(len(table), np.nan)
    if isinstance(std, Mapping):
        fill = table["variable"].map(lambda v: float(std.get(v, np.nan))).to_numpy(np.float64)
    else:
        fill = np.full(len(table), np.nan if std is None else float(std))
    out = np.where(np.isnan(column), fill, column)
    missing = np.flatnonzero(~(out > 0))
    if missing.size:
        k = int(missing[0])
        raise ObservationError(
            f"{source}, {row_label(table, k)}: no noise std for variable {table['variable'].iloc[k]!r} "
            f"({missing.size} rows without one); give the table a 'std' column or pass std= (a number or "
            "{variable: std}), positive"
        )
    return out


def _observation(table: pd.DataFrame, rows: np.ndarray, modality: str, channel: int, when: tuple[int, str],
                 grid: tuple, stds: np.ndarray | float) -> Observation:
    """The observation of state ``when = (index, formatted time)`` by the table's ``rows`` of one channel."""
    state, label = when
    grid_lat, grid_lon, period, periodic = grid
    source = table_source(table)
    lat, lon = table["lat"].to_numpy()[rows], table["lon"].to_numpy()[rows]
    places = [row_label(table, int(k)) for k in rows]
    if "station" in table:
        places = [f"{s} ({p})" for s, p in zip(table["station"].to_numpy()[rows], places)]
    try:
        stations = Stations(tuple(lat.tolist()), tuple(lon.tolist()), grid_lat, grid_lon, period, periodic,
                            names=tuple(places))
    except ValueError as e:
        raise ObservationError(f"{source}: {e}") from e
    variable = str(table["variable"].to_numpy()[rows[0]])
    std = stds if isinstance(stds, float) else stds[rows].reshape(1, -1, 1)
    name = f"{table.attrs.get('name', 'table')}:{variable}@{label}"
    return Observation(modality=modality, operator=TimeIndex((state,)) >> Channels((channel,)) >> stations,
                       values=table["observation"].to_numpy()[rows].reshape(1, -1, 1), std=std, name=name)


def read_stations(
    path: str | os.PathLike,
    *,
    modality: str,
    variables: Sequence[str],
    variable: str,
    std: float,
    grid_lat: np.ndarray,
    grid_lon: np.ndarray,
    times: np.ndarray,
    period: float = 360.0,
    periodic: bool | None = None,
    time_tolerance: float | np.timedelta64 | None = None,
) -> list[Observation]:
    """The rows of one variable of a station file: :func:`table_observations` of those rows.

    The file is any table :func:`~slams_jax.observation.files.tables.read_table` reads; without a
    ``variable`` column every row is ``variable``. A ``std`` column, where present, overrides ``std``.

    Args:
        path: The table file (CSV, parquet or netCDF).
        modality, variables: The observed modality and its channel names, e.g. ``("u", "v")``.
        variable: The observed channel: only its rows are read.
        std: Noise standard deviation of rows without a ``std`` (physical units).
        grid_lat, grid_lon, times, period, periodic: As for :func:`table_observations`.
        time_tolerance: Its ``tolerance``.

    Returns:
        The observations of :func:`table_observations`, named ``"<file name>:<variable>@<state time>"``.
    """
    target(path, modality, variables, variable, std, grid_lat, grid_lon, times)  # the file, variable and grid
    table = read_table(path, variable=variable)
    rows = table[table["variable"] == variable]
    if rows.empty:
        raise ObservationError(f"{table_source(table)}: no row has variable {variable!r}; its 'variable' column "
                               f"has {sorted(set(table['variable']))}")
    return table_observations(rows, grid_lat=grid_lat, grid_lon=grid_lon, times=times,
                              modalities={modality: tuple(variables)}, tolerance=time_tolerance, std=std,
                              periodic=periodic, period=period)


def as_observations(
    observations: Any, *, grid: Any = None, times: Any = None, modalities: Mapping[str, Sequence[str]] | None = None,
    periodic: bool | None = None,
) -> list[Observation]:
    """Observations with every observation table among them turned into observations.

    Args:
        observations: An :class:`Observation`, a DataFrame, or a sequence of either.
        grid: The trajectory's grid, for tables: a pair ``(lat, lon)`` of 1-D coordinates, or an xarray
            object (or mapping) with latitude/longitude coordinates (spelled as :mod:`slams_jax.coords`
            accepts, ``y``/``x`` included) and, if ``times`` is not given, a ``time`` one.
        times: Times of the trajectory states ``(time,)``, for tables.
        modalities: ``{modality: variable names}``, for tables.
        periodic: Whether the grid's longitude wraps (``None``: detected).

    Returns:
        The observations, each table replaced by its :func:`table_observations` (default tolerance, stds
        from its ``std`` column), in the given order.
    """
    items = [observations] if isinstance(observations, (Observation, pd.DataFrame)) else list(observations)
    if not any(isinstance(item, pd.DataFrame) for item in items):
        return items
    grid_lat, grid_lon, grid_times = _grid_of(grid)
    times = grid_times if times is None else times
    if grid_lat is None or times is None or not modalities:
        raise ObservationError(
            "an observation table needs the trajectory's grid, times and variables: pass grid=(lat, lon) or an "
            "xarray object with its coordinates, times= (the window's state times) and the modalities' variables"
        )
    out: list[Observation] = []
    for item in items:
        if isinstance(item, pd.DataFrame):
            out.extend(table_observations(item, grid_lat=grid_lat, grid_lon=grid_lon, times=times,
                                          modalities=modalities, periodic=periodic))
        else:
            out.append(item)
    return out


def _grid_of(grid: Any) -> tuple[Any, Any, Any]:
    """``(lat, lon, time)`` of a ``(lat, lon)`` pair or of an object with coordinates (``None`` if absent)."""
    if grid is None:
        return None, None, None
    found = getattr(grid, "coords", grid)
    if not hasattr(found, "keys"):
        lat, lon = grid
        return lat, lon, None
    names = [str(k) for k in found.keys()]
    lat, lon = coords.find(names, "latitude", grid=True), coords.find(names, "longitude", grid=True)
    time = coords.find(names, "time")
    if lat is None or lon is None:
        raise ObservationError(f"grid: no latitude/longitude coordinates among {names}; expected one of "
                               f"{coords.spellings('latitude', grid=True)} and "
                               f"{coords.spellings('longitude', grid=True)}")
    values = lambda k: np.asarray(getattr(found[k], "values", found[k]))  # noqa: E731
    return values(lat), values(lon), None if time is None else values(time)


__all__ = ["as_observations", "check_time_kind", "read_stations", "table_observations"]
