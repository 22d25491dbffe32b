"""Observation files and tables: gridded fields and station records read into :class:`~slams_jax.observation.observations.Observation`.

Two kinds of user data are understood:

- **Gridded** (:func:`read_gridded`, :mod:`.gridded`): a netCDF file or a zarr store holding a variable of
  dims ``(time, <lat>, <lon>)``, spelled as :mod:`slams_jax.coords` accepts them (``lat``/``latitude``/``y``,
  ``lon``/``longitude``/``x``, ``time``/``valid_time``/``date``), either on the model grid or on a grid
  coarser by integer factors (then it is taken to observe block means of the model grid,
  :class:`~slams_jax.observation.operators.Coarsen`). NaN cells are not observed: each time becomes one
  observation of its finite cells (:class:`~slams_jax.observation.operators.Points`).
- **Observation tables** (:func:`read_table`, :mod:`.tables`; :func:`table_observations`, :mod:`.stations`):
  earth2studio's DataFrame schema, one row per measurement with columns ``time, lat, lon, variable,
  observation`` and optionally ``std`` and ``station``, from a CSV, parquet or netCDF file or a pandas
  DataFrame. Each (trajectory state, variable) becomes one observation interpolating the model grid
  bilinearly at its stations (:class:`~slams_jax.observation.operators.Stations`, any rectilinear grid);
  ``variable`` names a channel of a modality. The station files of ``config.assimilation.files``
  (:func:`read_stations`, ``value`` accepted for ``observation``) are such tables.

Every observation observes ONE channel ``c`` of ONE trajectory state: its operator starts with
``TimeIndex((i,)) >> Channels((c,))``. A file time ``t`` is assigned to the trajectory state ``i`` nearest to
it if ``|t - times[i]| <= time_tolerance`` (by default half the smallest spacing of ``times``); file times
matching no state are dropped (:mod:`.times`). Numeric times are compared as floats,
``datetime64``/``timedelta64`` times as int64 nanoseconds, and the two may not be mixed.

Every error is an :class:`~slams_jax.errors.ObservationError` (a missing file a
:class:`~slams_jax.errors.MissingFileError`, a :class:`FileNotFoundError`) whose message names the file, and
the variable, column, row or time at fault.
"""

from slams_jax.observation.files.gridded import read_gridded as read_gridded
from slams_jax.observation.files.stations import as_observations as as_observations
from slams_jax.observation.files.stations import read_stations as read_stations
from slams_jax.observation.files.stations import table_observations as table_observations
from slams_jax.observation.files.tables import OPTIONAL_COLUMNS as OPTIONAL_COLUMNS
from slams_jax.observation.files.tables import TABLE_COLUMNS as TABLE_COLUMNS
from slams_jax.observation.files.tables import read_table as read_table
from slams_jax.observation.files.tables import validate_table as validate_table

__all__ = ["OPTIONAL_COLUMNS", "TABLE_COLUMNS", "as_observations", "read_gridded", "read_stations", "read_table",
           "table_observations", "validate_table"]
