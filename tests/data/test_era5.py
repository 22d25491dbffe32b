"""ERA5 store reading: names, orientation, levels by value; the real WeatherBench2 file when present."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from slams_jax.data.era5 import DataError, open_store, select, standardize

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
WB2 = SHARED / "era5_wb2_64x32_37lev_19590102T00.nc"
EDA = SHARED / "era5_eda_members_pl_2017010100.nc"


def _synthetic(lat_ascending=True, lon_signed=False):
    """A (time, level, lat, lon) temperature whose value encodes its own coordinates."""
    time = pd.date_range("2000-01-01", periods=3, freq="D")
    level = np.array([1000.0, 850.0, 500.0])
    lat = np.linspace(-60, 60, 5)[:: 1 if lat_ascending else -1]
    lon = np.arange(0.0, 360.0, 90.0)
    t = (np.arange(3)[:, None, None, None] * 1e6 + level[None, :, None, None] * 1e2
         + lat[None, None, :, None] + lon[None, None, None, :] / 1e3)
    ds = xr.Dataset({"temperature": (("time", "pressure_level", "lat", "lon"), t.astype(np.float64))},
                    coords={"time": time, "pressure_level": level, "lat": lat, "lon": lon})
    if lon_signed:
        ds = ds.assign_coords(lon=np.where(lon >= 180, lon - 360, lon)).sortby("lon")
    return ds


@pytest.mark.parametrize("lat_ascending", [True, False])
@pytest.mark.parametrize("lon_signed", [False, True])
def test_standardize_and_select_give_the_exact_array(lat_ascending, lon_signed, tmp_path):
    path = tmp_path / "store.nc"
    _synthetic(lat_ascending, lon_signed).to_netcdf(path)
    da = select(standardize(open_store(path), str(path)), "temperature", [500, 1000], str(path))
    assert da.dims == ("time", "level", "latitude", "longitude")
    lat = np.linspace(60, -60, 5)  # north to south
    lon = np.arange(0.0, 360.0, 90.0)
    expected = (np.arange(3)[:, None, None, None] * 1e6 + np.array([500.0, 1000.0])[None, :, None, None] * 1e2
                + lat[None, None, :, None] + lon[None, None, None, :] / 1e3)
    np.testing.assert_allclose(da.values, expected)
    np.testing.assert_array_equal(da["latitude"].values, lat)
    np.testing.assert_array_equal(da["longitude"].values, lon)


def test_errors_name_the_store_and_what_it_has(tmp_path):
    path = tmp_path / "store.nc"
    _synthetic().to_netcdf(path)
    ds = standardize(open_store(path), "s.nc")
    with pytest.raises(DataError, match=r"s.nc: no variable 'temp'; it has \['temperature'\]"):
        select(ds, "temp", [500], "s.nc")
    with pytest.raises(DataError, match=r"lacks pressure levels \[10\] hPa; it has \[1000.0, 850.0, 500.0\]"):
        select(ds, "temperature", [10, 500], "s.nc")
    with pytest.raises(DataError, match="no latitude dimension"):
        standardize(xr.Dataset({"x": (("a", "b"), np.zeros((2, 2)))}), "bad")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_store(tmp_path / "missing.zarr")


@pytest.mark.skipif(not WB2.exists(), reason="../shared/data is not available")
def test_real_weatherbench2_file_loads_with_levels_units_and_orientation():
    ds = standardize(open_store(WB2), WB2.name)
    levels = [10, 50, 100, 200, 300, 500, 700, 850, 925, 1000]  # the paper's
    t = select(ds, "temperature", levels, WB2.name)
    assert t.shape == (1, 10, 32, 64) and t.attrs["units"] == "K"
    assert str(t["time"].values[0]).startswith("1959-01-02")
    lat = t["latitude"].values
    assert lat[0] > 85 and lat[-1] < -85 and np.all(np.diff(lat) < 0)  # Gaussian grid, north to south
    values = t.values
    # physical sanity: the stratosphere (10 hPa) is colder than the surface layer on the global mean,
    # the tropics warmer than the poles at 1000 hPa
    w = np.cos(np.deg2rad(lat))[:, None]
    mean = (values[0] * w).sum((-2, -1)) / (w.sum() * values.shape[-1])
    assert 180 < mean[0] < 250 and 270 < mean[-1] < 300
    assert values[0, -1, 14:18].mean() > values[0, -1, :3].mean() + 20


@pytest.mark.skipif(not EDA.exists(), reason="../shared/data is not available")
def test_real_eda_file_keeps_its_north_to_south_grid():
    ds = standardize(open_store(EDA), EDA.name).isel(member=0)
    t = select(ds, "t", [850, 500], EDA.name)
    assert t.shape == (4, 2, 61, 120) and t["latitude"].values[0] == 90.0
    assert (t.sel(level=500).values < t.sel(level=850).values).mean() > 0.9  # colder aloft


def test_zarr_store_in_weatherbench2_layout(tmp_path):
    """A WeatherBench2-style zarr store (dims time, level, latitude, longitude; latitude ascending)."""
    ds = _synthetic().rename(pressure_level="level", lat="latitude", lon="longitude")
    path = tmp_path / "era5.zarr"
    ds.to_zarr(path, zarr_format=2)  # WeatherBench2 stores are zarr v2
    da = select(standardize(open_store(path), str(path)), "temperature", [850], str(path))
    np.testing.assert_allclose(da.values[:, 0], ds["temperature"].sel(level=850).values[:, ::-1])


@pytest.mark.skipif(not (WB2.exists() and EDA.exists()), reason="../shared/data is not available")
def test_real_fields_regridded_to_the_weatherbench2_grid_keep_their_area_mean():
    """ERA5 EDA temperature (3 deg, poles as rows) onto the 5.625 deg Gaussian grid of the WB2 file."""
    from slams_jax.data.regrid import Regridder, area_weights

    target = select(standardize(open_store(WB2), WB2.name), "temperature", [850], WB2.name)
    source = select(standardize(open_store(EDA), EDA.name).isel(member=0), "t", [850, 500], EDA.name)
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
def test_real_weatherbench2_file_through_the_daily_source():
    from slams_jax.data.era5 import StoreSource

    src = StoreSource(WB2, "temperature", [850, 500])
    assert src.days.tolist() == [np.datetime64("1959-01-02", "D")] and src.units == "K"
    x = src.read(src.days)
    assert x.shape == (1, 2, 32, 64) and x.dtype == np.float32
    ref = select(standardize(open_store(WB2), WB2.name), "temperature", [850, 500], WB2.name).values
    np.testing.assert_array_equal(x, ref)
