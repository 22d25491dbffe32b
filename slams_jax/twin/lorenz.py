r"""Lorenz-63 / Lorenz-96 twin experiments: the models, their integration, the setups and the synthetic truth.

Reproduces two standard benchmark setups of DAPPER (nansencenter/DAPPER, ``dapper/mods``), so that
classical filters (:mod:`slams_jax.baselines.filters`) can be checked against the RMSEs published there,
and score-based methods (:mod:`slams_jax.twin.experiment`) compared on the same footing.

Models
------
* Lorenz-63: :math:`\dot x = \sigma(y - x)`, :math:`\dot y = x(\rho - z) - y`,
  :math:`\dot z = xy - \beta z` with :math:`\sigma = 10, \rho = 28, \beta = 8/3`.
* Lorenz-96: :math:`\dot x_i = (x_{i+1} - x_{i-2})\,x_{i-1} - x_i + F` with periodic indices and
  forcing :math:`F = 8`.

Both are integrated with classical RK4 (:func:`rk4_step`) at a fixed step ``dt``.

Setups
------
``SAKOV2012`` (Lorenz-63, ``dapper.mods.Lorenz63.sakov2012``): ``dt = 0.01``, all 3 variables observed
every 25 steps (0.25 time units) with :math:`R = 2I`; burn-in 16 time units = 64 cycles; initial
ensemble :math:`\mathcal N(x_0, 2I)`.

``SAKOV2008`` (Lorenz-96, 40 variables, ``dapper.mods.Lorenz96.sakov2008``): ``dt = 0.05``, every
variable observed at every step with :math:`R = I`; burn-in 100 cycles; initial ensemble
:math:`\mathcal N(x_0, 0.001 I)`.

Twin experiment
---------------
:func:`twin_data` spins a random state up onto the attractor (:func:`free_run`), calls it ``x0``, and
runs the truth ``burn_in + cycles`` cycles from it: row ``k`` of ``truth`` is ``x0`` forecast ``k + 1``
cycles, and row ``k`` of ``obs`` is that state plus :math:`\mathcal N(0, \text{obs\_std}^2 I)` noise.
A method starts from ``x0`` (the mean of DAPPER's ``X0``; an ensemble adds ``init_std`` noise) and
forecasts one cycle before each analysis, so its row ``k`` is the analysis at the time of ``obs[k]``.
Scores (:func:`analysis_rmse`) are time means over rows ``burn_in:`` of the per-time RMSE
:math:`\sqrt{\operatorname{mean}_i (\bar x^a_i - x^t_i)^2}`, DAPPER's ``rmse.a``.

Everything is pure and jit-compiled: time loops are :func:`jax.lax.scan` / ``fori_loop``. The public
functions validate their arguments in Python (raising ``ValueError`` naming the argument) and then call
jitted cores whose static arguments are only the dynamics (:func:`dynamics`: model, ``dt``,
``steps_per_obs``, forcing) and shapes, so changing ``obs_std``, ``cycles`` or ``burn_in`` of a setup
does not recompile.
"""


from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
MODELS = ("lorenz63", "lorenz96")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TwinSetup:
    """A twin-experiment setup: model, observation cadence and noise, run length, published scores."""

    name: str  # e.g. "lorenz63/sakov2012"
    model: str  # "lorenz63" | "lorenz96"
    dim: int  # state dimension: 3 | 40
    dt: float  # model (RK4) time step
    steps_per_obs: int  # model steps between observations
    obs_std: float  # observation-error std (R = obs_std^2 I, every variable observed)
    cycles: int = 1000  # scored analysis cycles
    burn_in: int = 100  # cycles run before scoring (not scored)
    forcing: float = 8.0  # Lorenz-96 forcing F (unused by Lorenz-63)
    init_std: float  # std of the initial-ensemble perturbations around x0
    published: tuple[tuple[str, float], ...] = ()  # (DAPPER method label, time-mean analysis RMSE)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.model == "lorenz63" and self.dim != 3:
            raise ValueError(f"dim must be 3 for lorenz63, got {self.dim}")
        if self.model == "lorenz96" and self.dim < 4:
            raise ValueError(f"dim must be >= 4 for lorenz96, got {self.dim}")
        if not self.dt > 0:
            raise ValueError(f"dt must be > 0, got {self.dt}")
        if self.steps_per_obs < 1:
            raise ValueError(f"steps_per_obs must be >= 1, got {self.steps_per_obs}")
        if not self.obs_std > 0:
            raise ValueError(f"obs_std must be > 0, got {self.obs_std}")
        if self.cycles < 1:
            raise ValueError(f"cycles must be >= 1, got {self.cycles}")
        if self.burn_in < 0:
            raise ValueError(f"burn_in must be >= 0, got {self.burn_in}")
        if not self.init_std >= 0:
            raise ValueError(f"init_std must be >= 0, got {self.init_std}")

    @property
    def total_cycles(self) -> int:
        """Cycles of a twin run: ``burn_in + cycles``."""
        return self.burn_in + self.cycles


