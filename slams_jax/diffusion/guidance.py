r"""Guidance: the posterior noise predictor from a prior one and a Gaussian observation model.

Observations :math:`y = \mathcal{A}(x) + \nu`, :math:`\nu \sim N(0, \mathrm{diag}(s^2))`, where
:math:`\mathcal{A}` is any differentiable map from the diffused variable (a latent or physical trajectory)
to observation space: in latent assimilation, decoder head then measurement operator. The posterior score
is :math:`\nabla \log p_t(x_t \mid y) = \nabla \log p_t(x_t) + \nabla \log p_t(y \mid x_t)`, so in noise
prediction :math:`\hat\varepsilon(x_t \mid y) = \hat\varepsilon(x_t) - \sigma_t \nabla_{x_t} \log p_t(y \mid x_t)`.
The likelihood is intractable; all three methods use the Tweedie denoiser
:math:`\hat x(x_t) = (x_t - \sigma_t \hat\varepsilon(x_t)) / \mu_t` and approximate
:math:`p_t(y \mid x_t) \approx N(y; \mathcal{A}(\hat x), \Sigma_t)`, differing in :math:`\Sigma_t`:

- :class:`SDA` (Rozet & Louppe, 2023; the SLAMS default): :math:`\Sigma_t = \mathrm{diag}(s^2 + \gamma\, c^2 (\sigma_t / \mu_t)^2)`
  with :math:`c` the scale of each observed quantity (1 on standardized data), :math:`\gamma = 10^{-2}`;
- :class:`DPS` (Chung et al., 2022): :math:`\Sigma_t = \mathrm{diag}(s^2)` (the denoiser's uncertainty ignored),
  the gradient optionally scaled by :math:`\zeta`;
- :class:`MMPS` (moment-matching posterior sampling, Rozet et al., 2024):
  :math:`\Sigma_t = \mathrm{diag}(s^2) + A\, \mathrm{Cov}[x \mid x_t]\, A^\top` with :math:`A` the Jacobian of
  :math:`\mathcal{A}` at :math:`\hat x` and Tweedie's covariance
  :math:`\mathrm{Cov}[x \mid x_t] = \frac{\sigma_t^2}{\mu_t} \frac{\partial \hat x}{\partial x_t}`, applied
  matrix-free through a JVP/VJP and inverted by a few conjugate-gradient iterations. For a Gaussian prior and
  a linear operator this is the exact likelihood, so the posterior is sampled exactly up to discretisation.

In every case the gradient flows through the denoiser (and the decoder and operator) with ``jax.vjp``; the
covariance is held fixed when differentiating, as in the three papers.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Callable, Literal

import jax
import jax.numpy as jnp

from slams_jax._types import Array, EpsFn, Float
from slams_jax.diffusion.linalg import conjugate_gradient, safeguarded_cg
from slams_jax.diffusion.schedules import VPSchedule


@dataclasses.dataclass(frozen=True)
class Likelihood:
    """A Gaussian observation model of one sample, flattened.

    Attributes:
        forward: ``x -> A(x)``, from the diffused variable (one trajectory) to the ``m`` observed values.
        y: Observed values ``(m,)``.
        std: Noise standard deviation of each value ``(m,)``.
        scale: Prior scale of each observed quantity ``(m,)`` (SDA's covariance term); 1 on standardized data.
    """

    forward: Callable[[Float[Array, "..."]], Float[Array, "m"]]
    y: Float[Array, "m"]
    std: Float[Array, "m"]
    scale: Float[Array, "m"]


def _denoiser(eps_fn: EpsFn, schedule: VPSchedule, t):
    mu, sigma = schedule.mu(t), schedule.sigma(t)

    def denoise(x):
        eps = eps_fn(x, t)
        return (x - sigma * eps) / mu, eps

    return denoise, mu, sigma


def _damped(eps: Array, correction: Array, mu, sigma, max_shift: float | None) -> Array:
    """``eps + correction``, the correction scaled down so that the denoised estimate it moves,
    ``-sigma / mu * correction``, moves by at most ``max_shift`` in root mean square (``None``: no limit)."""
    if max_shift is None:
        return eps + correction
    shift = jnp.sqrt(jnp.mean(jnp.square(correction))) * sigma / mu
    return eps + jnp.minimum(1.0, max_shift / jnp.maximum(shift, 1e-30)) * correction


def _gaussian_guided(eps_fn, schedule, lik: Likelihood, variance: Callable, weight: float,
                     max_shift: float | None) -> EpsFn:
    def eps_post(x, t):
        denoise, mu, sigma = _denoiser(eps_fn, schedule, t)

        def log_lik(x):
            x0, eps = denoise(x)
            r = lik.y - lik.forward(x0)
            return -0.5 * jnp.sum(jnp.square(r) / variance(mu, sigma)), eps

        grad, eps = jax.grad(log_lik, has_aux=True)(x)
        return _damped(eps, -(weight * sigma) * grad, mu, sigma, max_shift)

    return eps_post


@dataclasses.dataclass(frozen=True)
class Guidance(abc.ABC):
    """Base class: ``guide(eps_fn, schedule, likelihood) -> eps_post`` for one sample.

    Attributes:
        max_shift: Keyword only. The largest root-mean-square change the observations may make to the
            denoised estimate at one evaluation, in units of the prior's scale (standardized latents: 1);
            a larger correction is scaled down to it. A true posterior moves the estimate by a few prior
            standard deviations at most, so this only acts where the guided score is wrong (a learned
            denoiser's Jacobian at high noise, stiff sparse observations) and would make the sampling
            diverge. ``None``: no limit (the reference's SDA and DPS).
    """

    max_shift: float | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        if self.max_shift is not None and not self.max_shift > 0:
            raise ValueError(f"{type(self).__name__}.max_shift={self.max_shift!r}: expected None or a positive number")

    @abc.abstractmethod
    def guide(self, eps_fn: EpsFn, schedule: VPSchedule, likelihood: Likelihood) -> EpsFn:
        """The posterior noise predictor ``(x, t) -> eps`` of one sample."""


@dataclasses.dataclass(frozen=True)
class SDA(Guidance):
    """SDA/SLAMS likelihood: variance ``std^2 + gamma * scale^2 * (sigma_t / mu_t)^2``.

    Attributes:
        gamma: Weight of the denoiser-uncertainty term (1e-2 in SDA and SLAMS).
    """

    gamma: float = 1e-2

    def __post_init__(self):
        super().__post_init__()
        if not self.gamma >= 0:
            raise ValueError(f"SDA.gamma={self.gamma!r}: expected a non-negative number")

    def guide(self, eps_fn, schedule, likelihood):
        lik = likelihood
        var = lambda mu, sigma: jnp.square(lik.std) + self.gamma * jnp.square(lik.scale * (sigma / mu))
        return _gaussian_guided(eps_fn, schedule, lik, var, 1.0, self.max_shift)


@dataclasses.dataclass(frozen=True)
class DPS(Guidance):
    """Diffusion posterior sampling: the Gaussian likelihood of ``A(x_hat)`` with the noise variance only.

    Attributes:
        zeta: Scale of the likelihood gradient (1 is the unscaled Gaussian likelihood; Chung et al. tune it).
    """

    zeta: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not self.zeta > 0:
            raise ValueError(f"DPS.zeta={self.zeta!r}: expected a positive number")

    def guide(self, eps_fn, schedule, likelihood):
        lik = likelihood
        return _gaussian_guided(eps_fn, schedule, lik, lambda mu, sigma: jnp.square(lik.std), self.zeta,
                                self.max_shift)


@dataclasses.dataclass(frozen=True)
class MMPS(Guidance):
    """Moment-matching posterior sampling with Tweedie's covariance, solved by conjugate gradients.

    Attributes:
        cg_iterations: Most conjugate-gradient iterations per score evaluation (each costs one VJP of the
            denoiser and one JVP and VJP of the observation model; ``robust``: also one JVP of the denoiser).
            Exact when it reaches the number of distinct eigenvalues of the observation covariance.
        cg_tolerance: Stop earlier once the residual is this fraction of the right-hand side (0: always run
            ``cg_iterations``); each member of an ensemble stops at its own residual. The system is solved
            whitened by the noise standard deviations, so the residual is measured in units of the noise.
        solver: ``cg``: conjugate gradients on ``I + D A Cov A^T D`` with ``Cov`` applied by the denoiser's
            VJP, as in the paper. ``robust``: for learned denoisers, whose Jacobian is neither symmetric nor
            positive (measured on the Lorenz-63 prior: asymmetry 0.5-1.3 of its norm, eigenvalues of the
            whitened operator down to -3000 at high noise): ``Cov`` is replaced by its symmetric part
            ``(J + J^T) / 2`` (the nearest symmetric matrix), the solve by :func:`safeguarded_cg` (curvature
            floored at that of ``I``, the best iterate kept), and a member whose operator broke down
            (curvature under half that of ``I``: a covariance far from positive) takes SDA's diagonal
            likelihood for that evaluation. Where ``Cov`` is a covariance (a Gaussian prior) it is ``cg``.
        fallback_gamma: ``robust`` only: the ``gamma`` of that SDA likelihood; ``None``: no fallback (the
            floored solve is used as it is).
        max_shift: As for :class:`Guidance`; 3 by default.
    """

    cg_iterations: int = 16
    cg_tolerance: float = 1e-2
    solver: Literal["cg", "robust"] = "cg"
    fallback_gamma: float | None = 1e-2
    max_shift: float | None = dataclasses.field(default=3.0, kw_only=True)

    def __post_init__(self):
        super().__post_init__()
        if self.cg_iterations < 1:
            raise ValueError(f"MMPS.cg_iterations={self.cg_iterations!r}: expected at least 1")
        if not 0.0 <= self.cg_tolerance < 1.0:
            raise ValueError(f"MMPS.cg_tolerance={self.cg_tolerance!r}: expected a number in [0, 1)")
        if self.solver not in ("cg", "robust"):
            raise ValueError(f"MMPS.solver={self.solver!r}: expected 'cg' or 'robust'")
        if self.fallback_gamma is not None and not self.fallback_gamma >= 0:
            raise ValueError(f"MMPS.fallback_gamma={self.fallback_gamma!r}: expected None or a non-negative number")

    def guide(self, eps_fn, schedule, likelihood):
        lik = likelihood
        solve = self._solve_robust if self.solver == "robust" else self._solve_cg

        def eps_post(x, t):
            denoise, mu, sigma = _denoiser(eps_fn, schedule, t)
            # (s^2 I + A Cov[x | x_t] A^T) u = y - A(x_hat), Cov = sigma^2 / mu (d x_hat / d x_t), solved whitened
            # by the noise (u = w / s): I + (A Cov A^T) / s s^T is as well conditioned as the problem allows
            # whatever the spread of the stds, and a value with a huge std (a placeholder) is exactly inert.
            back, w, eps = solve(denoise, x, lik, mu, sigma)
            return _damped(eps, -sigma * back((1.0 / lik.std) * w), mu, sigma, self.max_shift)

        return eps_post

    def _solve_cg(self, denoise, x, lik, mu, sigma):
        """``(back, w, eps)``: ``back = (d A(x_hat) / d x_t)^T`` and the whitened solution ``w``."""
        x0, denoise_vjp, eps = jax.vjp(denoise, x, has_aux=True)
        pred, forward_jvp = jax.linearize(lik.forward, x0)
        forward_vjp = jax.linear_transpose(forward_jvp, x0)
        back = lambda v: denoise_vjp(forward_vjp(v)[0])[0]  # (dA(x_hat)/dx_t)^T v
        cov_scale, white = jnp.square(sigma) / mu, 1.0 / lik.std

        def matvec(w):
            return w + cov_scale * white * forward_jvp(back(white * w))

        w, _, _ = conjugate_gradient(matvec, white * (lik.y - pred), self.cg_iterations, self.cg_tolerance)
        return back, w, eps

    def _solve_robust(self, denoise, x, lik, mu, sigma):
        """As :meth:`_solve_cg`, with the symmetric part of ``Cov``, the safeguarded solve and the fallback."""
        x0, denoise_jvp, eps = jax.linearize(denoise, x, has_aux=True)
        denoise_vjp = jax.linear_transpose(denoise_jvp, x)
        pred, forward_jvp = jax.linearize(lik.forward, x0)
        forward_vjp = jax.linear_transpose(forward_jvp, x0)
        back = lambda v: denoise_vjp(forward_vjp(v)[0])[0]
        cov_scale, white = jnp.square(sigma) / mu, 1.0 / lik.std

        def matvec(w):
            a = forward_vjp(white * w)[0]
            return w + (0.5 * cov_scale) * white * forward_jvp(denoise_jvp(a) + denoise_vjp(a)[0])

        b = white * (lik.y - pred)
        w, _, _, sound = safeguarded_cg(matvec, b, self.cg_iterations, self.cg_tolerance)
        if self.fallback_gamma is not None:
            # SDA: u = r / (s^2 + gamma c^2 (sigma / mu)^2), whitened w = s u
            noise = jnp.square(lik.std)
            diagonal = b * noise / (noise + self.fallback_gamma * jnp.square(lik.scale * (sigma / mu)))
            w = jnp.where(sound, w, diagonal)
        return back, w, eps


__all__ = ["Guidance", "SDA", "DPS", "MMPS", "Likelihood"]
