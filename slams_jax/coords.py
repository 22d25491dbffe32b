"""The one table of coordinate-name spellings, shared by the data sources, regridding and observation files.

Datasets spell their dimensions many ways (``lat``/``latitude``, ``pressure_level``/``level``,
``valid_time``/``time``). Every reader looks names up here, so a spelling learned once is understood
everywhere. For each role, the spellings are tried in order and the first present wins.
"""

from __future__ import annotations

from typing import Collection

#: Spellings of each coordinate role, in order of preference.
ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("time", "valid_time", "date"),
    "level": ("level", "pressure_level", "plev", "isobaricInhPa", "lev"),
    "latitude": ("latitude", "lat"),
    "longitude": ("longitude", "lon"),
}

#: Model-grid spellings accepted besides latitude/longitude for fields on the Kolmogorov ``(y, x)`` grid.
GRID_ALIASES: dict[str, tuple[str, ...]] = {"latitude": ("y",), "longitude": ("x",)}


def spellings(role: str, grid: bool = False) -> tuple[str, ...]:
    """The accepted names of ``role`` (``time``, ``level``, ``latitude``, ``longitude``); ``grid`` adds y/x."""
    if role not in ALIASES:
        raise KeyError(f"unknown coordinate role {role!r}: expected one of {sorted(ALIASES)}")
    return ALIASES[role] + (GRID_ALIASES.get(role, ()) if grid else ())


def find(names: Collection[str], role: str, grid: bool = False) -> str | None:
    """The first spelling of ``role`` present in ``names`` (dimension, coordinate or column names), or None."""
    return next((n for n in spellings(role, grid) if n in names), None)


__all__ = ["ALIASES", "GRID_ALIASES", "spellings", "find"]
