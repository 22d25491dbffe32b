r"""A second-order sampler for few steps: DPM-Solver++(2M) and its SDE variant, on an EDM time grid.

Write the VP process as :math:`x_t = \mu_t x_0 + \sigma_t z` and its half log-SNR
:math:`\lambda_t = \log(\mu_t / \sigma_t)`. With the denoiser :math:`D(x_t) = (x_t - \sigma_t \hat\varepsilon(x_t,
t)) / \mu_t` (of the guided, posterior noise predictor) held fixed over a step from :math:`t` to :math:`s < t`,
:math:`h = \lambda_s - \lambda_t > 0`, the reverse dynamics integrate exactly (Lu et al., 2022, DPM-Solver++;
the SDE form as in k-diffusion's ``dpmpp_2m_sde``):

.. math::

    x_s = \frac{\sigma_s}{\sigma_t} e^{-\eta h} x_t + \mu_s (1 - e^{-(1+\eta) h})\, D_t
          + \sigma_s \sqrt{1 - e^{-2 \eta h}}\, z,

``eta = 0`` being the probability-flow ODE (DDIM) and ``eta = 1`` the reverse SDE. The second-order (2M)
multistep correction adds :math:`\mu_s (1 - e^{-(1+\eta) h}) \frac{h}{2 h'} (D_t - D_{t'})` with the previous
step's denoiser :math:`D_{t'}` and step :math:`h'`: one network evaluation per step, error :math:`O(N^{-2})` on
the ODE. The steps follow the EDM grid (Karras et al., 2022) in :math:`\kappa = \sigma / \mu = e^{-\lambda}`:
:math:`\kappa_i = (\kappa_{\max}^{1/\rho} + \tfrac{i}{N} (\kappa_{\min}^{1/\rho} - \kappa_{\max}^{1/\rho}))^\rho`
down to :math:`t = 0` (:math:`\kappa_{\min} = \eta`), dense where the data's fine scales form. It starts at
:math:`\kappa_{\max} = 80` (EDM's :math:`\sigma_{\max}`), from unit Gaussian noise: there the diffused
distribution of standardized data is :math:`N(0, I)` up to :math:`O(\kappa_{\max}^{-2})`, and above it the
denoiser's Jacobian, which MMPS uses, is a difference of nearly equal terms divided by a tiny :math:`\mu`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax.diffusion.samplers import Sampler, _window, peak
from slams_jax.diffusion.schedules import VPSchedule

#: Steps of the default sampler: at 32 steps its error on the Gaussian problems of
#: :mod:`slams_jax.diffusion.gaussian` is within the sampling error of 4096 exact draws.
STEPS = 32


def edm_times(schedule: VPSchedule, steps: int, rho: float = 7.0, kappa_max: float | None = None,
              dtype=jnp.float32):
    """The ``steps + 1`` step boundaries down to ``t = 0``, uniform in ``kappa ** (1 / rho)``.

    They start at ``kappa_max`` (``None``: ``t = 1``, where ``kappa = 1 / eta``), and end at ``kappa = eta``.
    """
    # kappa is 1 / eta at t = 1 (mu = eta, sigma = 1) and eta at t = 0 (mu = 1, sigma = eta)
    hi, lo = min(kappa_max or np.inf, 1.0 / schedule.eta), schedule.eta
    i = jnp.arange(steps + 1, dtype=dtype) / steps
    k = (hi ** (1 / rho) + i * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    eta2 = schedule.eta**2
    t = schedule.time(jnp.sqrt((1 + eta2) / (1 + k**2)))  # mu^2 (1 + kappa^2) = 1 + eta^2
    if kappa_max is None or kappa_max >= 1.0 / schedule.eta:
        t = t.at[0].set(1.0)
    return t.at[-1].set(0.0).astype(dtype)


@dataclasses.dataclass(frozen=True)
class Multistep(Sampler):
    """DPM-Solver++(2M) on the EDM grid; stochastic with ``eta > 0`` (see the module docstring).

    Attributes:
        steps: Steps, one (guided) network evaluation each.
        eta: Noise of the reverse process: 0 the probability-flow ODE, 1 the reverse SDE.
        order: 2 (multistep correction from the second step on) or 1 (DDIM / its SDE form).
        rho: Exponent of the EDM grid (1: uniform in ``kappa``).
        kappa_max: Noise-to-signal ratio ``sigma / mu`` of the first step (EDM's ``sigma_max``), where the
            diffused distribution is the unit Gaussian up to ``O(1 / kappa_max^2)``; ``None``: ``t = 1``. Above
            80 the steps are spent where nothing forms, and the denoiser's Jacobian (``1 / mu`` times a
            difference of nearly equal terms) loses its float32 precision, which makes MMPS's solve unstable.
    """

    steps: int = STEPS
    eta: float = 0.0
    order: int = 2
    rho: float = 7.0
    kappa_max: float | None = 80.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.eta:
            raise ValueError(f"Multistep.eta={self.eta!r}: expected a number >= 0")
        if self.order not in (1, 2):
            raise ValueError(f"Multistep.order={self.order!r}: expected 1 or 2")
        if not self.rho >= 1.0:
            raise ValueError(f"Multistep.rho={self.rho!r}: expected a number >= 1")
        if self.kappa_max is not None and not self.kappa_max > 1.0:
            raise ValueError(f"Multistep.kappa_max={self.kappa_max!r}: expected None or a number > 1")

    def times(self, schedule, dtype=jnp.float32):
        return edm_times(schedule, self.steps, self.rho, self.kappa_max, dtype)

    def start(self, key, shape, dtype=jnp.float32):
        carry = super().start(key, shape, dtype)
        return {**carry, "denoised": jnp.zeros(shape, dtype), "h": jnp.zeros((), dtype)}

    def advance(self, carry, eps_fn, schedule, first, count):
        x = carry["x"]
        times = _window(self.times(schedule, x.dtype), first, count + 1)
        keys = _window(jax.random.split(carry["key"], self.steps), first, count)

        def step(state, inputs):
            x, previous, h_previous = state
            t, s, k = inputs
            mu_t, sigma_t, mu_s, sigma_s = schedule.mu(t), schedule.sigma(t), schedule.mu(s), schedule.sigma(s)
            denoised = (x - sigma_t * eps_fn(x, t)) / mu_t
            h = jnp.log(mu_s / sigma_s) - jnp.log(mu_t / sigma_t)
            gain = mu_s * -jnp.expm1(-(1.0 + self.eta) * h)
            x = sigma_s / sigma_t * jnp.exp(-self.eta * h) * x + gain * denoised
            if self.order == 2:  # no correction at the first step (no previous denoiser: h' = 0)
                ratio = jnp.where(h_previous > 0, h / jnp.where(h_previous > 0, h_previous, 1.0), 0.0)
                x = x + 0.5 * gain * ratio * (denoised - previous)
            if self.eta:
                noise = jax.random.normal(k, x.shape, x.dtype)
                x = x + sigma_s * jnp.sqrt(-jnp.expm1(-2.0 * self.eta * h)) * noise
            return (x, denoised, h), peak(x)

        state = (x, carry["denoised"], carry["h"])
        (x, denoised, h), peaks = jax.lax.scan(step, state, (times[:-1], times[1:], keys))
        return {**carry, "x": x, "denoised": denoised, "h": h}, peaks


__all__ = ["Multistep", "edm_times", "STEPS"]
