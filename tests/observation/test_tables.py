"""Observation tables (earth2studio's schema): reading, validation, time matching, variables, per-row std."""

import re

import jax
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from slams_jax.diffusion.likelihood import likelihood_data
from slams_jax.diffusion.prior import callable_prior
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.errors import ObservationError
from slams_jax.observation.files import read_table, table_observations, validate_table
from slams_jax.observation.operators import Channels, Stations, TimeIndex

TIMES = np.datetime64("2021-01-25T00:00", "ns") + np.arange(4) * np.timedelta64(6, "h")
GRID_LAT = np.array([50.0, 48.0, 45.0, 44.0, 40.0])  # descending, non-uniform
GRID_LON = np.array([350.0, 355.0, 359.0, 0.0, 2.0, 6.0, 10.0])  # regional, crossing 0 E
MODALITIES = {"state": ("t2m", "u10"), "insitu": ("precip",)}
ROWS = pd.DataFrame({
    "time": pd.to_datetime(["2021-01-25T00:00", "2021-01-25T06:10", "2021-01-25T05:00", "2021-01-25T12:00",
                            "2021-01-25T06:00", "2021-01-27T00:00"]),
    "lat": [45.5, 41.0, 49.0, 44.0, 47.5, 45.0],
    "lon": [-5.0, 1.0, 355.5, 9.0, -0.5, 0.0],
    "variable": ["t2m", "t2m", "u10", "precip", "t2m", "t2m"],
    "observation": [271.5, 268.25, 3.5, 0.75, 270.0, 265.0],
    "std": [0.5, 1.0, 2.0, 0.1, 0.25, 1.0],
    "station": ["A", "B", "C", "D", "E", "A"],
})


def _write(table: pd.DataFrame, path, fmt):
    if fmt == "csv":
        text = table.assign(time=table["time"].dt.strftime("%Y-%m-%dT%H:%M")).to_csv(index=False)
        path.write_text("# an observation table\n" + text)
    elif fmt == "parquet":
        table.to_parquet(path)
    else:
        xr.Dataset({c: ("obs", table[c].to_numpy()) for c in table.columns}).to_netcdf(path)
    return path


# -------------------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("fmt,suffix,index", [("csv", "csv", "line"), ("parquet", "parquet", "row"),
                                              ("netcdf", "nc", "obs index")])
def test_each_format_reads_into_the_same_validated_table(tmp_path, fmt, suffix, index):
    table = read_table(_write(ROWS, tmp_path / f"obs.{suffix}", fmt))
    assert list(table.columns) == ["time", "lat", "lon", "variable", "observation", "std", "station"]
    assert table["time"].dtype == np.dtype("datetime64[ns]")
    for column in ("lat", "lon", "observation", "std"):
        assert table[column].dtype == np.float64
        np.testing.assert_array_equal(table[column].to_numpy(), ROWS[column].to_numpy())
    np.testing.assert_array_equal(table["time"].to_numpy(), ROWS["time"].to_numpy())
    assert table["variable"].tolist() == ROWS["variable"].tolist() and table["station"].tolist() == list("ABCDEA")
    assert table.index.name == index
    assert table.index[0] == (3 if fmt == "csv" else 0)  # the CSV's comment and header lines are lines 1, 2
    assert table.attrs["name"] == f"obs.{suffix}" and f"obs.{suffix}" in table.attrs["source"]


