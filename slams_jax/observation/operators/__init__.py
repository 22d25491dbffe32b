r"""Measurement operators: what an observation sees of a trajectory.

Data assimilation conditions a trajectory :math:`x_{1:L}` of physical fields on observations

.. math:: y = \mathcal{A}(x_{1:L}) + \eta, \qquad \eta \sim \mathcal{N}(0, \Sigma_y),

and the posterior score needs :math:`\mathcal{A}` to be differentiable (its vector-Jacobian product
carries the likelihood gradient back to the state). An :class:`Operator` here is that
:math:`\mathcal{A}`: a pure, jit- and vmap-friendly function of ONE trajectory. In latent assimilation
(SLAMS) the state is a latent trajectory :math:`z_{1:L}` and the observation model is
:math:`y = \mathcal{A}(D(z_{1:L})) + \eta`: the decoder :math:`D` runs first and the operator still acts on
physical fields, so the operators below never see latents.

Conventions:

- The input is a trajectory ``(time, lat, lon, channel)``: time first, channel last. Every operator keeps
  the channel axis last in its output, so a per-channel noise standard deviation ``(channel,)`` broadcasts
  against any observation. Batches are handled by the caller with :func:`jax.vmap`.
- Latitude (axis 1) is never periodic. :class:`Stations` works on any rectilinear grid (non-uniform,
  regional, either direction, crossing 0 E) and wraps longitude (axis 2) only when the grid spans the globe;
  a station outside the grid is refused. :class:`Swath` wraps around the longitude seam.
- Operators only rearrange, average and interpolate (except :class:`Saturate`), so most are linear
  (``op.linear``); the adjoint of a linear operator is its vector-Jacobian product, which is exact here
  because every constant (indices, averaging matrices, interpolation weights) is built in numpy and closed
  over.
- Shapes are static: ``op.check(shape)`` validates an input shape and returns the output shape, with a
  :class:`ValueError` naming the operator and the problem; calling an operator runs the same checks at
  trace time, so an out-of-range index never silently clamps under jit.
- ``a >> b`` composes: apply ``a``, then ``b`` (:class:`Compose`). Operators that only need the time axis
  first and the channel axis last (:class:`Identity`, :class:`TimeSubsample`, :class:`TimeIndex`,
  :class:`Channels`, :class:`Saturate`) accept any rank >= 2, so they may follow :class:`Points` or
  :class:`Stations` ``(time, n, channel)``; spatial operators require rank 4.

Modules, one concept each: :mod:`~slams_jax.observation.operators.base` (the base class, :class:`Compose`),
:mod:`~slams_jax.observation.operators.temporal` (time selection), :mod:`~slams_jax.observation.operators.channels`,
:mod:`~slams_jax.observation.operators.saturation`, :mod:`~slams_jax.observation.operators.coarsen` (block means),
:mod:`~slams_jax.observation.operators.points` (grid cells), :mod:`~slams_jax.observation.operators.stations`
(bilinear interpolation) and :mod:`~slams_jax.observation.operators.swath` (satellite swaths).
"""

from slams_jax.observation.operators.base import Compose as Compose, Measured as Measured, Operator as Operator
from slams_jax.observation.operators.channels import Channels as Channels
from slams_jax.observation.operators.coarsen import REMAINDERS as REMAINDERS, Coarsen as Coarsen, Remainder as Remainder
from slams_jax.observation.operators.points import (
    Points as Points,
    random_points as random_points,
    regular_points as regular_points,
)
from slams_jax.observation.operators.saturation import Saturate as Saturate
from slams_jax.observation.operators.stations import Stations as Stations
from slams_jax.observation.operators.swath import Swath as Swath
from slams_jax.observation.operators.temporal import (
    Identity as Identity,
    TimeIndex as TimeIndex,
    TimeSubsample as TimeSubsample,
)

__all__ = [
    "REMAINDERS",
    "Channels",
    "Coarsen",
    "Compose",
    "Identity",
    "Measured",
    "Operator",
    "Points",
    "Remainder",
    "Saturate",
    "Stations",
    "Swath",
    "TimeIndex",
    "TimeSubsample",
    "random_points",
    "regular_points",
]
