"""Channel selection: a subset of the last axis (variables or pressure levels), in a given order."""

from __future__ import annotations

import numpy as np

from slams_jax._types import Array, Float
from slams_jax.observation.operators.base import IntsLike, Measured, Operator, _ints, _operator


@_operator
class Channels(Operator):
    """A selection of channels (e.g. variables or pressure levels) on the last axis.

    Attributes:
        indices: Non-negative channel indices, in output order.
    """

    indices: IntsLike  # stored as tuple[int, ...]

    def __post_init__(self):
        indices = _ints(self.indices, "indices", "Channels")
        if not indices:
            raise ValueError("Channels.indices: expected at least one channel")
        for c in indices:
            if c < 0:
                raise ValueError(f"Channels.indices: negative channel {c} is not supported")
        object.__setattr__(self, "indices", indices)

    def _validate(self, shape: tuple[int, ...]) -> None:
        super()._validate(shape)
        for c in self.indices:
            if c >= shape[-1]:
                raise ValueError(f"{self!r}: channel {c} out of range for {shape[-1]} channels")

    def __call__(self, x: Float[Array, "time *space channel"]) -> Measured:
        self._validate(x.shape)
        return x[..., np.asarray(self.indices, np.int32)]



__all__ = ["Channels"]
