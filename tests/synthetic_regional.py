"""A small regional hourly 2 m temperature across the prime meridian, and station tables observing it.

The field has a diurnal cycle, a large-scale pattern drifting east and a smaller one drifting west, so that
space, time and the hour of day all carry information; latitude runs north to south, as ERA5 downloads.
"""

import numpy as np
import pandas as pd
import xarray as xr

LAT = np.arange(60.0, 39.0, -2.5)  # north to south
LON = np.arange(-10.0, 12.5, 2.5)  # across the prime meridian


def regional_t2m(hours=24 * 12, start="2021-01-01", seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    h = np.arange(hours, dtype=np.float64)[:, None, None]
    lat, lon = LAT[None, :, None], LON[None, None, :]
    diurnal = 3.0 * np.sin(2 * np.pi * (h % 24 - 9) / 24) * np.cos(np.deg2rad(lat))
    large = 4.0 * np.sin(np.deg2rad(8 * (lon - 0.4 * h)) + 0.3) * np.cos(np.deg2rad(6 * (lat - 50)))
    small = 1.5 * np.sin(np.deg2rad(25 * (lon + 0.6 * h))) * np.sin(np.deg2rad(20 * lat))
    t2m = 275 - 0.6 * (lat - 50) + diurnal + large + small + 0.2 * rng.standard_normal((hours, len(LAT), len(LON)))
    time = pd.date_range(start, periods=hours, freq="h")
    return xr.Dataset({"t2m": (("valid_time", "latitude", "longitude"), t2m.astype(np.float32), {"units": "K"})},
                      coords={"valid_time": time, "latitude": LAT, "longitude": LON})


def station_table(ds: xr.Dataset, times, n: int, seed: int, std: float = 0.5, prefix: str = "S") -> pd.DataFrame:
    """``n`` stations at random positions inside the grid, observing ``t2m`` (bilinear) with noise ``std``."""
    rng = np.random.default_rng(seed)
    lat = rng.uniform(LAT.min(), LAT.max(), n)
    lon = rng.uniform(LON.min(), LON.max(), n)
    field = ds["t2m"].rename(valid_time="time")
    rows = []
    for t in pd.to_datetime(times):
        values = field.sel(time=t).interp(latitude=xr.DataArray(lat, dims="s"), longitude=xr.DataArray(lon, dims="s"))
        for k in range(n):
            rows.append({"time": t, "lat": lat[k], "lon": lon[k], "variable": "t2m", "station": f"{prefix}{k}",
                         "observation": float(values[k]) + std * rng.standard_normal(), "std": std})
    return pd.DataFrame(rows)


def with_levels(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` as a user's file: CF names ``lat``/``lon``, float32 coordinates with attributes, and a levelled
    temperature ``t (valid_time, level, lat, lon)`` next to the surface ``t2m``."""
    t = xr.concat([ds["t2m"] - 10.0, ds["t2m"] - 30.0], dim="level").assign_coords(level=[850.0, 500.0])
    out = ds.assign(t=t.transpose("valid_time", "level", "latitude", "longitude"))
    out = out.rename(latitude="lat", longitude="lon")
    out = out.assign_coords(lat=out["lat"].astype(np.float32), lon=out["lon"].astype(np.float32))
    out["lat"].attrs = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"}
    out["lon"].attrs = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"}
    return out
