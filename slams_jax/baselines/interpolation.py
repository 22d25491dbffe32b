r"""Classical baselines next to which an assimilation is judged.

Every baseline reconstructs the state trajectory ``(time, lat, lon, channel)`` from the same observations
:math:`y_i = A_i x + \nu_i`, :math:`\nu_i \sim \mathcal{N}(0, s_i^2)` (:class:`~slams_jax.observation.observations.Observation`)
that a score-based method gets, with no prior beyond a climatology; all are taken to observe the reconstructed
modality (the caller keeps the observations of that modality, as :mod:`slams_jax.pipeline.assimilation` does).

**Normalized adjoint** (:func:`interpolation_baseline`): every linear observation is spread back onto the grid
with its operator's adjoint and normalized,

.. math:: \hat x = \frac{\sum_i A_i^\top (y_i / s_i^2)}{\sum_i A_i^\top (1 / s_i^2)}

wherever the denominator is positive (a block average becomes a constant block, a station its bilinear
footprint). States with no observation are linearly interpolated in time between the nearest observed states
(held constant before the first and after the last); points never observed take the climatological mean.

**Spatial interpolation** (:func:`spatial_interpolation`): observations whose operator is a selection of
states and channels followed by one spatial step, ``[TimeSubsample | TimeIndex] >> [Channels] >>
(Coarsen | Points | Stations)`` (optional steps may be missing and the time and channel selections, which act on other
axes, may come in any order, e.g. ``Points >> TimeIndex``; :class:`~slams_jax.observation.operators.Identity` alone
observes everything), are interpolated in space state by state and channel by channel:

- block means (:class:`~slams_jax.observation.operators.Coarsen`) sit at their block centres
  :math:`c_k = (\mathrm{start}_k + \mathrm{stop}_k - 1) / 2` in fine-grid index coordinates (a trailing
  partial block at the centre of the cells it has; cells cropped by ``remainder="crop"`` are outside every
  block) and are interpolated bilinearly, :math:`\hat x = W_\mathrm{lat} Y W_\mathrm{lon}^\top` with one
  linear-interpolation matrix :math:`W` per axis. Along a periodic axis (longitude on a geographic grid, both
  axes of Kolmogorov flow) a cell between the last and the first centre interpolates across the seam; along a
  non-periodic axis (latitude) a cell beyond the outermost centre takes its value (constant extrapolation), so
  the top rows never see the bottom ones. A field linear in (lat, lon) is thus reconstructed exactly between
  the outermost centres;
- point values (:class:`~slams_jax.observation.operators.Points`, and stations at the fractional grid
  position of their bilinear weights, :class:`~slams_jax.observation.operators.Stations`) are spread by
  inverse-distance weighting,

  .. math:: \hat x(g) = \frac{\sum_p d(g, p)^{-q}\, y_p}{\sum_p d(g, p)^{-q}},

  over all points or the ``neighbours`` nearest of cell :math:`g`, with :math:`d` the Euclidean distance in
  grid cells (periodic per axis as above) and :math:`q` the ``power``; an observed cell takes its observed
  value exactly (the mean of its values when several points share it), and any cell lies within the observed
  range (a convex combination).

When several observations see the same state and channel their reconstructions :math:`\hat x_i` are combined
with the inverse noise variances of that channel, :math:`\hat x = \sum_i s_i^{-2} \hat x_i / \sum_i s_i^{-2}`
(the interpolation error itself is not weighted: a precise coarse observation outweighs a noisier station
even at the station's cell). States with no observation of a channel are then linearly interpolated in time
between the nearest observed states of that channel (held constant before the first and after the last
observed state), as in :func:`interpolation_baseline`; channels never observed take the climatology. Other
operators (:class:`~slams_jax.observation.operators.Swath`, nonlinear ones, ...) are ignored with a warning.

Persistence and the climatological ensemble, which need no interpolation in time, are in
:mod:`slams_jax.baselines.references`.
"""

from __future__ import annotations

import dataclasses
import math
import operator as _operator
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import (Channels, Coarsen, Compose, Identity, Operator, Points, Stations, TimeIndex,
                                            TimeSubsample)


