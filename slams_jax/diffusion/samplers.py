r"""Samplers of the reverse diffusion: a plain ``lax.scan`` and diffrax solvers, behind one interface.

Every sampler integrates from :math:`t = 1` (noise) to :math:`t = 0` (data) given a noise predictor
``eps_fn(x, t)``, which may be a prior or a guided (posterior) one. A sampler object draws **one**
sample: ``sampler.sample(key, eps_fn, shape, schedule) -> (x, finite)``; ensembles are ``vmap`` over keys.
``finite[i]`` says whether the state was still finite after step ``i``, so that a caller can report where
a sample broke down instead of returning NaN.

- :class:`PredictorCorrector`: the SDA/SLAMS reference sampler (Rozet & Louppe, 2023) as one ``lax.scan``:

  - predictor, the exponential integrator of the probability-flow ODE from :math:`t` to :math:`s < t`
    (DDIM): :math:`x_s = r\, x_t + (\sigma_s - r\, \sigma_t)\, \hat\varepsilon(x_t, t)`, :math:`r = \mu_s / \mu_t`;
  - corrector, ``corrections`` steps of unadjusted Langevin Monte Carlo at :math:`s`:
    :math:`x \leftarrow x - \sigma_s (\delta\, \hat\varepsilon(x, s) + \sqrt{2\delta}\, z)` with
    :math:`\delta = \tau / \overline{\hat\varepsilon^2}` (mean over the sample), :math:`z \sim N(0, I)`.

- :class:`DiffraxPredictorCorrector`: the same algorithm written as a diffrax solver, its Langevin noise
  drawn from a ``diffrax.VirtualBrownianTree``; the default of :func:`slams_jax.posterior_sample`.
- :class:`ReverseSDE`: the reverse-time SDE :math:`dx = [f x - g^2 \nabla \log p_t]\, dt + g\, d\bar W` with
  :math:`\nabla \log p_t = -\hat\varepsilon / \sigma_t`, solved by a diffrax SDE solver (Euler-Maruyama or
  Heun; the noise is additive, so Itô and Stratonovich agree) on a virtual Brownian tree.
- :class:`ProbabilityFlow`: the probability-flow ODE :math:`dx = [f x - \tfrac12 g^2 \nabla \log p_t]\, dt`,
  fixed step or adaptive (PID controller), with any diffrax ODE solver.

Both predictor-corrector samplers take their step from one function (``_pc_step``), as does
:func:`predictor_corrector`, the batched ``lax.scan`` form used to sample a trained prior unconditionally;
their defaults are the reference's (``STEPS``, ``CORRECTIONS``, ``TAU``: 64 steps, 1 correction, tau 1).

diffrax integrates in the forward variable :math:`u = 1 - t \in [0, 1]`; ``f`` and ``g`` come from
:meth:`slams_jax.diffusion.schedules.VPSchedule.drift_diffusion`.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Callable, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax

from slams_jax._types import Array, Bool, EpsFn, Float, PRNGKey
from slams_jax.diffusion.schedules import VPSchedule

# The reference sampler of SDA and SLAMS: 64 predictor steps, each followed by one Langevin correction
# with step-size factor 1. Every default below refers to these.
STEPS, CORRECTIONS, TAU = 64, 1, 1.0


def _all_finite(x: Array) -> Bool[Array, ""]:
    return jnp.all(jnp.isfinite(x))


def _langevin(eps_fn, schedule, tau, x, s, z, axes=None):
    """One unadjusted Langevin correction at time ``s`` with standard normal ``z`` (step size per ``axes``)."""
    eps = eps_fn(x, s)
    delta = tau / jnp.mean(jnp.square(eps), axis=axes, keepdims=True)
    return x - schedule.sigma(s) * (delta * eps + jnp.sqrt(2.0 * delta) * z)


def _ddim(eps_fn, schedule, x, t, s):
    r = schedule.mu(s) / schedule.mu(t)
    return r * x + (schedule.sigma(s) - r * schedule.sigma(t)) * eps_fn(x, t)


def _pc_step(eps_fn: EpsFn, schedule: VPSchedule, tau: float, x: Array, t, s, noises, draw=None, axes=None,
             unroll: int | bool = 1) -> Array:
    """One predictor-corrector step, shared by every spelling of the sampler.

    The predictor from ``t`` to ``s``, then one Langevin correction at ``s`` per row of ``noises`` (none when
    it has no row); the corrector's step size is per ``axes``. A row is the correction's standard normal
    noise, or what ``draw(row, x)`` draws it from (e.g. a key): where the noise is drawn is kept as in each
    sampler, since XLA fuses a draw inside the loop differently (the last float bits change).
    """
    x = _ddim(eps_fn, schedule, x, t, s)

    def correct(x, row):
        z = row if draw is None else draw(row, x)
        return _langevin(eps_fn, schedule, tau, x, s, z, axes), None

    if noises.shape[0]:
        x, _ = jax.lax.scan(correct, x, noises, unroll=unroll)
    return x


def _pc_scan(key: PRNGKey, eps_fn: EpsFn, shape: tuple[int, ...], schedule: VPSchedule, steps: int, tau: float,
             noises: Callable[[PRNGKey], Array], draw=None, axes=None, dtype=jnp.float32):
    """The predictor-corrector as one ``lax.scan`` from ``t = 1`` to 0: ``(x, finite after each step)``.

    ``noises(k)`` gives the rows of a step's corrections (see :func:`_pc_step`) from that step's key ``k``.
    """
    key_init, key_loop = jax.random.split(key)
    x = jax.random.normal(key_init, shape, dtype)
    times = jnp.linspace(1.0, 0.0, steps + 1, dtype=dtype)

    def step(x, inputs):
        t, s, k = inputs
        x = _pc_step(eps_fn, schedule, tau, x, t, s, noises(k), draw, axes)
        return x, _all_finite(x)

    return jax.lax.scan(step, x, (times[:-1], times[1:], jax.random.split(key_loop, steps)))


def predictor_corrector(
    key: PRNGKey,
    eps_fn: EpsFn,
    shape: tuple[int, ...],
    schedule: VPSchedule,
    steps: int = STEPS,
    corrections: int = 0,
    tau: float = TAU,
    event_ndim: int | None = None,
    dtype=jnp.float32,
) -> Array:
    """Batched predictor-corrector samples (the corrector's step size is per sample of ``event_ndim`` axes).

    Args:
        key: PRNG key.
        eps_fn: Noise predictor ``(x: shape, t: scalar) -> eps: shape``.
        shape: Sample shape ``(*batch, *event)``.
        schedule: The VP schedule.
        steps: Number of predictor steps.
        corrections: Langevin corrections after each predictor step.
        tau: Langevin step-size factor.
        event_ndim: Trailing axes forming one sample; default: all but the first.
        dtype: Floating dtype of the samples.

    Returns:
        Samples of ``shape``.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: expected at least 1")
    event_ndim = len(shape) - 1 if event_ndim is None else event_ndim
    axes = tuple(range(len(shape) - event_ndim, len(shape)))

    def draw(kc, x):  # one key per correction, its noise drawn inside the corrections' loop
        return jax.random.normal(kc, x.shape, x.dtype)

    return _pc_scan(key, eps_fn, shape, schedule, steps, tau, lambda k: jax.random.split(k, corrections), draw,
                    axes, dtype)[0]


@dataclasses.dataclass(frozen=True)
class Sampler(abc.ABC):
    """Base class: draws one sample of ``shape`` by integrating the reverse diffusion with ``steps`` steps."""

    steps: int = STEPS

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"{type(self).__name__}.steps={self.steps}: expected at least 1")

    def times(self, dtype=jnp.float32) -> Float[Array, "{self.steps}+1"]:
        """Diffusion times of the step boundaries, from 1 to 0."""
        return jnp.linspace(1.0, 0.0, self.steps + 1, dtype=dtype)

    @abc.abstractmethod
    def sample(
        self, key: PRNGKey, eps_fn: EpsFn, shape: tuple[int, ...], schedule: VPSchedule, dtype=jnp.float32
    ) -> tuple[Float[Array, "..."], Bool[Array, "steps"]]:
        """One sample of ``shape`` and, per step, whether the state was still finite after it."""


