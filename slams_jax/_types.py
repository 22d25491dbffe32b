"""Array type aliases used across slams_jax, defined once.

Layout convention: channels last. A *field* is ``(*batch, lat, lon, channel)`` on a 2-D grid and
``(*batch, x, channel)`` on a 1-D grid; a *trajectory* adds a ``time`` axis before the spatial axes.
The first spatial axis of a 2-D grid is latitude (not periodic on the sphere), the second longitude
(periodic).
"""

from __future__ import annotations

from typing import Any, Callable, Union

import jax
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

PRNGKey = PRNGKeyArray
Scalar = Union[float, Float[Array, ""]]
Field = Float[Array, "*batch lat lon channel"]
Trajectory = Float[Array, "*batch time lat lon channel"]
Window = Float[Array, "*batch window lat lon channel"]
Mask = Bool[Array, "*batch lat lon channel"]
Time = Float[Array, "*batch"]
Embedding = Float[Array, "*batch features"]
PyTree = Any
ArrayLike = Union[jax.Array, np.ndarray]
# A noise predictor ``(x_t, t) -> eps`` of the diffused variable; ``t`` is a scalar or one time per batch element.
EpsFn = Callable[[Float[Array, "..."], Float[Array, "*batch"]], Float[Array, "..."]]

__all__ = [
    "Array", "Bool", "Float", "Int", "PRNGKey", "Scalar", "Field", "Trajectory", "Window", "Mask",
    "Time", "Embedding", "PyTree", "ArrayLike", "EpsFn",
]
