r"""Stations: bilinear interpolation of any rectilinear grid at arbitrary (latitude, longitude) positions.

A station at :math:`(\phi, \lambda)` between rows :math:`i, i + 1` and columns :math:`j, j + 1` sees

.. math:: y = \sum_{a, b \in \{0, 1\}} w^{lat}_a \, w^{lon}_b \, x_{i + a, \, j + b},
    \qquad w^{lat}_1 = \frac{\phi - \phi_i}{\phi_{i + 1} - \phi_i}, \quad w^{lat}_0 = 1 - w^{lat}_1,

and likewise along longitude. The grid may be non-uniform and regional: latitudes strictly ascending or
descending, longitudes strictly ascending or descending *modulo the period*, in ``[-180, 180)`` or
``[0, 360)`` or even mixed (a regional axis ``350, 355, 0, 5`` crossing the prime meridian is ascending).
Longitudes are compared modulo the period. Latitude is never periodic; longitude is periodic only when the
grid spans the globe (detected as the regridder does, :func:`slams_jax.data.regrid.grid.is_global`, or
set with ``periodic``): then a station between the last and the first column interpolates across the seam.
A station outside the grid is refused, all of them in one message.

The four corner indices and weights of every station are computed once, in float64, so the operator is one
gather and one weighted sum: linear, with an exact adjoint.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float
from slams_jax.data.regrid.grid import is_global
from slams_jax.observation.operators.base import _HIGHEST, FloatsLike, Operator, _floats, _operator

_LISTED = 5  # stations named in a refusal; the rest are counted


@_operator
class Stations(Operator):
    """Bilinear interpolation of the grid at stations: ``(time, lat, lon, channel) -> (time, station, channel)``.

    Attributes:
        lat: Station latitudes (degrees), within the grid's latitude range.
        lon: Station longitudes (degrees), any real number (compared modulo ``period``); within the grid's
            longitude range unless the grid is periodic.
        grid_lat: Latitudes of the grid rows, strictly ascending or descending; need not be uniform.
        grid_lon: Longitudes of the grid columns, strictly ascending or descending modulo ``period`` (each
            step the short way round); need not be uniform nor global.
        period: Period of the longitude (360 for degrees).
        periodic: Whether the longitude wraps (the last column neighbours the first); ``None`` detects it:
            periodic when the gap round the wrap is at most 1.5 times the largest spacing. Stored resolved.
        names: Optional station labels (ids, table rows) for error messages; not compared nor hashed.
    """

    # the four coordinates stored as tuple[float, ...]
    lat: FloatsLike
    lon: FloatsLike
    grid_lat: FloatsLike
    grid_lon: FloatsLike
    period: float = 360.0
    periodic: bool | None = None
    names: tuple[str, ...] = dataclasses.field(default=(), compare=False, repr=False)
    spatial: ClassVar[bool] = True
    # (station, 4) corner indices and bilinear weights; derived, so not compared, hashed or shown.
    _lat_index: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    _lon_index: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    _weight: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        name = "Stations"
        lat, lon = _floats(self.lat, "lat", name), _floats(self.lon, "lon", name)
        grid_lat, grid_lon = _floats(self.grid_lat, "grid_lat", name), _floats(self.grid_lon, "grid_lon", name)
        period = float(self.period)
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"Stations.period={self.period!r}: expected a finite number > 0")
        if len(lat) != len(lon):
            raise ValueError(f"Stations: {len(lat)} latitudes but {len(lon)} longitudes")
        if not lat:
            raise ValueError("Stations: expected at least one station")
        names = tuple(str(n) for n in self.names)
        if names and len(names) != len(lat):
            raise ValueError(f"Stations.names: {len(names)} names for {len(lat)} stations")
        axis = _LonAxis.build(np.asarray(grid_lon), period, self.periodic)
        for field, value in (("lat", lat), ("lon", lon), ("grid_lat", grid_lat), ("grid_lon", grid_lon),
                             ("period", period), ("periodic", axis.periodic), ("names", names)):
            object.__setattr__(self, field, value)

        lat_index, lat_weight, lat_out = _lat_corners(np.asarray(lat), np.asarray(grid_lat))
        lon_index, lon_weight, lon_out = axis.corners(np.asarray(lon))
        self._refuse(np.flatnonzero(lat_out | lon_out), axis)
        # corners (a, b) for a, b in {0, 1}: (lat0, lon0), (lat0, lon1), (lat1, lon0), (lat1, lon1)
        object.__setattr__(self, "_lat_index", np.repeat(lat_index, 2, axis=1).astype(np.int32))
        object.__setattr__(self, "_lon_index", np.tile(lon_index, (1, 2)).astype(np.int32))
        object.__setattr__(self, "_weight", np.repeat(lat_weight, 2, axis=1) * np.tile(lon_weight, (1, 2)))

    def _refuse(self, outside: np.ndarray, axis: _LonAxis) -> None:
        """Raise one :class:`ValueError` naming the stations outside the grid (a few, and how many)."""
        if outside.size == 0:
            return
        lat_range = (min(self.grid_lat), max(self.grid_lat))
        label = (lambda k: f"station {self.names[k]!r}") if self.names else (lambda k: f"station {k}")
        listed = ", ".join(f"{label(k)} at latitude {self.lat[k]}, longitude {self.lon[k]}"
                           for k in outside[:_LISTED])
        more = f" and {outside.size - _LISTED} more" if outside.size > _LISTED else ""
        raise ValueError(
            f"Stations: {outside.size} of {len(self.lat)} stations lie outside the grid (latitude range "
            f"[{lat_range[0]}, {lat_range[1]}], {axis.describe()}): {listed}{more}"
        )

    @property
    def n_stations(self) -> int:
        return len(self.lat)

    @property
    def corners(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lat_index, lon_index, weight)``, each ``(station, 4)``: station ``s`` sees
        ``sum_k weight[s, k] * x[:, lat_index[s, k], lon_index[s, k], :]`` (e.g. to sample numpy arrays)."""
        return self._lat_index, self._lon_index, self._weight

    @property
    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Fractional ``(row, column)`` grid coordinates of every station, ``(station,)`` each: the bilinear
        weights' centre (a station across the seam of a periodic grid lies beyond the last column or before 0)."""
        w = self._weight
        row = np.sum(w * self._lat_index, axis=1)
        j0, j1 = self._lon_index[:, 0].astype(np.float64), self._lon_index[:, 1].astype(np.float64)
        step = np.where(np.abs(j1 - j0) > 1, -np.sign(j1 - j0), j1 - j0)  # a wrapped pair is one column apart
        return row, j0 + (w[:, 1] + w[:, 3]) * step

    def _validate(self, shape: tuple[int, ...]) -> None:
        super()._validate(shape)
        if shape[1:3] != (len(self.grid_lat), len(self.grid_lon)):
            raise ValueError(
                f"{self!r}: built for a {len(self.grid_lat)} x {len(self.grid_lon)} (lat x lon) grid, "
                f"got a {shape[1]} x {shape[2]} grid"
            )

    def __call__(self, x: Float[Array, "time lat lon channel"]) -> Float[Array, "time station channel"]:
        self._validate(x.shape)
        corners = x[:, self._lat_index, self._lon_index, :]  # (time, station, 4, channel)
        return jnp.einsum("tskc,sk->tsc", corners, jnp.asarray(self._weight, x.dtype), precision=_HIGHEST)


