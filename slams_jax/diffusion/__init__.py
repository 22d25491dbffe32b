"""The method's mathematics: VP schedules, window scores, samplers, guidance and the posterior sampler.

Nothing here reads files or checkpoints; a prior arrives as an object (:mod:`slams_jax.diffusion.prior`), the
runtime builds it (:meth:`slams_jax.TrainedModel.posterior_prior`).
"""
