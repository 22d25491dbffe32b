"""The ``dataset`` source: any gridded netCDF or zarr data, any region and cadence, read lazily through xarray.

Modules along the data flow:

- :mod:`~slams_jax.data.gridded.files`: ``config.data.path`` (a file, a store, a directory or a glob; or an
  ``xarray.Dataset``) opened lazily with canonical names, the grid in its own order (:func:`open_files`);
- :mod:`~slams_jax.data.gridded.source`: some variables (``name``, ``name@level``) on one regular time axis,
  the files' own or resampled (``6h``, ``1D``; ``instant`` or ``mean``) (:class:`GriddedSource`);
- :mod:`~slams_jax.data.gridded.splits`: every modality on the state's grid and the splits' time axes,
  the normalization fitted on training states, lazily read arrays (:func:`load_splits`) or one window as
  xarray (:func:`window_dataset`); whether longitude wraps (:class:`Grid`);
- :mod:`~slams_jax.data.gridded.padding`: the networks' padding from the grid (:func:`resolve_padding`);
- :mod:`~slams_jax.data.gridded.prepared`: the arrays written once as normalized ``.npy`` files
  (``python -m slams_jax.prepare``) and memory-mapped later (:func:`training_arrays`).

The paper's ERA5 setup (``configs/era5.py``) is this source with its defaults: temperature at 10 levels as
``temperature@LEVEL``, daily means, CPC precipitation and NOAA OLR as auxiliary modalities.
"""

from slams_jax.data.gridded.files import open_files as open_files, open_store as open_store
from slams_jax.data.gridded.padding import resolve_padding as resolve_padding
from slams_jax.data.gridded.prepared import (
    PreparedArray as PreparedArray,
    open_prepared as open_prepared,
    prepare as prepare,
    training_arrays as training_arrays,
)
from slams_jax.data.gridded.source import GriddedSource as GriddedSource, parse_variables as parse_variables
from slams_jax.data.gridded.splits import (
    Grid as Grid,
    LazyModality as LazyModality,
    Modality as Modality,
    align as align,
    detect_periodic as detect_periodic,
    open_modalities as open_modalities,
    fit_normalization as fit_normalization,
    load_splits as load_splits,
    window_dataset as window_dataset,
)

__all__ = ["open_files", "open_store", "resolve_padding", "PreparedArray", "open_prepared", "prepare",
           "training_arrays", "GriddedSource", "parse_variables", "Grid", "LazyModality", "Modality", "align",
           "detect_periodic", "open_modalities", "fit_normalization", "load_splits", "window_dataset"]
