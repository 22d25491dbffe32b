"""Observation files: gridded fields and station records read into :class:`~slams_jax.observations.Observation`.

Two kinds of user files are understood:

- **Gridded** (:func:`read_gridded`): a netCDF file or a zarr store holding a variable of dims
  ``(time, <lat>, <lon>)``, ``<lat>`` one of ``lat``/``latitude``/``y`` and ``<lon>`` one of
  ``lon``/``longitude``/``x``, either on the model grid or on a grid coarser by integer factors (then it
  is taken to observe block means of the model grid, :class:`~slams_jax.operators.Coarsen`). NaN cells
  are not observed: each time becomes one observation of its finite cells
  (:class:`~slams_jax.operators.Points`).
- **Stations** (:func:`read_stations`): a CSV file with columns ``time, lat, lon, value`` (and optionally
  ``variable``) or a netCDF file with 1-D variables of those names along one dimension. Each time becomes
  one observation interpolating the model grid bilinearly at its stations
  (:class:`~slams_jax.operators.Stations`).

Every observation observes ONE channel ``c = variables.index(variable)`` of ONE trajectory state: its
operator starts with ``TimeIndex((i,)) >> Channels((c,))``. A file time ``t`` is assigned to the
trajectory state ``i`` nearest to it if ``|t - times[i]| <= time_tolerance`` (by default half the smallest
spacing of ``times``); file times matching no state are dropped. Numeric times are compared as floats,
``datetime64``/``timedelta64`` times as int64 nanoseconds, and the two may not be mixed.

Every error is an :class:`~slams_jax.observations.ObservationError` (a missing file a
:class:`FileNotFoundError`) whose message names the file, and the variable, column, row or time at fault.
"""

from __future__ import annotations

import csv
import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from slams_jax.observations import Observation, ObservationError
from slams_jax.operators import Channels, Coarsen, Operator, Points, Stations, TimeIndex

#: Accepted dimension / column names, first match wins.
TIME_NAMES = ("time", "valid_time")
LAT_NAMES = ("lat", "latitude", "y")
LON_NAMES = ("lon", "longitude", "x")
#: Column names of a station file (``lat``/``lon`` may also be spelled ``latitude``/``longitude``).
STATION_COLUMNS = ("time", "lat", "lon", "value")
_STATION_ALIASES = {"time": ("time",), "lat": ("lat", "latitude"), "lon": ("lon", "longitude"), "value": ("value",)}
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")


# --------------------------------------------------------------------------------------------------- helpers
def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"observation file {str(path)!r} does not exist")
    return path


def _channel(path: Path, modality: str, variables: Sequence[str], variable: str) -> int:
    """Channel index of ``variable`` among the modality's ``variables``."""
    names = [str(v) for v in variables]
    if variable not in names:
        raise ObservationError(
            f"observation file {str(path)!r}: unknown variable {variable!r} for the {modality!r} modality; "
            f"expected one of its channels {names}"
        )
    return names.index(variable)


def _grid(path: Path, grid_lat: Any, grid_lon: Any) -> tuple[np.ndarray, np.ndarray]:
    lat, lon = np.asarray(grid_lat, np.float64), np.asarray(grid_lon, np.float64)
    for name, value in (("grid_lat", lat), ("grid_lon", lon)):
        if value.ndim != 1 or value.size < 1:
            raise ObservationError(
                f"observation file {str(path)!r}: {name} must be a non-empty 1-D array of model grid "
                f"coordinates, got shape {value.shape}"
            )
    return lat, lon


def _time_kind(values: np.ndarray) -> str:
    """``"numeric"``, ``"datetime"``, ``"timedelta"`` or ``"other"``."""
    kind = np.asarray(values).dtype.kind
    return {"M": "datetime", "m": "timedelta", "i": "numeric", "u": "numeric", "f": "numeric"}.get(kind, "other")


def _format_time(t: Any) -> str:
    t = np.asarray(t)
    if t.dtype.kind == "M":
        return str(np.datetime_as_string(t, unit="auto"))
    if t.dtype.kind == "m":
        return str(t.astype("timedelta64[ns]"))
    return f"{float(t):g}"


def _time_range(values: np.ndarray) -> str:
    values = np.asarray(values)
    if values.size == 0:
        return "no times"
    if values.dtype.kind in "Mm":
        values = values[~np.isnat(values)]
    elif values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return "no valid times"
    return f"[{_format_time(values.min())}, {_format_time(values.max())}] ({values.size} times)"


