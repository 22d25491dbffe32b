"""The guidance and the sampler named by the settings: the one factory of both, for every experiment.

``guidance`` names how the observations enter the posterior score (:mod:`slams_jax.diffusion.guidance`):
``sda`` (``gamma``: the variance added to the observation noise), ``dps`` (``zeta``: the step scale) or
``mmps`` (``cg_iterations``: the conjugate-gradient iterations of its covariance solve). ``sampler``
names how the reverse diffusion is integrated (:mod:`slams_jax.diffusion.samplers`): ``diffrax_pc`` and
``pc`` (predictor-corrector, ``steps``, ``corrections``, ``tau``), ``sde`` (reverse SDE) or ``ode``
(probability flow), with ``solver`` (empty: ``euler`` for ``sde``, ``heun`` for ``ode``).

The assimilation (:mod:`slams_jax.pipeline.assimilation`), the Lorenz twin and the ablation study all build
theirs here, from any settings record with those fields.
"""

from __future__ import annotations

from slams_jax.diffusion.guidance import DPS, MMPS, SDA, Guidance
from slams_jax.diffusion.multistep import Multistep
from slams_jax.diffusion.samplers import DiffraxPredictorCorrector, PredictorCorrector, ProbabilityFlow, ReverseSDE, Sampler


def make_guidance(a) -> Guidance:
    """The guidance method named by ``a.guidance`` (``a``: e.g. an ``AssimilationSettings``)."""
    limit = {"max_shift": a.max_shift or None}
    if a.guidance == "sda":
        return SDA(gamma=a.gamma, **limit)
    if a.guidance == "dps":
        return DPS(zeta=a.zeta, **limit)
    return MMPS(cg_iterations=a.cg_iterations, cg_tolerance=a.cg_tolerance,
                solver=a.mmps_solver, **limit)


def make_sampler(a) -> Sampler:
    """The sampler named by ``a.sampler`` (``a``: e.g. an ``AssimilationSettings``)."""
    if a.sampler == "multistep":
        return Multistep(steps=a.steps, eta=a.eta, order=a.order)
    if a.sampler == "diffrax_pc":
        return DiffraxPredictorCorrector(steps=a.steps, corrections=a.corrections, tau=a.tau)
    if a.sampler == "pc":
        return PredictorCorrector(steps=a.steps, corrections=a.corrections, tau=a.tau)
    if a.sampler == "sde":
        return ReverseSDE(steps=a.steps, solver=a.solver or "euler")
    return ProbabilityFlow(steps=a.steps, solver=a.solver or "heun")


__all__ = ["make_guidance", "make_sampler"]
