"""Reading gridded files: names, levels by value, the grid in the file's own order; the real ERA5 files."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from slams_jax.data.gridded import GriddedSource, open_store
from slams_jax.data.gridded.files import standardize
from slams_jax.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
WB2 = SHARED / "era5_wb2_64x32_37lev_19590102T00.nc"
EDA = SHARED / "era5_eda_members_pl_2017010100.nc"


def select(ds, variable, levels, where):
    """``variable`` at ``levels`` as ``(time, level, latitude, longitude)`` through a GriddedSource."""
    src = GriddedSource(ds, [f"{variable}@{lv}" for lv in levels], name=where)
    return xr.DataArray(np.moveaxis(src.read(src.times), 1, 1), dims=("time", "level", "latitude", "longitude"),
                        coords={"time": src.times, "level": list(levels), "latitude": src.latitude,
                                "longitude": src.longitude}, attrs={"units": src.units[0]})


def _synthetic(lat_ascending=True, lon_signed=False):
    """A (time, level, lat, lon) temperature whose value encodes its own coordinates."""
    time = pd.date_range("2000-01-01", periods=3, freq="D")
    level = np.array([1000.0, 850.0, 500.0])
    lat = np.linspace(-60, 60, 5)[:: 1 if lat_ascending else -1]
    lon = np.arange(0.0, 360.0, 90.0)
    if lon_signed:
        lon = np.array([-180.0, -90.0, 0.0, 90.0])
    t = (np.arange(3)[:, None, None, None] * 1e6 + level[None, :, None, None] * 1e2
         + lat[None, None, :, None] + lon[None, None, None, :] / 1e3)
    return xr.Dataset({"temperature": (("time", "pressure_level", "lat", "lon"), t.astype(np.float64), {"units": "K"})},
                      coords={"time": time, "pressure_level": level, "lat": lat, "lon": lon})


@pytest.mark.parametrize("lat_ascending", [True, False])
@pytest.mark.parametrize("lon_signed", [False, True])
def test_levels_by_value_and_the_grid_in_the_files_order(lat_ascending, lon_signed, tmp_path):
    path = tmp_path / "store.nc"
    ds = _synthetic(lat_ascending, lon_signed)
    ds.to_netcdf(path)
    src = GriddedSource(path, ["temperature@500", "t1000=temperature@1000"])
    assert src.channels == ("temperature500", "t1000") and src.units == ("K", "K")
    np.testing.assert_array_equal(src.latitude, ds["lat"].values)  # never flipped
    np.testing.assert_array_equal(src.longitude, ds["lon"].values)  # never wrapped or sorted
    x = src.read(src.times)
    lat, lon = ds["lat"].values, ds["lon"].values
    expected = (np.arange(3)[:, None, None, None] * 1e6 + np.array([500.0, 1000.0])[None, :, None, None] * 1e2
                + lat[None, None, :, None] + lon[None, None, None, :] / 1e3)
    np.testing.assert_allclose(x, expected, rtol=1e-7)


def test_errors_name_the_option_the_file_and_what_it_has(tmp_path):
    path = tmp_path / "store.nc"
    _synthetic().to_netcdf(path)
    with pytest.raises(DataError, match=r"config.data.path: .*store.nc: no variable 'temp'; it has \['temperature'\]"):
        GriddedSource(path, ["temp"])
    with pytest.raises(DataError, match=r"no level 10; its levels are \[1000.0, 850.0, 500.0\]"):
        GriddedSource(path, ["temperature@10"])
    with pytest.raises(DataError, match=r"has 3 levels .*name one as temperature@LEVEL"):
        GriddedSource(path, ["temperature"])
    with pytest.raises(ConfigError, match=r"config.data.variables\[0\]='a b': expected name"):
        GriddedSource(path, ["a b"])
    with pytest.raises(ConfigError, match="channel names .* repeat"):
        GriddedSource(path, ["x=temperature@500", "x=temperature@850"])
    with pytest.raises(DataError, match="no latitude dimension"):
        standardize(xr.Dataset({"x": (("a", "b"), np.zeros((2, 2)))}), "bad")
    with pytest.raises(FileNotFoundError, match="no such file"):
        GriddedSource(tmp_path / "missing.zarr", ["t"])
    with pytest.raises(FileNotFoundError, match="matches no file"):
        GriddedSource(str(tmp_path / "nothing-*.nc"), ["t"])


@pytest.mark.skipif(not WB2.exists(), reason="../shared/data is not available")
def test_real_weatherbench2_file_loads_with_levels_units_and_orientation():
    levels = [10, 50, 100, 200, 300, 500, 700, 850, 925, 1000]  # the paper's
    t = select(WB2, "temperature", levels, WB2.name)
    assert t.shape == (1, 10, 32, 64) and t.attrs["units"] == "K"
    assert str(t["time"].values[0]).startswith("1959-01-02")
    lat = t["latitude"].values
    assert lat[0] < -85 and lat[-1] > 85 and np.all(np.diff(lat) > 0)  # Gaussian grid, stored south to north
    values = t.values
    # physical sanity: the stratosphere (10 hPa) is colder than the surface layer on the global mean,
    # the tropics warmer than the poles at 1000 hPa
    w = np.cos(np.deg2rad(lat))[:, None]
    mean = (values[0] * w).sum((-2, -1)) / (w.sum() * values.shape[-1])
    assert 180 < mean[0] < 250 and 270 < mean[-1] < 300
    assert values[0, -1, 14:18].mean() > values[0, -1, :3].mean() + 20


@pytest.mark.skipif(not EDA.exists(), reason="../shared/data is not available")
def test_real_eda_file_keeps_its_north_to_south_grid():
    t = select(xr.open_dataset(EDA).isel(member=0), "t", [850, 500], EDA.name)
    assert t.shape == (4, 2, 61, 120) and t["latitude"].values[0] == 90.0
    assert (t.sel(level=500).values < t.sel(level=850).values).mean() > 0.9  # colder aloft


def test_zarr_store_in_weatherbench2_layout(tmp_path):
    """A WeatherBench2-style zarr store (dims time, level, latitude, longitude; latitude ascending)."""
    ds = _synthetic().rename(pressure_level="level", lat="latitude", lon="longitude")
    path = tmp_path / "era5.zarr"
    ds.to_zarr(path, zarr_format=2)  # WeatherBench2 stores are zarr v2
    da = select(path, "temperature", [850], str(path))
    np.testing.assert_allclose(da.values[:, 0], ds["temperature"].sel(level=850).values)


@pytest.mark.skipif(not (WB2.exists() and EDA.exists()), reason="../shared/data is not available")
def test_real_fields_regridded_to_the_weatherbench2_grid_keep_their_area_mean():
    """ERA5 EDA temperature (3 deg, poles as rows) onto the 5.625 deg Gaussian grid of the WB2 file."""
    from slams_jax.data.regrid import Regridder, area_weights

    target = select(WB2, "temperature", [850], WB2.name)
    source = select(xr.open_dataset(EDA).isel(member=0), "t", [850, 500], EDA.name)
    regrid = Regridder(source["latitude"].values, source["longitude"].values, target["latitude"].values,
                       target["longitude"].values, method="conservative")
    x = source.values  # (time, level, 61, 120)
    y = regrid(x)
    assert y.shape == (4, 2, 32, 64) and np.isfinite(y).all()

    def area_mean(field, lat):  # cell areas from edge sines
        return (field * area_weights(lat)[:, None]).mean((-2, -1))

    # the target's outer rows stop short of the poles (edges at +-88.5), so the means differ only by the
    # two polar caps, about 0.03 % of the sphere (3e-5 relative seen)
    np.testing.assert_allclose(area_mean(y, target["latitude"].values), area_mean(x, source["latitude"].values),
                               rtol=5e-4)
    # and the regridded field is close to ERA5's own 850 hPa temperature of another date in scale and pattern
    assert abs(np.corrcoef(y[0, 0].mean(-1), target.values[0, 0].mean(-1))[0, 1]) > 0.9


@pytest.mark.skipif(not WB2.exists(), reason="../shared/data is not available")
def test_real_weatherbench2_file_read_lazily_gives_the_stored_values():
    src = GriddedSource(WB2, ["temperature@850", "temperature@500"], cadence="1D")
    assert list(src.times) == [np.datetime64("1959-01-02", "ns")] and src.units == ("K", "K")
    x = src.read(src.times)
    assert x.shape == (1, 2, 32, 64) and x.dtype == np.float32
    with xr.open_dataset(WB2) as ds:
        ref = ds["temperature"].sel(level=[850, 500]).transpose("level", "latitude", "longitude").values
    np.testing.assert_array_equal(x[0], ref.astype(np.float32))  # stored (level, longitude, latitude): transposed