def _as_numbers(path: Path, values: np.ndarray, kind: str, what: str) -> np.ndarray:
    """Times as float64 (numeric) or float64 nanoseconds (datetime/timedelta), NaN for NaT."""
    values = np.asarray(values)
    if kind == "numeric":
        return values.astype(np.float64)
    if kind in ("datetime", "timedelta"):
        unit = "datetime64[ns]" if kind == "datetime" else "timedelta64[ns]"
        ns = values.astype(unit)
        out = ns.astype(np.int64).astype(np.float64)
        out[np.isnat(ns)] = np.nan
        return out
    raise ObservationError(
        f"observation file {str(path)!r}: {what} of dtype {values.dtype} are not supported; expected numbers or "
        "datetime64 (a non-standard calendar decoded to cftime objects is not supported)"
    )


def _tolerance(path: Path, tolerance: Any, kind: str, times: np.ndarray) -> float:
    """The matching tolerance in the unit of :func:`_as_numbers`."""
    if tolerance is None:
        unique = np.unique(times[np.isfinite(times)])
        if unique.size >= 2:
            return float(np.min(np.diff(unique))) / 2.0
        if kind == "numeric" and unique.size:  # exact up to float32 rounding of the stored times
            return 4.0 * float(np.finfo(np.float32).eps) * max(1.0, abs(float(unique[0])))
        return 0.0
    if isinstance(tolerance, datetime.timedelta):
        tolerance = np.timedelta64(tolerance)
    is_delta = isinstance(tolerance, np.timedelta64) or np.asarray(tolerance).dtype.kind == "m"
    if kind == "numeric":
        if is_delta or not np.isscalar(tolerance) or isinstance(tolerance, (bool, np.bool_, str)):
            raise ObservationError(
                f"observation file {str(path)!r}: time_tolerance={tolerance!r} must be a number for numeric times"
            )
        value = float(tolerance)
    else:
        if not is_delta:
            raise ObservationError(
                f"observation file {str(path)!r}: time_tolerance={tolerance!r} must be a numpy.timedelta64 (or "
                f"datetime.timedelta) for {kind} times, e.g. numpy.timedelta64(3, 'h')"
            )
        value = float(np.asarray(tolerance).astype("timedelta64[ns]").astype(np.int64))
    if not (np.isfinite(value) and value >= 0):
        raise ObservationError(f"observation file {str(path)!r}: time_tolerance={tolerance!r} must be >= 0")
    return value


def _match_times(path: Path, file_times: Any, times: Any, tolerance: Any) -> np.ndarray:
    """Trajectory index matched by each file time, ``-1`` for none; an error if nothing matches.

    Args:
        path: The file, for messages.
        file_times: Times in the file ``(n,)``.
        times: Times of the trajectory states ``(time,)``.
        tolerance: Largest accepted ``|file time - state time|``, ``None`` for half the smallest spacing.

    Returns:
        ``(n,)`` int64 state indices.
    """
    file_times, times = np.atleast_1d(np.asarray(file_times)), np.atleast_1d(np.asarray(times))
    if times.ndim != 1 or times.size == 0:
        raise ObservationError(
            f"observation file {str(path)!r}: times of the trajectory must be a non-empty 1-D array, got shape "
            f"{times.shape}"
        )
    file_kind, kind = _time_kind(file_times), _time_kind(times)
    if "other" not in (file_kind, kind) and file_kind != kind:
        raise ObservationError(
            f"observation file {str(path)!r}: its times are {file_kind} ({file_times.dtype}) but the trajectory "
            f"times are {kind} ({times.dtype}); give both as numbers or both as datetime64"
        )
    state = _as_numbers(path, times, kind, "trajectory times")
    found = _as_numbers(path, file_times, file_kind, "file times")
    tol = _tolerance(path, tolerance, kind, state)
    distance = np.abs(found[:, None] - state[None, :])
    distance = np.where(np.isnan(distance), np.inf, distance)
    nearest = np.argmin(distance, axis=1) if state.size else np.zeros(found.shape, np.int64)
    ok = distance[np.arange(found.size), nearest] <= tol
    index = np.where(ok, nearest, -1).astype(np.int64)
    if not ok.any():
        tol_text = _format_time(np.timedelta64(int(tol), "ns")) if kind != "numeric" else f"{tol:g}"
        raise ObservationError(
            f"observation file {str(path)!r}: none of its times {_time_range(file_times)} matches a trajectory "
            f"time {_time_range(times)} within a tolerance of {tol_text}"
        )
    return index


