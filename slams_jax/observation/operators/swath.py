r"""Satellite-like swaths: a footprint average, of which a band of longitudes moving in time is seen.

The field is coarsened by the footprint (:class:`~slams_jax.observation.operators.Coarsen`, ``remainder="mean"``)
to :math:`n'` coarse longitude columns; at time index :math:`i` the columns
:math:`(o + i s + j) \bmod n'`, :math:`0 \le j < w`, are seen at every coarse latitude, for an offset
:math:`o`, a shift :math:`s` per step and a width :math:`w`. The band wraps around the longitude seam.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float
from slams_jax.observation.operators.base import Operator, _operator, _positive_int
from slams_jax.observation.operators.coarsen import Coarsen


@_operator
class Swath(Operator):
    """Satellite-like swaths: a footprint average, of which only a band of longitudes is seen at each time.

    The field is first averaged over ``footprint x footprint`` blocks (:class:`Coarsen` with
    ``remainder="mean"``); at time index ``i`` the coarse columns ``(offset + i * shift + j) mod lon'``,
    ``j < width``, are observed at every coarse latitude:
    ``(time, lat, lon, channel) -> (time, lat', width, channel)``.

    Attributes:
        footprint: Coarsening factor of the instrument's footprint, >= 1.
        width: Number of coarse longitude columns in a swath, at most ``lon'``.
        shift: Columns the swath moves per time step (any integer, negative moves west); ``None`` for
            ``width`` (adjacent swaths).
        offset: Coarse column of the first swath at time 0.
    """

    footprint: int
    width: int
    shift: int | None = None
    offset: int = 0
    spatial: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "footprint", _positive_int(self.footprint, "footprint", "Swath"))
        object.__setattr__(self, "width", _positive_int(self.width, "width", "Swath"))
        for field in ("shift", "offset"):
            value = getattr(self, field)
            if value is None and field == "shift":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"Swath.{field}={value!r}: expected an integer")
            object.__setattr__(self, field, int(value))

    @property
    def step(self) -> int:
        """Columns moved per time step (``shift``, or ``width`` when unset)."""
        return self.width if self.shift is None else self.shift

    @property
    def coarsen(self) -> Coarsen:
        return Coarsen(self.footprint, "mean")

    def columns(self, time: int, n_lon: int) -> np.ndarray:
        """Observed coarse columns ``(time, width)`` for a coarse grid of ``n_lon`` longitudes."""
        i = np.arange(time).reshape(time, 1)
        j = np.arange(self.width).reshape(1, self.width)
        return np.mod(self.offset + i * self.step + j, n_lon)

    def _validate(self, shape: tuple[int, ...]) -> None:
        super()._validate(shape)
        n_lon = -(-shape[2] // self.footprint)
        if self.width > n_lon:
            raise ValueError(f"{self!r}: width {self.width} exceeds the {n_lon} coarse longitude columns")

    def __call__(self, x: Float[Array, "time lat lon channel"]) -> Float[Array, "time clat width channel"]:
        self._validate(x.shape)
        coarse = self.coarsen(x)
        time, n_lon = coarse.shape[0], coarse.shape[2]
        cols = self.columns(time, n_lon).astype(np.int32)
        rows = np.arange(time, dtype=np.int32).reshape(time, 1)
        seen = coarse[rows, :, cols, :]  # advanced indices first: (time, width, lat', channel)
        return jnp.swapaxes(seen, 1, 2)



__all__ = ["Swath"]
