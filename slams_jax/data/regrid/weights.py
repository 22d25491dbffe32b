r"""The 1-D weight matrices of regridding: cell overlaps (conservative) and linear interpolation (bilinear).

Both methods are separable: the weight of source point :math:`(i, k)` in target point :math:`(j, l)` is a
latitude weight times a longitude weight, :math:`L_{ji} W_{lk}`, so a regridding is ``L @ x @ W.T`` with two
small sparse matrices, each ``(target, source)`` and indexed in the coordinates' own orders (they are built
on sorted axes and scattered back by :func:`_unsort`). Cell edges and periodicity follow
:mod:`slams_jax.data.regrid.grid`.

Conservative
------------
The overlap of two lat-lon cells is the product of a latitude overlap, in :math:`\sin`
(:math:`\sin \min(b, b') - \sin \max(a, a')`, :func:`conservative_lat`), and a longitude overlap in degrees
modulo 360 (:func:`conservative_lon`), so :math:`|T \cap S| = L_{ij} W_{kl}` up to the constant
:math:`R^2 \pi / 180`, which cancels in the normalized mean.

Bilinear
--------
Linear interpolation in latitude (in degrees) times linear interpolation in longitude (in degrees,
periodic on a global axis: between the last and the first centre it interpolates across the wrap).
A target latitude beyond the source's outermost row takes that row's values (clamping: on global grids
this only bridges the last half cell to a pole, e.g. a target row at 90 from a source row at 89.75;
the opposite pole is never used). A target longitude outside a *regional* source's longitudes gets no
weight at all (a zero row of :func:`bilinear_lon`), hence NaN.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from slams_jax.data.regrid.grid import is_global, lat_edges, lon_edges


def _unsort(matrix_sorted: np.ndarray, order_tgt: np.ndarray, order_src: np.ndarray) -> sp.csr_array:
    """Weights between sorted axes -> CSR matrix (target, source) indexed in the original orders."""
    matrix = np.zeros_like(matrix_sorted)
    matrix[np.ix_(order_tgt, order_src)] = matrix_sorted
    out = sp.csr_array(matrix)
    out.eliminate_zeros()
    return out


def conservative_lat(src: np.ndarray, tgt: np.ndarray) -> sp.csr_array:
    """Latitude overlaps ``sin(min(b, b')) - sin(max(a, a'))`` (>= 0) of target and source rows."""
    o_s, o_t = np.argsort(src), np.argsort(tgt)
    e_s, e_t = lat_edges(src[o_s]), lat_edges(tgt[o_t])
    upper = np.minimum(e_t[1:, None], e_s[None, 1:])
    lower = np.maximum(e_t[:-1, None], e_s[None, :-1])
    overlap = np.where(upper > lower, np.sin(np.deg2rad(upper)) - np.sin(np.deg2rad(lower)), 0.0)
    return _unsort(np.maximum(overlap, 0.0), o_t, o_s)


def conservative_lon(src: np.ndarray, tgt: np.ndarray) -> sp.csr_array:
    """Longitude overlaps in degrees, modulo 360, of target and source columns."""
    o_s, o_t = np.argsort(src), np.argsort(tgt)
    s, t = src[o_s], tgt[o_t]
    e_s, e_t = lon_edges(s, is_global(s)), lon_edges(t, is_global(t))
    # Bring the target edges next to the source's, then count the source cells shifted by whole turns:
    # each cell is shorter than 360 degrees, so shifts of -1, 0, +1 turns find every overlap.
    e_t = e_t + 360.0 * np.round((e_s[0] - e_t[0]) / 360.0)
    overlap = np.zeros((t.size, s.size))
    for turn in (-360.0, 0.0, 360.0):
        upper = np.minimum(e_t[1:, None], e_s[None, 1:] + turn)
        lower = np.maximum(e_t[:-1, None], e_s[None, :-1] + turn)
        overlap += np.maximum(upper - lower, 0.0)
    return _unsort(overlap, o_t, o_s)


def _linear_weights(sorted_src: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left index and weights ``(1 - w, w)`` of positions inside ``[sorted_src[0], sorted_src[-1]]``."""
    i = np.clip(np.searchsorted(sorted_src, positions, side="right") - 1, 0, sorted_src.size - 2)
    w = np.clip((positions - sorted_src[i]) / (sorted_src[i + 1] - sorted_src[i]), 0.0, 1.0)
    return i, 1.0 - w, w


def bilinear_lat(src: np.ndarray, tgt: np.ndarray) -> sp.csr_array:
    """Linear interpolation weights in latitude, clamped to the outermost source rows."""
    o_s, o_t = np.argsort(src), np.argsort(tgt)
    s = src[o_s]
    i, w0, w1 = _linear_weights(s, np.clip(tgt[o_t], s[0], s[-1]))
    matrix = np.zeros((tgt.size, src.size))
    rows = np.arange(tgt.size)
    np.add.at(matrix, (rows, i), w0)
    np.add.at(matrix, (rows, i + 1), w1)
    return _unsort(matrix, o_t, o_s)


def bilinear_lon(src: np.ndarray, tgt: np.ndarray) -> sp.csr_array:
    """Linear interpolation weights in longitude: periodic on a global source, zero rows outside a regional one."""
    o_s, o_t = np.argsort(src), np.argsort(tgt)
    s = src[o_s]
    n = s.size
    # Position of each target longitude in [s[0], s[0] + 360); values within rounding of s[0] + 360 are s[0].
    pos = s[0] + np.mod(tgt[o_t] - s[0], 360.0)
    pos = np.where(s[0] + 360.0 - pos < 1e-9, s[0], pos)
    rows = np.arange(tgt.size)
    matrix = np.zeros((tgt.size, n))
    if is_global(s):
        i, w0, w1 = _linear_weights(np.append(s, s[0] + 360.0), pos)
        np.add.at(matrix, (rows, i), w0)
        np.add.at(matrix, (rows, (i + 1) % n), w1)
    else:
        inside = pos <= s[-1] + 1e-9
        i, w0, w1 = _linear_weights(s, np.minimum(pos, s[-1]))
        np.add.at(matrix, (rows[inside], i[inside]), w0[inside])
        np.add.at(matrix, (rows[inside], i[inside] + 1), w1[inside])
    return _unsort(matrix, o_t, o_s)


__all__ = ["conservative_lat", "conservative_lon", "bilinear_lat", "bilinear_lon"]