def _adjoint_sums(observations: Sequence[Observation], shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``sum_i A_i^T (y_i / s_i^2)`` and ``sum_i A_i^T (1 / s_i^2)`` over the linear observations."""
    zero = jnp.zeros(shape, jnp.float32)
    num = np.zeros(shape, np.float64)
    den = np.zeros(shape, np.float64)
    for obs in observations:
        if not obs.operator.linear:
            continue
        _, adjoint = jax.vjp(obs.operator, zero)
        w = 1.0 / np.square(obs.std_array())
        num += np.asarray(adjoint(jnp.asarray(obs.values * w, jnp.float32))[0], np.float64)
        den += np.asarray(adjoint(jnp.asarray(w, jnp.float32))[0], np.float64)
    return num, den


def observed_states(observations: Sequence[Observation], shape: tuple[int, ...]) -> list[int]:
    """Indices of the states of a ``shape`` trajectory that some linear observation sees."""
    _, den = _adjoint_sums(observations, shape)
    return [int(t) for t in np.flatnonzero((den.reshape(shape[0], -1) > 0).any(1))]


def interpolation_baseline(
    observations: Sequence[Observation], shape: tuple[int, ...], climatology: np.ndarray | float = 0.0,
) -> np.ndarray:
    """The state trajectory ``shape = (time, lat, lon, channel)`` interpolated from linear observations.

    Nonlinear observations are ignored (they have no adjoint); if none is linear, the climatology is returned.
    """
    num, den = _adjoint_sums(observations, shape)
    seen = den > 1e-12 * max(float(den.max(initial=0.0)), 1e-30)
    field = np.where(seen, num / np.where(seen, den, 1.0), np.nan)
    # time: linear interpolation between observed states, per point
    flat = field.reshape(shape[0], -1)
    observed = np.isfinite(flat)
    times = np.arange(shape[0])
    for j in np.flatnonzero(observed.any(0) & ~observed.all(0)):
        ok = observed[:, j]
        flat[:, j] = np.interp(times, times[ok], flat[ok, j])
    clim = np.broadcast_to(np.asarray(climatology, np.float64), shape)
    out = flat.reshape(shape)
    return np.where(np.isfinite(out), out, clim).astype(np.float32)


# ------------------------------------------------------------------------------------- spatial baselines
#: Bound on the number of float64 temporaries (distances, weights, gathered values) of one chunk of IDW cells.
_IDW_CHUNK = 1 << 22


@dataclasses.dataclass(frozen=True)
class _Structure:
    """What an observation sees, read off its operator ``[time] >> [channels] >> [Coarsen | Points]``.

    Attributes:
        times: ``(obs_time,)`` state index of each time of the values.
        channels: ``(obs_channel,)`` state channel of each channel of the values.
        spatial: The spatial step (:class:`Coarsen` or :class:`Points`), ``None`` when every cell is seen.
    """

    times: np.ndarray
    channels: np.ndarray
    spatial: Coarsen | Points | Stations | None


def _structure(op: Operator, shape: tuple[int, ...]) -> _Structure | None:
    """The structure of ``op`` on a trajectory of ``shape``, or ``None`` if it is not a supported one.

    Time and channel selections act on the first and last axes only, so they commute with the spatial step and
    with each other: they are accepted in any order and composed (``TimeSubsample(2) >> TimeIndex((1,))``
    selects state 2). At most one spatial step is accepted: a coarsened field observed at points, say, is not
    recognised. Indices are assumed valid (``op.check(shape)`` has passed).
    """
    times, channels, spatial = np.arange(shape[0]), np.arange(shape[-1]), None
    for step in op.ops if isinstance(op, Compose) else (op,):
        if isinstance(step, Identity):
            continue
        if isinstance(step, TimeSubsample):
            times = times[step.offset :: step.every]
        elif isinstance(step, TimeIndex):
            times = times[np.asarray(step.indices)]
        elif isinstance(step, Channels):
            channels = channels[np.asarray(step.indices)]
        elif isinstance(step, (Coarsen, Points, Stations)) and spatial is None:
            spatial = step
        else:
            return None
    return _Structure(times, channels, spatial)


def _interpolation_weights(n: int, factor: int, remainder: str, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation from the block centres of :class:`Coarsen` to the ``n`` cells of one axis.

    Block ``k`` covers cells ``[k f, min((k + 1) f, n))`` and sits at the mean of their indices. Along a periodic
    axis the centres repeat with period ``n``, so a cell outside ``[c_0, c_last]`` lies between the last centre
    and the first one shifted by ``n``; otherwise it takes the nearest outermost centre (weights 1 and 0).

    Returns:
        The two coarse cells ``(n, 2)`` that each cell interpolates between and their weights ``(n, 2)``.
    """
    m = -(-n // factor) if remainder == "mean" else n // factor
    starts = np.arange(m) * factor
    centres = (starts + np.minimum(starts + factor, n) - 1) / 2.0
    cells = np.arange(n, dtype=np.float64)
    if periodic:
        knots = np.concatenate([centres[-1:] - n, centres, centres[:1] + n])  # all cells lie in [knots[0], knots[-1])
        owner = np.concatenate([[m - 1], np.arange(m), [0]])
    else:
        knots, owner = centres, np.arange(m)
        cells = np.clip(cells, centres[0], centres[-1])  # constant extrapolation beyond the outermost centres
    left = np.clip(np.searchsorted(knots, cells, side="right") - 1, 0, max(knots.size - 2, 0))
    right = np.minimum(left + 1, knots.size - 1)
    span = knots[right] - knots[left]
    frac = np.where(span > 0, (cells - knots[left]) / np.where(span > 0, span, 1.0), 0.0)
    return np.stack([owner[left], owner[right]], axis=1), np.stack([1.0 - frac, frac], axis=1)


def _bilinear(coarsen: Coarsen, values: np.ndarray, grid: tuple[int, int], periodic: tuple[bool, bool]) -> np.ndarray:
    """Block means ``(time, lat', lon', channel)`` interpolated to the fine grid ``(time, lat, lon, channel)``."""
    (i_lat, w_lat), (i_lon, w_lon) = (
        _interpolation_weights(n, f, coarsen.remainder, p) for n, f, p in zip(grid, coarsen.factors, periodic)
    )
    out = np.empty((values.shape[0], *grid, values.shape[-1]), np.float32)
    for t in range(values.shape[0]):  # one state at a time: the float64 temporaries stay state-sized
        coarse = values[t].astype(np.float64)
        # two coarse neighbours per fine cell and axis: O(cells), not a dense (fine, coarse) matrix product
        rows = w_lat[:, 0, None, None] * coarse[i_lat[:, 0]] + w_lat[:, 1, None, None] * coarse[i_lat[:, 1]]
        out[t] = w_lon[None, :, 0, None] * rows[:, i_lon[:, 0]] + w_lon[None, :, 1, None] * rows[:, i_lon[:, 1]]
    return out


def _inverse_distance(
    points: Points | Stations, values: np.ndarray, grid: tuple[int, int], periodic: tuple[bool, bool], power: float,
    neighbours: int | None,
) -> np.ndarray:
    """Point values ``(time, point, channel)`` spread to the grid ``(time, lat, lon, channel)`` by IDW (stations
    at their fractional grid positions)."""
    n_time, n_points, n_channel = values.shape
    n_lat, n_lon = grid
    lat_p, lon_p = ((np.asarray(points.lat_index, np.float64), np.asarray(points.lon_index, np.float64))
                    if isinstance(points, Points) else points.positions)
    flat = values.astype(np.float64).transpose(1, 0, 2).reshape(n_points, -1)  # (point, time * channel)
    k = n_points if neighbours is None else min(neighbours, n_points)
    cells = np.arange(n_lat * n_lon)
    out = np.empty((cells.size, flat.shape[1]), np.float32)
    # chunks of cells bound the (cell, point) distances and the (cell, neighbour, feature) gathered values
    chunk = max(1, _IDW_CHUNK // max(n_points, k * flat.shape[1]))
    for start in range(0, cells.size, chunk):
        cell = cells[start : start + chunk]
        d_lat = np.abs((cell // n_lon)[:, None] - lat_p[None, :])
        d_lon = np.abs((cell % n_lon)[:, None] - lon_p[None, :])
        if periodic[0]:
            d_lat = np.minimum(d_lat, n_lat - d_lat)
        if periodic[1]:
            d_lon = np.minimum(d_lon, n_lon - d_lon)
        dist2 = np.square(d_lat) + np.square(d_lon)  # (cell, point) squared distances: no square root needed
        nearest = None
        if k < n_points:
            nearest = np.argpartition(dist2, k - 1, axis=1)[:, :k]
            dist2 = np.take_along_axis(dist2, nearest, axis=1)
        exact = dist2 == 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            # (d_min / d)^q rather than d^-q: the same normalized weights without overflow for large q
            weight = dist2.min(axis=1, keepdims=True) / dist2
            if power != 2:
                weight **= power / 2
        # an observed cell takes its value (the mean of the points on it), not a 0 * inf mix
        weight = np.where(exact.any(axis=1, keepdims=True), exact, weight)
        weight /= weight.sum(axis=1, keepdims=True)
        if nearest is None:
            out[start : start + cell.size] = weight @ flat
        else:
            out[start : start + cell.size] = np.einsum("gk,gkf->gf", weight, flat[nearest])
    return out.reshape(n_lat, n_lon, n_time, n_channel).transpose(2, 0, 1, 3)


def _trajectory_shape(shape: Sequence[int], caller: str) -> tuple[int, int, int, int]:
    try:
        dims = tuple(_operator.index(n) for n in shape)
    except TypeError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise ValueError(f"{caller}: shape={tuple(shape)!r}, expected a trajectory shape (time, lat, lon, channel) "
                         "of 4 positive integers")
    return dims


def _climatology(climatology: np.ndarray | float, shape: tuple[int, ...], caller: str) -> np.ndarray:
    clim = np.asarray(climatology, np.float32)
    try:
        return np.broadcast_to(clim, shape)
    except ValueError:
        raise ValueError(f"{caller}: climatology of shape {clim.shape} does not broadcast to the trajectory shape "
                         f"{shape}; expected a scalar, one value per channel or a field broadcastable to it") from None


def _spatial_fields(
    observations: Sequence[Observation], shape: tuple[int, int, int, int], periodic: Sequence[bool], power: float,
    neighbours: int | None, caller: str,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Inverse-variance weighted spatial reconstructions at the observed (state, channel) pairs.

    Returns:
        The field ``(time, lat, lon, channel)`` (float32, zero where unobserved) and the mask ``(time, channel)``
        of observed pairs; ``None`` if no observation is usable.
    """
    periodic = tuple(periodic)
    if len(periodic) != 2 or not all(isinstance(p, (bool, np.bool_)) for p in periodic):
        raise ValueError(f"{caller}: periodic={periodic!r}, expected a pair of booleans (lat, lon)")
    if not (isinstance(power, (int, float, np.number)) and math.isfinite(power) and power > 0):
        raise ValueError(f"{caller}: power={power!r}, expected a finite number > 0")
    if neighbours is not None and (isinstance(neighbours, bool) or not isinstance(neighbours, (int, np.integer))
                                   or neighbours < 1):
        raise ValueError(f"{caller}: neighbours={neighbours!r}, expected None (all points) or an integer >= 1")
    grid = shape[1:3]
    num = np.zeros(shape, np.float32)
    den = np.zeros((shape[0], shape[-1]), np.float64)
    for obs in observations:
        # a malformed observation is an error even when its operator is unsupported, as in check_observations
        try:
            expected = obs.operator.check(shape)
        except ValueError as e:
            raise ValueError(
                f"{caller}: observation {obs.name!r} does not fit a trajectory of shape {shape}: {e}"
            ) from e
        if obs.values.shape != expected:
            raise ValueError(f"{caller}: observation {obs.name!r} has values of shape {obs.values.shape} but "
                             f"{obs.operator!r} maps a trajectory of shape {shape} to {expected}")
        structure = _structure(obs.operator, shape)
        if structure is None:
            warnings.warn(
                f"{caller}: ignoring observation {obs.name!r}: its operator {obs.operator!r} is not "
                "[TimeSubsample | TimeIndex] >> [Channels] >> (Coarsen | Points | Stations)", stacklevel=4,
            )
            continue
        if isinstance(structure.spatial, Coarsen):
            field = _bilinear(structure.spatial, obs.values, grid, periodic)
        elif isinstance(structure.spatial, (Points, Stations)):
            field = _inverse_distance(structure.spatial, obs.values, grid, periodic, power, neighbours)
        else:
            field = obs.values
        # per channel; a per-value std (table rows) contributes its mean inverse variance
        weight = np.mean(1.0 / np.square(obs.std_array().astype(np.float64)).reshape(-1, obs.values.shape[-1]), 0)
        unique_channels = np.unique(structure.channels).size == structure.channels.size
        for i, t in enumerate(structure.times):  # a loop, not fancy-index +=, so repeated indices all count
            if unique_channels:
                num[t][..., structure.channels] += (field[i] * weight).astype(np.float32)
            else:
                for j, c in enumerate(structure.channels):
                    num[t, ..., c] += np.float32(weight[j]) * field[i, ..., j]
            np.add.at(den[t], structure.channels, weight)
    seen = den > 0
    if not seen.any():
        return None
    num /= np.where(seen, den, 1.0).astype(np.float32)[:, None, None, :]
    return num, seen


def _fill_time(field: np.ndarray, seen: np.ndarray, hold: bool) -> None:
    """Fill, in place, the unobserved states of each observed channel from its observed ones.

    Linear interpolation between the nearest observed states (``hold=False``) or the latest observed state
    (``hold=True``); before the first observed state both take the first one, after the last the linear
    interpolation holds the last one.
    """
    for c in range(field.shape[-1]):
        known = np.flatnonzero(seen[:, c])
        if known.size in (0, field.shape[0]):
            continue
        missing = np.flatnonzero(~seen[:, c])
        before = np.searchsorted(known, missing, side="right") - 1  # latest observed state, -1 if none
        low = known[np.maximum(before, 0)]
        if hold:
            field[missing, ..., c] = field[low, ..., c]
            continue
        high = known[np.minimum(before + 1, known.size - 1)]
        frac = np.where(high > low, (missing - low) / np.maximum(high - low, 1), 0.0).astype(np.float32)
        frac = frac[:, None, None]
        field[missing, ..., c] = (1 - frac) * field[low, ..., c] + frac * field[high, ..., c]


def reconstruct(
    observations, shape, climatology, periodic, power, neighbours, hold: bool, caller: str,
) -> np.ndarray:
    """The spatial reconstruction at observed states, filled in time by linear interpolation or, with
    ``hold``, by the latest observed state; never-observed channels take the climatology. Arguments as in
    :func:`spatial_interpolation`; ``caller`` names the public function in error messages."""
    shape = _trajectory_shape(shape, caller)
    clim = _climatology(climatology, shape, caller)
    fields = _spatial_fields(observations, shape, periodic, power, neighbours, caller)
    if fields is None:
        return np.array(clim, np.float32)
    field, seen = fields
    _fill_time(field, seen, hold)
    never = ~seen.any(axis=0)
    field[..., never] = clim[..., never]
    return field


def spatial_interpolation(
    observations: Sequence[Observation], shape: Sequence[int], climatology: np.ndarray | float = 0.0,
    periodic: tuple[bool, bool] = (False, True), power: float = 2.0, neighbours: int | None = None,
) -> np.ndarray:
    """The state trajectory interpolated in space (bilinear / IDW) and linearly in time from its observations.

    See the module docstring for the method. Observations whose operator is not
    ``[TimeSubsample | TimeIndex] >> [Channels] >> (Coarsen | Points | Stations)`` are ignored with a warning.

    Args:
        observations: Observations of the trajectory (their modality is not checked).
        shape: Trajectory shape ``(time, lat, lon, channel)``.
        climatology: Value of the channels never observed (or of everything when no observation is usable): a
            scalar, one value per channel or an array broadcastable to ``shape``.
        periodic: Whether the ``(lat, lon)`` axes are periodic: ``(False, True)`` on a geographic grid,
            ``(True, True)`` for doubly periodic flows (Kolmogorov).
        power: Exponent ``q`` of the inverse-distance weights ``d^-q`` of point observations, > 0.
        neighbours: Number of nearest points that inform a cell; ``None`` for all of them.

    Returns:
        The reconstruction ``(time, lat, lon, channel)``, float32.

    Raises:
        ValueError: An argument is invalid, or an observation does not fit ``shape`` (the message names it).
    """
    return reconstruct(observations, shape, climatology, periodic, power, neighbours, False, "spatial_interpolation")


__all__ = ["interpolation_baseline", "observed_states", "spatial_interpolation"]
