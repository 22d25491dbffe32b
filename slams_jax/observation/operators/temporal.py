"""Time selection: the whole trajectory, a strided subsample of its states, or states at given indices.

These operators only index the time axis (axis 0), so they accept any array ``(time, ..., channel)`` and
may follow :class:`~slams_jax.observation.operators.Points` or :class:`~slams_jax.observation.operators.Stations`.
"""

from __future__ import annotations

import numpy as np

from slams_jax._types import Array, Float
from slams_jax.observation.operators.base import IntsLike, Measured, Operator, _ints, _operator, _positive_int


@_operator
class Identity(Operator):
    """The full trajectory, unchanged."""

    def __call__(self, x: Float[Array, "time *space channel"]) -> Measured:
        self._validate(x.shape)
        return x


@_operator
class TimeSubsample(Operator):
    """Every ``every``-th state from ``offset``: ``x[offset::every]``.

    Attributes:
        every: Stride in time, >= 1.
        offset: First observed state, in ``[0, time)``.
    """

    every: int
    offset: int = 0

    def __post_init__(self):
        _positive_int(self.every, "every", "TimeSubsample")
        if not isinstance(self.offset, (int, np.integer)) or self.offset < 0:
            raise ValueError(f"TimeSubsample.offset={self.offset!r}: expected an integer >= 0")
        object.__setattr__(self, "every", int(self.every))
        object.__setattr__(self, "offset", int(self.offset))

    def _validate(self, shape: tuple[int, ...]) -> None:
        super()._validate(shape)
        if self.offset >= shape[0]:
            raise ValueError(f"{self!r}: offset {self.offset} is past the trajectory of {shape[0]} states")

    def __call__(self, x: Float[Array, "time *space channel"]) -> Measured:
        self._validate(x.shape)
        return x[self.offset :: self.every]


@_operator
class TimeIndex(Operator):
    """The states at given time indices, in the given order: ``x[indices]``.

    Attributes:
        indices: Non-negative time indices (duplicates allowed).
    """

    indices: IntsLike  # stored as tuple[int, ...]

    def __post_init__(self):
        indices = _ints(self.indices, "indices", "TimeIndex")
        if not indices:
            raise ValueError("TimeIndex.indices: expected at least one index")
        for i in indices:
            if i < 0:
                raise ValueError(f"TimeIndex.indices: negative index {i} is not supported, count from the start")
        object.__setattr__(self, "indices", indices)

    def _validate(self, shape: tuple[int, ...]) -> None:
        super()._validate(shape)
        for i in self.indices:
            if i >= shape[0]:
                raise ValueError(f"{self!r}: index {i} is past the trajectory of {shape[0]} states")

    def __call__(self, x: Float[Array, "time *space channel"]) -> Measured:
        self._validate(x.shape)
        return x[np.asarray(self.indices, np.int32)]



__all__ = ["Identity", "TimeIndex", "TimeSubsample"]
