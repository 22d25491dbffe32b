"""Real data: ERA5 and gridded auxiliary modalities through xarray, aligned by date, streamed lazily.

Stores are opened lazily: nothing is read until values are indexed, so a window of a multi-year archive
costs only its own bytes. Modules, one concept each, along the data flow:

- :mod:`~slams_jax.data.era5.stores`: opening a store (:func:`open_store`), its names and axes made canonical
  (:func:`standardize`, with the spellings of :mod:`slams_jax.coords`), one variable at some pressure levels
  (:func:`select`), and the sources read by day (:class:`StoreSource`: WeatherBench2, CPC, NOAA OLR, any
  netCDF/zarr; :class:`ChaosBenchSource`: one zarr per day).
- :mod:`~slams_jax.data.era5.splits`: every modality on the state's grid (:class:`Modality`), the days
  matched by timestamp (:func:`align`), the normalization fitted on training days
  (:func:`fit_normalization`) and the splits as lazily read arrays (:func:`load_splits`,
  :class:`LazyModality`), or one window as xarray (:func:`window_dataset`).
- :mod:`~slams_jax.data.era5.prepared`: the same arrays written once as normalized ``.npy`` files
  (:func:`prepare`, ``python -m slams_jax.prepare``), memory-mapped by later runs (:func:`open_prepared`,
  ``config.data.era5.prepared``); :func:`training_arrays` is what training reads.
"""

from slams_jax.coords import ALIASES as ALIASES
from slams_jax.data.era5.prepared import (
    PreparedArray as PreparedArray,
    grid_latitude as grid_latitude,
    open_prepared as open_prepared,
    prepare as prepare,
    training_arrays as training_arrays,
)
from slams_jax.data.era5.splits import (
    LazyModality as LazyModality,
    Modality as Modality,
    align as align,
    fit_normalization as fit_normalization,
    load_splits as load_splits,
    window_dataset as window_dataset,
)
from slams_jax.data.era5.stores import (
    ChaosBenchSource as ChaosBenchSource,
    StoreSource as StoreSource,
    open_store as open_store,
    select as select,
    standardize as standardize,
)
from slams_jax.errors import DataError as DataError

__all__ = [
    "PreparedArray", "prepare", "grid_latitude", "open_prepared", "training_arrays",
    "ALIASES", "DataError", "open_store", "standardize", "select", "StoreSource", "ChaosBenchSource",
    "Modality", "LazyModality", "align", "fit_normalization", "load_splits", "window_dataset",
]
