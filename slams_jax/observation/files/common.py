"""What every observation file reader shares: the checks of its arguments, and the observations it builds.

A reader is asked for ONE channel of ONE modality: :func:`target` checks the file exists, the channel is
one of the modality's and the model grid is usable, and returns a :class:`Target` that starts every
operator with ``TimeIndex((i,)) >> Channels((c,))`` and names every observation after the file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from slams_jax.errors import MissingFileError, ObservationError
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Channels, Operator, TimeIndex


@dataclasses.dataclass(frozen=True)
class Target:
    """One channel of one modality's trajectory, observed through a file.

    Attributes:
        path: The file (its name labels the observations, its path the error messages).
        modality: Observed modality (``state`` or an auxiliary one).
        variable: Name of the observed channel.
        channel: Index of that channel among the modality's variables.
        std: Noise standard deviation (physical units).
        shape: Shape of the modality's trajectory ``(time, lat, lon, channel)``.
    """

    path: Path
    modality: str
    variable: str
    channel: int
    std: float
    shape: tuple[int, int, int, int]

    def selection(self, state: int) -> Operator:
        """``TimeIndex((state,)) >> Channels((channel,))``: what every observation of the file starts with."""
        return TimeIndex((state,)) >> Channels((self.channel,))

    def observation(self, operator: Operator, values: np.ndarray, when: str) -> Observation:
        """The observation named ``"<file name>:<variable>@<when>"``."""
        name = f"{self.path.name}:{self.variable}@{when}"
        return Observation(modality=self.modality, operator=operator, values=values, std=self.std, name=name)


def target(
    path: str | os.PathLike,
    modality: str,
    variables: Sequence[str],
    variable: str,
    std: float,
    grid_lat: Any,
    grid_lon: Any,
    times: Any,
) -> tuple[Target, np.ndarray, np.ndarray, np.ndarray]:
    """Check a reader's arguments, in the order the readers report them.

    Returns:
        The :class:`Target`, the grid latitudes ``(lat,)`` and longitudes ``(lon,)`` as float64, and the
        trajectory times ``(time,)`` (at least 1-D).

    Raises:
        FileNotFoundError: The file does not exist.
        ObservationError: ``variable`` is not one of ``variables``, or the grid is not two 1-D arrays.
    """
    path = existing(path)
    channel = _channel(path, modality, variables, variable)
    grid_lat, grid_lon = _grid(path, grid_lat, grid_lon)
    times = np.atleast_1d(np.asarray(times))
    shape = (times.size, grid_lat.size, grid_lon.size, len(variables))
    return Target(path, modality, variable, channel, std, shape), grid_lat, grid_lon, times


def existing(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path`, or a :class:`FileNotFoundError` naming it."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"observation file {str(path)!r} does not exist")
    return path


def _channel(path: Path, modality: str, variables: Sequence[str], variable: str) -> int:
    """Channel index of ``variable`` among the modality's ``variables``."""
    names = [str(v) for v in variables]
    if variable not in names:
        raise ObservationError(
            f"observation file {str(path)!r}: unknown variable {variable!r} for the {modality!r} modality; "
            f"expected one of its channels {names}"
        )
    return names.index(variable)


def _grid(path: Path, grid_lat: Any, grid_lon: Any) -> tuple[np.ndarray, np.ndarray]:
    """The model grid's latitudes and longitudes as float64, each a non-empty 1-D array."""
    lat, lon = np.asarray(grid_lat, np.float64), np.asarray(grid_lon, np.float64)
    for name, value in (("grid_lat", lat), ("grid_lon", lon)):
        if value.ndim != 1 or value.size < 1:
            raise ObservationError(
                f"observation file {str(path)!r}: {name} must be a non-empty 1-D array of model grid "
                f"coordinates, got shape {value.shape}"
            )
    return lat, lon


def open_dataset(path: Path) -> xr.Dataset:
    """Open a netCDF file or (a ``.zarr`` path or a directory) a zarr store, lazily."""
    if path.is_dir() or path.suffix == ".zarr":
        try:
            import zarr  # noqa: F401
        except ImportError:
            raise ObservationError(
                f"observation file {str(path)!r} is a zarr store but the zarr package is not installed; "
                "install it (pip install zarr) or convert the store to netCDF"
            ) from None
        opener, kind = xr.open_zarr, "a zarr store"
    else:
        opener, kind = xr.open_dataset, "netCDF"
    try:
        return opener(path)
    except Exception as e:  # the backends raise many types; the message carries the cause
        raise ObservationError(f"observation file {str(path)!r}: could not be read as {kind}: {e}") from e


__all__ = ["Target", "existing", "open_dataset", "target"]
