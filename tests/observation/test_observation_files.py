"""Reading gridded and station observation files into Observation objects."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from slams_jax import coords
from slams_jax.observation.files import read_gridded, read_stations
from slams_jax.observation.observations import Observation, ObservationError, check_observations
from slams_jax.observation.operators import Channels, Coarsen, Points, Stations, TimeIndex

VARIABLES = ("u", "v")
TIMES = (np.arange(6) * 0.25).astype(np.float32)  # like the Kolmogorov dataset's nondimensional time
N_LAT, N_LON = 8, 12
GRID_LAT = np.linspace(-70.0, 70.0, N_LAT)  # ascending
GRID_LON = np.arange(N_LON) * 30.0


def _apply(obs: Observation, truth: np.ndarray) -> np.ndarray:
    return np.asarray(obs.operator(jnp.asarray(truth, jnp.float32)))


def _gridded_file(path, data, times, lat, lon, name="v", lat_dim="lat", lon_dim="lon"):
    ds = xr.Dataset({name: (("time", lat_dim, lon_dim), data)},
                    coords={"time": times, lat_dim: lat, lon_dim: lon})
    ds.to_netcdf(path)
    return path


def _kwargs(**overrides):
    kwargs = {"modality": "state", "variables": VARIABLES, "variable": "v", "std": 0.1, "grid_lat": GRID_LAT,
              "grid_lon": GRID_LON, "times": TIMES}
    kwargs.update(overrides)
    return kwargs


def _truth(seed=0, shape=None):
    shape = (TIMES.size, N_LAT, N_LON, len(VARIABLES)) if shape is None else shape
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --------------------------------------------------------------------------------------------------- gridded
def test_gridded_on_model_grid_with_nan_cells(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2, N_LAT, N_LON)).astype(np.float32)
    data[0, 1, 2] = data[0, 5, 11] = np.nan
    data[1, :3, :] = np.nan
    file_times = TIMES[[1, 4]]
    path = _gridded_file(tmp_path / "obs.nc", data, file_times, GRID_LAT, GRID_LON)

    observations = read_gridded(path, **_kwargs())

    assert len(observations) == 2
    check_observations(observations, {"state": (TIMES.size, N_LAT, N_LON, 2)})
    truth = _truth()
    truth[[1, 4], :, :, 1] = np.nan_to_num(data, nan=123.0)  # channel c = 1, other channel random
    for obs, field, i in zip(observations, data, (1, 4)):
        finite = np.isfinite(field)
        assert obs.values.shape == (1, int(finite.sum()), 1)
        np.testing.assert_array_equal(obs.values.ravel(), field[finite])
        assert obs.operator.ops[:2] == (TimeIndex((i,)), Channels((1,)))
        assert isinstance(obs.operator.ops[-1], Points)
        np.testing.assert_array_equal(_apply(obs, truth), obs.values)
        assert obs.name.startswith("obs.nc:v@") and obs.std == pytest.approx(0.1)
    assert observations[0].values.size == N_LAT * N_LON - 2
    assert observations[1].values.size == (N_LAT - 3) * N_LON


def test_gridded_skips_all_nan_times_and_drops_unmatched_times(tmp_path):
    data = np.ones((3, N_LAT, N_LON), np.float32)
    data[0] = np.nan
    path = _gridded_file(tmp_path / "obs.nc", data, np.asarray([0.5, 0.75, 7.0], np.float32), GRID_LAT, GRID_LON)
    observations = read_gridded(path, **_kwargs())
    assert len(observations) == 1  # 0.5 all NaN, 7.0 beyond the trajectory
    assert observations[0].operator.ops[0] == TimeIndex((3,))


def test_gridded_coarse_file_observes_block_means(tmp_path):
    truth = _truth(2)
    blocks = truth[..., 0].reshape(TIMES.size, 4, 2, 6, 2).mean(axis=(2, 4))  # (time, 4, 6)
    data = blocks[[0, 5]].copy()
    data[1, 2, 3] = np.nan
    path = _gridded_file(tmp_path / "coarse.nc", data, TIMES[[0, 5]], np.linspace(-60, 60, 4), np.arange(6) * 60.0,
                         name="u")

    observations = read_gridded(path, **_kwargs(variable="u"))

    assert len(observations) == 2
    for obs, i in zip(observations, (0, 5)):
        assert Coarsen(2) in obs.operator.ops
        finite = np.isfinite(data[i // 5])
        np.testing.assert_array_equal(obs.values.ravel(), data[i // 5][finite])
        np.testing.assert_allclose(_apply(obs, truth).ravel(), blocks[i][finite], rtol=1e-5, atol=1e-6)


def test_gridded_per_axis_factors(tmp_path):
    truth = _truth(3)
    blocks = truth[..., 1].reshape(TIMES.size, 4, 2, 4, 3).mean(axis=(2, 4))
    path = _gridded_file(tmp_path / "c.nc", blocks[[2]], TIMES[[2]], np.linspace(-60, 60, 4), np.arange(4) * 90.0)
    (obs,) = read_gridded(path, **_kwargs())
    assert Coarsen((2, 3)) in obs.operator.ops
    np.testing.assert_allclose(_apply(obs, truth).ravel(), blocks[2].ravel(), rtol=1e-5, atol=1e-6)


def test_gridded_descending_latitude_is_flipped(tmp_path):
    truth = _truth(4)
    ascending = truth[3, :, :, 1]
    path = _gridded_file(tmp_path / "desc.nc", ascending[None, ::-1], TIMES[[3]], GRID_LAT[::-1], GRID_LON,
                         lat_dim="latitude", lon_dim="longitude")
    (obs,) = read_gridded(path, **_kwargs())
    np.testing.assert_array_equal(obs.values.ravel(), ascending.ravel())
    np.testing.assert_array_equal(_apply(obs, truth), obs.values)


def test_gridded_transposed_dims_and_kolmogorov_names(tmp_path):
    truth = _truth(5)
    field = truth[2, :, :, 1]
    y = 2 * np.pi * np.arange(N_LAT) / N_LAT
    x = 2 * np.pi * np.arange(N_LON) / N_LON
    ds = xr.Dataset({"v": (("x", "time", "y"), field.T[:, None, :])}, coords={"time": TIMES[[2]], "y": y, "x": x})
    ds.to_netcdf(tmp_path / "k.nc")
    (obs,) = read_gridded(tmp_path / "k.nc", **_kwargs(grid_lat=y, grid_lon=x))
    np.testing.assert_array_equal(obs.values.ravel(), field.ravel())
    np.testing.assert_array_equal(_apply(obs, truth), obs.values)


@pytest.mark.parametrize("time_dim", ["valid_time", "date"])
def test_gridded_coordinate_spellings_are_those_of_slams_jax_coords(tmp_path, time_dim):
    truth = _truth(8)
    path = tmp_path / "era.nc"
    ds = xr.Dataset({"v": ((time_dim, "latitude", "longitude"), truth[1:3, :, :, 1])},
                    coords={time_dim: TIMES[1:3], "latitude": GRID_LAT, "longitude": GRID_LON})
    ds.to_netcdf(path)
    observations = read_gridded(path, **_kwargs())
    assert [obs.operator.ops[0] for obs in observations] == [TimeIndex((1,)), TimeIndex((2,))]
    for obs, i in zip(observations, (1, 2)):
        np.testing.assert_array_equal(obs.values.ravel(), truth[i, :, :, 1].ravel())
    xr.Dataset({"v": (("step", "lat", "lon"), truth[:1, :, :, 1])}).to_netcdf(tmp_path / "step.nc")
    expected = (f"time one of {coords.spellings('time')}, lat one of {coords.spellings('latitude', grid=True)} "
                f"and lon one of {coords.spellings('longitude', grid=True)}")
    with pytest.raises(ObservationError, match=re.escape(expected)):
        read_gridded(tmp_path / "step.nc", **_kwargs())

def test_gridded_datetime_times_with_tolerance(tmp_path):
    times = np.datetime64("2020-01-01T00:00", "ns") + np.arange(4) * np.timedelta64(6, "h")
    data = np.arange(2 * N_LAT * N_LON, dtype=np.float32).reshape(2, N_LAT, N_LON)
    file_times = np.asarray(["2020-01-01T07:00", "2020-01-01T17:00"], "datetime64[ns]")  # 1 h off state 1 and 3
    path = _gridded_file(tmp_path / "era5.nc", data, file_times, GRID_LAT, GRID_LON)

    observations = read_gridded(path, **_kwargs(times=times))
    assert [obs.operator.ops[0] for obs in observations] == [TimeIndex((1,)), TimeIndex((3,))]
    assert observations[0].name == "era5.nc:v@2020-01-01T07:00"

    observations = read_gridded(path, **_kwargs(times=times, time_tolerance=np.timedelta64(90, "m")))
    assert len(observations) == 2
    with pytest.raises(ObservationError, match=r"era5\.nc.*none of its times.*2020-01-01T07:00.*2020-01-01T18:00"):
        read_gridded(path, **_kwargs(times=times, time_tolerance=np.timedelta64(30, "m")))
    with pytest.raises(ObservationError, match=r"era5\.nc.*timedelta64"):
        read_gridded(path, **_kwargs(times=times, time_tolerance=3.0))
    with pytest.raises(ObservationError, match=r"era5\.nc.*datetime.*numeric"):
        read_gridded(path, **_kwargs())


# -------------------------------------------------------------------------------------------------- stations
LIN = {"a": 2.0, "b": 0.1, "c": 0.05}
STATION_GRID_LAT = np.linspace(90.0, -90.0, 7)  # descending, ERA5-like
STATION_GRID_LON = np.arange(N_LON) * 30.0


def _linear(lat, lon):
    return LIN["a"] + LIN["b"] * np.asarray(lat) + LIN["c"] * np.asarray(lon)


def _station_truth():
    truth = _truth(6, (TIMES.size, STATION_GRID_LAT.size, N_LON, 2))
    lat, lon = np.meshgrid(STATION_GRID_LAT, STATION_GRID_LON, indexing="ij")
    truth[..., 0] = _linear(lat, lon)
    return truth


def _station_kwargs(**overrides):
    return _kwargs(**{"variable": "u", "grid_lat": STATION_GRID_LAT, "grid_lon": STATION_GRID_LON, **overrides})


STATION_ROWS = [  # time, lat, lon
    (0.25, 10.0, 15.0),
    (0.25, -45.5, 200.0),
    (0.5, 89.0, 0.0),
    (0.5, -90.0, 329.0),
    (0.25, 33.3, 100.0),
    (3.0, 10.0, 10.0),  # not a trajectory time: dropped
]


def _write_csv(path, rows, header="time,lat,lon,value"):
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    return path


def test_stations_csv_linear_field(tmp_path):
    rows = [(t, lat, lon, _linear(lat, lon)) for t, lat, lon in STATION_ROWS]
    rows.insert(2, (0.5, 0.0, 0.0, "nan"))
    rows.insert(3, (0.5, 0.0, 0.0, ""))
    path = _write_csv(tmp_path / "stations.csv", rows)

    observations = read_stations(path, **_station_kwargs())

    assert len(observations) == 2
    check_observations(observations, {"state": (TIMES.size, STATION_GRID_LAT.size, N_LON, 2)})
    truth = _station_truth()
    for obs, i, picked in zip(observations, (1, 2), ([0, 1, 4], [2, 3])):
        lat = np.asarray([STATION_ROWS[k][1] for k in picked])
        lon = np.asarray([STATION_ROWS[k][2] for k in picked])
        assert obs.operator.ops[:2] == (TimeIndex((i,)), Channels((0,)))
        stations = obs.operator.ops[2]
        assert isinstance(stations, Stations)
        np.testing.assert_array_equal(stations.lat, lat)
        np.testing.assert_array_equal(stations.lon, lon)
        assert obs.values.shape == (1, len(picked), 1)
        np.testing.assert_allclose(obs.values.ravel(), _linear(lat, lon), rtol=1e-6)
        np.testing.assert_allclose(_apply(obs, truth).ravel(), _linear(lat, lon), rtol=1e-5, atol=1e-5)
        assert obs.name == f"stations.csv:u@{TIMES[i]:g}"


def test_stations_csv_variable_column_and_column_order(tmp_path):
    rows = [("v", 99.0, 1.0, 12.0, 0.25, "x"), ("u", 7.0, 1.0, 12.0, 0.25, "x"), ("u", 8.0, 1.0, 14.0, 0.751, "x")]
    path = _write_csv(tmp_path / "s.csv", rows, header="variable, value,lat,lon , time, extra")
    observations = read_stations(path, **_station_kwargs())
    assert [obs.values.ravel().tolist() for obs in observations] == [[7.0], [8.0]]
    assert [obs.operator.ops[0] for obs in observations] == [TimeIndex((1,)), TimeIndex((3,))]
    (obs,) = read_stations(path, **_station_kwargs(variable="v"))
    assert obs.values.ravel().tolist() == [99.0] and obs.operator.ops[1] == Channels((1,))
    with pytest.raises(ObservationError, match=r"s\.csv.*no row has variable 'u'.*\['v'\]"):
        read_stations(_write_csv(tmp_path / "s.csv", rows[:1], header="variable,value,lat,lon,time,extra"),
                      **_station_kwargs())


def test_stations_csv_coordinate_spellings(tmp_path):
    rows = [(t, lat, lon, _linear(lat, lon)) for t, lat, lon in STATION_ROWS]
    path = _write_csv(tmp_path / "s.csv", rows, header="Valid_Time,Latitude,LONGITUDE,value")
    observations = read_stations(path, **_station_kwargs())
    assert [obs.values.shape for obs in observations] == [(1, 3, 1), (1, 2, 1)]
    np.testing.assert_allclose(observations[1].values.ravel(), _linear([89.0, -90.0], [0.0, 329.0]), rtol=1e-6)

def test_stations_netcdf(tmp_path):
    t, lat, lon = (np.asarray(column) for column in zip(*STATION_ROWS))
    value = _linear(lat, lon)
    value[1] = np.nan
    ds = xr.Dataset({"time": ("obs", t), "latitude": ("obs", lat), "longitude": ("obs", lon), "value": ("obs", value)})
    ds.to_netcdf(tmp_path / "stations.nc")

    observations = read_stations(tmp_path / "stations.nc", **_station_kwargs())

    truth = _station_truth()
    assert [obs.values.shape for obs in observations] == [(1, 2, 1), (1, 2, 1)]
    for obs, picked in zip(observations, ([0, 4], [2, 3])):
        np.testing.assert_allclose(obs.values.ravel(), value[picked], rtol=1e-6)
        np.testing.assert_allclose(_apply(obs, truth).ravel(), value[picked], rtol=1e-5, atol=1e-5)


def test_stations_csv_datetime_times(tmp_path):
    times = np.datetime64("2020-01-01T00:00") + np.arange(4) * np.timedelta64(6, "h")
    rows = [("2020-01-01T06:30", 0.0, 0.0, 1.0), ("2020-01-01T05:00", 30.0, 0.0, 2.0),
            ("2020-01-01T18:00", 0.0, 60.0, 3.0), ("2020-01-02T06:00", 0.0, 60.0, 4.0)]
    path = _write_csv(tmp_path / "s.csv", rows)
    observations = read_stations(path, **_station_kwargs(times=times))
    assert [obs.operator.ops[0] for obs in observations] == [TimeIndex((1,)), TimeIndex((3,))]
    assert [obs.values.ravel().tolist() for obs in observations] == [[1.0, 2.0], [3.0]]
    assert observations[0].name == "s.csv:u@2020-01-01T06:00"
    (obs,) = read_stations(path, **_station_kwargs(times=times, time_tolerance=np.timedelta64(0, "s")))
    assert obs.values.ravel().tolist() == [3.0]
    with pytest.raises(ObservationError, match=r"s\.csv.*line 2.*is a date but the trajectory times are numeric"):
        read_stations(path, **_station_kwargs())


# ---------------------------------------------------------------------------------------------------- errors
def test_unknown_variable(tmp_path):
    path = _gridded_file(tmp_path / "obs.nc", np.ones((1, N_LAT, N_LON), np.float32), TIMES[:1], GRID_LAT, GRID_LON)
    with pytest.raises(ObservationError, match=r"obs\.nc.*unknown variable 'w'.*\['u', 'v'\]"):
        read_gridded(path, **_kwargs(variable="w"))
    with pytest.raises(ObservationError, match=r"obs\.nc.*no variable 'u'.*\['v'\]"):
        read_gridded(path, **_kwargs(variable="u"))
    csv_path = _write_csv(tmp_path / "s.csv", [(0.25, 0.0, 0.0, 1.0)])
    with pytest.raises(ObservationError, match=r"s\.csv.*unknown variable 'w'"):
        read_stations(csv_path, **_station_kwargs(variable="w"))


def test_missing_columns(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", [(0.25, 0.0, 1.0)], header="time,latitude,value")
    with pytest.raises(ObservationError, match=r"bad\.csv.*missing column\(s\) \['lon'\]"):
        read_stations(path, **_station_kwargs())
    xr.Dataset({"time": ("obs", [0.25]), "value": ("obs", [1.0])}).to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(ObservationError, match=r"bad\.nc.*missing column\(s\) \['lat', 'lon'\]"):
        read_stations(tmp_path / "bad.nc", **_station_kwargs())


def test_bad_numbers_name_the_row(tmp_path):
    path = _write_csv(tmp_path / "s.csv", [(0.25, 0.0, 0.0, 1.0), (0.25, "north", 0.0, 1.0)])
    with pytest.raises(ObservationError, match=r"s\.csv.*line 3.*'lat' = 'north' is not a number"):
        read_stations(path, **_station_kwargs())


def test_wrong_spatial_shape(tmp_path):
    path = _gridded_file(tmp_path / "odd.nc", np.ones((1, 5, 7), np.float32), TIMES[:1], np.arange(5.0),
                         np.arange(7.0))
    with pytest.raises(ObservationError, match=r"odd\.nc.*'v'.*\(5, 7\).*model grid \(8, 12\)"):
        read_gridded(path, **_kwargs())
    xr.Dataset({"v": (("time", "level", "lat"), np.ones((1, 2, N_LAT)))}).to_netcdf(tmp_path / "dims.nc")
    with pytest.raises(ObservationError, match=r"dims\.nc.*'v'.*has dims.*'level': 2"):
        read_gridded(tmp_path / "dims.nc", **_kwargs())


def test_station_beyond_latitude_range(tmp_path):
    rows = [(0.25, 0.0, 0.0, 1.0), (0.25, 80.0, 0.0, 1.0), (0.25, 10.0, 0.0, 1.0)]
    path = _write_csv(tmp_path / "far.csv", rows)
    with pytest.raises(ObservationError, match=r"far\.csv': Stations: 1 of 3 stations lie outside the grid \(latitude "
                       r"range \[-70\.0, 70\.0\].*\): station 'line 3' at latitude 80\.0, longitude 0\.0$"):
        read_stations(path, **_kwargs(variable="u"))  # grid latitudes -70..70
    # a regional, non-uniform longitude axis 0 .. 3.3: every station of longitude 0 is on it, none east of it
    (obs,) = read_stations(path, **_station_kwargs(grid_lon=np.sqrt(np.arange(N_LON))))
    assert obs.operator.ops[-1].periodic is False
    east = _write_csv(tmp_path / "east.csv", [(0.25, 0.0, 0.0, 1.0), (0.25, 10.0, 3.5, 1.0)])
    with pytest.raises(ObservationError, match=r"east\.csv.*not periodic\): station 'line 3' at latitude 10\.0, "
                       r"longitude 3\.5$"):
        read_stations(east, **_station_kwargs(grid_lon=np.sqrt(np.arange(N_LON))))


def test_no_matching_time(tmp_path):
    path = _gridded_file(tmp_path / "late.nc", np.ones((2, N_LAT, N_LON), np.float32),
                         np.asarray([10.0, 11.0], np.float32), GRID_LAT, GRID_LON)
    expected = re.escape("none of its times [10, 11] (2 times) matches a trajectory time [0, 1.25] (6 times)")
    with pytest.raises(ObservationError, match=r"late\.nc.*" + expected):
        read_gridded(path, **_kwargs())
    csv_path = _write_csv(tmp_path / "late.csv", [(0.3, 0.0, 0.0, 1.0)])
    with pytest.raises(ObservationError, match=r"late\.csv.*none of its times"):
        read_stations(csv_path, **_station_kwargs(time_tolerance=0.01))


def test_missing_file_and_zarr(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.nc"):
        read_gridded(tmp_path / "nowhere.nc", **_kwargs())
    with pytest.raises(FileNotFoundError, match=r"nowhere\.csv"):
        read_stations(tmp_path / "nowhere.csv", **_station_kwargs())
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ObservationError, match=r"empty\.zarr.*zarr"):
        read_gridded(tmp_path / "empty.zarr", **_kwargs())
