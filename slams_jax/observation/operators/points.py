"""Grid cells observed at every time: :class:`Points`, and two ways to place them (random, a lattice).

:class:`Points` picks cells by their ``(lat, lon)`` indices, ``(time, lat, lon, channel) -> (time, n, channel)``;
:func:`random_points` draws distinct cells from a PRNG key (e.g. sparse in-situ stations, or only where a
field exists) and :func:`regular_points` lays a lattice every ``gap`` cells.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import numpy as np

from slams_jax._types import Array, Float, PRNGKey
from slams_jax.observation.operators.base import IntsLike, Operator, _ints, _operator, _positive_int


@_operator
class Points(Operator):
    """Grid cells observed at every time: ``(time, lat, lon, channel) -> (time, n_points, channel)``.

    Attributes:
        lat_index: Latitude index of each point.
        lon_index: Longitude index of each point (same length).
    """

    lat_index: IntsLike  # both stored as tuple[int, ...]
    lon_index: IntsLike
    spatial: ClassVar[bool] = True

    def __post_init__(self):
        lat, lon = _ints(self.lat_index, "lat_index", "Points"), _ints(self.lon_index, "lon_index", "Points")
        if len(lat) != len(lon):
            raise ValueError(f"Points: {len(lat)} latitude indices but {len(lon)} longitude indices")
        if not lat:
            raise ValueError("Points: expected at least one point")
        if min(lat) < 0 or min(lon) < 0:
            raise ValueError("Points: negative indices are not supported")
        object.__setattr__(self, "lat_index", lat)
        object.__setattr__(self, "lon_index", lon)

    @property
    def n_points(self) -> int:
        return len(self.lat_index)

    def _validate(self, shape: tuple[int, ...]) -> None:
        super()._validate(shape)
        for axis, name, index in ((1, "latitude", self.lat_index), (2, "longitude", self.lon_index)):
            k = int(np.argmax(index))
            if index[k] >= shape[axis]:
                raise ValueError(
                    f"{self!r}: point {k} has {name} index {index[k]}, out of range for {shape[axis]} {name}s"
                )

    def __call__(self, x: Float[Array, "time lat lon channel"]) -> Float[Array, "time point channel"]:
        self._validate(x.shape)
        return x[:, np.asarray(self.lat_index, np.int32), np.asarray(self.lon_index, np.int32), :]


def random_points(key: PRNGKey, grid: tuple[int, int], density: float, valid: np.ndarray | None = None) -> Points:
    """Distinct grid cells drawn uniformly at random, e.g. sparse in-situ stations.

    Args:
        key: A concrete PRNG key (typed or raw ``uint32``); the same key gives the same points.
        grid: ``(lat, lon)`` size of the grid.
        density: Fraction of the cells observed, in ``(0, 1]``.
        valid: Optional boolean ``(lat, lon)`` mask: points are drawn among its true cells only (e.g. where a
            precipitation field exists), at most all of them.

    Returns:
        :class:`Points` at exactly ``max(1, round(density * lat * lon))`` distinct cells (fewer if ``valid``
        has fewer), sorted by flat (row-major) index.
    """
    if not (isinstance(density, (int, float, np.number)) and 0.0 < density <= 1.0):
        raise ValueError(f"random_points: density={density!r}, expected a fraction in (0, 1]")
    n_lat, n_lon = (_positive_int(n, "grid", "random_points") for n in grid)
    cells = np.arange(n_lat * n_lon)
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != (n_lat, n_lon):
            raise ValueError(f"random_points: valid mask of shape {valid.shape}, expected {(n_lat, n_lon)}")
        cells = np.flatnonzero(valid)
        if cells.size == 0:
            raise ValueError("random_points: the valid mask has no true cell")
    count = min(max(1, round(density * n_lat * n_lon)), cells.size)
    # numpy from the key's bits: exact, deterministic and without compiling a sampler for every grid.
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    seed = np.asarray(data).astype(np.uint32).ravel().tolist()
    flat = np.sort(np.random.default_rng(seed).choice(cells, size=count, replace=False))
    return Points(tuple(int(i) for i in flat // n_lon), tuple(int(j) for j in flat % n_lon))


def regular_points(grid: tuple[int, int], gap: int, offset: int | tuple[int, int] | None = None) -> Points:
    """The cells of a regular lattice, every ``gap`` cells along latitude and longitude, e.g. sparse stations.

    The lattice holds about ``1 / gap**2`` of the cells: rows ``offset_lat, offset_lat + gap, ...`` below
    ``lat`` times columns ``offset_lon, offset_lon + gap, ...`` below ``lon``. The default offset ``gap // 2``
    centres the lattice in its ``gap x gap`` blocks, so a grid divisible by ``gap`` has one point per block.

    Args:
        grid: ``(lat, lon)`` size of the grid.
        gap: Spacing of the lattice in grid cells, >= 1 (1 observes every cell).
        offset: Index of the first row and column, one int for both or ``(lat, lon)``, each >= 0; ``None`` for
            ``gap // 2``.

    Returns:
        :class:`Points` at the lattice cells, sorted by flat (row-major) index.
    """
    n_lat, n_lon = (_positive_int(n, "grid", "regular_points") for n in grid)
    gap = _positive_int(gap, "gap", "regular_points")
    offsets = _ints(gap // 2 if offset is None else offset, "offset", "regular_points")
    if len(offsets) not in (1, 2) or min(offsets) < 0:
        raise ValueError(f"regular_points.offset={offset!r}: expected an int >= 0 or a pair (lat, lon) of them")
    off_lat, off_lon = offsets * 2 if len(offsets) == 1 else offsets
    rows, cols = np.arange(off_lat, n_lat, gap), np.arange(off_lon, n_lon, gap)
    if rows.size == 0 or cols.size == 0:
        raise ValueError(
            f"regular_points: offset ({off_lat}, {off_lon}) is outside the {n_lat} x {n_lon} (lat x lon) grid, "
            f"so a lattice with gap {gap} has no point in it; expected an offset below the grid size"
        )
    lat, lon = np.meshgrid(rows, cols, indexing="ij")
    return Points(tuple(int(i) for i in lat.ravel()), tuple(int(j) for j in lon.ravel()))



__all__ = ["Points", "random_points", "regular_points"]
