"""``to_points``: the analysis sampled bilinearly at a table's rows, exactly as a station observation sees it."""

import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from slams_jax.errors import ObservationError
from slams_jax.observation.points import to_points
from slams_jax.pipeline.outputs import write_dataset

TIMES = np.datetime64("2021-01-25T00:00", "ns") + np.arange(3) * np.timedelta64(1, "h")
LAT = np.array([50.0, 48.0, 45.0, 44.0, 40.0])  # descending, non-uniform
LON = np.array([350.0, 355.0, 359.0, 0.0, 2.0, 6.0, 10.0])  # regional, crossing 0 E
VARIABLES = ("t2m", "u10")
MEMBERS = 3


def _signed(lon):
    return np.mod(np.asarray(lon, np.float64) + 180.0, 360.0) - 180.0


def _field(member, time, channel, lat, lon):
    """Bilinear in (lat, lon) for each member, time and channel: interpolation is exact."""
    lon = _signed(lon)
    return (1.0 + member) * (0.2 * lat - 0.5 * lon + 0.03 * lat * lon) + 10.0 * time - 7.0 * channel


def _analysis():
    m, t, c = (np.arange(n).reshape(shape) for n, shape in (
        (MEMBERS, (-1, 1, 1, 1, 1)), (TIMES.size, (1, -1, 1, 1, 1)), (len(VARIABLES), (1, 1, 1, 1, -1))))
    return _field(m, t, c, LAT.reshape(1, 1, -1, 1, 1), LON.reshape(1, 1, 1, -1, 1)).astype(np.float32)


def _window():
    return xr.Dataset({v: (("time", "latitude", "longitude"), np.zeros((TIMES.size, LAT.size, LON.size)))
                       for v in VARIABLES}, coords={"time": TIMES, "latitude": LAT, "longitude": LON})


TABLE = pd.DataFrame({
    "time": TIMES[[0, 2, 1, 1, 2]] + np.array([0, 5, -10, 0, 0], "timedelta64[m]"),
    "lat": [45.5, 41.0, 49.0, 44.0, 47.5],
    "lon": [-5.0, 1.0, 355.5, 9.0, -0.5],
    "variable": ["t2m", "t2m", "u10", "u10", "t2m"],
    "observation": [1.0, 2.0, 3.0, 4.0, 5.0],
    "station": ["A", "B", "C", "D", "E"],
})


def _expected():
    t = np.array([0, 2, 1, 1, 2])
    c = np.array([VARIABLES.index(v) for v in TABLE["variable"]])
    return np.stack([_field(m, t, c, TABLE["lat"].to_numpy(), TABLE["lon"].to_numpy()) for m in range(MEMBERS)])


def test_analysis_nc_is_sampled_exactly_with_mean_spread_and_members(tmp_path):
    analysis = _analysis()
    truth = analysis[0]
    write_dataset(tmp_path / "analysis.nc", _window(), VARIABLES, ["K", "m/s"], analysis, truth, truth, {})
    out = to_points(tmp_path / "analysis.nc", TABLE)
    expected = _expected()
    assert list(out.columns) == ["time", "lat", "lon", "variable", "observation", "station", "mean", "spread",
                                 "member_0", "member_1", "member_2"]
    assert out.index.equals(TABLE.index) and out["station"].tolist() == list("ABCDE")
    for m in range(MEMBERS):
        np.testing.assert_allclose(out[f"member_{m}"], expected[m], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out["mean"], expected.mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out["spread"], expected.std(0, ddof=1), rtol=1e-4, atol=1e-4)
    # the Dataset itself, and its DataArray with the channel dimension, give the same
    with xr.open_dataset(tmp_path / "analysis.nc") as ds:
        pd.testing.assert_frame_equal(to_points(ds, TABLE), out)
        pd.testing.assert_frame_equal(to_points(ds["analysis"], TABLE), out)


def test_one_dataarray_per_variable_without_members():
    field = xr.DataArray(_analysis()[1, ..., 0], dims=("time", "lat", "lon"),
                         coords={"time": TIMES, "lat": LAT, "lon": LON}, name="t2m")
    points = TABLE[TABLE["variable"] == "t2m"].drop(columns=["variable", "observation"])
    out = to_points(field, points)  # no variable column: the DataArray's; no observation column: NaN
    assert list(out.columns) == ["time", "lat", "lon", "variable", "observation", "station", "mean"]
    np.testing.assert_allclose(out["mean"], _expected()[1, [0, 1, 4]], rtol=1e-5, atol=1e-4)
    assert out["observation"].isna().all()
    # a Dataset of per-variable fields (member, time, lat, lon), e.g. a CF analysis file
    members = xr.DataArray(_analysis(), dims=("member", "time", "lat", "lon", "channel"),
                           coords={"time": TIMES, "lat": LAT, "lon": LON, "channel": list(VARIABLES)})
    ds = xr.Dataset({v: members.sel(channel=v, drop=True) for v in VARIABLES})
    np.testing.assert_allclose(to_points(ds, TABLE)["mean"], _expected().mean(0), rtol=1e-5, atol=1e-4)


def test_rows_off_the_analysis_times_are_nan_and_rows_off_the_grid_are_refused():
    field = xr.DataArray(_analysis()[0, ..., 0], dims=("time", "lat", "lon"),
                         coords={"time": TIMES, "lat": LAT, "lon": LON}, name="t2m")
    late = TABLE.iloc[[0, 1]].assign(variable="t2m", time=[TIMES[0], TIMES[2] + np.timedelta64(2, "h")])
    out = to_points(field, late)
    assert np.isfinite(out["mean"].iloc[0]) and np.isnan(out["mean"].iloc[1])
    far = TABLE.iloc[[0, 1]].assign(variable="t2m", lon=[-5.0, 20.0])
    with pytest.raises(ObservationError, match=re.escape(
            "observation table, against the analysis grid: Stations: 1 of 2 stations lie outside the grid "
            "(latitude range [40.0, 50.0], longitudes from 350 east to 10, not periodic): station 'B (row 1)'")):
        to_points(field, far)
    with pytest.raises(ObservationError, match=re.escape("the analysis has no variable(s) ['u10']; it has ['t2m']")):
        to_points(field, TABLE)