def _open_dataset(path: Path) -> xr.Dataset:
    """Open a netCDF file or (a ``.zarr`` path or a directory) a zarr store, lazily."""
    if path.is_dir() or path.suffix == ".zarr":
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise ObservationError(
                f"observation file {str(path)!r} is a zarr store but the zarr package is not installed; "
                "install it (pip install zarr) or convert the store to netCDF"
            ) from None
        opener, kind = xr.open_zarr, "a zarr store"
    else:
        opener, kind = xr.open_dataset, "netCDF"
    try:
        return opener(path)
    except Exception as e:  # the backends raise many types; the message carries the cause
        raise ObservationError(f"observation file {str(path)!r}: could not be read as {kind}: {e}") from e


def _dim(names: Sequence[str], dims: Sequence[str]) -> str | None:
    for name in names:
        if name in dims:
            return name
    return None


# --------------------------------------------------------------------------------------------------- gridded
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

    The file variable named ``variable`` must have dims ``(time, <lat>, <lon>)`` (any order, other dims of
    size 1 are dropped) and either the model grid's shape ``(lat, lon)``, observed cell by cell, or a
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
    path = _existing(path)
    c = _channel(path, modality, variables, variable)
    grid_lat, grid_lon = _grid(path, grid_lat, grid_lon)
    times = np.atleast_1d(np.asarray(times))
    n_lat, n_lon = grid_lat.size, grid_lon.size
    where = f"observation file {str(path)!r}, variable {variable!r}"

    with _open_dataset(path) as ds:
        if variable not in ds.variables:
            raise ObservationError(
                f"observation file {str(path)!r}: no variable {variable!r}; it has {sorted(map(str, ds.data_vars))}"
            )
        da = ds[variable]
        time_dim = _dim(TIME_NAMES, da.dims)
        if time_dim is None:
            scalar = _dim(TIME_NAMES, [str(k) for k in da.coords if da[k].ndim == 0])
            if scalar is not None:
                da, time_dim = da.expand_dims(scalar), scalar
        lat_dim, lon_dim = _dim(LAT_NAMES, da.dims), _dim(LON_NAMES, da.dims)
        extra = [d for d in da.dims if d not in (time_dim, lat_dim, lon_dim)]
        if None in (time_dim, lat_dim, lon_dim) or any(da.sizes[d] != 1 for d in extra):
            raise ObservationError(
                f"{where}: has dims {dict(da.sizes)}; expected (time, lat, lon) with time one of {TIME_NAMES}, "
                f"lat one of {LAT_NAMES} and lon one of {LON_NAMES} (other dims must have size 1)"
            )
        da = da.isel({d: 0 for d in extra}, drop=True).transpose(time_dim, lat_dim, lon_dim)
        f_lat, f_lon = da.sizes[lat_dim], da.sizes[lon_dim]
        if (f_lat, f_lon) == (n_lat, n_lon):
            coarsen: Operator | None = None
        elif f_lat and f_lon and n_lat % f_lat == 0 and n_lon % f_lon == 0:
            factors = (n_lat // f_lat, n_lon // f_lon)
            coarsen = Coarsen(factors[0] if factors[0] == factors[1] else factors)
        else:
            raise ObservationError(
                f"{where}: spatial shape (lat, lon) = ({f_lat}, {f_lon}) is neither the model grid ({n_lat}, "
                f"{n_lon}) nor a coarsening of it by integer factors"
            )
        flip = False
        if lat_dim in da.coords and f_lat >= 2 and n_lat >= 2:
            file_lat = np.asarray(da[lat_dim].values, np.float64)
            flip = np.sign(file_lat[-1] - file_lat[0]) * np.sign(grid_lat[-1] - grid_lat[0]) < 0

        file_times = np.asarray(da[time_dim].values)
        index = _match_times(path, file_times, times, time_tolerance)
        keep = np.flatnonzero(index >= 0)
        try:
            data = np.asarray(da.isel({time_dim: keep}).values, np.float32)
        except (TypeError, ValueError) as e:
            raise ObservationError(f"{where}: values could not be read as numbers: {e}") from e
    if flip:
        data = data[:, ::-1, :]

    shape = (times.size, n_lat, n_lon, len(variables))
    observations = []
    for k, j in enumerate(keep):
        field = data[k]
        finite = np.isfinite(field)
        if not finite.any():
            continue
        lat_index, lon_index = np.nonzero(finite)
        operator: Operator = TimeIndex((int(index[j]),)) >> Channels((c,))
        if coarsen is not None:
            operator = operator >> coarsen
        operator = operator >> Points(tuple(lat_index.tolist()), tuple(lon_index.tolist()))
        values = field[finite].reshape(1, -1, 1)
        expected = operator.check(shape)
        if values.shape != expected:  # pragma: no cover - guards the construction above
            raise ObservationError(f"{where}: values {values.shape} do not fit {operator!r} -> {expected}")
        name = f"{path.name}:{variable}@{_format_time(file_times[j])}"
        observations.append(Observation(modality=modality, operator=operator, values=values, std=std, name=name))
    if not observations:
        raise ObservationError(
            f"{where}: every matched time {_time_range(file_times[keep])} has only NaN values; nothing to observe"
        )
    return observations


# -------------------------------------------------------------------------------------------------- stations
def _is_netcdf(path: Path) -> bool:
    if path.suffix.lower() in _NETCDF_SUFFIXES:
        return True
    if path.suffix.lower() in (".csv", ".txt", ".tsv"):
        return False
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:3] == b"CDF" or head == b"\x89HDF"


