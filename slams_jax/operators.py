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
- Longitude (axis 2) is periodic, latitude (axis 1) is not: :class:`Stations` interpolates across the
  longitude seam and :class:`Swath` wraps around it, while a station beyond the latitude range is refused.
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

Coarsening of a grid of :math:`n` cells by a factor :math:`f` averages blocks of :math:`f` consecutive
cells along each of latitude and longitude. When :math:`f` does not divide :math:`n`:

- ``remainder="mean"`` gives :math:`\lceil n / f \rceil` coarse cells, the trailing partial block of
  :math:`n - f \lfloor n / f \rfloor` cells being the mean of the cells it has;
- ``remainder="crop"`` drops the trailing cells and gives :math:`\lfloor n / f \rfloor` coarse cells.

Blocks never wrap around the longitude seam.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import operator
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float, PRNGKey

Remainder = Literal["mean", "crop"]
REMAINDERS = ("mean", "crop")

Measured = Float[Array, "time *obs channel"]
_HIGHEST = jax.lax.Precision.HIGHEST


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


# ------------------------------------------------------------------------------------------ time, channels
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

    indices: tuple[int, ...]

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


@_operator
class Channels(Operator):
    """A selection of channels (e.g. variables or pressure levels) on the last axis.

    Attributes:
        indices: Non-negative channel indices, in output order.
    """

    indices: tuple[int, ...]

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


# ------------------------------------------------------------------------------------------------- spatial
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


@_operator
class Points(Operator):
    """Grid cells observed at every time: ``(time, lat, lon, channel) -> (time, n_points, channel)``.

    Attributes:
        lat_index: Latitude index of each point.
        lon_index: Longitude index of each point (same length).
    """

    lat_index: tuple[int, ...]
    lon_index: tuple[int, ...]
    spatial: ClassVar[bool] = True

    def __post_init__(self):
        lat, lon = _ints(self.lat_index, "lat_index", "Points"), _ints(self.lon_index, "lon_index", "Points")
        if len(lat) != len(lon):
            raise ValueError(f"Points: {len(lat)} latitude indices but {len(lon)} longitude indices")
        if not lat:
            raise ValueError("Points: expected at least one point")
        if min(lat) < 0 or min(lon) < 0:
            raise ValueError("Points: negative indices are not supported")
        object.__setattr__(self, "lat_index", lat)
        object.__setattr__(self, "lon_index", lon)

    @property
    def n_points(self) -> int:
        return len(self.lat_index)

    def _validate(self, shape: tuple[int, ...]) -> None:
        super()._validate(shape)
        for axis, name, index in ((1, "latitude", self.lat_index), (2, "longitude", self.lon_index)):
            k = int(np.argmax(index))
            if index[k] >= shape[axis]:
                raise ValueError(
                    f"{self!r}: point {k} has {name} index {index[k]}, out of range for {shape[axis]} {name}s"
                )

    def __call__(self, x: Float[Array, "time lat lon channel"]) -> Float[Array, "time point channel"]:
        self._validate(x.shape)
        return x[:, np.asarray(self.lat_index, np.int32), np.asarray(self.lon_index, np.int32), :]


