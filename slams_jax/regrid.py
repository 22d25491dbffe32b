r"""Regridding of geographic fields between latitude/longitude grids (NumPy, SciPy and xarray; no JAX).

Auxiliary data come on their own grids (CPC precipitation at 0.5 degrees with NaN over the ocean,
NOAA OLR at 2.5 degrees, ...); :class:`Regridder` puts them onto a model grid (ERA5 at 1.5 degrees,
121 x 240 with rows at the poles; WeatherBench2 at 5.625 degrees, 32 x 64; ...).

Grid conventions
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

Conservative (first-order, area-weighted mean)
----------------------------------------------
The area of the cell between latitudes :math:`a < b` and longitudes :math:`c < d` is
:math:`R^2 (\sin b - \sin a)(d - c)` (``d - c`` in radians). The value of target cell :math:`T` is

.. math:: \bar x_T = \frac{\sum_S |T \cap S|\, m_S\, x_S}{\sum_S |T \cap S|\, m_S},
          \qquad f_T = \frac{\sum_S |T \cap S|\, m_S}{\sum_S |T \cap S|},

over source cells :math:`S` with validity :math:`m_S = 1` where :math:`x_S` is finite and 0 where it is
NaN. :math:`f_T` is the *valid fraction*: the part of the target cell covered by source cells that is
covered by valid ones. Parts of a target cell outside the source grid (beyond a regional source's
latitudes or longitudes) are not counted at all: only the overlapping part is used. The output is NaN where
:math:`f_T` is below ``min_valid_fraction`` or where no valid source cell overlaps :math:`T`. Since the
overlap of two lat-lon cells is the product of a latitude overlap (in :math:`\sin`) and a longitude
overlap (in degrees, modulo 360), the weights are separable, :math:`|T \cap S| = L_{ij} W_{kl}`, and the
regridding is ``L @ x @ W.T`` with two small sparse 1-D matrices. Without NaN and with a target that the
source covers everywhere, the area integral :math:`\sum_T |T| \bar x_T = \sum_S |S| x_S` is exact.

Bilinear
--------
Linear interpolation in latitude (in degrees) times linear interpolation in longitude (in degrees,
periodic on a global axis: between the last and the first centre it interpolates across the wrap).
A target latitude beyond the source's outermost row takes that row's values (clamping: on global grids
this only bridges the last half cell to a pole, e.g. a target row at 90 from a source row at 89.75;
the opposite pole is never used). A target longitude outside a *regional* source's longitudes is NaN.
NaN rule: the output is NaN wherever any of the (up to four) source points with a non-zero weight is
NaN; no renormalization over the valid neighbours, so masked regions (ocean in a land-only data set)
neither shrink nor get extrapolated into. A target point on a source node has a single non-zero weight
and only that node matters. The valid fraction of bilinear output is the total weight of its valid
neighbours (1 where the output is finite); ``min_valid_fraction`` is not used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import xarray as xr
from jaxtyping import Float

__all__ = ["METHODS", "Regridder", "area_weights", "regrid_dataarray"]

METHODS = ("bilinear", "conservative")
LAT_NAMES = ("latitude", "lat")
LON_NAMES = ("longitude", "lon")

# A longitude axis is global when the gap round the wrap is at most this many times its largest spacing.
_GLOBAL_GAP_FACTOR = 1.5


def _as_axis(coord, what: str) -> np.ndarray:
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


def _latitude(coord, what: str) -> np.ndarray:
    lat = _as_axis(coord, what)
    if lat.min() < -90 or lat.max() > 90:
        raise ValueError(f"{what} must lie in [-90, 90]; got values from {lat.min()} to {lat.max()}")
    return lat


def _longitude(coord, what: str) -> np.ndarray:
    lon = _as_axis(coord, what)
    span = abs(lon[-1] - lon[0])
    if span >= 360:
        raise ValueError(
            f"{what} spans {span} degrees (from {lon[0]} to {lon[-1]}): at least two of its points are the "
            f"same longitude modulo 360 (e.g. both 0 and 360); drop the duplicated one"
        )
    return lon


def _is_global(lon_sorted: np.ndarray) -> bool:
    gap = lon_sorted[0] + 360.0 - lon_sorted[-1]
    return bool(gap <= _GLOBAL_GAP_FACTOR * np.diff(lon_sorted).max())


def _lat_edges(lat_sorted: np.ndarray) -> np.ndarray:
    """Cell edges (n + 1,) of ascending latitude centres (n,); outermost edges clipped to +-90."""
    mid = 0.5 * (lat_sorted[1:] + lat_sorted[:-1])
    first = lat_sorted[0] - 0.5 * (lat_sorted[1] - lat_sorted[0])
    last = lat_sorted[-1] + 0.5 * (lat_sorted[-1] - lat_sorted[-2])
    return np.clip(np.concatenate([[first], mid, [last]]), -90.0, 90.0)


def _lon_edges(lon_sorted: np.ndarray, periodic: bool) -> np.ndarray:
    """Cell edges (n + 1,) of ascending longitude centres (n,); a periodic axis spans exactly 360."""
    mid = 0.5 * (lon_sorted[1:] + lon_sorted[:-1])
    if periodic:
        first = 0.5 * (lon_sorted[-1] - 360.0 + lon_sorted[0])
        last = first + 360.0
    else:
        first = lon_sorted[0] - 0.5 * (lon_sorted[1] - lon_sorted[0])
        last = lon_sorted[-1] + 0.5 * (lon_sorted[-1] - lon_sorted[-2])
    return np.concatenate([[first], mid, [last]])


def _unsort(matrix_sorted: np.ndarray, order_tgt: np.ndarray, order_src: np.ndarray) -> sp.csr_array:
    """Weights between sorted axes -> CSR matrix (target, source) indexed in the original orders."""
    matrix = np.zeros_like(matrix_sorted)
    matrix[np.ix_(order_tgt, order_src)] = matrix_sorted
    out = sp.csr_array(matrix)
    out.eliminate_zeros()
    return out


def _conservative_lat(src: np.ndarray, tgt: np.ndarray) -> sp.csr_array:
    """Latitude overlaps ``sin(min(b, b')) - sin(max(a, a'))`` (>= 0) of target and source rows."""
    o_s, o_t = np.argsort(src), np.argsort(tgt)
    e_s, e_t = _lat_edges(src[o_s]), _lat_edges(tgt[o_t])
    upper = np.minimum(e_t[1:, None], e_s[None, 1:])
    lower = np.maximum(e_t[:-1, None], e_s[None, :-1])
    overlap = np.where(upper > lower, np.sin(np.deg2rad(upper)) - np.sin(np.deg2rad(lower)), 0.0)
    return _unsort(np.maximum(overlap, 0.0), o_t, o_s)


def _conservative_lon(src: np.ndarray, tgt: np.ndarray) -> sp.csr_array:
    """Longitude overlaps in degrees, modulo 360, of target and source columns."""
    o_s, o_t = np.argsort(src), np.argsort(tgt)
    s, t = src[o_s], tgt[o_t]
    e_s, e_t = _lon_edges(s, _is_global(s)), _lon_edges(t, _is_global(t))
    # Bring the target edges next to the source's, then count the source cells shifted by whole turns:
    # each cell is shorter than 360 degrees, so shifts of -1, 0, +1 turns find every overlap.
    e_t = e_t + 360.0 * np.round((e_s[0] - e_t[0]) / 360.0)
    overlap = np.zeros((t.size, s.size))
    for turn in (-360.0, 0.0, 360.0):
        upper = np.minimum(e_t[1:, None], e_s[None, 1:] + turn)
        lower = np.maximum(e_t[:-1, None], e_s[None, :-1] + turn)
        overlap += np.maximum(upper - lower, 0.0)
    return _unsort(overlap, o_t, o_s)


def _linear_weights(sorted_src: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left index and weights ``(1 - w, w)`` of positions inside ``[sorted_src[0], sorted_src[-1]]``."""
    i = np.clip(np.searchsorted(sorted_src, positions, side="right") - 1, 0, sorted_src.size - 2)
    w = np.clip((positions - sorted_src[i]) / (sorted_src[i + 1] - sorted_src[i]), 0.0, 1.0)
    return i, 1.0 - w, w


