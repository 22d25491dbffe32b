"""Observation tables: CSV, parquet or netCDF station records read into one validated pandas DataFrame.

The layout is earth2studio's DataFrame schema: one row per measurement, columns ``time, lat, lon, variable,
observation``, and optionally ``std`` (the row's noise standard deviation) and ``station`` (an id). Column
names are matched case-blind and stripped; ``lat``/``lon``/``time`` may be spelled any way
:mod:`slams_jax.coords` accepts (``latitude``, ``valid_time``...) and ``value`` is accepted for
``observation`` (the older station-file spelling). Other columns are kept as they are.

:func:`read_table` reads a file (told apart by suffix, else by its first bytes) and :func:`validate_table`
checks a DataFrame: times are numbers or dates (ISO 8601 text is parsed, time zones converted to UTC),
``lat``/``lon``/``observation``/``std`` are numbers (an empty or NaN ``observation`` is a missing one, left for
the caller to drop), latitudes lie in [-90, 90] and ``std`` is positive. The index labels the rows in every
message: ``line N`` of a CSV file, ``row N`` of a parquet file, ``<dim> index N`` of a netCDF file, and a
DataFrame's own index otherwise; ``table.attrs["source"]`` names the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slams_jax import coords
from slams_jax.errors import ObservationError
from slams_jax.observation.files.common import existing, open_dataset

#: Required columns of an observation table (``variable`` may be supplied by the caller).
TABLE_COLUMNS = ("time", "lat", "lon", "variable", "observation")
#: Optional columns with a meaning.
OPTIONAL_COLUMNS = ("std", "station")
# accepted spellings of each column, lower case, first present wins
_SPELLINGS = {
    "time": coords.spellings("time"), "lat": coords.spellings("latitude"), "lon": coords.spellings("longitude"),
    "variable": ("variable",), "observation": ("observation", "value"), "std": ("std",), "station": ("station",),
}
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_TABLE = "observation table"


def table_format(path: Path) -> str:
    """``csv``, ``parquet`` or ``netcdf``: by the suffix, else by the first bytes."""
    suffix = path.suffix.lower()
    if suffix in _NETCDF_SUFFIXES:
        return "netcdf"
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    if suffix in (".csv", ".txt"):
        return "csv"
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PAR1":
        return "parquet"
    return "netcdf" if head[:3] == b"CDF" or head == b"\x89HDF" else "csv"


def read_table(source: str | os.PathLike | pd.DataFrame, *, variable: str | None = None,
               observed: bool = True) -> pd.DataFrame:
    """Read an observation table file (or check a DataFrame) into a validated DataFrame.

    Args:
        source: A CSV file (a header row, ``#`` comment lines skipped), a parquet file, a netCDF file whose
            columns are 1-D variables along one dimension, or a DataFrame (then :func:`validate_table`).
        variable: The variable of every row when the file has no ``variable`` column (old station files).
        observed: Whether an ``observation`` column is required (``False``: points to sample, NaN if absent).

    Returns:
        The table with canonical column names (:data:`TABLE_COLUMNS`, then those of :data:`OPTIONAL_COLUMNS`
        present, then any others), indexed by where each row is in the file; ``attrs["source"]`` names it
        in messages and ``attrs["name"]`` (the file name) labels its observations.

    Raises:
        FileNotFoundError: The file does not exist.
        ObservationError: It cannot be read, a column is missing or a value is bad (file, row, column and
            value named).
    """
    if isinstance(source, pd.DataFrame):
        return validate_table(source, variable=variable, observed=observed)
    path = existing(source)
    source = f"observation file {str(path)!r}"
    kind = table_format(path)
    if kind == "csv":
        table = _read_csv(path, source)
    elif kind == "parquet":
        try:
            table = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many types; the message carries the cause
            raise ObservationError(f"{source}: could not be read as parquet: {e}") from e
        table.index = pd.RangeIndex(len(table), name="row")
    else:
        table = _read_netcdf(path, source)
    table.attrs.update(source=source, name=path.name)
    return validate_table(table, variable=variable, observed=observed)


def _read_csv(path: Path, source: str) -> pd.DataFrame:
    """The CSV rows as text, indexed by their line number (comments and blank lines skipped)."""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    kept = [n for n, line in enumerate(lines, start=1)
            if line.replace(",", "").strip() and not line.lstrip().startswith("#")]
    if not kept:
        raise ObservationError(f"{source}: is empty; expected a header with columns {list(TABLE_COLUMNS)}")
    skipped = set(range(1, len(lines) + 1)) - set(kept)
    try:
        table = pd.read_csv(path, skiprows=lambda i: i + 1 in skipped, dtype=str, keep_default_na=False,
                            skip_blank_lines=False, skipinitialspace=True)
    except Exception as e:
        raise ObservationError(f"{source}: could not be read as CSV: {e}") from e
    if len(table) != len(kept) - 1:  # pragma: no cover - quoted line breaks
        raise ObservationError(f"{source}: has quoted line breaks; write one row per line")
    table.index = pd.Index(kept[1:], name="line")
    return table


def _read_netcdf(path: Path, source: str) -> pd.DataFrame:
    """The 1-D variables of the known columns, along their common dimension."""
    with open_dataset(path) as ds:
        found = {str(k).strip().lower(): str(k) for k in ds.variables}
        names = [next((found[s] for s in spellings if s in found), None) for spellings in _SPELLINGS.values()]
        names = [name for name in names if name is not None]
        dims = {name: ds[name].dims for name in names}
        if not names or any(len(d) != 1 for d in dims.values()) or len(set(dims.values())) != 1:
            raise ObservationError(
                f"{source}: the table's variables {names} must be 1-D along one common dimension, got dims {dims}"
            )
        dim = next(iter(dims.values()))[0]
        columns = {}
        for name in names:
            values = np.asarray(ds[name].values)
            if values.dtype.kind in "SO":  # char arrays and bytes of string variables
                values = np.asarray([v.decode() if isinstance(v, bytes) else v for v in values.tolist()], object)
            columns[name] = values
    return pd.DataFrame(columns, index=pd.RangeIndex(len(next(iter(columns.values()))), name=f"{dim} index"))


def table_source(table: pd.DataFrame) -> str:
    """What a table is called in messages: its file, or ``observation table``."""
    return str(table.attrs.get("source", _TABLE))


def row_label(table: pd.DataFrame, position: int) -> str:
    """Where row ``position`` (0-based) is: ``line 3``, ``row 2``, ``obs index 5``."""
    return f"{table.index.name or 'row'} {table.index[position]}"


def validate_table(table: pd.DataFrame, *, variable: str | None = None, source: str | None = None,
                   observed: bool = True) -> pd.DataFrame:
    """A checked copy of ``table`` with canonical column names and types (see the module docstring).

    Args:
        table: Observation rows; column spellings as in the module docstring.
        variable: The variable of every row when there is no ``variable`` column.
        source: Name for messages (default: ``table.attrs["source"]`` or ``observation table``).
        observed: Whether an ``observation`` column is required; ``False`` (points to sample, not
            observations) adds a missing one as NaN.

    Returns:
        The table: ``time`` numeric or ``datetime64[ns]``, ``lat``/``lon``/``observation`` (and ``std``)
        float64, ``variable`` (and ``station``) str; the index and ``attrs`` kept.
    """
    if not isinstance(table, pd.DataFrame):
        raise ObservationError(f"expected an observation table as a pandas DataFrame, got {type(table).__name__}")
    source = source or table_source(table)
    out = _canonical(table, source, variable, observed)
    out.attrs = {**table.attrs, "source": source}
    if out.empty:
        raise ObservationError(f"{source}: has no rows")
    out["time"] = _times(out, source)
    for column in ("lat", "lon", "observation") + (("std",) if "std" in out else ()):
        out[column] = _numbers(out, column, source)
    _check_rows(out, source)
    for column in ("variable", "station"):
        if column in out:
            out[column] = _labels(out, column, source)
    return out


def _canonical(table: pd.DataFrame, source: str, variable: str | None, observed: bool) -> pd.DataFrame:
    """The columns renamed to their canonical names, known ones first; ``variable`` filled in if given."""
    found = spelled_columns(table)
    for name, fill, wanted in (("variable", variable, variable is not None), ("observation", np.nan, not observed)):
        if found[name] is None and wanted:
            table = table.assign(**{name: fill})
            found[name] = name
    missing = [name for name in TABLE_COLUMNS if found[name] is None]
    if missing:
        raise ObservationError(
            f"{source}: missing column(s) {missing}; an observation table needs columns {list(TABLE_COLUMNS)} "
            f"(lat/lon/time spelled as {coords.spellings('latitude')}, ..., 'value' for 'observation'), optionally "
            f"{list(OPTIONAL_COLUMNS)}; found {[str(c) for c in table.columns]}"
        )
    known = {found[name]: name for name in _SPELLINGS if found[name] is not None}
    rest = [c for c in table.columns if c not in known]
    out = table[list(known) + rest].copy()
    out.columns = list(known.values()) + rest
    return out


def spelled_columns(table: pd.DataFrame) -> dict[str, Any]:
    """The column of ``table`` standing for each canonical column (``None`` when absent)."""
    lower: dict[str, Any] = {}
    for column in table.columns:
        lower.setdefault(str(column).strip().lower(), column)
    return {name: next((lower[s] for s in spellings if s in lower), None) for name, spellings in _SPELLINGS.items()}


def _bad(table: pd.DataFrame, mask: np.ndarray, column: str, source: str, values: Any, expected: str) -> None:
    """Raise naming the first row where ``mask`` holds, its value and how many rows are bad."""
    bad = np.flatnonzero(mask)
    if bad.size:
        k = int(bad[0])
        value = values[k].item() if isinstance(values[k], np.generic) else values[k]
        more = f" ({bad.size} rows like it)" if bad.size > 1 else ""
        raise ObservationError(
            f"{source}, {row_label(table, k)}: column {column!r} = {value!r} {expected}{more}"
        )


def _numbers(table: pd.DataFrame, column: str, source: str) -> np.ndarray:
    """A column as float64; empty text and NaN become NaN, anything else that is not a number an error."""
    raw = table[column].to_numpy()
    if raw.dtype.kind in "biuf":
        return raw.astype(np.float64)
    text = pd.Series(raw, dtype=object).map(lambda v: v.strip() if isinstance(v, str) else v)
    numbers = pd.to_numeric(text.replace("", np.nan), errors="coerce").to_numpy(np.float64)
    _bad(table, np.isnan(numbers) & text.notna().to_numpy() & (text != "").to_numpy()
         & ~text.isin(["nan", "NaN", "NAN"]).to_numpy(), column, source, raw, "is not a number")
    return numbers


def _times(table: pd.DataFrame, source: str) -> pd.Series:
    """The time column as numbers or as ``datetime64[ns]`` (UTC, naive)."""
    raw = table["time"]
    if raw.dtype.kind in "iuf":
        _bad(table, ~np.isfinite(raw.to_numpy(np.float64)), "time", source, raw.to_numpy(), "is not a time")
        return raw.astype(np.float64)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        raw = raw.dt.tz_convert("UTC").dt.tz_localize(None)
    if raw.dtype.kind == "M":
        _bad(table, raw.isna().to_numpy(), "time", source, raw.to_numpy(), "is not a time")
        return raw.astype("datetime64[ns]")
    text = raw.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        return numbers.astype(np.float64)
    _bad(table, numbers.notna().to_numpy(), "time", source, text.to_numpy(),
         "is a number but other rows' times are dates; write every time as an ISO 8601 date")
    dates = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    _bad(table, dates.isna().to_numpy(), "time", source, text.to_numpy(),
         "is not an ISO 8601 date (such as 2020-01-01T06:00) nor a number")
    return dates.dt.tz_localize(None).astype("datetime64[ns]")


def _check_rows(table: pd.DataFrame, source: str) -> None:
    """Coordinates finite, latitudes in [-90, 90], observations not infinite, stds positive."""
    lat, lon, obs = (table[c].to_numpy() for c in ("lat", "lon", "observation"))
    _bad(table, np.isnan(lat), "lat", source, lat, "is missing; every row needs a position")
    _bad(table, np.isnan(lon), "lon", source, lon, "is missing; every row needs a position")
    _bad(table, ~np.isfinite(lon), "lon", source, lon, "is not a finite longitude")
    _bad(table, ~((lat >= -90) & (lat <= 90)), "lat", source, lat, "is not a latitude in [-90, 90]")
    _bad(table, np.isinf(obs), "observation", source, obs, "is infinite")
    if "std" in table:
        std = table["std"].to_numpy()
        _bad(table, ~np.isnan(std) & ~(np.isfinite(std) & (std > 0)), "std", source, std,
             "is not a positive noise standard deviation")


def _labels(table: pd.DataFrame, column: str, source: str) -> pd.Series:
    """A text column stripped; an empty or missing entry is an error."""
    raw = table[column]
    missing = raw.isna().to_numpy()
    text = raw.astype(str).str.strip()
    _bad(table, missing | (text == "").to_numpy(), column, source, raw.to_numpy(), "is empty")
    return text


__all__ = ["OPTIONAL_COLUMNS", "TABLE_COLUMNS", "read_table", "row_label", "spelled_columns", "table_format",
           "table_source", "validate_table"]