def random_points(key: PRNGKey, grid: tuple[int, int], density: float, valid: np.ndarray | None = None) -> Points:
    """Distinct grid cells drawn uniformly at random, e.g. sparse in-situ stations.

    Args:
        key: A concrete PRNG key (typed or raw ``uint32``); the same key gives the same points.
        grid: ``(lat, lon)`` size of the grid.
        density: Fraction of the cells observed, in ``(0, 1]``.
        valid: Optional boolean ``(lat, lon)`` mask: points are drawn among its true cells only (e.g. where a
            precipitation field exists), at most all of them.

    Returns:
        :class:`Points` at exactly ``max(1, round(density * lat * lon))`` distinct cells (fewer if ``valid``
        has fewer), sorted by flat (row-major) index.
    """
    if not (isinstance(density, (int, float, np.number)) and 0.0 < density <= 1.0):
        raise ValueError(f"random_points: density={density!r}, expected a fraction in (0, 1]")
    n_lat, n_lon = (_positive_int(n, "grid", "random_points") for n in grid)
    cells = np.arange(n_lat * n_lon)
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != (n_lat, n_lon):
            raise ValueError(f"random_points: valid mask of shape {valid.shape}, expected {(n_lat, n_lon)}")
        cells = np.flatnonzero(valid)
        if cells.size == 0:
            raise ValueError("random_points: the valid mask has no true cell")
    count = min(max(1, round(density * n_lat * n_lon)), cells.size)
    # numpy from the key's bits: exact, deterministic and without compiling a sampler for every grid.
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    seed = np.asarray(data).astype(np.uint32).ravel().tolist()
    flat = np.sort(np.random.default_rng(seed).choice(cells, size=count, replace=False))
    return Points(tuple(int(i) for i in flat // n_lon), tuple(int(j) for j in flat % n_lon))


def regular_points(grid: tuple[int, int], gap: int, offset: int | tuple[int, int] | None = None) -> Points:
    """The cells of a regular lattice, every ``gap`` cells along latitude and longitude, e.g. sparse stations.

    The lattice holds about ``1 / gap**2`` of the cells: rows ``offset_lat, offset_lat + gap, ...`` below
    ``lat`` times columns ``offset_lon, offset_lon + gap, ...`` below ``lon``. The default offset ``gap // 2``
    centres the lattice in its ``gap x gap`` blocks, so a grid divisible by ``gap`` has one point per block.

    Args:
        grid: ``(lat, lon)`` size of the grid.
        gap: Spacing of the lattice in grid cells, >= 1 (1 observes every cell).
        offset: Index of the first row and column, one int for both or ``(lat, lon)``, each >= 0; ``None`` for
            ``gap // 2``.

    Returns:
        :class:`Points` at the lattice cells, sorted by flat (row-major) index.
    """
    n_lat, n_lon = (_positive_int(n, "grid", "regular_points") for n in grid)
    gap = _positive_int(gap, "gap", "regular_points")
    offsets = _ints(gap // 2 if offset is None else offset, "offset", "regular_points")
    if len(offsets) not in (1, 2) or min(offsets) < 0:
        raise ValueError(f"regular_points.offset={offset!r}: expected an int >= 0 or a pair (lat, lon) of them")
    off_lat, off_lon = offsets * 2 if len(offsets) == 1 else offsets
    rows, cols = np.arange(off_lat, n_lat, gap), np.arange(off_lon, n_lon, gap)
    if rows.size == 0 or cols.size == 0:
        raise ValueError(
            f"regular_points: offset ({off_lat}, {off_lon}) is outside the {n_lat} x {n_lon} (lat x lon) grid, "
            f"so a lattice with gap {gap} has no point in it; expected an offset below the grid size"
        )
    lat, lon = np.meshgrid(rows, cols, indexing="ij")
    return Points(tuple(int(i) for i in lat.ravel()), tuple(int(j) for j in lon.ravel()))


@_operator
class Stations(Operator):
    """Bilinear interpolation of the grid at stations: ``(time, lat, lon, channel) -> (time, station, channel)``.

    Longitude is periodic with ``period`` (a station between the last and the first grid column interpolates
    across the seam); latitude is not, and a station outside the grid's latitude range is refused. The
    corner indices and weights are computed once, in float64, at construction.

    Attributes:
        lat: Station latitudes (degrees), within ``[min(grid_lat), max(grid_lat)]``.
        lon: Station longitudes (degrees), any real number (reduced modulo ``period``).
        grid_lat: Latitudes of the grid rows, strictly ascending or descending (ERA5: 90 to -90); need not be
            uniform.
        grid_lon: Longitudes of the grid columns, ascending, uniformly spaced by ``period / len(grid_lon)``.
        period: Period of the longitude.
    """

    lat: tuple[float, ...]
    lon: tuple[float, ...]
    grid_lat: tuple[float, ...]
    grid_lon: tuple[float, ...]
    period: float = 360.0
    spatial: ClassVar[bool] = True
    # (station, 4) corner indices and bilinear weights; derived, so not compared, hashed or shown.
    _lat_index: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    _lon_index: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    _weight: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        name = "Stations"
        lat, lon = _floats(self.lat, "lat", name), _floats(self.lon, "lon", name)
        grid_lat, grid_lon = _floats(self.grid_lat, "grid_lat", name), _floats(self.grid_lon, "grid_lon", name)
        period = float(self.period)
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"Stations.period={self.period!r}: expected a finite number > 0")
        if len(lat) != len(lon):
            raise ValueError(f"Stations: {len(lat)} latitudes but {len(lon)} longitudes")
        if not lat:
            raise ValueError("Stations: expected at least one station")
        for field, value in (("lat", lat), ("lon", lon), ("grid_lat", grid_lat), ("grid_lon", grid_lon)):
            object.__setattr__(self, field, value)
        object.__setattr__(self, "period", period)

        lat_index, lat_weight = self._lat_corners(np.asarray(lat), np.asarray(grid_lat))
        lon_index, lon_weight = self._lon_corners(np.asarray(lon), np.asarray(grid_lon), period)
        # corners (a, b) for a, b in {0, 1}: (lat0, lon0), (lat0, lon1), (lat1, lon0), (lat1, lon1)
        object.__setattr__(self, "_lat_index", np.repeat(lat_index, 2, axis=1).astype(np.int32))
        object.__setattr__(self, "_lon_index", np.tile(lon_index, (1, 2)).astype(np.int32))
        object.__setattr__(self, "_weight", np.repeat(lat_weight, 2, axis=1) * np.tile(lon_weight, (1, 2)))

    @staticmethod
    def _lat_corners(lat: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bracketing rows ``(station, 2)`` and their weights; refuses stations outside the grid's range."""
        n = grid.size
        if n < 2:
            raise ValueError(f"Stations.grid_lat: expected at least 2 latitudes, got {n}")
        step = np.diff(grid)
        if not (np.all(step > 0) or np.all(step < 0)):
            raise ValueError("Stations.grid_lat: expected strictly ascending or strictly descending latitudes")
        low, high = float(grid.min()), float(grid.max())
        for k, value in enumerate(lat):
            if not low <= value <= high:
                raise ValueError(
                    f"Stations: station {k} at latitude {value} is outside the grid's latitude range [{low}, {high}]"
                )
        descending = step[0] < 0
        ascending = grid[::-1] if descending else grid
        i0 = np.clip(np.searchsorted(ascending, lat, side="right") - 1, 0, n - 2)
        w = np.clip((lat - ascending[i0]) / (ascending[i0 + 1] - ascending[i0]), 0.0, 1.0)
        index = np.stack([i0, i0 + 1], axis=1)
        if descending:
            index = n - 1 - index
        return index, np.stack([1.0 - w, w], axis=1)

    @staticmethod
    def _lon_corners(lon: np.ndarray, grid: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
        """Bracketing columns ``(station, 2)`` (the second wrapping to column 0) and their weights."""
        n = grid.size
        if n < 1:
            raise ValueError("Stations.grid_lon: expected at least 1 longitude")
        spacing = period / n
        expected = grid[0] + spacing * np.arange(n)
        if np.max(np.abs(grid - expected)) > 1e-3 * spacing:
            raise ValueError(
                f"Stations.grid_lon: expected {n} ascending longitudes uniformly spaced by period / {n} = {spacing}"
            )
        u = np.mod(lon - grid[0], period) / spacing
        j0 = np.minimum(np.floor(u), n - 1).astype(np.int64)
        w = np.clip(u - j0, 0.0, 1.0)
        return np.stack([j0, (j0 + 1) % n], axis=1), np.stack([1.0 - w, w], axis=1)

    @property
    def n_stations(self) -> int:
        return len(self.lat)

    def _validate(self, shape: tuple[int, ...]) -> None:
        super()._validate(shape)
        if shape[1:3] != (len(self.grid_lat), len(self.grid_lon)):
            raise ValueError(
                f"{self!r}: built for a {len(self.grid_lat)} x {len(self.grid_lon)} (lat x lon) grid, "
                f"got a {shape[1]} x {shape[2]} grid"
            )

    def __call__(self, x: Float[Array, "time lat lon channel"]) -> Float[Array, "time station channel"]:
        self._validate(x.shape)
        corners = x[:, self._lat_index, self._lon_index, :]  # (time, station, 4, channel)
        return jnp.einsum("tskc,sk->tsc", corners, jnp.asarray(self._weight, x.dtype), precision=_HIGHEST)


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