def _missing_columns(path: Path, found: Sequence[str]) -> dict[str, str]:
    """Map each station column to its name in the file; an error naming the missing ones."""
    columns, missing = {}, []
    for column in STATION_COLUMNS:
        name = next((a for a in _STATION_ALIASES[column] if a in found), None)
        if name is None:
            missing.append(column)
        else:
            columns[column] = name
    if missing:
        raise ObservationError(
            f"observation file {str(path)!r}: missing column(s) {missing}; a station file needs columns "
            f"{list(STATION_COLUMNS)} (optionally 'variable'), found {list(found)}"
        )
    return columns


def _parse_float(path: Path, text: str, column: str, label: str) -> float:
    text = text.strip()
    if not text:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise ObservationError(
            f"observation file {str(path)!r}, {label}: column {column!r} = {text!r} is not a number"
        ) from None


def _parse_times(path: Path, texts: list[str], labels: list[str], kind: str) -> np.ndarray:
    """CSV times as floats (numeric trajectory times) or datetime64[ns] (datetime trajectory times)."""
    out: list[Any] = []
    for text, label in zip(texts, labels):
        text = text.strip()
        if kind == "numeric":
            try:
                out.append(float(text))
                continue
            except ValueError:
                pass
            try:
                np.datetime64(text)
            except ValueError:
                raise ObservationError(
                    f"observation file {str(path)!r}, {label}: time {text!r} is not a number"
                ) from None
            raise ObservationError(
                f"observation file {str(path)!r}, {label}: time {text!r} is a date but the trajectory times are "
                "numeric; give both as numbers or both as datetime64"
            )
        try:
            float(text)
            is_number = True
        except ValueError:
            is_number = False
        if is_number:
            raise ObservationError(
                f"observation file {str(path)!r}, {label}: time {text!r} is a number but the trajectory times are "
                f"{kind}; write ISO 8601 dates such as 2020-01-01T06:00"
            )
        try:
            out.append(np.datetime64(text, "ns"))
        except ValueError:
            raise ObservationError(
                f"observation file {str(path)!r}, {label}: time {text!r} is not an ISO 8601 date"
            ) from None
    return np.asarray(out, np.float64 if kind == "numeric" else "datetime64[ns]")


def _read_station_csv(path: Path, variable: str, kind: str) -> tuple[np.ndarray, ...]:
    with open(path, newline="") as f:
        rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1)
                if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]
    if not rows:
        raise ObservationError(
            f"observation file {str(path)!r}: is empty; expected a header with columns {list(STATION_COLUMNS)}"
        )
    header = [cell.strip().lower() for cell in rows[0][1]]
    columns = _missing_columns(path, header)
    position = {name: header.index(name) for name in columns.values()}
    var_pos = header.index("variable") if "variable" in header else None
    labels, time_text, lat, lon, value, seen = [], [], [], [], [], set()
    for n, row in rows[1:]:
        label = f"line {n}"
        if len(row) < len(header):
            raise ObservationError(
                f"observation file {str(path)!r}, {label}: has {len(row)} fields, expected {len(header)} ({header})"
            )
        if var_pos is not None:
            name = row[var_pos].strip()
            seen.add(name)
            if name != variable:
                continue
        labels.append(label)
        time_text.append(row[position[columns["time"]]])
        lat.append(_parse_float(path, row[position[columns["lat"]]], columns["lat"], label))
        lon.append(_parse_float(path, row[position[columns["lon"]]], columns["lon"], label))
        value.append(_parse_float(path, row[position[columns["value"]]], "value", label))
    if var_pos is not None and not labels:
        raise ObservationError(
            f"observation file {str(path)!r}: no row has variable {variable!r}; its 'variable' column has "
            f"{sorted(seen)}"
        )
    if not labels:
        raise ObservationError(f"observation file {str(path)!r}: has a header but no rows")
    value_array = np.asarray(value, np.float64)
    finite = np.isfinite(value_array)  # parse times of the rows kept only
    labels = [lb for lb, ok in zip(labels, finite) if ok]
    if not labels:
        raise ObservationError(f"observation file {str(path)!r}: every value of variable {variable!r} is NaN")
    file_times = _parse_times(path, [t for t, ok in zip(time_text, finite) if ok], labels, kind)
    return (file_times, np.asarray(lat, np.float64)[finite], np.asarray(lon, np.float64)[finite],
            value_array[finite], np.asarray(labels))


