"""Station observation files: each matched trajectory state becomes one bilinear interpolation of the grid.

The data flow of :func:`read_stations`: read the table of the observed variable (:mod:`.tables`), match its
times to the trajectory, check every matched station lies within the model grid's latitude range, and group
the rows by trajectory state into one observation per state, observed through
:class:`~slams_jax.observation.operators.Stations`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from slams_jax.errors import ObservationError
from slams_jax.observation.files.common import Target, target
from slams_jax.observation.files.tables import StationTable, is_netcdf, read_csv, read_netcdf
from slams_jax.observation.files.times import format_time, match_times, time_kind
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Stations


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
    time_tolerance: float | np.timedelta64 | None = None,
) -> list[Observation]:
    """Read station records (CSV or netCDF) into one observation per matched trajectory state.

    A CSV file has a header with columns ``time, lat, lon, value`` (``latitude``/``longitude`` accepted,
    any order, ``#`` comment lines skipped) and, optionally, ``variable``: then only the rows of
    ``variable`` are read. Times are numbers, or ISO 8601 dates when ``times`` are ``datetime64``. A
    netCDF file has 1-D variables of the same names along one dimension. Rows whose value is NaN (or
    empty) are dropped, as are rows whose time matches no trajectory state.

    Args:
        path: CSV or netCDF file (told apart by suffix, else by content).
        modality: Observed modality (``state`` or an auxiliary one).
        variables: Channel names of that modality, e.g. ``("u", "v")``.
        variable: The observed channel.
        std: Noise standard deviation (physical units).
        grid_lat: Model grid latitudes ``(lat,)``, strictly monotonic; stations must lie within their range.
        grid_lon: Model grid longitudes ``(lon,)``, ascending and uniformly spaced by ``period / lon``.
        times: Times of the trajectory states ``(time,)``, numeric or ``datetime64``.
        period: Period of the longitude (``360`` for degrees, ``2 pi`` for radians).
        time_tolerance: Largest accepted ``|file time - state time|`` (a number, or a ``timedelta64`` for
            datetime times); ``None`` for half the smallest spacing of ``times`` (exact for a single time).

    Returns:
        Observations, in trajectory time order, with operator
        ``TimeIndex((i,)) >> Channels((c,)) >> Stations(lat, lon, grid_lat, grid_lon, period)`` and values
        ``(1, n_stations, 1)`` in file row order, named ``"<file name>:<variable>@<trajectory time>"``.

    Raises:
        FileNotFoundError: The file does not exist.
        ObservationError: Unknown variable, missing columns, unreadable rows, a station outside the grid's
            latitude range or no matching time.
    """
    request, grid_lat, grid_lon, times = target(path, modality, variables, variable, std, grid_lat, grid_lon, times)
    path = request.path
    table = read_netcdf(path, variable) if is_netcdf(path) else read_csv(path, variable, time_kind(times))
    index = match_times(path, table.times, times, time_tolerance)
    _check_positions(request, table, index, grid_lat)
    grid = (tuple(grid_lat.tolist()), tuple(grid_lon.tolist()))
    return [
        _observation(request, table, np.flatnonzero(index == i), int(i), grid, period, format_time(times[i]))
        for i in np.unique(index[index >= 0])
    ]


def _check_positions(request: Target, table: StationTable, index: np.ndarray, grid_lat: np.ndarray) -> None:
    """Refuse a matched row whose station has a missing coordinate or lies beyond the grid's latitudes."""
    path, lat, lon, labels = request.path, table.lat, table.lon, table.labels
    low, high = float(grid_lat.min()), float(grid_lat.max())
    for k in np.flatnonzero(index >= 0):
        if not (np.isfinite(lat[k]) and np.isfinite(lon[k])):
            raise ObservationError(
                f"observation file {str(path)!r}, {labels[k]}: station at latitude {lat[k]}, longitude {lon[k]} "
                "has a missing coordinate"
            )
        if not low <= lat[k] <= high:
            raise ObservationError(
                f"observation file {str(path)!r}, {labels[k]}: station at latitude {lat[k]} is outside the model "
                f"grid's latitude range [{low}, {high}]"
            )


def _observation(
    request: Target,
    table: StationTable,
    rows: np.ndarray,
    state: int,
    grid: tuple[tuple[float, ...], tuple[float, ...]],
    period: float,
    when: str,
) -> Observation:
    """The observation of trajectory state ``state`` by the stations of ``rows``.

    Args:
        request: What is observed.
        table: The station rows.
        rows: Indices of the rows matched to ``state`` ``(station,)``, in file order.
        state: The trajectory state.
        grid: Model grid latitudes and longitudes.
        period: Period of the longitude.
        when: The state's time, formatted, for the observation's name.
    """
    path = request.path
    try:
        stations = Stations(tuple(table.lat[rows].tolist()), tuple(table.lon[rows].tolist()), *grid, period)
    except ValueError as e:
        raise ObservationError(
            f"observation file {str(path)!r}, rows {table.labels[rows[0]]} to {table.labels[rows[-1]]}: {e}"
        ) from e
    operator = request.selection(state) >> stations
    values = table.value[rows].reshape(1, -1, 1)
    expected = operator.check(request.shape)
    if values.shape != expected:  # pragma: no cover - guards the construction above
        raise ObservationError(f"observation file {str(path)!r}: values {values.shape} do not fit {expected}")
    return request.observation(operator, values, when)


__all__ = ["read_stations"]
