r"""Latitude-longitude grids: validated axes, cell edges, periodicity and the area weight of each row.

----------------
A grid is given by its 1-D cell-centre coordinates in degrees. Latitudes lie in ``[-90, 90]`` and may be
ascending or descending; longitudes may be ascending or descending, in ``[0, 360)``, ``[-180, 180)`` or
any other window shorter than 360 degrees (source and target may use different conventions). Outputs keep
the target's order of both axes. Cell edges are the midpoints between neighbouring centres; the outermost
latitude edges are the outermost centres moved out by half the neighbouring spacing and clipped to
``+-90`` (so a row centred on a pole spans half a cell).

Longitude is periodic: a longitude axis is *global* when the gap from its last centre round to its first
one is at most 1.5 times its largest spacing, and then its cells wrap (the cell of a 0.5-degree grid
centred on 359.75 spans 359.5..360 = 0; on a 0.5-degree grid whose first centre is 0 the wrap cell spans
-0.25..0.25). Otherwise the axis is *regional*: its outermost edges are extrapolated by half a spacing and
nothing lies beyond them. Latitude is never periodic: the poles are not neighbours.

Area weights
------------
The cell between latitudes :math:`a < b` and longitudes :math:`c < d` has area :math:`R^2 (\sin b - \sin a)(d - c)`
(``d - c`` in radians), so a latitude row's share of the sphere is proportional to :math:`\sin b - \sin a`
(:func:`area_weights`, for area-weighted losses and metrics).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float

# A longitude axis is global when the gap round the wrap is at most this many times its largest spacing.
GLOBAL_GAP_FACTOR = 1.5


def as_axis(coord, what: str) -> np.ndarray:
    """Validated 1-D float64 copy of a coordinate; ``what`` names it in errors (e.g. 'source latitude')."""
    values = np.asarray(coord, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{what} must be 1-D; got an array of shape {values.shape}")
    if values.size < 2:
        raise ValueError(f"{what} must have at least 2 points; got {values.size}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} must be finite; got NaN or inf at indices {np.flatnonzero(~np.isfinite(values))}")
    diff = np.diff(values)
    if np.any(diff == 0):
        i = int(np.flatnonzero(diff == 0)[0])
        raise ValueError(f"{what} has duplicated values: {values[i]} at indices {i} and {i + 1}")
    if not (np.all(diff > 0) or np.all(diff < 0)):
        i = int(np.flatnonzero(np.sign(diff) != np.sign(diff[0]))[0])
        raise ValueError(
            f"{what} must be strictly monotonic (ascending or descending); it changes direction at index "
            f"{i + 1}: ... {values[i]}, {values[i + 1]}, ..."
        )
    return values


def latitude_axis(coord, what: str) -> np.ndarray:
    """:func:`as_axis`, and every value in [-90, 90]."""
    lat = as_axis(coord, what)
    if lat.min() < -90 or lat.max() > 90:
        raise ValueError(f"{what} must lie in [-90, 90]; got values from {lat.min()} to {lat.max()}")
    return lat


def longitude_axis(coord, what: str) -> np.ndarray:
    """:func:`as_axis`, spanning less than 360 degrees (no longitude twice, e.g. both 0 and 360)."""
    lon = as_axis(coord, what)
    span = abs(lon[-1] - lon[0])
    if span >= 360:
        raise ValueError(
            f"{what} spans {span} degrees (from {lon[0]} to {lon[-1]}): at least two of its points are the "
            f"same longitude modulo 360 (e.g. both 0 and 360); drop the duplicated one"
        )
    return lon


def is_global(lon_sorted: np.ndarray) -> bool:
    """Whether ascending longitudes wrap: the gap from the last round to the first is at most
    :data:`GLOBAL_GAP_FACTOR` times the largest spacing."""
    gap = lon_sorted[0] + 360.0 - lon_sorted[-1]
    return bool(gap <= GLOBAL_GAP_FACTOR * np.diff(lon_sorted).max())


def lat_edges(lat_sorted: np.ndarray) -> np.ndarray:
    """Cell edges (n + 1,) of ascending latitude centres (n,); outermost edges clipped to +-90."""
    mid = 0.5 * (lat_sorted[1:] + lat_sorted[:-1])
    first = lat_sorted[0] - 0.5 * (lat_sorted[1] - lat_sorted[0])
    last = lat_sorted[-1] + 0.5 * (lat_sorted[-1] - lat_sorted[-2])
    return np.clip(np.concatenate([[first], mid, [last]]), -90.0, 90.0)


def lon_edges(lon_sorted: np.ndarray, periodic: bool) -> np.ndarray:
    """Cell edges (n + 1,) of ascending longitude centres (n,); a periodic axis spans exactly 360."""
    mid = 0.5 * (lon_sorted[1:] + lon_sorted[:-1])
    if periodic:
        first = 0.5 * (lon_sorted[-1] - 360.0 + lon_sorted[0])
        last = first + 360.0
    else:
        first = lon_sorted[0] - 0.5 * (lon_sorted[1] - lon_sorted[0])
        last = lon_sorted[-1] + 0.5 * (lon_sorted[-1] - lon_sorted[-2])
    return np.concatenate([[first], mid, [last]])


def area_weights(lat) -> Float[np.ndarray, " lat"]:
    """Relative cell area of each latitude row, normalized to mean 1 (for area-weighted losses and metrics).

    The row between edges ``a < b`` (midpoints between centres, outermost ones clipped to +-90) has area
    proportional to ``sin b - sin a``; on an equally spaced grid away from the poles this is proportional
    to ``cos(lat)``, while a row centred on a pole gets its half cell's area instead of zero.

    Args:
        lat: Latitude centres in degrees, ``(lat,)``, strictly ascending or descending, in [-90, 90].

    Returns:
        ``(lat,)`` float64 weights in the order of ``lat``, with mean 1.
    """
    lat = latitude_axis(lat, "latitude")
    order = np.argsort(lat)
    edges = np.sin(np.deg2rad(lat_edges(lat[order])))
    weights = np.empty_like(lat)
    weights[order] = np.diff(edges)
    return weights / weights.mean()


__all__ = ["GLOBAL_GAP_FACTOR", "as_axis", "latitude_axis", "longitude_axis", "is_global", "lat_edges", "lon_edges",
           "area_weights"]
