"""The networks' padding follows from the grid: what ``"auto"`` becomes, and which choices a grid refuses.

A convolution's padding is a boundary condition. On a latitude-longitude grid:

- longitude wraps (``circular``) only where the grid spans the globe; a regional grid gets ``edge``;
- latitude never wraps; it continues across the pole (``pole``) where the rows reach both poles of a
  global grid with an even number of longitudes (the row beyond a pole is the row before it, half way
  round), and gets ``edge`` otherwise (a regional grid, or a band of latitudes).

A non-geographic grid (the embedded Kolmogorov flow, doubly periodic) gets ``circular`` on both axes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from slams_jax.errors import ConfigError


def _reaches_poles(latitude: np.ndarray) -> bool:
    """Whether the outer rows lie within one row spacing of both poles (pole rows, cell-centred and Gaussian
    grids; not a latitude band)."""
    lat = np.sort(np.asarray(latitude, np.float64))
    if lat.size < 2:
        return False
    step = np.abs(np.diff(lat)).max()
    return bool(lat[0] - step <= -90 + 1e-6 * step and lat[-1] + step >= 90 - 1e-6 * step)


def resolve_padding(modes: Sequence[str], grid, what: str, divisor: int = 2) -> tuple[str, str]:
    """``modes`` (latitude, longitude) with ``"auto"`` replaced, checked against ``grid``.

    Args:
        modes: The configured modes, e.g. ``("auto", "auto")`` or ``("pole", "circular")``.
        grid: A :class:`~slams_jax.data.gridded.splits.Grid` (latitude, longitude, periodic), or ``None`` for a
            non-geographic, doubly periodic grid.
        what: The option's name in messages, e.g. ``config.score.padding``.
        divisor: What the longitude count must be a multiple of for the pole padding: 2 at one resolution,
            ``2 ** levels`` for a U-Net whose every level pads across the pole (a stride-2 level halves it).

    Raises:
        ConfigError: naming ``what`` for a mode the grid cannot take (``pole`` on a regional grid or an odd
            number of longitudes, ``circular`` longitude on a regional grid, ``circular`` latitude).
    """
    if len(modes) != 2:
        raise ConfigError(f"{what}={tuple(modes)!r}: expected two modes (latitude, longitude)")
    if grid is None:
        return tuple("circular" if m == "auto" else m for m in modes)
    n_lon = len(grid.longitude)
    pole_ok = grid.periodic and n_lon % divisor == 0 and _reaches_poles(grid.latitude)
    lat, lon = modes
    if lat == "auto":
        lat = "pole" if pole_ok else "edge"
    if lon == "auto":
        lon = "circular" if grid.periodic else "edge"
    kind = "global" if grid.periodic else "regional"
    if lat == "pole" and not pole_ok:
        why = ("its longitude does not span the globe" if not grid.periodic else
               f"it has an odd number of longitudes ({n_lon})" if n_lon % 2 else
               f"its {n_lon} longitudes are not a multiple of {divisor}, which every level of this network needs"
               if n_lon % divisor else "its rows do not reach both poles")
        raise ConfigError(f"{what}[0]='pole': the grid cannot continue across the pole ({why}); use 'auto' "
                          "(or 'edge', 'zeros', 'reflect')")
    if lat == "circular":
        raise ConfigError(f"{what}[0]='circular': latitude never wraps (the poles are not neighbours); use 'auto'")
    if lon == "circular" and not grid.periodic:
        raise ConfigError(f"{what}[1]='circular': this {kind} grid's longitudes ({grid.longitude[0]:g} to "
                          f"{grid.longitude[-1]:g}) do not wrap; use 'auto' (or 'edge'), or set "
                          "config.data.periodic=yes if the grid does span the globe")
    return lat, lon


__all__ = ["resolve_padding"]