SAKOV2012 = TwinSetup(
    name="lorenz63/sakov2012",
    model="lorenz63",
    dim=3,
    dt=0.01,
    steps_per_obs=25,
    obs_std=math.sqrt(2.0),
    cycles=1000,
    burn_in=64,  # 16 time units
    init_std=math.sqrt(2.0),
    published=(
        ("Climatology", 7.6),
        ("OptInterp", 1.25),
        ("Var3D(xB=0.1)", 1.04),
        ("ExtKF(infl=180)", 0.92),
        ("EnKF(PertObs,N=100,infl=1.01)", 0.56),
        ("EnKF_N(N=10)", 0.54),
        ("iEnKS(N=10)", 0.31),
        ("PartFilt(N=800)", 0.28),
    ),
)

SAKOV2008 = TwinSetup(
    name="lorenz96/sakov2008",
    model="lorenz96",
    dim=40,
    dt=0.05,
    steps_per_obs=1,
    obs_std=1.0,
    cycles=1000,
    burn_in=100,
    forcing=8.0,
    init_std=math.sqrt(0.001),
    published=(
        ("Climatology", 3.6),
        ("OptInterp", 0.95),
        ("Var3D(xB=0.02)", 0.41),
        ("ExtKF(infl=10)", 0.24),
        ("EnKF(PertObs,N=40,infl=1.06)", 0.22),
        ("EnKF(DEnKF,N=40,infl=1.01)", 0.18),
        ("LETKF(N=7,infl=1.04,loc_rad=4)", 0.22),
    ),
)

SETUPS: dict[str, TwinSetup] = {"lorenz63": SAKOV2012, "lorenz96": SAKOV2008}


# ----------------------------------------------------------------------------------------- dynamics


def lorenz63(x: Array, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0) -> Array:
    """Lorenz-63 tendency ``dx/dt`` of states ``x (..., 3)``."""
    x = jnp.asarray(x)
    if x.shape[-1:] != (3,):
        raise ValueError(f"x must have a last axis of size 3, got shape {x.shape}")
    a, b, c = x[..., 0], x[..., 1], x[..., 2]
    return jnp.stack([sigma * (b - a), a * (rho - c) - b, a * b - beta * c], axis=-1)


def lorenz96(x: Array, forcing: float = 8.0) -> Array:
    """Lorenz-96 tendency ``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`` of ``x (..., n)``, periodic."""
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] < 4:
        raise ValueError(f"x must have a last axis of size >= 4, got shape {x.shape}")
    # jnp.roll(x, s)[i] = x[i - s]
    return (jnp.roll(x, -1, axis=-1) - jnp.roll(x, 2, axis=-1)) * jnp.roll(x, 1, axis=-1) - x + forcing


def _tendency(model: str, forcing: float) -> Callable[[Array], Array]:
    if model == "lorenz63":
        return lorenz63
    return functools.partial(lorenz96, forcing=forcing)


def tendency(setup: TwinSetup) -> Callable[[Array], Array]:
    """The setup's model tendency ``x -> dx/dt`` (works on batched states ``(..., dim)``)."""
    return _tendency(setup.model, setup.forcing)


def rk4_step(f: Callable[[Array], Array], x: Array, dt: float) -> Array:
    """One classical Runge-Kutta-4 step of the autonomous ODE ``dx/dt = f(x)``."""
    k1 = f(x)
    k2 = f(x + (0.5 * dt) * k1)
    k3 = f(x + (0.5 * dt) * k2)
    k4 = f(x + dt * k3)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


#: Static description of the dynamics, ``(model, dt, steps_per_obs, forcing)``: hashable, so that jitted
#: cores taking it as a static argument do not recompile for a new ``obs_std`` etc.
Dynamics = tuple


def dynamics(setup: TwinSetup) -> Dynamics:
    """The setup's dynamics ``(model, dt, steps_per_obs, forcing)``, a static argument of jitted cores."""
    return (setup.model, float(setup.dt), int(setup.steps_per_obs), float(setup.forcing))


def integrate(dyn: Dynamics, x: Array, cycles: int) -> Array:
    """``x (..., dim)`` integrated over ``cycles`` observation intervals (traceable, not jitted)."""
    model, dt, steps, forcing = dyn
    f = _tendency(model, forcing)
    n = cycles * steps
    if n == 0:
        return x
    return lax.fori_loop(0, n, lambda _, s: rk4_step(f, s, dt), x)


@functools.partial(jax.jit, static_argnames=("dyn", "cycles"))
def _forecast(dyn: Dynamics, x: Array, cycles: int) -> Array:
    return integrate(dyn, x, cycles)


