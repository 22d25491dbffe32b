"""Observation files: gridded fields and station records read into :class:`~slams_jax.observation.observations.Observation`.

Two kinds of user files are understood:

- **Gridded** (:func:`read_gridded`, :mod:`.gridded`): a netCDF file or a zarr store holding a variable of
  dims ``(time, <lat>, <lon>)``, spelled as :mod:`slams_jax.coords` accepts them (``lat``/``latitude``/``y``,
  ``lon``/``longitude``/``x``, ``time``/``valid_time``/``date``), either on the model grid or on a grid
  coarser by integer factors (then it is taken to observe block means of the model grid,
  :class:`~slams_jax.observation.operators.Coarsen`). NaN cells are not observed: each time becomes one
  observation of its finite cells (:class:`~slams_jax.observation.operators.Points`).
- **Stations** (:func:`read_stations`, :mod:`.stations`, the tables read by :mod:`.tables`): a CSV file with
  columns ``time, lat, lon, value`` (and optionally ``variable``) or a netCDF file with 1-D variables of
  those names along one dimension. Each time becomes one observation interpolating the model grid
  bilinearly at its stations (:class:`~slams_jax.observation.operators.Stations`).

Every observation observes ONE channel ``c = variables.index(variable)`` of ONE trajectory state: its
operator starts with ``TimeIndex((i,)) >> Channels((c,))`` (:mod:`.common`). A file time ``t`` is assigned
to the trajectory state ``i`` nearest to it if ``|t - times[i]| <= time_tolerance`` (by default half the
smallest spacing of ``times``); file times matching no state are dropped (:mod:`.times`). Numeric times are
compared as floats, ``datetime64``/``timedelta64`` times as int64 nanoseconds, and the two may not be mixed.

Every error is an :class:`~slams_jax.errors.ObservationError` (a missing file a
:class:`~slams_jax.errors.MissingFileError`, a :class:`FileNotFoundError`) whose message names the file, and
the variable, column, row or time at fault.
"""

from slams_jax.observation.files.gridded import read_gridded as read_gridded
from slams_jax.observation.files.stations import read_stations as read_stations
from slams_jax.observation.files.tables import STATION_COLUMNS as STATION_COLUMNS

__all__ = ["STATION_COLUMNS", "read_gridded", "read_stations"]