def _bilinear_lat(src: np.ndarray, tgt: np.ndarray) -> sp.csr_array:
    """Linear interpolation weights in latitude, clamped to the outermost source rows."""
    o_s, o_t = np.argsort(src), np.argsort(tgt)
    s = src[o_s]
    i, w0, w1 = _linear_weights(s, np.clip(tgt[o_t], s[0], s[-1]))
    matrix = np.zeros((tgt.size, src.size))
    rows = np.arange(tgt.size)
    np.add.at(matrix, (rows, i), w0)
    np.add.at(matrix, (rows, i + 1), w1)
    return _unsort(matrix, o_t, o_s)


def _bilinear_lon(src: np.ndarray, tgt: np.ndarray) -> sp.csr_array:
    """Linear interpolation weights in longitude: periodic on a global source, zero rows outside a regional one."""
    o_s, o_t = np.argsort(src), np.argsort(tgt)
    s = src[o_s]
    n = s.size
    # Position of each target longitude in [s[0], s[0] + 360); values within rounding of s[0] + 360 are s[0].
    pos = s[0] + np.mod(tgt[o_t] - s[0], 360.0)
    pos = np.where(s[0] + 360.0 - pos < 1e-9, s[0], pos)
    rows = np.arange(tgt.size)
    matrix = np.zeros((tgt.size, n))
    if _is_global(s):
        i, w0, w1 = _linear_weights(np.append(s, s[0] + 360.0), pos)
        np.add.at(matrix, (rows, i), w0)
        np.add.at(matrix, (rows, (i + 1) % n), w1)
    else:
        inside = pos <= s[-1] + 1e-9
        i, w0, w1 = _linear_weights(s, np.minimum(pos, s[-1]))
        np.add.at(matrix, (rows[inside], i[inside]), w0[inside])
        np.add.at(matrix, (rows[inside], i[inside] + 1), w1[inside])
    return _unsort(matrix, o_t, o_s)


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
    lat = _latitude(lat, "latitude")
    order = np.argsort(lat)
    edges = np.sin(np.deg2rad(_lat_edges(lat[order])))
    weights = np.empty_like(lat)
    weights[order] = np.diff(edges)
    return weights / weights.mean()


