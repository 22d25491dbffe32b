"""Data sources and their settings: the Kolmogorov generator, gridded datasets, regridding, normalization, batches.

- :mod:`~slams_jax.data.settings`: the typed data settings (source, modalities, dates);
- :mod:`~slams_jax.data.kolmogorov`: the embedded default, a pseudo-spectral Kolmogorov-flow generator and its
  auxiliary modalities;
- :mod:`~slams_jax.data.gridded`: any gridded netCDF or zarr data (ERA5 and auxiliary sources among them),
  any region and cadence, aligned by time, streamed lazily or from a prepared store;
- :mod:`~slams_jax.data.regrid`: conservative and bilinear regridding between latitude-longitude grids;
- :mod:`~slams_jax.data.normalization`: the one per-modality, per-channel normalization fit;
- :mod:`~slams_jax.data.datasets`: caching of the embedded default, splits and stateless batches.
"""
