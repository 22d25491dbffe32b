"""2-D Kolmogorov flow: a pseudo-spectral Navier–Stokes solver and the embedded default dataset.

The benchmark of Rozet & Louppe, "Score-based Data Assimilation" (NeurIPS 2023): vorticity on the doubly
periodic square, forced at wavenumber 4, Re = 1000. Modules, one concept each, along the data flow:

- :mod:`~slams_jax.data.kolmogorov.spectral`: the periodic grid and its spectral operators (derivatives,
  velocity from vorticity, the 2/3 rule, re-gridding by truncation);
- :mod:`~slams_jax.data.kolmogorov.solver`: the equations, :class:`KolmogorovConfig`, the Lawson-RK4
  integrator (:func:`evolve`) and the trajectories (:func:`simulate`), with the physics and the
  discretisation in its docstring;
- :mod:`~slams_jax.data.kolmogorov.modalities`: the auxiliary modalities derived from the flow
  (:func:`precipitation` with NaN over an ocean, :func:`outgoing_longwave`);
- :mod:`~slams_jax.data.kolmogorov.dataset`: :func:`make_dataset`, all of it as an ``xarray.Dataset``.
"""

from slams_jax.data.kolmogorov.dataset import make_dataset as make_dataset
from slams_jax.data.kolmogorov.modalities import (
    ocean_mask as ocean_mask,
    outgoing_longwave as outgoing_longwave,
    precipitation as precipitation,
)
from slams_jax.data.kolmogorov.solver import (
    KolmogorovConfig as KolmogorovConfig,
    courant_number as courant_number,
    energy_budget as energy_budget,
    evolve as evolve,
    forcing_field as forcing_field,
    random_vorticity as random_vorticity,
    simulate as simulate,
    time_step as time_step,
)
from slams_jax.data.kolmogorov.spectral import (
    Spectrum as Spectrum,
    divergence as divergence,
    grid_coordinates as grid_coordinates,
    spectral_resample as spectral_resample,
    velocity_from_vorticity as velocity_from_vorticity,
    vorticity as vorticity,
)

__all__ = [
    "KolmogorovConfig", "Spectrum", "courant_number", "divergence", "energy_budget", "evolve", "forcing_field",
    "grid_coordinates", "make_dataset", "ocean_mask", "outgoing_longwave", "precipitation", "random_vorticity",
    "simulate", "spectral_resample", "time_step", "velocity_from_vorticity", "vorticity",
]