@dataclasses.dataclass(frozen=True)
class _ReferenceSettings(Sampler):
    """The settings of both predictor-corrector samplers (defaults: the reference's).

    Attributes:
        steps: Predictor steps.
        corrections: Langevin corrections after each predictor step.
        tau: Langevin step-size factor.
    """

    corrections: int = CORRECTIONS
    tau: float = TAU


@dataclasses.dataclass(frozen=True)
class PredictorCorrector(_ReferenceSettings):
    """The reference predictor-corrector as one ``lax.scan`` (see the module docstring)."""

    def sample(self, key, eps_fn, shape, schedule, dtype=jnp.float32):
        def noises(k):  # one draw for all the corrections of a step
            return jax.random.normal(k, (self.corrections,) + tuple(shape), dtype)

        return _pc_scan(key, eps_fn, shape, schedule, self.steps, self.tau, noises, dtype=dtype)


class _PCSolver(diffrax.AbstractItoSolver):
    """The predictor-corrector as a diffrax solver over ``u = 1 - t``.

    The term's vector field is the noise predictor; ``args`` is a Brownian motion of shape
    ``(corrections, *shape)`` whose increments over a step, divided by the square root of the step, are the
    step's Langevin noises.
    """

    schedule: VPSchedule = eqx.field(static=True)
    corrections: int = eqx.field(static=True)
    tau: float = eqx.field(static=True)
    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return 1

    def strong_order(self, terms):
        return 0.5

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        eps_fn = lambda x, t: terms.vf(1.0 - t, x, args)
        t, s = 1.0 - t0, 1.0 - t1
        if self.corrections:
            z = args.evaluate(t0, t1) / jnp.sqrt(t1 - t0)
        else:
            z = jnp.zeros((0,) + y0.shape, y0.dtype)
        y1 = _pc_step(eps_fn, self.schedule, self.tau, y0, t, s, z, unroll=True)
        return y1, None, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