def _check_state(name: str, x: Array, dim: int, batched: bool = True) -> Array:
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != dim or (not batched and x.ndim != 1):
        want = f"(..., {dim})" if batched else f"({dim},)"
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    return x


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_float(name: str, value, low: float, strict: bool = False) -> None:
    """Check ``value >= low`` (``> low`` if strict) when it is concrete; tracers pass through."""
    if isinstance(value, jax.core.Tracer):
        return
    v = float(np.asarray(value))
    ok = v > low if strict else v >= low
    if not (ok and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low}, got {v}")


def forecast(setup: TwinSetup, x: Array, cycles: int = 1) -> Array:
    """Integrate states ``x (..., dim)`` (a state or a batched ensemble) over ``cycles * steps_per_obs`` steps."""
    x = _check_state("x", x, setup.dim)
    cycles = _check_int("cycles", cycles, 0)
    return _forecast(dynamics(setup), x, cycles)


@functools.partial(jax.jit, static_argnames=("dyn", "cycles"))
def _trajectory(dyn: Dynamics, x: Array, cycles: int) -> Array:
    """States after 1, ..., ``cycles`` forecasts of ``x``: ``(cycles, dim)``."""

    def step(s, _):
        s = integrate(dyn, s, 1)
        return s, s

    return lax.scan(step, x, None, length=cycles)[1]


def _random_start(setup: TwinSetup, key: Array) -> Array:
    noise = jax.random.normal(key, (setup.dim,), jnp.float32)
    if setup.model == "lorenz96":
        return setup.forcing + noise  # near the unstable fixed point x_i = F
    return noise  # near the unstable fixed point 0


@functools.partial(jax.jit, static_argnames=("dyn", "n_states", "spinup_cycles"))
def _free_run(dyn: Dynamics, x: Array, n_states: int, spinup_cycles: int) -> Array:
    x = integrate(dyn, x, spinup_cycles)
    return _trajectory(dyn, x, n_states)


def free_run(setup: TwinSetup, key: Array, n_states: int, spinup_cycles: int = 500) -> Array:
    """``(n_states, dim)`` states one observation interval apart, from a random start spun up onto the attractor.

    The start is a unit Gaussian perturbation of the unstable fixed point (0 for Lorenz-63, ``x_i = F`` for
    Lorenz-96); ``spinup_cycles`` observation intervals (default 500: 125 time units for ``SAKOV2012``, 25
    for ``SAKOV2008``) are discarded before the first returned state.
    """
    n_states = _check_int("n_states", n_states, 1)
    spinup_cycles = _check_int("spinup_cycles", spinup_cycles, 0)
    return _free_run(dynamics(setup), _random_start(setup, key), n_states, spinup_cycles)


@dataclasses.dataclass(frozen=True)
class TwinData:
    """A synthetic truth and its observations.

    truth: ``(burn_in + cycles, dim)``, row ``k`` = ``x0`` forecast ``k + 1`` cycles.
    obs: ``(burn_in + cycles, dim)``, ``truth + obs_std * N(0, 1)``.
    x0: ``(dim,)`` the truth's state before the first cycle.
    """

    truth: np.ndarray
    obs: np.ndarray
    x0: np.ndarray


def twin_data(setup: TwinSetup, key: Array) -> TwinData:
    """An independent truth run (spun up onto the attractor first) and its noisy observations."""
    k_start, k_obs = jax.random.split(key)
    states = free_run(setup, k_start, setup.total_cycles + 1)  # x0 is the first spun-up state
    truth = states[1:]
    obs = truth + setup.obs_std * jax.random.normal(k_obs, truth.shape, truth.dtype)
    return TwinData(truth=np.asarray(truth), obs=np.asarray(obs), x0=np.asarray(states[0]))


# ------------------------------------------------------------------------------------------- scores


def analysis_rmse(means: Array, truth: Array, burn_in: int) -> float:
    """Time mean over rows ``burn_in:`` of the per-time RMSE ``sqrt(mean_i (means - truth)^2)``."""
    means = np.asarray(means, np.float64)
    truth = np.asarray(truth, np.float64)
    if means.ndim != 2 or means.shape != truth.shape:
        raise ValueError(f"means must have the shape of truth, a (T, dim) array {truth.shape}, got {means.shape}")
    burn_in = _check_int("burn_in", burn_in, 0)
    if burn_in >= means.shape[0]:
        raise ValueError(f"burn_in must be < T = {means.shape[0]}, got {burn_in}")
    per_time = np.sqrt(np.mean(np.square(means - truth), axis=1))
    return float(per_time[burn_in:].mean())


def time_mean_spread(spreads: Array, burn_in: int) -> float:
    """Time mean over entries ``burn_in:`` of the ensemble spreads ``(T,)``."""
    spreads = np.asarray(spreads, np.float64)
    if spreads.ndim != 1:
        raise ValueError(f"spreads must have shape (T,), got {spreads.shape}")
    burn_in = _check_int("burn_in", burn_in, 0)
    if burn_in >= spreads.shape[0]:
        raise ValueError(f"burn_in must be < T = {spreads.shape[0]}, got {burn_in}")
    return float(spreads[burn_in:].mean())
