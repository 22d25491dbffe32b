r"""Stations: bilinear interpolation of the grid at arbitrary (latitude, longitude) positions.

A station at :math:`(\phi, \lambda)` between rows :math:`i, i + 1` and columns :math:`j, j + 1` sees

.. math:: y = \sum_{a, b \in \{0, 1\}} w^{lat}_a \, w^{lon}_b \, x_{i + a, \, j + b},
    \qquad w^{lat}_1 = \frac{\phi - \phi_i}{\phi_{i + 1} - \phi_i}, \quad w^{lat}_0 = 1 - w^{lat}_1,

and likewise along longitude. Longitude is periodic (column :math:`j + 1` wraps to column 0, so a station
across the seam is interpolated, not refused); latitude is not, and a station outside the grid's latitude
range is refused. The four corner indices and weights of every station are computed once, in float64, so
the operator is one gather and one weighted sum: linear, with an exact adjoint.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float
from slams_jax.observation.operators.base import _HIGHEST, FloatsLike, Operator, _floats, _operator


@_operator
class Stations(Operator):
    """Bilinear interpolation of the grid at stations: ``(time, lat, lon, channel) -> (time, station, channel)``.

    Longitude is periodic with ``period`` (a station between the last and the first grid column interpolates
    across the seam); latitude is not, and a station outside the grid's latitude range is refused. The
    corner indices and weights are computed once, in float64, at construction.

    Attributes:
        lat: Station latitudes (degrees), within ``[min(grid_lat), max(grid_lat)]``.
        lon: Station longitudes (degrees), any real number (reduced modulo ``period``).
        grid_lat: Latitudes of the grid rows, strictly ascending or descending (ERA5: 90 to -90); need not be
            uniform.
        grid_lon: Longitudes of the grid columns, ascending, uniformly spaced by ``period / len(grid_lon)``.
        period: Period of the longitude.
    """

    # all four stored as tuple[float, ...]
    lat: FloatsLike
    lon: FloatsLike
    grid_lat: FloatsLike
    grid_lon: FloatsLike
    period: float = 360.0
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
        for field, value in (("lat", lat), ("lon", lon), ("grid_lat", grid_lat), ("grid_lon", grid_lon)):
            object.__setattr__(self, field, value)
        object.__setattr__(self, "period", period)

        lat_index, lat_weight = self._lat_corners(np.asarray(lat), np.asarray(grid_lat))
        lon_index, lon_weight = self._lon_corners(np.asarray(lon), np.asarray(grid_lon), period)
        # corners (a, b) for a, b in {0, 1}: (lat0, lon0), (lat0, lon1), (lat1, lon0), (lat1, lon1)
        object.__setattr__(self, "_lat_index", np.repeat(lat_index, 2, axis=1).astype(np.int32))
        object.__setattr__(self, "_lon_index", np.tile(lon_index, (1, 2)).astype(np.int32))
        object.__setattr__(self, "_weight", np.repeat(lat_weight, 2, axis=1) * np.tile(lon_weight, (1, 2)))

    @staticmethod
    def _lat_corners(lat: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bracketing rows ``(station, 2)`` and their weights; refuses stations outside the grid's range."""
        n = grid.size
        if n < 2:
            raise ValueError(f"Stations.grid_lat: expected at least 2 latitudes, got {n}")
        step = np.diff(grid)
        if not (np.all(step > 0) or np.all(step < 0)):
            raise ValueError("Stations.grid_lat: expected strictly ascending or strictly descending latitudes")
        low, high = float(grid.min()), float(grid.max())
        for k, value in enumerate(lat):
            if not low <= value <= high:
                raise ValueError(
                    f"Stations: station {k} at latitude {value} is outside the grid's latitude range [{low}, {high}]"
                )
        descending = step[0] < 0
        ascending = grid[::-1] if descending else grid
        i0 = np.clip(np.searchsorted(ascending, lat, side="right") - 1, 0, n - 2)
        w = np.clip((lat - ascending[i0]) / (ascending[i0 + 1] - ascending[i0]), 0.0, 1.0)
        index = np.stack([i0, i0 + 1], axis=1)
        if descending:
            index = n - 1 - index
        return index, np.stack([1.0 - w, w], axis=1)

    @staticmethod
    def _lon_corners(lon: np.ndarray, grid: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
        """Bracketing columns ``(station, 2)`` (the second wrapping to column 0) and their weights."""
        n = grid.size
        if n < 1:
            raise ValueError("Stations.grid_lon: expected at least 1 longitude")
        spacing = period / n
        expected = grid[0] + spacing * np.arange(n)
        if np.max(np.abs(grid - expected)) > 1e-3 * spacing:
            raise ValueError(
                f"Stations.grid_lon: expected {n} ascending longitudes uniformly spaced by period / {n} = {spacing}"
            )
        u = np.mod(lon - grid[0], period) / spacing
        j0 = np.minimum(np.floor(u), n - 1).astype(np.int64)
        w = np.clip(u - j0, 0.0, 1.0)
        return np.stack([j0, (j0 + 1) % n], axis=1), np.stack([1.0 - w, w], axis=1)

    @property
    def n_stations(self) -> int:
        return len(self.lat)

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



__all__ = ["Stations"]