def _brownian(key, shape, steps, dtype):
    # A tolerance well below the step so that increments over the fixed steps are exact Gaussians.
    return diffrax.VirtualBrownianTree(0.0, 1.0, tol=1.0 / (8 * steps), shape=jax.ShapeDtypeStruct(shape, dtype),
                                       key=key)


def _solve(terms, solver, y0, steps, controller=None, max_steps=None, dt0=None, args=None):
    """Integrate ``u`` from 0 to 1; returns the final state and, per step taken, whether it was finite."""
    grid = jnp.linspace(0.0, 1.0, steps + 1, dtype=y0.dtype)
    controller = diffrax.StepTo(ts=grid) if controller is None else controller
    max_steps = steps if max_steps is None else max_steps
    save = diffrax.SaveAt(subs=[
        diffrax.SubSaveAt(t1=True),
        diffrax.SubSaveAt(steps=True, fn=lambda u, y, args: _all_finite(y).astype(y.dtype)),
    ])
    sol = diffrax.diffeqsolve(
        terms, solver, t0=0.0, t1=1.0, dt0=dt0, y0=y0, args=args, saveat=save, stepsize_controller=controller,
        max_steps=max_steps, throw=False,
    )
    final, flags = sol.ys
    # Slots past the last step taken are padded with inf: they count as finite. A solve that failed
    # (e.g. an adaptive one out of steps) marks its last slot as not finite.
    finite = jnp.where(jnp.isinf(flags), True, flags > 0.5)
    finite = finite.at[-1].set(finite[-1] & (sol.result == diffrax.RESULTS.successful))
    return final[0], finite


@dataclasses.dataclass(frozen=True)
class DiffraxPredictorCorrector(_ReferenceSettings):
    """The reference predictor-corrector run by ``diffrax.diffeqsolve`` (Langevin noise from a Brownian tree)."""

    def sample(self, key, eps_fn, shape, schedule, dtype=jnp.float32):
        key_init, key_noise = jax.random.split(key)
        y0 = jax.random.normal(key_init, shape, dtype)
        noise_shape = (self.corrections,) + tuple(shape) if self.corrections else (1,)
        term = diffrax.ODETerm(lambda u, x, args: eps_fn(x, 1.0 - u))
        solver = _PCSolver(schedule=schedule, corrections=self.corrections, tau=self.tau)
        return _solve(term, solver, y0, self.steps, args=_brownian(key_noise, noise_shape, self.steps, dtype))