class Regridder:
    """Regrids ``(..., lat, lon)`` arrays from a source to a target lat-lon grid (see the module docstring).

    The weights are built once, as two sparse 1-D matrices ``lat_weights`` (target lat, source lat) and
    ``lon_weights`` (target lon, source lon) indexed in the given coordinate orders; a regridding is two
    matrix products, ``lat_weights @ x @ lon_weights.T`` normalized by the (valid) weight sums.

    Args:
        src_lat: Source latitude centres in degrees, ``(n_lat,)``, strictly monotonic, in [-90, 90].
        src_lon: Source longitude centres in degrees, ``(n_lon,)``, strictly monotonic, spanning < 360.
        tgt_lat: Target latitude centres, ``(m_lat,)``, same rules.
        tgt_lon: Target longitude centres, ``(m_lon,)``, same rules; any 360-degree window.
        method: ``"conservative"`` (area-weighted mean of overlapping cells) or ``"bilinear"``.
        min_valid_fraction: Conservative only: target cells whose valid fraction is below this are NaN.
    """

    def __init__(
        self,
        src_lat,
        src_lon,
        tgt_lat,
        tgt_lon,
        method: str = "conservative",
        min_valid_fraction: float = 0.5,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown regridding method {method!r}; valid methods: {', '.join(METHODS)}")
        if not 0.0 <= min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must lie in [0, 1]; got {min_valid_fraction}")
        self.src_lat = _latitude(src_lat, "source latitude")
        self.src_lon = _longitude(src_lon, "source longitude")
        self.tgt_lat = _latitude(tgt_lat, "target latitude")
        self.tgt_lon = _longitude(tgt_lon, "target longitude")
        self.method = method
        self.min_valid_fraction = float(min_valid_fraction)
        if method == "conservative":
            self.lat_weights = _conservative_lat(self.src_lat, self.tgt_lat)
            self.lon_weights = _conservative_lon(self.src_lon, self.tgt_lon)
        else:
            self.lat_weights = _bilinear_lat(self.src_lat, self.tgt_lat)
            self.lon_weights = _bilinear_lon(self.src_lon, self.tgt_lon)
        # Indicators of the non-zero weights: which source points each target point depends on.
        self._lat_support = (self.lat_weights != 0).astype(np.float64)
        self._lon_support = (self.lon_weights != 0).astype(np.float64)
        self._cast: dict[np.dtype, tuple[sp.csr_array, ...]] = {}

    @property
    def src_shape(self) -> tuple[int, int]:
        return self.src_lat.size, self.src_lon.size

    @property
    def tgt_shape(self) -> tuple[int, int]:
        return self.tgt_lat.size, self.tgt_lon.size

    def _matrices(self, dtype: np.dtype) -> tuple[sp.csr_array, ...]:
        if dtype not in self._cast:
            self._cast[dtype] = tuple(
                m.astype(dtype) for m in (self.lat_weights, self.lon_weights, self._lat_support, self._lon_support)
            )
        return self._cast[dtype]

    @staticmethod
    def _apply(lat_m: sp.csr_array, lon_m: sp.csr_array, x: np.ndarray) -> np.ndarray:
        """``lat_m @ x @ lon_m.T`` for ``x`` of shape (batch, lat, lon)."""
        batch, n_lat, n_lon = x.shape
        y = (lon_m @ x.reshape(batch * n_lat, n_lon).T).T  # (batch * n_lat, m_lon)
        m_lon = y.shape[-1]
        y = np.ascontiguousarray(y.reshape(batch, n_lat, m_lon).transpose(1, 0, 2)).reshape(n_lat, batch * m_lon)
        z = lat_m @ y  # (m_lat, batch * m_lon)
        return np.asarray(z).reshape(-1, batch, m_lon).transpose(1, 0, 2)

    def regrid_with_fraction(
        self, values: Float[np.ndarray, "*batch lat lon"]
    ) -> tuple[Float[np.ndarray, "*batch lat_out lon_out"], Float[np.ndarray, "*batch lat_out lon_out"]]:
        """Regrids ``values`` and also returns the valid fraction of each target cell.

        Args:
            values: Source field(s), last two axes on the source grid; NaN marks missing values. float32 and
                float64 are kept, other dtypes are converted to float64.

        Returns:
            ``(regridded, valid_fraction)``, both ``(*batch, m_lat, m_lon)`` of the input's float dtype and
            the target's coordinate orders. ``valid_fraction`` lies in [0, 1]: conservative, the part of the
            source-covered area of the cell that holds valid values (0 where no source cell overlaps);
            bilinear, the total weight of the valid neighbours (0 outside a regional source).
        """
        values = np.asarray(values)
        if values.ndim < 2 or values.shape[-2:] != self.src_shape:
            raise ValueError(
                f"values must end with the source grid shape (lat, lon) = {self.src_shape}; "
                f"got an array of shape {values.shape}"
            )
        if values.dtype not in (np.float32, np.float64):
            values = values.astype(np.float64)
        dtype = values.dtype
        lead = values.shape[:-2]
        x = values.reshape((-1,) + self.src_shape)
        lat_w, lon_w, lat_s, lon_s = self._matrices(dtype)
        finite = np.isfinite(x)
        all_finite = bool(finite.all())
        total = self._apply(lat_w, lon_w, np.where(finite, x, 0) if not all_finite else x)
        # Weight of each target point from source points, whatever their values.
        covered = np.outer(lat_w.sum(axis=1), lon_w.sum(axis=1)).astype(dtype)[None]
        tol = 64 * np.finfo(dtype).eps
        if all_finite:
            valid = covered
        else:
            valid = self._apply(lat_w, lon_w, finite.astype(dtype))
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = np.where(covered > 0, np.clip(valid / covered, 0.0, 1.0), 0.0).astype(dtype)
            if self.method == "conservative":
                out = total / valid
                keep = (valid > 0) & (fraction >= self.min_valid_fraction - tol)
            else:
                # The weights of a target point sum to 1 (or 0 outside a regional source): no division.
                out = total
                keep = covered > 0
                if not all_finite:
                    invalid = self._apply(lat_s, lon_s, (~finite).astype(dtype))
                    keep &= invalid == 0
                    fraction = np.where(invalid == 0, np.where(covered > 0, 1.0, 0.0), fraction).astype(dtype)
                else:
                    fraction = np.where(covered > 0, 1.0, 0.0).astype(dtype)
        out = np.where(keep, out, np.nan).astype(dtype)
        fraction = np.broadcast_to(fraction, out.shape)
        return out.reshape(lead + self.tgt_shape), np.array(fraction).reshape(lead + self.tgt_shape)

    def __call__(self, values: Float[np.ndarray, "*batch lat lon"]) -> Float[np.ndarray, "*batch lat_out lon_out"]:
        """Regrids ``(*batch, n_lat, n_lon)`` values to ``(*batch, m_lat, m_lon)``; see :meth:`regrid_with_fraction`."""
        return self.regrid_with_fraction(values)[0]

    def __repr__(self) -> str:
        return f"Regridder({self.method!r}, {self.src_shape} -> {self.tgt_shape})"


def _find_dim(da: xr.DataArray, name: str | None, candidates: Sequence[str], what: str) -> str:
    if name is not None:
        if name not in da.dims:
            raise ValueError(f"{what} dim {name!r} is not a dim of the DataArray; its dims are {tuple(da.dims)}")
        return name
    found = [d for d in da.dims if str(d).lower() in candidates]
    if len(found) != 1:
        problem = "no" if not found else f"several ({found})"
        raise ValueError(
            f"found {problem} {what} dims among {tuple(da.dims)} (recognised names: {', '.join(candidates)}); "
            f"pass {what[:3]}_name=..."
        )
    return found[0]


def regrid_dataarray(
    da: xr.DataArray,
    target_lat,
    target_lon,
    method: str = "conservative",
    lat_name: str | None = None,
    lon_name: str | None = None,
    min_valid_fraction: float = 0.5,
) -> xr.DataArray:
    """Regrids an xarray DataArray onto the target latitudes and longitudes.

    The latitude and longitude dims are ``lat_name``/``lon_name`` or, by default, the dims named
    ``latitude``/``lat`` and ``longitude``/``lon`` (any case); their coordinate values give the source grid.
    The dims keep their names and order, the target coordinates replace the source ones (with the source
    coordinates' attrs), and other dims, the coordinates not on the lat/lon dims, the name and the attrs are
    kept. Coordinates on the lat/lon dims other than the dims' own (e.g. a 2-D land mask) are dropped.

    Args:
        da: Field with a latitude and a longitude dim (and any others), loaded into memory when regridded.
        target_lat: Target latitude centres ``(m_lat,)`` (array or DataArray).
        target_lon: Target longitude centres ``(m_lon,)``.
        method: ``"conservative"`` or ``"bilinear"``, see :class:`Regridder`.
        lat_name: Name of the latitude dim, if not one of the recognised names.
        lon_name: Name of the longitude dim, likewise.
        min_valid_fraction: See :class:`Regridder`.

    Returns:
        The regridded DataArray, of the input's float dtype (float64 for non-float input).
    """
    lat_dim = _find_dim(da, lat_name, LAT_NAMES, "latitude")
    lon_dim = _find_dim(da, lon_name, LON_NAMES, "longitude")
    for dim in (lat_dim, lon_dim):
        if dim not in da.coords:
            raise ValueError(f"dim {dim!r} of the DataArray has no coordinate values to regrid from")
    regridder = Regridder(
        da[lat_dim].values, da[lon_dim].values, np.asarray(target_lat), np.asarray(target_lon),
        method=method, min_valid_fraction=min_valid_fraction,
    )
    other = [d for d in da.dims if d not in (lat_dim, lon_dim)]
    moved = da.transpose(*other, lat_dim, lon_dim)
    coords = {
        name: coord for name, coord in moved.coords.items() if lat_dim not in coord.dims and lon_dim not in coord.dims
    }
    coords[lat_dim] = xr.Variable(lat_dim, regridder.tgt_lat, attrs=da[lat_dim].attrs)
    coords[lon_dim] = xr.Variable(lon_dim, regridder.tgt_lon, attrs=da[lon_dim].attrs)
    out = xr.DataArray(
        regridder(moved.values), dims=moved.dims, coords=coords, name=da.name, attrs=dict(da.attrs)
    )
    return out.transpose(*da.dims)
