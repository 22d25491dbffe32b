r"""Samplers of the reverse diffusion: ``lax.scan`` loops and diffrax solvers, behind one interface.

Every sampler integrates from :math:`t = 1` (noise) to :math:`t = 0` (data) given a noise predictor
``eps_fn(x, t)`` (a prior or a guided, posterior one) and draws **one** sample; ensembles are ``vmap`` over
keys. It is a state machine over its steps (:class:`Sampler`), so a caller runs them in chunks.

- :class:`~slams_jax.diffusion.multistep.Multistep`: the second-order exponential integrator (DPM-Solver++(2M),
  its SDE variant with ``eta > 0``) on an EDM time grid; the default of :func:`slams_jax.posterior_sample`.
- :class:`PredictorCorrector`: the SDA/SLAMS reference sampler (Rozet & Louppe, 2023) as one ``lax.scan``:
  the predictor, the exponential integrator of the probability-flow ODE from :math:`t` to :math:`s < t` (DDIM),
  :math:`x_s = r\, x_t + (\sigma_s - r\, \sigma_t)\, \hat\varepsilon(x_t, t)`, :math:`r = \mu_s / \mu_t`; then
  ``corrections`` steps of unadjusted Langevin Monte Carlo at :math:`s`,
  :math:`x \leftarrow x - \sigma_s (\delta\, \hat\varepsilon(x, s) + \sqrt{2\delta}\, z)` with
  :math:`\delta = \tau / \overline{\hat\varepsilon^2}` (mean over the sample), :math:`z \sim N(0, I)`.
- :class:`DiffraxPredictorCorrector`: the same algorithm as a diffrax solver, its Langevin noise drawn from a
  ``diffrax.VirtualBrownianTree``.
- :class:`ReverseSDE`: :math:`dx = [f x - g^2 \nabla \log p_t]\, dt + g\, d\bar W` with
  :math:`\nabla \log p_t = -\hat\varepsilon / \sigma_t`, Euler-Maruyama or Heun (additive noise) in diffrax.
- :class:`ProbabilityFlow`: :math:`dx = [f x - \tfrac12 g^2 \nabla \log p_t]\, dt`, fixed step or adaptive.

The predictor-corrector samplers and :func:`predictor_corrector` (the batched form used to sample a trained
prior unconditionally) share one step (``_pc_step``) and the reference's defaults ``STEPS, CORRECTIONS, TAU``
(64 steps, 1 correction, tau 1). diffrax integrates in :math:`u = 1 - t`; ``f`` and ``g`` come from
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


def peak(x: Array) -> Float[Array, ""]:
    """The largest ``|x|``, infinite when ``x`` holds a NaN or an infinity: what the divergence check reads."""
    return jnp.where(jnp.all(jnp.isfinite(x)), jnp.max(jnp.abs(x)), jnp.inf)


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


def _pc_steps(eps_fn: EpsFn, schedule: VPSchedule, tau: float, x: Array, times: Array, keys: Array,
              noises: Callable[[PRNGKey], Array], draw=None, axes=None) -> tuple[Array, Array]:
    """Predictor-corrector steps between consecutive ``times``, step ``i`` with ``keys[i]``: ``(x, peaks)``.

    ``noises(k)`` gives the rows of a step's corrections (see :func:`_pc_step`) from that step's key ``k``;
    ``peaks[i]`` is :func:`peak` of the state after step ``i``.
    """

    def step(x, inputs):
        t, s, k = inputs
        x = _pc_step(eps_fn, schedule, tau, x, t, s, noises(k), draw, axes)
        return x, peak(x)

    return jax.lax.scan(step, x, (times[:-1], times[1:], keys))


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

    key_init, key_loop = jax.random.split(key)
    x = jax.random.normal(key_init, shape, dtype)
    times = jnp.linspace(1.0, 0.0, steps + 1, dtype=dtype)
    return _pc_steps(eps_fn, schedule, tau, x, times, jax.random.split(key_loop, steps),
                     lambda k: jax.random.split(k, corrections), draw, axes)[0]


@dataclasses.dataclass(frozen=True)
class Sampler(abc.ABC):
    """Base class: draws one sample of ``shape`` by integrating the reverse diffusion with ``steps`` steps.

    A sampler is a state machine over its steps, so that a caller can run them in chunks (checking for
    divergence and reporting progress in between) with one compiled program per chunk length:
    ``carry = start(key, shape)``, then ``advance(carry, eps_fn, schedule, first, count)`` for consecutive runs
    of steps, then ``carry["x"]`` is the sample. :meth:`sample` runs all steps at once.
    """

    steps: int = STEPS
    #: Whether :meth:`advance` can run any run of consecutive steps (an adaptive solve runs them all at once).
    chunkable: ClassVar[bool] = True

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"{type(self).__name__}.steps={self.steps}: expected at least 1")

    def times(self, schedule: VPSchedule, dtype=jnp.float32) -> Float[Array, "{self.steps}+1"]:
        """Diffusion times of the step boundaries, from 1 to 0."""
        return jnp.linspace(1.0, 0.0, self.steps + 1, dtype=dtype)

    def start(self, key: PRNGKey, shape: tuple[int, ...], dtype=jnp.float32) -> dict:
        """The sampler's state at ``t = 1``: ``x``, the initial noise, and ``key``, the key of the steps' noise."""
        key_init, key_loop = jax.random.split(key)
        return {"x": jax.random.normal(key_init, shape, dtype), "key": key_loop}

    @abc.abstractmethod
    def advance(self, carry: dict, eps_fn: EpsFn, schedule: VPSchedule, first, count: int
                ) -> tuple[dict, Float[Array, "count"]]:
        """Run steps ``first .. first + count - 1`` (``first`` may be traced); ``(carry, peaks)``.

        ``peaks[i]`` is :func:`peak` of the state after the ``i``-th step run: its largest magnitude, infinite
        once it is not finite.
        """

    def sample(
        self, key: PRNGKey, eps_fn: EpsFn, shape: tuple[int, ...], schedule: VPSchedule, dtype=jnp.float32
    ) -> tuple[Float[Array, "..."], Bool[Array, "steps"]]:
        """One sample of ``shape`` and, per step, whether the state was still finite after it."""
        carry, peaks = self.advance(self.start(key, shape, dtype), eps_fn, schedule, 0, self.steps)
        return carry["x"], jnp.isfinite(peaks)


def _window(values: Array, first, count: int) -> Array:
    """``values[first : first + count]`` for a traced ``first``."""
    return jax.lax.dynamic_slice_in_dim(values, first, count)


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

    def advance(self, carry, eps_fn, schedule, first, count):
        x = carry["x"]

        def noises(k):  # one draw for all the corrections of a step
            return jax.random.normal(k, (self.corrections,) + x.shape, x.dtype)

        times = _window(self.times(schedule, x.dtype), first, count + 1)
        keys = _window(jax.random.split(carry["key"], self.steps), first, count)
        x, peaks = _pc_steps(eps_fn, schedule, self.tau, x, times, keys, noises)
        return {**carry, "x": x}, peaks


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

    def order(self, terms):  # of the predictor; the Langevin corrections are weak order 1
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


def _solve(terms, solver, y0, steps: int, first=0, count: int | None = None, controller=None, max_steps=None,
           dt0=None, args=None):
    """Integrate ``u`` over steps ``first .. first + count - 1`` of the uniform grid of ``steps`` steps on [0, 1].

    Returns the final state and each step's :func:`peak` (adaptive: ``max_steps`` slots, unused ones 0).
    """
    count = steps if count is None else count
    grid = _window(jnp.linspace(0.0, 1.0, steps + 1, dtype=y0.dtype), first, count + 1)
    controller = diffrax.StepTo(ts=grid) if controller is None else controller
    max_steps = count if max_steps is None else max_steps
    save = diffrax.SaveAt(subs=[
        diffrax.SubSaveAt(t1=True),
        diffrax.SubSaveAt(steps=True, fn=lambda u, y, args: peak(y).astype(y.dtype)),
    ])
    sol = diffrax.diffeqsolve(
        terms, solver, t0=grid[0], t1=grid[-1], dt0=dt0, y0=y0, args=args, saveat=save,
        stepsize_controller=controller, max_steps=max_steps, throw=False,
    )
    final, peaks = sol.ys
    # slots past the last step taken are padded (with inf); a solve that failed (e.g. an adaptive one out of
    # steps) marks its last step as infinite
    taken = sol.stats["num_accepted_steps"]
    slots = jnp.arange(peaks.shape[0])
    peaks = jnp.where(slots < taken, peaks, 0.0)
    failed = sol.result != diffrax.RESULTS.successful
    peaks = jnp.where(failed & (slots == jnp.maximum(taken, 1) - 1), jnp.inf, peaks)
    return final[0], peaks


@dataclasses.dataclass(frozen=True)
class DiffraxPredictorCorrector(_ReferenceSettings):
    """The reference predictor-corrector run by ``diffrax.diffeqsolve`` (Langevin noise from a Brownian tree)."""

    def advance(self, carry, eps_fn, schedule, first, count):
        x = carry["x"]
        noise_shape = (self.corrections,) + x.shape if self.corrections else (1,)
        term = diffrax.ODETerm(lambda u, x, args: eps_fn(x, 1.0 - u))
        solver = _PCSolver(schedule=schedule, corrections=self.corrections, tau=self.tau)
        x, peaks = _solve(term, solver, x, self.steps, first, count,
                          args=_brownian(carry["key"], noise_shape, self.steps, x.dtype))
        return {**carry, "x": x}, peaks


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

    def advance(self, carry, eps_fn, schedule, first, count):
        x = carry["x"]
        drift, diffusion = _reverse_fields(eps_fn, schedule, probability_flow=False)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(drift),
            diffrax.ControlTerm(diffusion, _brownian(carry["key"], x.shape, self.steps, x.dtype)),
        )
        x, peaks = _solve(terms, self.SOLVERS[self.solver](), x, self.steps, first, count)
        return {**carry, "x": x}, peaks


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

    @property
    def chunkable(self) -> bool:
        return not self.adaptive

    def start(self, key, shape, dtype=jnp.float32):
        return {"x": jax.random.normal(key, shape, dtype)}  # deterministic: no noise key

    def advance(self, carry, eps_fn, schedule, first, count):
        drift, _ = _reverse_fields(eps_fn, schedule, probability_flow=True)
        solver, term = self.SOLVERS[self.solver](), diffrax.ODETerm(drift)
        if self.adaptive:
            x, peaks = _solve(term, solver, carry["x"], self.steps, controller=diffrax.PIDController(
                rtol=self.rtol, atol=self.atol), max_steps=self.max_steps, dt0=1.0 / self.steps)
        else:
            x, peaks = _solve(term, solver, carry["x"], self.steps, first, count)
        return {"x": x}, peaks


__all__ = [
    "STEPS", "CORRECTIONS", "TAU", "Sampler", "PredictorCorrector", "DiffraxPredictorCorrector", "ReverseSDE", "ProbabilityFlow",
    "predictor_corrector",
]