def _reverse_fields(eps_fn, schedule: VPSchedule, probability_flow: bool):
    half = 0.5 if probability_flow else 1.0

    def drift(u, x, args):
        t = 1.0 - u
        f, g = schedule.drift_diffusion(t)
        return -(f * x + half * g**2 * eps_fn(x, t) / schedule.sigma(t))

    def diffusion(u, x, args):
        _, g = schedule.drift_diffusion(1.0 - u)
        # diffrax contracts an array-valued diffusion with the whole Brownian increment (a matrix product);
        # diagonal noise is spelled as a lineax operator (lineax is diffrax's own dependency)
        return lineax.DiagonalLinearOperator(jnp.broadcast_to(g, x.shape).astype(x.dtype))

    return drift, diffusion


@dataclasses.dataclass(frozen=True)
class ReverseSDE(Sampler):
    """The reverse-time SDE solved by diffrax with fixed steps on a virtual Brownian tree.

    Attributes:
        steps: Solver steps (uniform in ``t``).
        solver: ``euler`` (Euler-Maruyama) or ``heun``.
    """

    solver: str = "euler"
    SOLVERS: ClassVar[dict] = {"euler": diffrax.Euler, "heun": diffrax.Heun}

    def __post_init__(self):
        super().__post_init__()
        if self.solver not in self.SOLVERS:
            raise ValueError(f"ReverseSDE.solver={self.solver!r}: expected one of {sorted(self.SOLVERS)}")

    def sample(self, key, eps_fn, shape, schedule, dtype=jnp.float32):
        key_init, key_noise = jax.random.split(key)
        y0 = jax.random.normal(key_init, shape, dtype)
        drift, diffusion = _reverse_fields(eps_fn, schedule, probability_flow=False)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(drift),
            diffrax.ControlTerm(diffusion, _brownian(key_noise, tuple(shape), self.steps, dtype)),
        )
        return _solve(terms, self.SOLVERS[self.solver](), y0, self.steps)


@dataclasses.dataclass(frozen=True)
class ProbabilityFlow(Sampler):
    """The probability-flow ODE solved by diffrax: deterministic given the initial noise.

    Attributes:
        steps: Fixed steps (uniform in ``t``), or the initial step ``1 / steps`` when adaptive.
        solver: ``euler``, ``heun`` or ``tsit5``.
        adaptive: Use a PID step-size controller with ``rtol``/``atol`` (``heun`` or ``tsit5``).
        rtol, atol: Tolerances of the adaptive controller.
        max_steps: Most steps an adaptive solve may take.
    """

    solver: str = "heun"
    adaptive: bool = False
    rtol: float = 1e-3
    atol: float = 1e-3
    max_steps: int = 4096
    SOLVERS: ClassVar[dict] = {"euler": diffrax.Euler, "heun": diffrax.Heun, "tsit5": diffrax.Tsit5}

    def __post_init__(self):
        super().__post_init__()
        if self.solver not in self.SOLVERS:
            raise ValueError(f"ProbabilityFlow.solver={self.solver!r}: expected one of {sorted(self.SOLVERS)}")
        if self.adaptive and self.solver == "euler":
            raise ValueError("ProbabilityFlow: an adaptive solve needs an embedded error estimate; use heun or tsit5")

    def sample(self, key, eps_fn, shape, schedule, dtype=jnp.float32):
        y0 = jax.random.normal(key, shape, dtype)
        drift, _ = _reverse_fields(eps_fn, schedule, probability_flow=True)
        if self.adaptive:
            return _solve(diffrax.ODETerm(drift), self.SOLVERS[self.solver](), y0, self.steps,
                          controller=diffrax.PIDController(rtol=self.rtol, atol=self.atol),
                          max_steps=self.max_steps, dt0=1.0 / self.steps)
        return _solve(diffrax.ODETerm(drift), self.SOLVERS[self.solver](), y0, self.steps)


__all__ = [
    "STEPS", "CORRECTIONS", "TAU", "Sampler", "PredictorCorrector", "DiffraxPredictorCorrector", "ReverseSDE", "ProbabilityFlow",
    "predictor_corrector",
]
