r"""Variance-preserving (VP) diffusion schedules.

The forward process perturbs a clean sample :math:`x` into

.. math:: x_t = \mu(t)\, x + \sigma(t)\, \varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, I),
          \qquad t \in [0, 1],

with :math:`\mu(t) = \alpha(t)` and :math:`\sigma(t) = \sqrt{1 - \alpha(t)^2 + \eta^2}`, following the
VP SDE of Rozet & Louppe, "Score-based Data Assimilation" (NeurIPS 2023), which SLAMS (Qu et al., 2024)
reuses. Three choices of :math:`\alpha` all go from 1 at :math:`t=0` to :math:`\eta` at :math:`t=1`:

- ``cos``: :math:`\alpha(t) = \cos^2(\arccos(\sqrt{\eta})\, t)`
- ``lin``: :math:`\alpha(t) = 1 - (1 - \eta)\, t`
- ``exp``: :math:`\alpha(t) = \exp(\log(\eta)\, t^2)`

The small :math:`\eta` keeps :math:`\sigma(0) = \eta > 0` so that the score stays finite at :math:`t=0`.

The equivalent Itô SDE :math:`dx = f(t)\, x\, dt + g(t)\, dW` has
:math:`f = \frac{d}{dt}\log\mu` and :math:`g^2 = \frac{d\sigma^2}{dt} - 2 f \sigma^2`; both are obtained by
automatic differentiation of the schedule, so any :math:`\alpha` stays consistent with its SDE.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp

from slams_jax._types import Array, Float, PRNGKey

AlphaName = Literal["cos", "lin", "exp"]
ALPHAS = ("cos", "lin", "exp")


@dataclasses.dataclass(frozen=True)
class VPSchedule:
    """VP noise schedule ``t -> (mu(t), sigma(t))``.

    Attributes:
        alpha: Name of the signal schedule, one of ``cos``, ``lin``, ``exp``.
        eta: Terminal signal level ``alpha(1)`` and noise floor ``sigma(0)``; in (0, 1).
    """

    alpha: AlphaName = "cos"
    eta: float = 1e-3

    def __post_init__(self):
        if self.alpha not in ALPHAS:
            raise ValueError(f"VPSchedule.alpha={self.alpha!r}: expected one of {ALPHAS}")
        if not 0.0 < self.eta < 1.0:
            raise ValueError(f"VPSchedule.eta={self.eta!r}: expected a value in (0, 1)")

    def mu(self, t: Float[Array, "*batch"] | float) -> Float[Array, "*batch"]:
        """Signal scale ``mu(t) = alpha(t)``."""
        t = jnp.asarray(t)
        if self.alpha == "cos":
            return jnp.cos(math.acos(math.sqrt(self.eta)) * t) ** 2
        if self.alpha == "lin":
            return 1.0 - (1.0 - self.eta) * t
        return jnp.exp(math.log(self.eta) * t**2)

    def time(self, mu: Float[Array, "*batch"] | float) -> Float[Array, "*batch"]:
        """The inverse of :meth:`mu`: the time ``t in [0, 1]`` whose signal scale is ``mu in [eta, 1]``."""
        mu = jnp.clip(jnp.asarray(mu), self.eta, 1.0)
        if self.alpha == "cos":
            return jnp.arccos(jnp.sqrt(mu)) / math.acos(math.sqrt(self.eta))
        if self.alpha == "lin":
            return (1.0 - mu) / (1.0 - self.eta)
        return jnp.sqrt(jnp.log(mu) / math.log(self.eta))

    def sigma(self, t: Float[Array, "*batch"] | float) -> Float[Array, "*batch"]:
        """Noise scale ``sigma(t) = sqrt(1 - alpha(t)^2 + eta^2)``."""
        return jnp.sqrt(1.0 - self.mu(t) ** 2 + self.eta**2)

    def perturb(
        self, key: PRNGKey, x: Float[Array, "..."], t: Float[Array, "*batch"]
    ) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
        """Sample ``x_t ~ N(mu(t) x, sigma(t)^2 I)``.

        Args:
            key: PRNG key.
            x: Clean samples; the leading ``t.ndim`` axes are batch axes.
            t: Diffusion times in [0, 1], one per batch element.

        Returns:
            ``(x_t, eps)``: the perturbed samples and the standard normal noise used.
        """
        eps = jax.random.normal(key, x.shape, x.dtype)
        t = jnp.reshape(t, jnp.shape(t) + (1,) * (x.ndim - jnp.ndim(t))).astype(x.dtype)
        return self.mu(t) * x + self.sigma(t) * eps, eps

    def drift_diffusion(self, t: Float[Array, ""]) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """Coefficients ``(f(t), g(t))`` of the forward SDE ``dx = f x dt + g dW`` at a scalar ``t``."""
        log_mu = lambda s: jnp.log(self.mu(s))
        var = lambda s: self.sigma(s) ** 2
        f = jax.grad(log_mu)(t)
        g2 = jax.grad(var)(t) - 2.0 * f * var(t)
        return f, jnp.sqrt(jnp.maximum(g2, 0.0))


__all__ = ["VPSchedule", "ALPHAS", "AlphaName"]
