"""Regridding of geographic fields between latitude/longitude grids (NumPy, SciPy and xarray; no JAX).

Auxiliary data come on their own grids (CPC precipitation at 0.5 degrees with NaN over the ocean,
NOAA OLR at 2.5 degrees, ...); :class:`Regridder` puts them onto a model grid (ERA5 at 1.5 degrees,
121 x 240 with rows at the poles; WeatherBench2 at 5.625 degrees, 32 x 64; ...). Modules, one concept each:

- :mod:`~slams_jax.data.regrid.grid`: the grid conventions (validated axes, cell edges, when longitude wraps)
  and :func:`area_weights`;
- :mod:`~slams_jax.data.regrid.weights`: the separable 1-D weight matrices, conservative (cell overlaps) and
  bilinear (linear interpolation);
- :mod:`~slams_jax.data.regrid.regridder`: :class:`Regridder` (the weights applied to fields with missing
  values, and their valid fraction) and :func:`regrid_dataarray` (the xarray edge).
"""

from slams_jax.data.regrid.grid import area_weights as area_weights
from slams_jax.data.regrid.regridder import (
    METHODS as METHODS,
    Regridder as Regridder,
    regrid_dataarray as regrid_dataarray,
)

__all__ = ["METHODS", "Regridder", "area_weights", "regrid_dataarray"]