def _lat_corners(lat: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bracketing rows ``(station, 2)``, their weights, and which stations lie outside the rows' range."""
    n = grid.size
    if n < 2:
        raise ValueError(f"Stations.grid_lat: expected at least 2 latitudes, got {n}")
    step = np.diff(grid)
    if not (np.all(step > 0) or np.all(step < 0)):
        raise ValueError("Stations.grid_lat: expected strictly ascending or strictly descending latitudes")
    descending = step[0] < 0
    ascending = grid[::-1] if descending else grid
    outside = (lat < ascending[0]) | (lat > ascending[-1])
    i0 = np.clip(np.searchsorted(ascending, lat, side="right") - 1, 0, n - 2)
    w = np.clip((lat - ascending[i0]) / (ascending[i0 + 1] - ascending[i0]), 0.0, 1.0)
    index = np.stack([i0, i0 + 1], axis=1)
    if descending:
        index = n - 1 - index
    return index, np.stack([1.0 - w, w], axis=1), outside


@dataclasses.dataclass(frozen=True)
class _LonAxis:
    """A longitude axis unwrapped to ascending offsets from its westernmost column.

    Attributes:
        west, east: Longitudes of the westernmost and easternmost columns, as the grid spells them.
        offsets: ``(lon,)`` ascending offsets east of ``west``, from 0 to the span (< period).
        descending: Whether the grid's columns run east to west (offset ``k`` is then column ``n - 1 - k``).
        period: Period of the longitude.
        periodic: Whether the last column neighbours the first.
    """

    west: float
    east: float
    offsets: np.ndarray
    descending: bool
    period: float
    periodic: bool

    @classmethod
    def build(cls, grid: np.ndarray, period: float, periodic: bool | None) -> _LonAxis:
        n = grid.size
        if n < 1:
            raise ValueError("Stations.grid_lon: expected at least 1 longitude")
        # each step the short way round, so 359.75 -> 0 is +0.25 and a regional axis may cross the seam
        step = np.mod(np.diff(grid) + period / 2, period) - period / 2
        if not (np.all(step > 0) or np.all(step < 0)):
            raise ValueError(
                "Stations.grid_lon: expected strictly ascending or strictly descending longitudes (modulo "
                f"{period:g}), got {_short(grid)}"
            )
        descending = bool(n > 1 and step[0] < 0)
        steps = -step[::-1] if descending else step
        offsets = np.concatenate([[0.0], np.cumsum(steps)])
        if offsets[-1] >= period:
            raise ValueError(
                f"Stations.grid_lon: the longitudes span {offsets[-1]:g} >= {period:g} degrees, so some column "
                "repeats another modulo the period; drop the repeated one"
            )
        detected = True if n == 1 else is_global(offsets * (360.0 / period))
        west, east = (float(grid[-1]), float(grid[0])) if descending else (float(grid[0]), float(grid[-1]))
        return cls(west, east, offsets, descending, period, detected if periodic is None else bool(periodic))

    def corners(self, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bracketing columns ``(station, 2)``, their weights, and which stations lie outside the axis."""
        n, edges, period = self.offsets.size, self.offsets, self.period
        tol = 1e-9 * period  # a station on the outermost column, up to rounding, is on the grid
        r = np.mod(lon - self.west, period)
        r = np.where(r > period - tol, 0.0, r)
        if self.periodic:  # the last cell spans the last column to the first one, one period on
            ext = np.append(edges, period)
            j0 = np.clip(np.searchsorted(ext, r, side="right") - 1, 0, n - 1)
            w = np.clip((r - ext[j0]) / (ext[j0 + 1] - ext[j0]), 0.0, 1.0)
            j1, outside = (j0 + 1) % n, np.zeros(r.shape, bool)
        elif n == 1:
            j0 = j1 = np.zeros(r.shape, np.int64)
            w, outside = np.zeros(r.shape), r > tol
        else:
            j0 = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, n - 2)
            w = np.clip((r - edges[j0]) / (edges[j0 + 1] - edges[j0]), 0.0, 1.0)
            j1, outside = j0 + 1, r > edges[-1] + tol
        index = np.stack([j0, j1], axis=1)
        if self.descending:
            index = n - 1 - index
        return index, np.stack([1.0 - w, w], axis=1), outside

    def describe(self) -> str:
        if self.periodic:
            return f"longitudes periodic, {self.offsets.size} columns from {self.west:g}"
        return f"longitudes from {self.west:g} east to {self.east:g}, not periodic"


def _short(values: np.ndarray) -> str:
    v = values.tolist()
    return str(v) if len(v) <= 6 else f"[{v[0]}, {v[1]}, {v[2]}, ..., {v[-1]}] ({len(v)} values)"


__all__ = ["Stations"]
