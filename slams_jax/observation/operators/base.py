"""The operator base class, composition ``a >> b``, and the argument checks every operator shares.

An :class:`Operator` is a frozen dataclass (hashable, so a static argument of :func:`jax.jit`) holding its
constants as Python tuples; :meth:`Operator.check` validates an input shape with a :class:`ValueError` that
names the operator, and :class:`Compose` chains operators, ``(a >> b)(x) == b(a(x))``.
"""

from __future__ import annotations

import abc
import dataclasses
import numbers
import operator
from collections.abc import Sequence
from typing import Any, ClassVar, Union

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float

Measured = Float[Array, "obs_time *obs obs_channel"]
_HIGHEST = jax.lax.Precision.HIGHEST

# What a constructor accepts for a list of indices or numbers (a sequence, numpy scalars included, or a 1-D
# array); __post_init__ stores a tuple of Python ints / floats and refuses bools, non-integers and NaN.
IntsLike = Union[Sequence[numbers.Integral], np.ndarray, numbers.Integral]
FloatsLike = Union[Sequence[numbers.Real], np.ndarray]


# --------------------------------------------------------------------------------------------------- helpers
def _summary(value: Any) -> str:
    """Repr of a field value, long tuples of numbers shortened (Stations on an ERA5 grid has 1440 longitudes)."""
    if isinstance(value, tuple) and len(value) > 8 and not any(isinstance(v, Operator) for v in value):
        head = ", ".join(repr(v) for v in value[:3])
        tail = ", ".join(repr(v) for v in value[-2:])
        return f"({head}, ..., {tail}; {len(value)} values)"
    return repr(value)


def _ints(value: Any, name: str, owner: str) -> tuple[int, ...]:
    """A tuple of Python ints from an int, a sequence or an integer array; refuses floats and bools."""
    values = np.asarray(value)
    if values.ndim == 0:
        values = values.reshape(1)
    if values.ndim != 1:
        raise ValueError(f"{owner}.{name}: expected a flat sequence of integers, got shape {values.shape}")
    if values.size and not (np.issubdtype(values.dtype, np.integer) and values.dtype != np.bool_):
        raise ValueError(f"{owner}.{name}: expected integers, got {value!r}")
    return tuple(int(v) for v in values)


def _floats(value: Any, name: str, owner: str) -> tuple[float, ...]:
    """A tuple of finite Python floats from a number, a sequence or an array."""
    values = np.asarray(value, dtype=np.float64)
    if values.ndim == 0:
        values = values.reshape(1)
    if values.ndim != 1:
        raise ValueError(f"{owner}.{name}: expected a flat sequence of numbers, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{owner}.{name}: expected finite numbers, got {_summary(tuple(values.tolist()))}")
    return tuple(float(v) for v in values)


def _positive_int(value: Any, name: str, owner: str) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{owner}.{name}={value!r}: expected an integer") from None
    if value < 1:
        raise ValueError(f"{owner}.{name}={value!r}: expected an integer >= 1")
    return value



# ------------------------------------------------------------------------------------------------ base class
class Operator(abc.ABC):
    """Measurement operator ``A``: one trajectory ``(time, lat, lon, channel)`` to an observation.

    Subclasses are frozen dataclasses (hashable, so they can be static arguments of :func:`jax.jit`) that
    implement :meth:`__call__` and, for explicit shape errors, :meth:`_validate`.

    Attributes:
        linear: Whether the operator is linear (its vector-Jacobian product is then its adjoint).
    """

    linear: ClassVar[bool] = True
    #: Whether the input must be a trajectory ``(time, lat, lon, channel)``; otherwise any rank >= 2 with
    #: time first and channel last is accepted.
    spatial: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, x: Float[Array, "time *space channel"]) -> Measured:
        """Apply the operator to one trajectory; the output's last axis is the channel axis."""

    def _validate(self, shape: tuple[int, ...]) -> None:
        """Raise a :class:`ValueError` if ``shape`` is not a valid input; the base checks the rank only."""
        if self.spatial:
            if len(shape) != 4:
                raise ValueError(f"{self!r}: expected a trajectory (time, lat, lon, channel), got shape {shape}")
        elif len(shape) < 2:
            raise ValueError(f"{self!r}: expected an array (time, ..., channel) with at least 2 axes, got shape {shape}")

    def check(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Validate an input shape and return the output shape.

        Args:
            input_shape: Shape of one trajectory, e.g. ``(time, lat, lon, channel)``.

        Returns:
            The shape of ``self(x)`` for ``x`` of that shape.

        Raises:
            ValueError: The shape does not fit the operator; the message names the operator and what was
                expected.
        """
        shape = tuple(int(s) for s in input_shape)
        self._validate(shape)
        out = jax.eval_shape(self, jax.ShapeDtypeStruct(shape, jnp.float32))
        return tuple(out.shape)

    def __rshift__(self, other: Operator) -> Compose:
        """``self >> other``: apply ``self``, then ``other``."""
        if not isinstance(other, Operator):
            return NotImplemented
        return Compose(_steps(self) + _steps(other))

    def __repr__(self) -> str:
        if not dataclasses.is_dataclass(self):
            return f"{type(self).__name__}()"
        args = ", ".join(f"{f.name}={_summary(getattr(self, f.name))}" for f in dataclasses.fields(self) if f.repr)
        return f"{type(self).__name__}({args})"


def _steps(op: Operator) -> tuple[Operator, ...]:
    return op.ops if isinstance(op, Compose) else (op,)


# repr=False: the summarizing Operator.__repr__ is inherited instead of the dataclass one.
_operator = dataclasses.dataclass(frozen=True, repr=False)


@_operator
class Compose(Operator):
    """Operators applied in order: ``Compose((a, b))(x) == b(a(x))``; nested compositions are flattened.

    Attributes:
        ops: The operators, first applied first.
    """

    ops: tuple[Operator, ...]

    def __post_init__(self):
        ops = tuple(self.ops) if isinstance(self.ops, (list, tuple)) else (self.ops,)
        if not ops:
            raise ValueError("Compose.ops: expected at least one operator")
        for op in ops:
            if not isinstance(op, Operator):
                raise TypeError(f"Compose.ops: expected Operator instances, got {op!r}")
        object.__setattr__(self, "ops", tuple(step for op in ops for step in _steps(op)))

    @property
    def linear(self) -> bool:  # type: ignore[override]
        return all(op.linear for op in self.ops)

    def check(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in input_shape)
        for op in self.ops:
            shape = op.check(shape)
        return shape

    def __call__(self, x: Float[Array, "time *space channel"]) -> Measured:
        for op in self.ops:
            x = op(x)
        return x



__all__ = ["Compose", "FloatsLike", "IntsLike", "Measured", "Operator"]
