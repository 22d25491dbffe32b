"""Tiny synthetic ERA5, CPC and OLR sources in their native layouts, and the ERA5 config pointed at them."""

import numpy as np
import pandas as pd
import xarray as xr

from helpers import load_config

LAT = np.linspace(-78.75, 78.75, 8)  # the state's grid, stored south to north (WeatherBench2 style)
LON = np.arange(16) * 22.5
LEVELS = (850.0, 500.0)


def state_store(path, start="2000-01-01", days=40):
    time = pd.date_range(start, periods=4 * days, freq="6h")
    rng = np.random.default_rng(0)
    levels = [10.0, 50.0, 100.0, 200.0, 300.0, 500.0, 700.0, 850.0, 925.0, 1000.0]  # the paper's
    t = 250 + 10 * rng.standard_normal((len(time), len(levels), len(LAT), len(LON)))
    ds = xr.Dataset({"temperature": (("time", "level", "latitude", "longitude"), t.astype(np.float32),
                                     {"units": "K"})},
                    coords={"time": time, "level": levels, "latitude": LAT, "longitude": LON})
    ds.to_zarr(path, zarr_format=2)
    return ds


def precip_file(path, days=40):
    """CPC-like: finer grid (11.25 deg), latitude north to south, NaN over an 'ocean', daily."""
    lat = np.linspace(84.375, -84.375, 16)
    lon = np.arange(32) * 11.25
    time = pd.date_range("2000-01-01", periods=days, freq="D")
    p = np.abs(np.random.default_rng(1).standard_normal((days, 16, 32))).astype(np.float32)
    p[:, :, 16:] = np.nan  # the eastern half is ocean
    ds = xr.Dataset({"precip": (("time", "lat", "lon"), p, {"units": "mm/day"})},
                    coords={"time": time, "lat": lat, "lon": lon})
    ds.to_netcdf(path)
    return ds


def olr_file(path, days=40, missing=()):
    """NOAA-OLR-like: coarser grid (45 deg), twice daily, longitudes -180..180, some days missing."""
    lat = np.array([-67.5, -22.5, 22.5, 67.5])
    lon = np.arange(-180.0, 180.0, 45.0)
    time = pd.date_range("2000-01-01", periods=2 * days, freq="12h")
    keep = ~np.isin(time.normalize(), pd.to_datetime(list(missing)))
    olr = (200 + 30 * np.random.default_rng(2).standard_normal((keep.sum(), 4, 8))).astype(np.float32)
    ds = xr.Dataset({"olr": (("time", "lat", "lon"), olr, {"units": "W m-2"})},
                    coords={"time": time[keep], "lat": lat, "lon": lon})
    ds.to_netcdf(path)
    return ds


def era5_config(tmp_path, missing=(), policy="error"):
    """The ERA5 config on synthetic sources written to ``tmp_path``: 40 days, 8 x 16 grid, 2 levels; returns
    ``(config, state, precip, olr)``."""
    state = state_store(tmp_path / "era5.zarr")
    precip = precip_file(tmp_path / "cpc.nc")
    olr = olr_file(tmp_path / "olr.nc", missing=missing)
    c = load_config("era5")
    c.data.path = str(tmp_path / "era5.zarr")
    c.data.variables = ("t850=temperature@850", "t500=temperature@500")
    c.data.train, c.data.valid, c.data.test = (("2000-01-01", "2000-01-24"), ("2000-01-25", "2000-01-31"),
                                               ("2000-02-02", "2000-02-09"))
    c.data.missing = policy
    c.data.normalization_states = 1000
    c.data.aux.precip.path = str(tmp_path / "cpc.nc")
    c.data.aux.olr.path = str(tmp_path / "olr.nc")
    return c, state, precip, olr
