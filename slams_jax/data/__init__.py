"""Data sources and their settings: the Kolmogorov generator, ERA5 stores, regridding, normalization, batches.

- :mod:`~slams_jax.data.settings`: the typed data settings (source, modalities, dates);
- :mod:`~slams_jax.data.kolmogorov`: the embedded default, a pseudo-spectral Kolmogorov-flow generator and its
  auxiliary modalities;
- :mod:`~slams_jax.data.era5`: real data (ERA5 and gridded auxiliary sources) read by day, aligned by date,
  streamed lazily or from a prepared store;
- :mod:`~slams_jax.data.regrid`: conservative and bilinear regridding between latitude-longitude grids;
- :mod:`~slams_jax.data.normalization`: the one per-modality, per-channel normalization fit;
- :mod:`~slams_jax.data.datasets`: caching of the embedded default, splits and stateless batches.
"""