def test_spellings_old_value_column_and_a_supplied_variable(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("Valid_Time, LATITUDE ,longitude,value,extra\n0.25,10,20,1.5,x\n0.5,11,21,,y\n")
    table = read_table(path, variable="t2m")
    assert list(table.columns) == ["time", "lat", "lon", "variable", "observation", "extra"]
    assert table["time"].tolist() == [0.25, 0.5] and table["variable"].tolist() == ["t2m", "t2m"]
    assert np.isnan(table["observation"].iloc[1])  # empty: missing, dropped when observations are made
    frame = pd.DataFrame({"Time": [1.0], "Lat": [0.0], "Lon": [0.0], "Variable": ["u"], "Observation": [2.0]})
    assert list(validate_table(frame).columns) == ["time", "lat", "lon", "variable", "observation"]


def _csv(tmp_path, body, header="time,lat,lon,variable,observation,std"):
    path = tmp_path / "bad.csv"
    path.write_text(header + "\n" + body)
    return path


@pytest.mark.parametrize("body,message", [
    ("0,10,20,t2m,1,1\n0,north,20,t2m,1,1\n", "line 3: column 'lat' = 'north' is not a number"),
    ("0,10,20,t2m,1,1\n0,95,20,t2m,1,1\n", "line 3: column 'lat' = 95.0 is not a latitude in [-90, 90]"),
    ("0,10,,t2m,1,1\n", "line 2: column 'lon' = nan is missing; every row needs a position"),
    ("0,10,20,t2m,1,-1\n", "line 2: column 'std' = -1.0 is not a positive noise standard deviation"),
    ("0,10,20,t2m,1,1\n0,10,20,,1,1\n", "line 3: column 'variable' = '' is empty"),
    ("2021-01-25T00:00,10,20,t2m,1,1\nyesterday,10,20,t2m,1,1\n",
     "line 3: column 'time' = 'yesterday' is not an ISO 8601 date"),
    ("2021-01-25T00:00,10,20,t2m,1,1\n6,10,20,t2m,1,1\n", "line 3: column 'time' = '6' is a number but other rows"),
])
def test_bad_values_are_named_by_file_row_column_and_value(tmp_path, body, message):
    with pytest.raises(ObservationError, match=re.escape(f"bad.csv', {message}")):
        read_table(_csv(tmp_path, body))


def test_missing_columns_and_files_are_named(tmp_path):
    with pytest.raises(ObservationError, match=r"bad\.csv': missing column\(s\) \['variable', 'observation'\]"):
        read_table(_csv(tmp_path, "0,1,2\n", header="time,lat,lon"))
    with pytest.raises(FileNotFoundError, match=r"nowhere\.parquet"):
        read_table(tmp_path / "nowhere.parquet")
    frame = ROWS.drop(columns="lat")
    with pytest.raises(ObservationError, match=r"^observation table: missing column\(s\) \['lat'\]"):
        validate_table(frame)
    bad = ROWS.assign(observation=[1.0, np.inf, 0, 0, 0, 0])
    with pytest.raises(ObservationError, match=r"observation table, row 1: column 'observation' = inf is infinite"):
        validate_table(bad)


# ------------------------------------------------------------------------------------------- observations
def _observations(table=ROWS, **kwargs):
    return table_observations(table, grid_lat=GRID_LAT, grid_lon=GRID_LON, times=TIMES,
                              modalities=kwargs.pop("modalities", MODALITIES), **kwargs)


def test_rows_are_matched_to_the_nearest_time_within_the_tolerance():
    with pytest.warns(UserWarning, match=r"observation table: 1 of 6 rows match no trajectory time"):
        observations = _observations()  # default tolerance: 3 h; 2021-01-27 is 1.5 days past the window
    summary = [(o.name, o.operator.ops[0], o.values.ravel().tolist()) for o in observations]
    assert summary == [
        ("table:t2m@2021-01-25", TimeIndex((0,)), [271.5]),
        ("table:t2m@2021-01-25T06:00", TimeIndex((1,)), [268.25, 270.0]),  # 06:10 and 06:00, in row order
        ("table:u10@2021-01-25T06:00", TimeIndex((1,)), [3.5]),  # 05:00
        ("table:precip@2021-01-25T12:00", TimeIndex((2,)), [0.75]),
    ]
    with pytest.warns(UserWarning, match="3 of 6 rows"):
        strict = _observations(tolerance=np.timedelta64(5, "m"))  # 06:10 and 05:00 no longer match
    assert [o.values.ravel().tolist() for o in strict] == [[271.5], [270.0], [0.75]]
    with pytest.raises(ObservationError, match=r"none of its times .* within a tolerance of 0"):
        _observations(table=ROWS.iloc[[1, 2]], tolerance=np.timedelta64(0, "s"))


def test_variables_map_to_channels_of_modalities_by_name():
    with pytest.warns(UserWarning):
        observations = _observations()
    assert [(o.modality, o.operator.ops[1]) for o in observations] == [
        ("state", Channels((0,))), ("state", Channels((0,))), ("state", Channels((1,))), ("insitu", Channels((0,)))]
    stations = observations[1].operator.ops[2]
    assert isinstance(stations, Stations) and stations.lat == (41.0, 47.5) and stations.lon == (1.0, -0.5)
    assert stations.periodic is False
    with pytest.raises(ObservationError, match=re.escape(
            "observation table: unknown variable(s) ['precip'] (first at row 3); the observed variables are "
            "{'state': ['t2m', 'u10']}")):
        _observations(modalities={"state": ("t2m", "u10")})
    with pytest.raises(ObservationError, match=r"variable 't2m' is a channel of modalities \['state', 'other'\]"):
        _observations(modalities={**MODALITIES, "other": ("t2m",)})


def test_stations_outside_the_grid_are_named_by_station_and_row():
    far = ROWS.iloc[:5].assign(lon=[-5.0, 1.0, 340.0, 9.0, 30.0], time=TIMES[[0, 1, 1, 2, 1]])
    with pytest.raises(ObservationError, match=re.escape(
            "observation table: Stations: 1 of 2 stations lie outside the grid (latitude range [40.0, 50.0], "
            "longitudes from 350 east to 10, not periodic): station 'E (row 4)' at latitude 47.5, longitude 30.0")):
        _observations(table=far)


def test_per_row_std_fills_from_the_argument_and_is_required():
    table = ROWS.iloc[:5].assign(std=[0.5, np.nan, 2.0, 0.1, 0.25])
    observations = _observations(table=table, std={"t2m": 0.75})
    assert [o.std.shape for o in observations] == [(1, 1, 1), (1, 2, 1), (1, 1, 1), (1, 1, 1)]
    np.testing.assert_array_equal(np.concatenate([o.std.ravel() for o in observations]),
                                  np.float32([0.5, 0.75, 0.25, 2.0, 0.1]))
    scalar = _observations(table=ROWS.iloc[:5].drop(columns="std"), std=0.3)
    assert [o.std for o in scalar] == pytest.approx([0.3] * 4)
    with pytest.raises(ObservationError, match=re.escape(
            "observation table, row 1: no noise std for variable 't2m' (1 rows without one); give the table a "
            "'std' column or pass std=")):
        _observations(table=table)


def test_per_row_std_reaches_the_likelihood():
    shape = (TIMES.size, GRID_LAT.size, GRID_LON.size, 2)
    prior = callable_prior(lambda x, t: x, shape, VPSchedule())
    table = ROWS.iloc[[0, 1, 2, 4]]
    observations = _observations(table=table, modalities={"state": ("t2m", "u10")})
    y, std, scale = likelihood_data(prior, observations)
    # flattened in observation order: (t0, t2m: row 0), (t1, t2m: rows 1, 4), (t1, u10: row 2)
    np.testing.assert_array_equal(np.asarray(y), [271.5, 268.25, 270.0, 3.5])
    np.testing.assert_array_equal(np.asarray(std), np.float32([0.5, 1.0, 0.25, 2.0]))
    np.testing.assert_allclose(np.asarray(scale), 1.0, rtol=1e-6)


def test_posterior_sample_takes_a_table_and_weights_each_row_by_its_std():
    """A linear-Gaussian toy: the posterior mean with per-row stds, against the Kalman update."""
    from slams_jax.diffusion.posterior import posterior_sample

    schedule = VPSchedule()
    shape = (1, 3, 4, 1)  # one state on a 3 x 4 grid
    grid_lat, grid_lon = np.array([10.0, 5.0, 0.0]), np.array([-3.0, -1.0, 1.0, 3.0])
    d = 12
    i = np.arange(d)
    cov = np.exp(-0.5 * ((i[:, None] - i[None, :]) / 3.0) ** 2) + 0.1 * np.eye(d)
    lam, u = np.linalg.eigh(cov)

    def eps(x, t):  # the exact noise predictor of N(0, cov)
        mu, sigma = schedule.mu(t), schedule.sigma(t)
        r = u.T.astype(np.float32) @ x.reshape(-1)
        return (sigma * (u.astype(np.float32) @ (r / (mu**2 * lam.astype(np.float32) + sigma**2)))).reshape(x.shape)

    table = pd.DataFrame({"time": [0.0] * 4, "lat": [7.5, 2.0, 5.0, 9.0], "lon": [-2.0, 0.5, 2.9, 1.0],
                          "variable": ["t"] * 4, "observation": [1.0, -1.0, 2.0, 0.5], "std": [0.05, 2.0, 0.1, 1.5]})
    op = Stations(table["lat"], table["lon"], grid_lat, grid_lon)
    lat_index, lon_index, weight = op.corners
    a = np.zeros((4, d))
    for s in range(4):
        np.add.at(a[s], lat_index[s] * 4 + lon_index[s], weight[s])

    def kalman(std):
        gain = cov @ a.T @ np.linalg.inv(a @ cov @ a.T + np.diag(std**2))
        return gain @ table["observation"].to_numpy(), cov - gain @ a @ cov

    mean, post = kalman(table["std"].to_numpy())
    x = posterior_sample(jax.random.PRNGKey(0), eps, table, n_samples=512, shape=shape, schedule=schedule,
                         times=[0.0], grid=(grid_lat, grid_lon), modalities={"state": ("t",)})
    error = np.abs(np.asarray(x).reshape(512, d).mean(0) - mean) / np.sqrt(np.diag(post))
    assert error.max() < 0.3, error
    # one std for all rows would be far off: the check sees the per-row stds
    uniform, _ = kalman(np.full(4, 1.0))
    assert (np.abs(uniform - mean) / np.sqrt(np.diag(post))).max() > 3.0
