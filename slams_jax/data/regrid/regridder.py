r"""Regridding of geographic fields between latitude/longitude grids (NumPy, SciPy and xarray; no JAX).

:class:`Regridder` applies the separable weights of :mod:`slams_jax.data.regrid.weights` to arrays
``(..., lat, lon)`` with missing values; :func:`regrid_dataarray` does it for an xarray DataArray, finding its
latitude and longitude dims by the spellings of :mod:`slams_jax.coords`.

Conservative (first-order, area-weighted mean)
----------------------------------------------
The value of target cell :math:`T` is

.. math:: \bar x_T = \frac{\sum_S |T \cap S|\, m_S\, x_S}{\sum_S |T \cap S|\, m_S},
          \qquad f_T = \frac{\sum_S |T \cap S|\, m_S}{\sum_S |T \cap S|},

over source cells :math:`S` with validity :math:`m_S = 1` where :math:`x_S` is finite and 0 where it is
NaN. :math:`f_T` is the *valid fraction*: the part of the target cell covered by source cells that is
covered by valid ones. Parts of a target cell outside the source grid (beyond a regional source's
latitudes or longitudes) are not counted at all: only the overlapping part is used. The output is NaN where
:math:`f_T` is below ``min_valid_fraction`` or where no valid source cell overlaps :math:`T`. Without NaN
and with a target that the source covers everywhere, the area integral
:math:`\sum_T |T| \bar x_T = \sum_S |S| x_S` is exact.

Bilinear
--------
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

from slams_jax.coords import spellings
from slams_jax.data.regrid.grid import latitude_axis, longitude_axis
from slams_jax.data.regrid.weights import bilinear_lat, bilinear_lon, conservative_lat, conservative_lon

METHODS = ("bilinear", "conservative")


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
        self.src_lat = latitude_axis(src_lat, "source latitude")
        self.src_lon = longitude_axis(src_lon, "source longitude")
        self.tgt_lat = latitude_axis(tgt_lat, "target latitude")
        self.tgt_lon = longitude_axis(tgt_lon, "target longitude")
        self.method = method
        self.min_valid_fraction = float(min_valid_fraction)
        if method == "conservative":
            self.lat_weights = conservative_lat(self.src_lat, self.tgt_lat)
            self.lon_weights = conservative_lon(self.src_lon, self.tgt_lon)
        else:
            self.lat_weights = bilinear_lat(self.src_lat, self.tgt_lat)
            self.lon_weights = bilinear_lon(self.src_lon, self.tgt_lon)
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
                    keep = keep & (invalid == 0)  # keep is (1, lat, lon): broadcast, not in place
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
    lat_dim = _find_dim(da, lat_name, spellings("latitude"), "latitude")
    lon_dim = _find_dim(da, lon_name, spellings("longitude"), "longitude")
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


__all__ = ["METHODS", "Regridder", "regrid_dataarray"]
