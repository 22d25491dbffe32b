r"""2-D Kolmogorov flow: the pseudo-spectral Navier–Stokes solver and the simulation of trajectories.

Physics
-------
Incompressible Navier–Stokes on the doubly periodic square :math:`[0, 2\pi)^2` in vorticity form,

.. math:: \partial_t \omega + \mathbf{u}\cdot\nabla\omega = \nu\,\Delta\omega - \alpha\,\omega + f,
          \qquad f = \nabla\times\mathbf{F} = -A\,k_f \cos(k_f y),

with Kolmogorov forcing :math:`\mathbf{F} = (A \sin(k_f y), 0)` (the x-velocity is forced and varies
with y), :math:`k_f = 4`, :math:`A = 1`, linear drag :math:`\alpha = 0.1` and :math:`\nu = 1/Re`,
:math:`Re = 1000`: the benchmark of Rozet & Louppe, "Score-based Data Assimilation" (NeurIPS 2023),
who used jax-cfd. Sign conventions:

.. math:: \omega = \partial_x v - \partial_y u, \qquad \Delta\psi = -\omega, \qquad
          u = \partial_y\psi, \qquad v = -\partial_x\psi,

so that in Fourier space (:math:`\hat\psi = \hat\omega / |k|^2`) :math:`\hat u = i k_y \hat\psi`,
:math:`\hat v = -i k_x \hat\psi`, and :math:`\nabla\cdot\mathbf{u} = 0` holds mode by mode.

Discretisation
--------------
* Grid nodes (not cell centres) :math:`y_j = x_j = 2\pi j / N`, ``j = 0..N-1``, so that the nodes of
  the coarse output grid are a subset of the simulation grid and coarsening by spectral truncation
  needs no phase shift. The forcing is sampled on the same nodes (it is a single Fourier mode, so it is
  exact on any grid with :math:`N > 2 k_f`).
* State: :math:`\hat\omega` from ``rfft2`` over the (y, x) axes. Only the modes
  :math:`|k_x|, |k_y| \le K = \lfloor (N-1)/3 \rfloor` are kept (2/3 rule); the quadratic term of two
  such fields has no alias on the kept modes, so the scheme is an exact Galerkin truncation that
  conserves energy and enstrophy in the nonlinear term.
* Advection in Basdevant's form, which needs 2 inverse and 2 forward FFTs instead of 5:

  .. math:: \mathbf{u}\cdot\nabla\omega = (\partial_{xx} - \partial_{yy})(uv)
            + \partial_x\partial_y(v^2 - u^2).

* Time: integrating-factor (Lawson) RK4. The linear part :math:`L = -\nu|k|^2 - \alpha` is
  integrated exactly through :math:`e^{L\,\delta t}` (no viscous stability limit; a single Fourier
  mode, or any combination of modes on one shell :math:`|k| = \mathrm{const}`, decays exactly as
  :math:`e^{-(\nu |k|^2 + \alpha)t}`), advection and forcing by classical RK4.
* Time step: :math:`\delta t = C\,\Delta x / U` with Courant number ``cfl`` :math:`C = 1` and
  ``max_velocity`` :math:`U = 6`, above the largest :math:`|u| \approx 5.7` measured over 64 x 64 saved
  states at Re = 1000 (the RMS speed is 1.4), then shrunk so that an integer number of steps spans
  ``save_interval``: :math:`\delta t = 0.008` (25 steps per 0.2) at N = 128, 0.0154 at N = 64.
  The linear RK4 bound for spectral advection, :math:`|\lambda\,\delta t| \le 2\sqrt2` with
  :math:`|\lambda| \le |u|\sqrt2 K`, is pessimistic here (the highest modes hold little energy and
  are damped exactly by the integrating factor): at N = 128 the flow was stable at
  :math:`\delta t = 0.0143` and blew up at 0.02, a margin of about 1.8 over the default, whose
  relative error after one time unit is 4e-4. :func:`courant_number` reports the Courant number of
  saved states and :func:`~slams_jax.data.kolmogorov.dataset.make_dataset` raises if the output is
  not finite.

Data
----
:func:`simulate` draws a band-limited Gaussian random vorticity field per trajectory, spins it up
for ``spinup_time`` (on the coarser ``spinup_grid``, whose transient does not need the full
resolution, then ``relax_time`` on the full grid so the small scales equilibrate; 20 + 2 time units,
i.e. two drag times :math:`1/\alpha`, after which the mean energy of 64 trajectories shows no trend
over the next 12.8 time units: 0.99 +- 0.01), then saves
``n_states`` states ``save_interval`` apart, coarsened to ``out_grid`` by spectral truncation
(:math:`|k_x|, |k_y| < N_{out}/2`, which keeps the coarse velocity exactly solenoidal), as velocity
``(u, v)`` with channels last, spatial axes (y, x) = (lat-like, lon-like). Resolution check: the
mean energy of 64 x 64 saved states is 0.998 at N = 128 and 1.003 at N = 256.

Cost: a step is 16 FFTs of N x N per trajectory (4 RK stages x 4). At the defaults, 64 trajectories x
64 states take about 1850 steps at N = 128 plus 1300 at N = 64: about 1 s on one H200 GPU after
compilation, but minutes on a 2-core CPU, where ``grid=96`` (the smallest grid whose 2/3-rule modes
cover all modes of a 64 output) is 2.4 times cheaper.

The spectral operators (wavenumbers, derivatives, the 2/3 mask, re-gridding) are in
:mod:`slams_jax.data.kolmogorov.spectral`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float, Int, PRNGKey
from slams_jax.data.kolmogorov.spectral import (
    Spectrum, batched, dealias, dealias_mask, derivatives, flatten_batch, grid_coordinates, inverse_laplacian,
    spectral_resample, velocity_from_vorticity, velocity_hat_to_uv, wavenumbers,
)


@dataclasses.dataclass(frozen=True)
class KolmogorovConfig:
    """Settings of the Kolmogorov-flow simulation (hashable, so it can be a static jit argument).

    Attributes:
        grid: Simulation grid size N (N x N nodes), even.
        out_grid: Output grid size after spectral truncation, even, ``<= grid``.
        reynolds: Reynolds number; viscosity ``nu = 1 / reynolds``.
        forcing_wavenumber: Kolmogorov forcing wavenumber ``k_f``.
        forcing_amplitude: Forcing amplitude ``A``; 0 switches the forcing off.
        drag: Linear drag coefficient ``alpha``.
        save_interval: Time between saved states.
        spinup_time: Time simulated (on ``spinup_grid``) before the relaxation on the full grid.
        spinup_grid: Grid of the spin-up; ``None`` spins up on ``grid``.
        relax_time: Time simulated on ``grid`` after the spin-up and before the first saved state.
        cfl: Courant number ``dt * max_velocity / dx``.
        max_velocity: Bound on ``|u|`` used for the time step.
        init_wavenumber: Scale ``k0`` of the random initial vorticity (energy spectrum
            ``E(k) ~ k^3 exp(-2 k^2 / k0^2)``).
        init_velocity: RMS velocity of the random initial condition.
    """

    grid: int = 128
    out_grid: int = 64
    reynolds: float = 1000.0
    forcing_wavenumber: int = 4
    forcing_amplitude: float = 1.0
    drag: float = 0.1
    save_interval: float = 0.2
    spinup_time: float = 20.0
    spinup_grid: int | None = 64
    relax_time: float = 2.0
    cfl: float = 1.0
    max_velocity: float = 6.0
    init_wavenumber: float = 4.0
    init_velocity: float = 1.5

    def __post_init__(self):
        for name in ("grid", "out_grid"):
            n = getattr(self, name)
            if n % 2 or n < 8:
                raise ValueError(f"KolmogorovConfig.{name}={n}: expected an even size >= 8")
        if self.out_grid > self.grid:
            raise ValueError(f"out_grid={self.out_grid} exceeds grid={self.grid}")
        if self.spinup_grid is not None and (self.spinup_grid % 2 or self.spinup_grid < 8
                                             or self.spinup_grid > self.grid):
            raise ValueError(f"spinup_grid={self.spinup_grid}: expected an even size in [8, grid]")
        if 3 * self.forcing_wavenumber >= min(self.grid, self.spinup_grid or self.grid):
            raise ValueError("forcing wavenumber not resolved after 2/3 dealiasing")

    @property
    def viscosity(self) -> float:
        return 1.0 / self.reynolds


def forcing_field(n: int, config: KolmogorovConfig) -> Float[Array, "y x"]:
    """Vorticity forcing ``f = -A k_f cos(k_f y)`` on the nodes of an n x n grid."""
    y = grid_coordinates(n).reshape(n, 1)
    k = config.forcing_wavenumber
    f = -config.forcing_amplitude * k * np.cos(k * y) * np.ones((1, n))
    return jnp.asarray(f, jnp.float32)


@functools.partial(jax.jit, static_argnames=("config",))
def energy_budget(omega: Float[Array, "*batch y x"], config: KolmogorovConfig) -> dict[str, Array]:
    r"""Terms of the kinetic-energy budget of the Galerkin-truncated system.

    With :math:`E = \langle|\mathbf u|^2\rangle/2`, :math:`Z = \langle\omega^2\rangle/2` and
    :math:`P = \langle \mathbf F\cdot\mathbf u\rangle` (``<.>`` = grid mean), the nonlinear term
    conserves energy exactly, so :math:`dE/dt = P - 2\nu Z - 2\alpha E`.

    Returns:
        Dict of Float[Array, "*batch"]: ``energy``, ``enstrophy``, ``forcing_power``, ``dissipation``
        (``2 nu Z + 2 alpha E``) and ``denergy_dt`` (``P - dissipation``).
    """
    omega = dealias(omega)
    n = omega.shape[-1]
    uv = velocity_from_vorticity(omega)
    energy = 0.5 * jnp.mean(uv[..., 0] ** 2 + uv[..., 1] ** 2, axis=(-2, -1))
    enstrophy = 0.5 * jnp.mean(omega**2, axis=(-2, -1))
    y = grid_coordinates(n).reshape(n, 1)
    fx = config.forcing_amplitude * np.sin(config.forcing_wavenumber * y) * np.ones((1, n))
    power = jnp.mean(uv[..., 0] * batched(fx.astype(np.float32), omega.ndim), axis=(-2, -1))
    dissipation = 2.0 * config.viscosity * enstrophy + 2.0 * config.drag * energy
    return dict(energy=energy, enstrophy=enstrophy, forcing_power=power, dissipation=dissipation,
                denergy_dt=power - dissipation)


def time_step(config: KolmogorovConfig, n: int | None = None) -> tuple[float, int]:
    """Time step on an n grid and the number of steps per ``save_interval``.

    ``dt = cfl * (2 pi / n) / max_velocity``, then shrunk so that an integer number of steps spans
    ``save_interval``.
    """
    n = config.grid if n is None else n
    dt_max = config.cfl * (2.0 * math.pi / n) / config.max_velocity
    steps = max(1, math.ceil(config.save_interval / dt_max - 1e-9))
    return config.save_interval / steps, steps


def _linear_operator(n: int, config: KolmogorovConfig) -> np.ndarray:
    """Diagonal linear operator ``L = -nu |k|^2 - alpha`` on the rfft2 modes (float32)."""
    ky, kx = wavenumbers(n)
    return (-config.viscosity * (ky**2 + kx**2) - config.drag).astype(np.float32)


def _tendency(w_hat: Spectrum, f_hat: Spectrum, n: int) -> Spectrum:
    """Dealiased ``-(u . grad omega)^ + f^`` on one (n, n//2+1) spectrum (Basdevant's form)."""
    ky, kx = wavenumbers(n)
    iky, ikx = derivatives(n)
    psi_hat = w_hat * jnp.asarray(inverse_laplacian(n))
    u = jnp.fft.irfft2(psi_hat * jnp.asarray(iky), s=(n, n))
    v = jnp.fft.irfft2(psi_hat * jnp.asarray(-ikx), s=(n, n))
    uv_hat = jnp.fft.rfft2(u * v)
    vvuu_hat = jnp.fft.rfft2(v * v - u * u)
    mask = dealias_mask(n)
    # -(u.grad w)^ = (kx^2 - ky^2) (uv)^ + kx ky (v^2 - u^2)^ ; the 2/3 mask removes aliased modes.
    c1 = jnp.asarray(((kx**2 - ky**2) * mask).astype(np.complex64))
    c2 = jnp.asarray(((kx * ky) * mask).astype(np.complex64))
    return c1 * uv_hat + c2 * vvuu_hat + f_hat


def _integrate(w_hat: Spectrum, n_steps: int | Int[Array, ""], dt: float | Float[Array, ""],
               config: KolmogorovConfig) -> Spectrum:
    """Advance one (n, n//2+1) spectrum by ``n_steps`` Lawson-RK4 steps of size ``dt``.

    ``n_steps`` and ``dt`` may be traced, so that :func:`evolve` compiles once per grid and config.
    """
    n = w_hat.shape[-2]
    lin = jnp.asarray(_linear_operator(n, config))
    e1 = jnp.exp(lin * dt).astype(jnp.complex64)
    e2 = jnp.exp(lin * (0.5 * dt)).astype(jnp.complex64)
    f_hat = jnp.fft.rfft2(forcing_field(n, config)) * jnp.asarray(dealias_mask(n))
    h = jnp.asarray(dt, jnp.float32).astype(jnp.complex64)  # strict promotion: no float * complex

    def step(_, w):
        k1 = _tendency(w, f_hat, n)
        k2 = _tendency(e2 * (w + (0.5 * h) * k1), f_hat, n)
        k3 = _tendency(e2 * w + (0.5 * h) * k2, f_hat, n)
        k4 = _tendency(e1 * w + h * (e2 * k3), f_hat, n)
        return e1 * w + (h / 6.0) * (e1 * k1 + 2.0 * (e2 * (k2 + k3)) + k4)

    return jax.lax.fori_loop(0, n_steps, step, w_hat)


@functools.partial(jax.jit, static_argnames=("config",))
def evolve(omega: Float[Array, "*batch y x"], duration: float | Float[Array, ""],
           config: KolmogorovConfig, n_steps: int | Int[Array, ""] | None = None
           ) -> Float[Array, "*batch y x"]:
    """Integrate the vorticity equation for ``duration`` time units on the grid of ``omega``.

    The initial field is first projected on the dealiased modes.

    Args:
        omega: Initial vorticity on an n x n grid (nodes ``2 pi j / n``).
        duration: Time to integrate (>= 0).
        config: Physics (viscosity, drag, forcing) and time-step settings.
        n_steps: Number of RK4 steps; default ``ceil(duration / dt)`` with :func:`time_step`.

    Returns:
        Vorticity at time ``duration``.
    """
    flat, batch = flatten_batch(omega, 2)
    n = flat.shape[-1]
    duration = jnp.asarray(duration, jnp.float32)
    if n_steps is None:
        n_steps = jnp.ceil(duration / time_step(config, n)[0] - 1e-6).astype(jnp.int32)
    n_steps = jnp.asarray(n_steps, jnp.int32)
    dt = duration / jnp.maximum(n_steps, 1).astype(jnp.float32)
    w_hat = jnp.fft.rfft2(flat) * batched(dealias_mask(n), 3)
    w_hat = jax.vmap(lambda w: _integrate(w, n_steps, dt, config))(w_hat)
    return jnp.fft.irfft2(w_hat, s=(n, n)).reshape(batch + (n, n))


def _random_vorticity_hat(key: PRNGKey, n: int, config: KolmogorovConfig) -> Spectrum:
    """Band-limited Gaussian random vorticity spectrum with RMS velocity ``init_velocity``."""
    ky, kx = wavenumbers(n)
    k = np.sqrt(ky**2 + kx**2)
    k0 = config.init_wavenumber
    # Vorticity amplitude k^2 exp(-(k/k0)^2), i.e. |u_k|^2 ~ k^2 exp(-2 (k/k0)^2) per mode and a
    # shell spectrum E(k) ~ k^3 exp(-2 (k/k0)^2): smooth, with its energy near k0 like the forcing.
    amp = (k**2 * np.exp(-((k / k0) ** 2))).astype(np.float32)
    amp = amp * dealias_mask(n).real
    noise = jax.random.normal(key, (n, n), jnp.float32)
    w_hat = jnp.fft.rfft2(noise) * jnp.asarray(amp.astype(np.complex64))
    uv = velocity_hat_to_uv(w_hat[None], n)[0]
    rms = jnp.sqrt(jnp.mean(uv**2) * 2.0)
    return w_hat * (config.init_velocity / rms).astype(jnp.complex64)


def random_vorticity(key: PRNGKey, config: KolmogorovConfig, n: int | None = None
                     ) -> Float[Array, "y x"]:
    """Random smooth initial vorticity on an n grid (default ``config.grid``)."""
    n = config.grid if n is None else n
    return jnp.fft.irfft2(_random_vorticity_hat(key, n, config), s=(n, n))


def _n_steps(duration: float, dt_max: float) -> int:
    return max(1, math.ceil(duration / dt_max - 1e-9)) if duration > 0 else 0


def _trajectory(key: PRNGKey, n_states: int, config: KolmogorovConfig) -> Float[Array, "t y x 2"]:
    """One trajectory: random start, spin-up, relaxation, ``n_states`` saved coarse velocities."""
    n = config.grid
    n0 = config.spinup_grid or n
    w = _random_vorticity_hat(key, n0, config)
    steps = _n_steps(config.spinup_time, time_step(config, n0)[0])
    w = _integrate(w, steps, config.spinup_time / max(steps, 1), config)
    if n0 != n:
        w = spectral_resample(w, n) * jnp.asarray(dealias_mask(n))
    dt, steps_per_save = time_step(config, n)
    steps = _n_steps(config.relax_time, dt)
    w = _integrate(w, steps, config.relax_time / max(steps, 1), config)

    def save(w, _):
        out = spectral_resample(w, config.out_grid)
        return _integrate(w, steps_per_save, dt, config), out

    _, outs = jax.lax.scan(save, w, None, length=n_states)
    return velocity_hat_to_uv(outs, config.out_grid)


@functools.partial(jax.jit, static_argnames=("n_states", "config"))
def _simulate_batch(keys, n_states, config):
    return jax.vmap(lambda k: _trajectory(k, n_states, config))(keys)


def simulate(key: PRNGKey, n_trajectories: int, n_states: int,
             config: KolmogorovConfig = KolmogorovConfig(), chunk_size: int | None = None
             ) -> Float[Array, "traj time y x 2"]:
    """Simulate Kolmogorov-flow trajectories and return the coarse velocity.

    Trajectory ``i`` depends only on ``jax.random.split(key, n_trajectories)[i]``, so the result does
    not depend on ``chunk_size``.

    Args:
        key: PRNG key of the initial conditions.
        n_trajectories: Number of independent trajectories.
        n_states: Number of saved states per trajectory, ``save_interval`` apart, the first one after
            ``spinup_time + relax_time``.
        config: Simulation settings.
        chunk_size: Trajectories per compiled call (limits memory); default all at once.

    Returns:
        float32 velocity ``(u, v)`` on the ``out_grid`` nodes, shape
        ``(n_trajectories, n_states, out_grid, out_grid, 2)``.
    """
    keys = jax.random.split(key, n_trajectories)
    chunk = n_trajectories if chunk_size is None else chunk_size
    parts = [_simulate_batch(keys[i:i + chunk], n_states, config)
             for i in range(0, n_trajectories, chunk)]
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)


@functools.partial(jax.jit, static_argnames=("config",))
def courant_number(uv: Float[Array, "*batch y x 2"], config: KolmogorovConfig) -> Float[Array, ""]:
    """Largest ``max(|u|, |v|) dt / dx`` over ``uv``, with ``dt`` and ``dx`` of the simulation grid.

    ``uv`` is typically the coarse output; the fine field's maximum is slightly larger, which the
    stability margin of the default time step (about 1.8, see the module docstring) absorbs.
    """
    dt, _ = time_step(config)
    return jnp.max(jnp.abs(uv)) * dt / (2.0 * math.pi / config.grid)


__all__ = [
    "KolmogorovConfig", "forcing_field", "energy_budget", "time_step", "evolve", "random_vorticity", "simulate",
    "courant_number",
]
