"""The experiment runtime: typed settings from the config, models, checkpoints, loading, training, assimilation.

The library functions behind the entry points (:mod:`slams_jax.train`, :mod:`slams_jax.assimilate`, ...);
the core (:mod:`slams_jax.diffusion`) never imports this package.
"""
