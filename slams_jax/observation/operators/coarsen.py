r"""Spatial coarsening: block means of the grid, as one averaging matrix per axis.

Coarsening of a grid of :math:`n` cells by a factor :math:`f` averages blocks of :math:`f` consecutive
cells along each of latitude and longitude. When :math:`f` does not divide :math:`n`:

- ``remainder="mean"`` gives :math:`\lceil n / f \rceil` coarse cells, the trailing partial block of
  :math:`n - f \lfloor n / f \rfloor` cells being the mean of the cells it has;
- ``remainder="crop"`` drops the trailing cells and gives :math:`\lfloor n / f \rfloor` coarse cells.

Blocks never wrap around the longitude seam. With the ``(n', n)`` block-mean matrices :math:`A_{lat}` and
:math:`A_{lon}`, each state and channel maps to :math:`A_{lat} X A_{lon}^\top`, so the operator is linear
and its adjoint applies the transposed matrices.
"""

from __future__ import annotations

import functools
from typing import ClassVar, Literal

import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float
from slams_jax.observation.operators.base import _HIGHEST, Operator, _ints, _operator

Remainder = Literal["mean", "crop"]
REMAINDERS = ("mean", "crop")


@functools.lru_cache(maxsize=64)
def _averaging_matrix(n: int, factor: int, remainder: str) -> np.ndarray:
    """``(m, n)`` block-mean matrix of :class:`Coarsen` along one axis (read-only, cached)."""
    m = -(-n // factor) if remainder == "mean" else n // factor
    matrix = np.zeros((m, n), np.float64)
    for k in range(m):
        start, stop = k * factor, min((k + 1) * factor, n)
        matrix[k, start:stop] = 1.0 / (stop - start)
    matrix.flags.writeable = False
    return matrix



@_operator
class Coarsen(Operator):
    """Block mean over ``(lat, lon)``: ``(time, lat, lon, channel) -> (time, lat', lon', channel)``.

    Implemented as one averaging matrix per axis (``A_lat x A_lon^T`` per state and channel), so the adjoint
    is the transposed matrices. When a factor does not divide the grid, ``remainder="mean"`` keeps the
    trailing partial block (``ceil(n / f)`` cells, the last the mean of the cells it has) and ``"crop"``
    drops it (``floor(n / f)`` cells).

    Attributes:
        factor: Block size, one int for both axes or ``(lat, lon)``.
        remainder: ``"mean"`` or ``"crop"``, the rule for a grid not divisible by the factor.
    """

    factor: int | tuple[int, int]
    remainder: Remainder = "mean"
    spatial: ClassVar[bool] = True

    def __post_init__(self):
        factors = _ints(self.factor, "factor", "Coarsen")
        if len(factors) not in (1, 2) or min(factors) < 1:
            raise ValueError(f"Coarsen.factor={self.factor!r}: expected an int >= 1 or a pair (lat, lon) of them")
        if self.remainder not in REMAINDERS:
            raise ValueError(f"Coarsen.remainder={self.remainder!r}: expected one of {REMAINDERS}")
        object.__setattr__(self, "factor", factors[0] if len(factors) == 1 else factors)

    @property
    def factors(self) -> tuple[int, int]:
        """The factor as a ``(lat, lon)`` pair."""
        return (self.factor, self.factor) if isinstance(self.factor, int) else tuple(self.factor)

    def matrices(self, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The averaging matrices ``(lat', lat)`` and ``(lon', lon)`` for a ``(lat, lon)`` grid (float64)."""
        return tuple(_averaging_matrix(n, f, self.remainder) for n, f in zip(grid, self.factors))

    def _validate(self, shape: tuple[int, ...]) -> None:
        super()._validate(shape)
        if self.remainder == "crop" and any(n < f for n, f in zip(shape[1:3], self.factors)):
            raise ValueError(
                f"{self!r}: the grid {shape[1]} x {shape[2]} is smaller than the factor {self.factors}, "
                "cropping leaves no cell"
            )

    def __call__(self, x: Float[Array, "time lat lon channel"]) -> Float[Array, "time clat clon channel"]:
        self._validate(x.shape)
        a_lat, a_lon = (jnp.asarray(a, x.dtype) for a in self.matrices(x.shape[1:3]))
        y = jnp.einsum("il,tlwc->tiwc", a_lat, x, precision=_HIGHEST)
        return jnp.einsum("jw,tiwc->tijc", a_lon, y, precision=_HIGHEST)



__all__ = ["REMAINDERS", "Coarsen", "Remainder"]
