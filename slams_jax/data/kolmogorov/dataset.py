"""The embedded default dataset: Kolmogorov-flow trajectories and their auxiliary modalities as xarray.

:func:`make_dataset` is the xarray edge of the generator: it simulates the velocity
(:func:`~slams_jax.data.kolmogorov.solver.simulate`), derives precipitation and OLR from it
(:mod:`slams_jax.data.kolmogorov.modalities`) and packages the four fields with their coordinates, units
and the solver settings (global attributes ``config_<field>``, so a cached file says how it was made).
Caching on disk is :func:`slams_jax.data.datasets.load_dataset`'s job.
"""

from __future__ import annotations

import dataclasses
import time as _time

import numpy as np
import xarray as xr

from slams_jax._types import PRNGKey
from slams_jax.data.kolmogorov.modalities import outgoing_longwave, precipitation
from slams_jax.data.kolmogorov.solver import KolmogorovConfig, simulate, time_step
from slams_jax.data.kolmogorov.spectral import grid_coordinates

DIMS = ("trajectory", "time", "y", "x")


def make_dataset(key: PRNGKey, n_trajectories: int, n_states: int,
                 config: KolmogorovConfig = KolmogorovConfig(), chunk_size: int | None = None
                 ) -> xr.Dataset:
    """Simulate trajectories and package velocity, precipitation and OLR as an ``xarray.Dataset``.

    Args:
        key: PRNG key of the initial conditions (as in :func:`simulate`).
        n_trajectories: Number of trajectories.
        n_states: Saved states per trajectory.
        config: Simulation settings, also stored in the global attributes.
        chunk_size: Trajectories per compiled call.

    Returns:
        Dataset with float32 variables ``u``, ``v``, ``precip``, ``olr`` of dims
        ``(trajectory, time, y, x)``; ``time`` counts from the first saved state, ``y``/``x`` are node
        coordinates in radians.

    Raises:
        FloatingPointError: if the simulation produced non-finite values (time step too large).
    """
    start = _time.perf_counter()
    uv = simulate(key, n_trajectories, n_states, config, chunk_size)
    precip = precipitation(uv)
    olr = outgoing_longwave(uv)
    uv, precip, olr = (np.asarray(a) for a in (uv, precip, olr))
    elapsed = _time.perf_counter() - start
    if not np.all(np.isfinite(uv)):
        raise FloatingPointError("Kolmogorov simulation diverged; lower KolmogorovConfig.cfl")
    ds = xr.Dataset(_variables(uv, precip, olr), coords=_coordinates(config, n_trajectories, n_states),
                    attrs=_attributes(config, elapsed))
    ds["time"].attrs.update(dict(units="1", long_name="time since first saved state (nondimensional)"))
    ds["trajectory"].attrs.update(long_name="trajectory index")
    return ds


def _variables(uv: np.ndarray, precip: np.ndarray, olr: np.ndarray) -> dict[str, tuple]:
    """The data variables from velocity ``(traj, time, y, x, 2)`` and the products ``(traj, time, y, x)``."""
    return dict(
        u=(DIMS, uv[..., 0], dict(units="1", long_name="x-velocity (nondimensional)")),
        v=(DIMS, uv[..., 1], dict(units="1", long_name="y-velocity (nondimensional)")),
        precip=(DIMS, precip, dict(units="mm/day", long_name="precipitation-like field, "
                                   "NaN over ocean")),
        olr=(DIMS, olr, dict(units="W m-2", long_name="outgoing-longwave-radiation-like "
                             "field")),
    )


def _coordinates(config: KolmogorovConfig, n_trajectories: int, n_states: int) -> dict:
    """Trajectory index, time since the first saved state, and the ``out_grid`` node coordinates (radians)."""
    coord = grid_coordinates(config.out_grid).astype(np.float32)
    return dict(
        trajectory=np.arange(n_trajectories, dtype=np.int32),
        time=(np.arange(n_states) * config.save_interval).astype(np.float32),
        y=("y", coord, dict(units="radian", long_name="y (latitude-like, nodes 2 pi j / n)")),
        x=("x", coord, dict(units="radian", long_name="x (longitude-like, nodes 2 pi j / n)")),
    )


def _attributes(config: KolmogorovConfig, elapsed: float) -> dict:
    """Global attributes: every solver setting as ``config_<field>`` (None as "none", for netCDF), then the
    description of the equation and scheme, the time step and the generation time in seconds."""
    dt, steps_per_save = time_step(config)
    attrs = {f"config_{f.name}": ("none" if getattr(config, f.name) is None
                                  else getattr(config, f.name))
             for f in dataclasses.fields(config)}
    attrs.update(
        title="2-D Kolmogorov flow (Rozet & Louppe 2023 benchmark), slams_jax pseudo-spectral solver",
        equation="w_t + u.grad w = nu lap w - alpha w - A k_f cos(k_f y)",
        reynolds_number=config.reynolds, viscosity=config.viscosity,
        solver="pseudo-spectral, 2/3 dealiasing, Basdevant advection, integrating-factor RK4",
        time_step=dt, steps_per_save=steps_per_save,
        first_state_time=config.spinup_time + config.relax_time,
        generation_seconds=elapsed,
    )
    return attrs


__all__ = ["make_dataset"]
