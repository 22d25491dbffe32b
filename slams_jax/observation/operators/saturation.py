r"""Saturation, the one nonlinear operator: :math:`\mathcal{A}(x) = s \tanh(x / s)`.

For :math:`|x| \ll s` it is close to the identity, and it never exceeds :math:`s` in magnitude, like an
instrument that saturates; its Jacobian :math:`1 - \tanh^2(x / s)` vanishes far from zero, so a guidance
step through it is weaker where the instrument saturates. ``Saturate.linear`` is ``False``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float
from slams_jax.observation.operators.base import Measured, Operator, _operator


@_operator
class Saturate(Operator):
    """Nonlinear saturation ``scale * tanh(x / scale)``: ~identity for ``|x| << scale``, bounded by ``scale``.

    Attributes:
        scale: Saturation level, > 0.
    """

    scale: float = 1.0
    linear: ClassVar[bool] = False

    def __post_init__(self):
        if not (isinstance(self.scale, (int, float, np.number)) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Saturate.scale={self.scale!r}: expected a finite number > 0")
        object.__setattr__(self, "scale", float(self.scale))

    def __call__(self, x: Float[Array, "time *space channel"]) -> Measured:
        self._validate(x.shape)
        scale = jnp.asarray(self.scale, x.dtype)
        return scale * jnp.tanh(x / scale)



__all__ = ["Saturate"]