def _read_station_netcdf(path: Path, variable: str) -> tuple[np.ndarray, ...]:
    with _open_dataset(path) as ds:
        found = [str(k) for k in ds.variables]
        columns = _missing_columns(path, found)
        names = list(columns.values()) + (["variable"] if "variable" in ds.variables else [])
        dims = {name: ds[name].dims for name in names}
        if any(len(d) != 1 for d in dims.values()) or len(set(dims.values())) != 1:
            raise ObservationError(
                f"observation file {str(path)!r}: variables {names} must be 1-D along one common dimension, "
                f"got dims {dims}"
            )
        dim = next(iter(dims.values()))[0]
        file_times = np.asarray(ds[columns["time"]].values)
        lat = np.asarray(ds[columns["lat"]].values, np.float64)
        lon = np.asarray(ds[columns["lon"]].values, np.float64)
        value = np.asarray(ds[columns["value"]].values, np.float64)
        tags = np.asarray(ds["variable"].values).astype(str) if "variable" in ds.variables else None
    labels = np.asarray([f"{dim} index {k}" for k in range(value.size)])
    if tags is not None:
        keep = np.char.strip(tags) == variable
        if not keep.any():
            raise ObservationError(
                f"observation file {str(path)!r}: no row has variable {variable!r}; its 'variable' variable has "
                f"{sorted(set(np.char.strip(tags).tolist()))}"
            )
        file_times, lat, lon, value, labels = (a[keep] for a in (file_times, lat, lon, value, labels))
    finite = np.isfinite(value)
    if not finite.any():
        raise ObservationError(f"observation file {str(path)!r}: every value of variable {variable!r} is NaN")
    return file_times[finite], lat[finite], lon[finite], value[finite], labels[finite]


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
    path = _existing(path)
    c = _channel(path, modality, variables, variable)
    grid_lat, grid_lon = _grid(path, grid_lat, grid_lon)
    times = np.atleast_1d(np.asarray(times))
    if _is_netcdf(path):
        file_times, lat, lon, value, labels = _read_station_netcdf(path, variable)
    else:
        file_times, lat, lon, value, labels = _read_station_csv(path, variable, _time_kind(times))

    index = _match_times(path, file_times, times, time_tolerance)
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

    shape = (times.size, grid_lat.size, grid_lon.size, len(variables))
    observations = []
    for i in np.unique(index[index >= 0]):
        rows = np.flatnonzero(index == i)
        try:
            stations = Stations(tuple(lat[rows].tolist()), tuple(lon[rows].tolist()),
                                tuple(grid_lat.tolist()), tuple(grid_lon.tolist()), period)
        except ValueError as e:
            raise ObservationError(
                f"observation file {str(path)!r}, rows {labels[rows[0]]} to {labels[rows[-1]]}: {e}"
            ) from e
        operator = TimeIndex((int(i),)) >> Channels((c,)) >> stations
        values = value[rows].reshape(1, -1, 1)
        expected = operator.check(shape)
        if values.shape != expected:  # pragma: no cover - guards the construction above
            raise ObservationError(f"observation file {str(path)!r}: values {values.shape} do not fit {expected}")
        name = f"{path.name}:{variable}@{_format_time(times[i])}"
        observations.append(Observation(modality=modality, operator=operator, values=values, std=std, name=name))
    return observations


__all__ = ["LAT_NAMES", "LON_NAMES", "STATION_COLUMNS", "TIME_NAMES", "read_gridded", "read_stations"]
