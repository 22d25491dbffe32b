"""Stations on any rectilinear grid: regional, non-uniform, crossing 0 E, either direction; periodic only if global."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.observation.operators import Stations

# non-uniform, descending latitudes; a regional, non-uniform longitude axis from 10 W to 10 E
LAT = np.array([52.0, 50.5, 47.0, 46.0, 41.0, 40.0])
LON_180 = np.array([-10.0, -6.5, -3.0, -1.0, 0.0, 0.5, 2.0, 5.0, 10.0])  # [-180, 180) form
LON_360 = np.where(LON_180 < 0, LON_180 + 360.0, LON_180)  # 350, 353.5, ..., 0, 0.5, ... (ascending mod 360)


def _bilinear(lat, lon):
    """A field linear in latitude and in (signed) longitude separately, so bilinear interpolation is exact."""
    lon = np.mod(np.asarray(lon) + 180.0, 360.0) - 180.0
    return 1.5 + 0.3 * np.asarray(lat) - 0.7 * lon + 0.05 * np.asarray(lat) * lon


def _grid_field(lat, lon, channels=2):
    f = _bilinear(lat[:, None], lon[None, :])
    return np.stack([f * (c + 1) for c in range(channels)], -1)[None].astype(np.float32)  # (1, lat, lon, c)


STATION_LAT = np.array([51.0, 40.0, 46.7, 52.0, 43.2, 49.99])
STATION_LON = np.array([-9.9, 359.75, 0.2, 10.0, -0.5 + 720.0, 3.3])  # any spelling modulo 360


@pytest.mark.parametrize("grid_lon", [LON_180, LON_360, LON_180[::-1], LON_360[::-1]],
                         ids=["ascending_180", "ascending_mixed_360", "descending_180", "descending_mixed_360"])
@pytest.mark.parametrize("lat_order", [1, -1], ids=["lat_descending", "lat_ascending"])
def test_exact_on_a_bilinear_field_of_a_regional_grid_crossing_0e(grid_lon, lat_order):
    grid_lat = LAT[::lat_order]
    op = Stations(STATION_LAT, STATION_LON, grid_lat, grid_lon)
    assert op.periodic is False
    y = np.asarray(op(jnp.asarray(_grid_field(grid_lat, grid_lon))))
    expected = _bilinear(STATION_LAT, STATION_LON)
    assert y.shape == (1, 6, 2)
    np.testing.assert_allclose(y[0, :, 0], expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(y[0, :, 1], 2 * expected, rtol=1e-5, atol=1e-4)


def test_the_adjoint_is_exact():
    op = Stations(STATION_LAT, STATION_LON, LAT, LON_360)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, LAT.size, LON_360.size, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, STATION_LAT.size, 2)), jnp.float32)
    _, vjp = jax.vjp(op, jnp.zeros_like(x))
    (adjoint,) = vjp(w)
    np.testing.assert_allclose(float(jnp.vdot(op(x), w)), float(jnp.vdot(x, adjoint)), rtol=1e-5)


def test_longitude_wraps_only_on_a_global_grid():
    rng = np.random.default_rng(1)
    # a global, non-uniform axis in [-180, 180): gaps of 1..6 degrees, 2..8 round the seam
    global_lon = -179.0 + np.concatenate([[0.0], np.cumsum(rng.uniform(1.0, 6.0, 200))])
    global_lon = global_lon[global_lon < 179.0]
    assert global_lon[0] + 360 - global_lon[-1] <= 1.5 * np.diff(global_lon).max()
    seam = 0.5 * (global_lon[-1] + global_lon[0] + 360.0)  # between the last column and the first
    op = Stations((45.0,), (seam,), LAT, global_lon)
    assert op.periodic is True
    x = np.asarray(rng.normal(size=(1, LAT.size, global_lon.size, 1)), np.float32)
    y = np.asarray(op(jnp.asarray(x)))
    w = (45.0 - 46.0) / (41.0 - 46.0)  # rows 3 (46) and 4 (41)
    rows = (1 - w) * x[0, 3] + w * x[0, 4]
    np.testing.assert_allclose(y[0, 0], 0.5 * (rows[-1] + rows[0]), rtol=1e-5)
    with pytest.raises(ValueError, match="not periodic"):  # forced regional: the seam is outside
        Stations((45.0,), (seam,), LAT, global_lon, periodic=False)
    # a regional grid never wraps unless told to
    outside = 180.0
    with pytest.raises(ValueError, match=r"longitudes from -10 east to 10, not periodic"):
        Stations((45.0,), (outside,), LAT, LON_180)
    forced = Stations((45.0,), (outside,), LAT, LON_180, periodic=True)
    x = _grid_field(LAT, LON_180, channels=1)
    middle = (1 - w) * x[0, 3, :, 0] + w * x[0, 4, :, 0]
    np.testing.assert_allclose(np.asarray(forced(jnp.asarray(x)))[0, 0, 0], 0.5 * (middle[-1] + middle[0]),
                               rtol=1e-5)


def test_a_global_0_360_grid_is_periodic_and_reads_any_longitude_spelling():
    grid_lon = np.arange(0.0, 360.0, 2.5)
    op = Stations((45.0, 45.0, 45.0), (358.75, -1.25, 718.75), LAT, grid_lon)
    assert op.periodic is True
    x = _grid_field(LAT, grid_lon, channels=1) * 0 + np.arange(grid_lon.size, dtype=np.float32)[None, None, :, None]
    np.testing.assert_allclose(np.asarray(op(jnp.asarray(x))).ravel(), [71.5, 71.5, 71.5], rtol=1e-6)


def test_stations_outside_are_refused_all_at_once_by_name():
    lat = (45.0, 60.0, 45.0, 30.0, 45.0, 45.0, 45.0, 45.0, 45.0)
    lon = (0.0, 0.0, 20.0, 0.0, -20.0, 180.0, 100.0, 5.0, 11.0)
    names = tuple(f"WMO{k}" for k in range(9))
    message = ("Stations: 7 of 9 stations lie outside the grid (latitude range [40.0, 52.0], longitudes from -10 "
               "east to 10, not periodic): station 'WMO1' at latitude 60.0, longitude 0.0, station 'WMO2' at "
               "latitude 45.0, longitude 20.0, station 'WMO3' at latitude 30.0, longitude 0.0, station 'WMO4' at "
               "latitude 45.0, longitude -20.0, station 'WMO5' at latitude 45.0, longitude 180.0 and 2 more")
    with pytest.raises(ValueError, match=re.escape(message)):
        Stations(lat, lon, LAT, LON_180, names=names)
    with pytest.raises(ValueError, match=r": station 1 at latitude 60\.0"):  # without names: the indices
        Stations(lat, lon, LAT, LON_180)
    # names are labels: they change neither equality nor the hash (one compiled program per geometry)
    a, b = Stations((45.0,), (0.0,), LAT, LON_180, names=("A",)), Stations((45.0,), (0.0,), LAT, LON_180)
    assert a == b and hash(a) == hash(b)


def test_grid_longitudes_must_be_monotonic_modulo_the_period():
    with pytest.raises(ValueError, match="strictly ascending or strictly descending longitudes"):
        Stations((45.0,), (0.0,), LAT, (350.0, 355.0, 0.0, 358.0))
    with pytest.raises(ValueError, match="some column repeats another"):
        Stations((45.0,), (0.0,), LAT, np.arange(0.0, 361.0, 10.0))
