"""Station tables: a CSV file or a netCDF file of station records, read into rows of one variable.

A table has the columns ``time, lat, lon, value`` and optionally ``variable`` (then only the rows of the
observed variable are kept). The coordinate columns may be spelled any way :mod:`slams_jax.coords` accepts
(``latitude``/``lat``, ``longitude``/``lon``, ``time``/``valid_time``/``date``). A CSV file has a header, in
any order and case, and may have ``#`` comment lines; its times are numbers, or ISO 8601 dates when the
trajectory times are ``datetime64``. A netCDF file holds the columns as 1-D variables along one dimension.
Rows whose value is NaN (or empty) are dropped. Every row keeps a label (``line 3``, ``obs index 2``) for
the messages.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from slams_jax import coords
from slams_jax.errors import ObservationError
from slams_jax.observation.files.common import open_dataset

#: Column names of a station file (``lat``/``lon``/``time`` may be spelled as :mod:`slams_jax.coords` accepts).
STATION_COLUMNS = ("time", "lat", "lon", "value")
# The coordinate role of each column spelled through slams_jax.coords; ``value`` is spelled one way.
_ROLES = {"time": "time", "lat": "latitude", "lon": "longitude"}
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")


class StationTable(NamedTuple):
    """The rows of one variable with a finite value, in file order, each array ``(row,)``.

    Attributes:
        times: File times (numbers, or ``datetime64``).
        lat: Station latitudes, float64 (NaN where missing).
        lon: Station longitudes, float64 (NaN where missing).
        value: Observed values, float64, finite.
        labels: Where each row is in the file, e.g. ``"line 3"``, for messages.
    """

    times: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    value: np.ndarray
    labels: np.ndarray


def is_netcdf(path: Path) -> bool:
    """Whether a station file is netCDF: by its suffix, else by its first bytes."""
    if path.suffix.lower() in _NETCDF_SUFFIXES:
        return True
    if path.suffix.lower() in (".csv", ".txt", ".tsv"):
        return False
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:3] == b"CDF" or head == b"\x89HDF"


def _columns(path: Path, found: Sequence[str]) -> dict[str, str]:
    """Map each station column to its name in the file; an error naming the missing ones."""
    columns, missing = {}, []
    for column in STATION_COLUMNS:
        name = coords.find(found, _ROLES[column]) if column in _ROLES else (column if column in found else None)
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
    """A CSV cell as a number, NaN when empty."""
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


def read_csv(path: Path, variable: str, kind: str) -> StationTable:
    """The rows of ``variable`` with a finite value; times parsed as numbers or dates, as ``kind`` asks."""
    with open(path, newline="") as f:
        rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1)
                if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]
    if not rows:
        raise ObservationError(
            f"observation file {str(path)!r}: is empty; expected a header with columns {list(STATION_COLUMNS)}"
        )
    header = [cell.strip().lower() for cell in rows[0][1]]
    columns = _columns(path, header)
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
    return StationTable(file_times, np.asarray(lat, np.float64)[finite], np.asarray(lon, np.float64)[finite],
                        value_array[finite], np.asarray(labels))


def read_netcdf(path: Path, variable: str) -> StationTable:
    """The entries of ``variable`` with a finite value, from 1-D variables along one dimension."""
    with open_dataset(path) as ds:
        found = [str(k) for k in ds.variables]
        columns = _columns(path, found)
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
    return StationTable(file_times[finite], lat[finite], lon[finite], value[finite], labels[finite])



__all__ = ["STATION_COLUMNS", "StationTable", "is_netcdf", "read_csv", "read_netcdf"]
