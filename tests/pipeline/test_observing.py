"""``config.assimilation.files`` of kind ``stations``: observation tables through the one table reader."""

import types

import numpy as np
import pytest
import xarray as xr

from slams_jax.errors import ObservationError
from slams_jax.observation.operators import Channels, Stations, TimeIndex
from slams_jax.pipeline.configuration import AssimilationSettings, ObservationFileSettings
from slams_jax.pipeline.observing import read_observation_files

TIMES = np.datetime64("2021-01-25T00:00", "ns") + np.arange(3) * np.timedelta64(6, "h")
LAT = np.array([50.0, 47.5, 45.0, 42.5, 40.0])
LON = np.array([-10.0, -5.0, 0.0, 5.0, 10.0])  # regional, crossing 0 E: not periodic
MODEL = types.SimpleNamespace(settings=types.SimpleNamespace(data=types.SimpleNamespace(modalities=[
    types.SimpleNamespace(name="state", variables=("t2m", "u10")),
    types.SimpleNamespace(name="insitu", variables=("precip", "t2m")),
])))
WINDOW = xr.Dataset({"t2m": (("time", "latitude", "longitude"), np.zeros((3, 5, 5)))},
                    coords={"time": TIMES, "latitude": LAT, "longitude": LON})
CSV = """time,lat,lon,variable,observation,std
2021-01-25T00:00,45.0,-7.5,t2m,271.0,0.5
2021-01-25T06:00,41.0,2.5,precip,1.5,
2021-01-25T06:00,48.0,357.5,u10,3.0,2.0
2021-01-25T12:00,44.0,0.0,t2m,268.0,
"""


def _settings(path, **file):
    return AssimilationSettings(files=(ObservationFileSettings(path=str(path), kind="stations", **file),))


def test_a_table_maps_each_row_to_its_modality_and_channel(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_text(CSV)
    observations = read_observation_files(_settings(path, std=0.8), MODEL, WINDOW)
    summary = [(o.modality, o.operator.ops[0], o.operator.ops[1], o.values.ravel().tolist()) for o in observations]
    # t2m is a channel of both modalities: the file's modality (state) has it
    assert summary == [("state", TimeIndex((0,)), Channels((0,)), [271.0]),
                       ("state", TimeIndex((1,)), Channels((1,)), [3.0]),
                       ("insitu", TimeIndex((1,)), Channels((0,)), [1.5]),
                       ("state", TimeIndex((2,)), Channels((0,)), [268.0])]
    # per-row std where given, the file's std elsewhere
    np.testing.assert_array_equal([float(o.std_array().ravel()[0]) for o in observations],
                                  np.float32([0.5, 2.0, 0.8, 0.8]))
    assert all(isinstance(o.operator.ops[2], Stations) and o.operator.ops[2].periodic is False for o in observations)


def test_a_station_file_with_a_variable_reads_only_its_rows_and_accepts_value(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text(CSV.replace("observation", "value"))
    (obs,) = read_observation_files(_settings(path, variable="u10", std=0.8), MODEL, WINDOW)
    assert obs.name == "old.csv:u10@2021-01-25T06:00" and obs.values.ravel().tolist() == [3.0]
    assert float(obs.std_array().ravel()[0]) == 2.0
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(CSV.replace(",u10,", ",v850,"))
    with pytest.raises(ObservationError, match=r"unknown\.csv': unknown variable\(s\) \['v850'\] \(first at line 4\); "
                       r"the observed variables are \{'state': \['t2m', 'u10'\], 'insitu': \['precip'\]\}"):
        read_observation_files(_settings(unknown), MODEL, WINDOW)
