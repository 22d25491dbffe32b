"""Tests of slams_jax.data.regrid: conservation, exactness, symmetries, NaN handling and errors.

Expected values are computed independently of the module: cell areas from edge sines written out here,
block means with reshapes, bilinear weights by hand.
"""

import numpy as np
import pytest
import xarray as xr

from slams_jax.data.regrid import Regridder, area_weights, regrid_dataarray

# 0.5-degree source (CPC-like), ERA5 1.5-degree and WeatherBench2 5.625-degree targets.
LAT_05 = np.arange(-89.75, 90.0, 0.5)
LON_05 = np.arange(0.25, 360.0, 0.5)
LAT_ERA5 = np.linspace(90.0, -90.0, 121)
LON_ERA5 = np.arange(240) * 1.5
LAT_WB2 = np.linspace(-87.1875, 87.1875, 32)
LON_WB2 = np.arange(64) * 5.625


def row_areas(lat, spacing):
    """sin(upper edge) - sin(lower edge) per row of an equally spaced grid, edges clipped to +-90."""
    upper = np.clip(lat + spacing / 2, -90, 90)
    lower = np.clip(lat - spacing / 2, -90, 90)
    return np.abs(np.sin(np.deg2rad(upper)) - np.sin(np.deg2rad(lower)))


def global_mean(field, lat, spacing):
    w = row_areas(lat, spacing)[:, None]
    return (field * w).sum((-2, -1)) / (w.sum() * field.shape[-1])


def block_mean(field, weights, factor):
    """Area-weighted means over factor x factor blocks; ``weights`` per source row; NaN-free field."""
    n_lat, n_lon = field.shape[-2:]
    w = np.broadcast_to(weights[:, None], field.shape)
    shape = field.shape[:-2] + (n_lat // factor, factor, n_lon // factor, factor)
    return (field * w).reshape(shape).sum((-3, -1)) / w.reshape(shape).sum((-3, -1))


@pytest.mark.parametrize(
    "tgt_lat, tgt_lon, spacing", [(LAT_ERA5, LON_ERA5, 1.5), (LAT_WB2, LON_WB2, 5.625)], ids=["era5", "wb2"]
)
def test_conservative_preserves_global_mean(tgt_lat, tgt_lon, spacing):
    field = np.random.default_rng(0).uniform(0.0, 10.0, (2, LAT_05.size, LON_05.size))
    out = Regridder(LAT_05, LON_05, tgt_lat, tgt_lon)(field)
    assert out.shape == (2, tgt_lat.size, tgt_lon.size)
    np.testing.assert_allclose(global_mean(out, tgt_lat, spacing), global_mean(field, LAT_05, 0.5), rtol=1e-6)
    # area_weights gives the same row areas, normalized to mean 1.
    np.testing.assert_allclose(
        (out * area_weights(tgt_lat)[:, None]).mean((-2, -1)), global_mean(field, LAT_05, 0.5), rtol=1e-6
    )


def test_area_weights():
    # Away from the poles, sin(lat + d/2) - sin(lat - d/2) = 2 sin(d/2) cos(lat): exactly cos-lat weights.
    cos = np.cos(np.deg2rad(LAT_WB2))
    np.testing.assert_allclose(area_weights(LAT_WB2), cos / cos.mean(), rtol=1e-12)
    w = area_weights(LAT_ERA5)
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-12)
    # A pole row is a half cell, 90 - 0.75 .. 90; order follows the input (descending here).
    np.testing.assert_allclose(w[0] / w[60], (1 - np.sin(np.deg2rad(89.25))) / (2 * np.sin(np.deg2rad(0.75))))
    np.testing.assert_allclose(w, area_weights(LAT_ERA5[::-1])[::-1])


@pytest.mark.parametrize("method", ["conservative", "bilinear"])
@pytest.mark.parametrize("tgt_lon", [LON_WB2, LON_WB2 - 180.0], ids=["lon0_360", "lon-180_180"])
def test_constant_stays_constant_with_mask(method, tgt_lon):
    lat, lon = np.arange(-88.5, 90, 3.0), np.arange(0, 360, 2.5)
    field = np.full((lat.size, lon.size), 3.7)
    masked = field.copy()
    masked[(lat > 20)[:, None] & ((lon > 100) & (lon < 200))[None, :]] = np.nan
    regridder = Regridder(lat, lon, LAT_WB2, tgt_lon, method=method)
    np.testing.assert_allclose(regridder(field), 3.7, rtol=1e-12)
    out = regridder(masked)
    finite = np.isfinite(out)
    np.testing.assert_allclose(out[finite], 3.7, rtol=1e-12)
    # The mask removes some but not all target cells; all cells far from it stay.
    assert 0 < (~finite).sum() < out.size
    far = (LAT_WB2 < 10)[:, None] | ((np.mod(tgt_lon, 360) < 90) | (np.mod(tgt_lon, 360) > 210))[None, :]
    assert finite[far].all()


def test_bilinear_exact_on_linear_field_and_wraps():
    lat, lon = np.arange(-88.75, 90, 2.5), np.arange(0, 360, 2.5)  # OLR-like 2.5-degree grid
    field = 0.3 * lat[:, None] - 0.02 * lon[None, :] + 1.0
    rng = np.random.default_rng(1)
    tgt_lat = np.sort(rng.uniform(lat[0], lat[-1], 17))
    tgt_lon = np.sort(rng.uniform(0, lon[-1], 23))
    out = Regridder(lat, lon, tgt_lat, tgt_lon, method="bilinear")(field)
    np.testing.assert_allclose(out, 0.3 * tgt_lat[:, None] - 0.02 * tgt_lon[None, :] + 1.0, rtol=1e-12)

    # Across the wrap: between the last (357.5) and the first (0) column; same from either convention.
    columns = rng.normal(size=(lat.size, lon.size))
    wrap_lon = np.array([358.0, 359.5, 359.999])
    w_first = (wrap_lon - 357.5) / 2.5
    expected = (1 - w_first) * columns[:, -1:] + w_first * columns[:, :1]
    for tgt_lon in (wrap_lon, wrap_lon - 360):
        out = Regridder(lat, lon, lat, tgt_lon, method="bilinear")(columns)
        np.testing.assert_allclose(out, expected, rtol=1e-12)

    # Latitude beyond the source rows clamps to the nearest row (no extrapolation, no pole wrap).
    out = Regridder(lat, lon, [-90.0, 90.0], lon, method="bilinear")(columns)
    np.testing.assert_allclose(out, columns[[0, -1]], rtol=1e-12)


@pytest.mark.parametrize("method", ["conservative", "bilinear"])
def test_source_order_and_longitude_convention_do_not_matter(method):
    lat, lon = np.arange(-87.5, 90, 5.0), np.arange(0, 360, 5.0)
    field = np.random.default_rng(2).normal(size=(3, lat.size, lon.size))
    reference = Regridder(lat, lon, LAT_ERA5, LON_ERA5, method=method)(field)
    # Descending source latitude.
    flipped = Regridder(lat[::-1], lon, LAT_ERA5, LON_ERA5, method=method)(field[..., ::-1, :])
    np.testing.assert_allclose(flipped, reference, rtol=1e-12, atol=1e-12)
    # Source longitudes in [-180, 180): columns 180..355 become -180..-5 and move to the front.
    lon_180 = np.concatenate([lon[36:] - 360, lon[:36]])
    rolled = Regridder(lat, lon_180, LAT_ERA5, LON_ERA5, method=method)(np.roll(field, 36, axis=-1))
    np.testing.assert_allclose(rolled, reference, rtol=1e-12, atol=1e-12)
    # Target in the other order and convention: the output follows the target's order.
    tgt_lon = np.where(LON_ERA5 >= 180, LON_ERA5 - 360, LON_ERA5)
    order = np.argsort(tgt_lon)
    out = Regridder(lat, lon, LAT_ERA5[::-1], tgt_lon[order], method=method)(field)
    np.testing.assert_allclose(out, reference[..., ::-1, :][..., order], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lat, lon", [(LAT_ERA5, LON_ERA5), (LAT_WB2, LON_WB2)], ids=["era5", "wb2"])
def test_conservative_to_itself_is_identity(lat, lon):
    field = np.random.default_rng(3).normal(size=(lat.size, lon.size))
    np.testing.assert_allclose(Regridder(lat, lon, lat, lon)(field), field, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shift", [0, 1], ids=["aligned", "blocks_across_wrap"])
def test_conservative_coarsening_is_area_weighted_block_mean(shift):
    field = np.random.default_rng(4).normal(size=(2, LAT_05.size, LON_05.size))
    factor = 3
    tgt_lat = LAT_05.reshape(-1, factor).mean(1)
    # Target cell k covers source columns k*factor - shift ... ; with shift 1, cell 0 is (719, 0, 1).
    tgt_lon = LON_05.reshape(-1, factor).mean(1) - 0.5 * shift
    out = Regridder(LAT_05, LON_05, tgt_lat, tgt_lon)(field)
    expected = block_mean(np.roll(field, shift, axis=-1), row_areas(LAT_05, 0.5), factor)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


def test_conservative_valid_fraction_random_mask():
    rng = np.random.default_rng(5)
    lat, lon, factor = np.arange(-89.0, 90, 2.0), np.arange(1.0, 360, 2.0), 3
    field = rng.normal(size=(lat.size, lon.size))
    valid = rng.uniform(size=field.shape) < 0.5
    out, fraction = Regridder(lat, lon, lat.reshape(-1, factor).mean(1), lon.reshape(-1, factor).mean(1),
                              min_valid_fraction=0.45).regrid_with_fraction(np.where(valid, field, np.nan))
    w = np.broadcast_to(row_areas(lat, 2.0)[:, None], field.shape)
    shape = (lat.size // factor, factor, lon.size // factor, factor)
    valid_area = (w * valid).reshape(shape).sum((1, 3))
    expected_fraction = valid_area / w.reshape(shape).sum((1, 3))
    np.testing.assert_allclose(fraction, expected_fraction, rtol=1e-12)
    with np.errstate(invalid="ignore"):
        expected = (w * np.where(valid, field, 0)).reshape(shape).sum((1, 3)) / valid_area
    expected[expected_fraction < 0.45] = np.nan
    assert np.isnan(expected).any() and np.isfinite(expected).any()
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)  # NaN positions must match too


def test_conservative_valid_fraction_ocean_mask():
    # 1-degree source, missing ("ocean") over longitudes 1..181 at all latitudes; 5.625-degree target.
    lat, lon = np.arange(-89.5, 90, 1.0), np.arange(0.5, 360, 1.0)
    field = np.where((lon > 1) & (lon < 181), np.nan, 2.0)[None, :].repeat(lat.size, 0)
    out, fraction = Regridder(lat, lon, LAT_WB2, LON_WB2).regrid_with_fraction(field)
    # Target cell 0 spans -2.8125..2.8125: valid -2.8125..1. Cell 32 spans 177.1875..182.8125: valid 181..
    np.testing.assert_allclose(fraction[:, 0], (1 + 2.8125) / 5.625, rtol=1e-12)
    np.testing.assert_allclose(fraction[:, 32], (182.8125 - 181) / 5.625, rtol=1e-12)
    np.testing.assert_allclose(fraction[:, 1:32], 0.0, atol=1e-15)
    np.testing.assert_allclose(fraction[:, 33:], 1.0, rtol=1e-12)
    assert np.isfinite(out[:, 0]).all() and np.isnan(out[:, 1:33]).all()
    np.testing.assert_allclose(out[:, 0], 2.0, rtol=1e-12)
    # Lowering the threshold keeps the cell that is 32% valid.
    out = Regridder(lat, lon, LAT_WB2, LON_WB2, min_valid_fraction=0.3)(field)
    np.testing.assert_allclose(out[:, 32], 2.0, rtol=1e-12)


def test_bilinear_nan_rule():
    lat, lon = np.arange(-85.0, 90, 10.0), np.arange(0, 360, 10.0)
    field = np.random.default_rng(6).normal(size=(lat.size, lon.size))
    field[9, 0] = np.nan  # the node at (5, 0)
    tgt_lat, tgt_lon = np.array([0.0, 5.0, 10.0, 15.0, 30.0]), np.array([-5.0, 0.0, 5.0, 10.0, 20.0])
    out, fraction = Regridder(lat, lon, tgt_lat, tgt_lon, method="bilinear").regrid_with_fraction(field)
    # NaN exactly where the node (5, 0) has a non-zero weight: latitude 0..15 and longitude -10..10 exclusive.
    lat_uses = (tgt_lat > -5) & (tgt_lat < 15)
    lon_uses = (np.abs(tgt_lon) < 10)
    expected_nan = lat_uses[:, None] & lon_uses[None, :]
    np.testing.assert_array_equal(np.isnan(out), expected_nan)
    # The point at (0, 5) has weight 1/4 on the NaN node.
    np.testing.assert_allclose(fraction[0, 2], 0.75, rtol=1e-12)
    np.testing.assert_allclose(fraction[~expected_nan], 1.0)
    # On a node next to the NaN one: only that node counts.
    np.testing.assert_allclose(out[1, 3], field[9, 1], rtol=1e-12)


@pytest.mark.parametrize("method", ["conservative", "bilinear"])
def test_nan_in_a_batch_stays_in_its_own_field(method):
    """Days x channels regridded at once (as the ERA5 reader does): each field keeps its own NaN."""
    lat, lon = np.arange(-85.0, 90, 10.0), np.arange(0, 360, 10.0)
    fields = np.random.default_rng(8).normal(size=(3, lat.size, lon.size))
    fields[1, 9, 0] = np.nan  # only the second field misses the node at (5, 0)
    regridder = Regridder(lat, lon, LAT_WB2, LON_WB2, method=method)
    out, fraction = regridder.regrid_with_fraction(fields)
    for i in range(3):
        alone, alone_fraction = regridder.regrid_with_fraction(fields[i])
        np.testing.assert_array_equal(out[i], alone)
        np.testing.assert_array_equal(fraction[i], alone_fraction)
    assert np.isnan(out[1]).any() and not np.isnan(out[[0, 2]]).any()


@pytest.mark.parametrize("method", ["conservative", "bilinear"])
@pytest.mark.parametrize("src_lat", [LAT_05, LAT_05[::-1]], ids=["ascending", "descending"])
def test_no_leak_across_poles(method, src_lat):
    field = np.zeros((src_lat.size, LON_05.size))
    field[np.argmax(src_lat)] = 1.0  # northernmost row
    out = Regridder(src_lat, LON_05, LAT_ERA5, LON_ERA5, method=method)(field)
    south, north = np.argmin(LAT_ERA5), np.argmax(LAT_ERA5)
    assert np.all(out[south] == 0.0)
    assert np.all(out[north] > 0.0)
    # Only the rows touching the northernmost source row see it.
    assert np.all(out[np.abs(LAT_ERA5) < 88] == 0.0)


def test_regional_source_longitudes_are_not_wrapped():
    lat, lon = np.arange(-89.5, 90, 1.0), np.arange(10.5, 60, 1.0)  # cells 10..60 east
    field = np.full((lat.size, lon.size), 5.0)
    out = Regridder(lat, lon, LAT_WB2, LON_WB2)(field)
    inside = (LON_WB2 - 2.8125 >= 10) & (LON_WB2 + 2.8125 <= 60)
    outside = (LON_WB2 + 2.8125 <= 10) | (LON_WB2 - 2.8125 >= 60)
    np.testing.assert_allclose(out[:, inside], 5.0, rtol=1e-12)
    assert np.isnan(out[:, outside]).all()
    out = Regridder(lat, lon, LAT_WB2, LON_WB2, method="bilinear")(field)
    np.testing.assert_allclose(out[:, (LON_WB2 >= 10.5) & (LON_WB2 <= 59.5)], 5.0, rtol=1e-12)
    assert np.isnan(out[:, (LON_WB2 < 10.5) | (LON_WB2 > 59.5)]).all()


@pytest.mark.parametrize("method", ["conservative", "bilinear"])
def test_leading_dims_and_dtype(method):
    field = np.random.default_rng(7).normal(size=(2, 3, LAT_05.size, LON_05.size)).astype(np.float32)
    regridder = Regridder(LAT_05, LON_05, LAT_WB2, LON_WB2, method=method)
    out = regridder(field)
    assert out.dtype == np.float32 and out.shape == (2, 3, 32, 64)
    np.testing.assert_allclose(out[1, 2], regridder(field[1, 2].astype(np.float64)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"src_lat": [0.0, 10.0, 5.0]}, r"source latitude must be strictly monotonic.*index 2"),
        ({"src_lat": [0.0, 10.0, 10.0, 20.0]}, r"source latitude has duplicated values: 10.0"),
        ({"tgt_lat": [80.0, 90.0, 100.0]}, r"target latitude must lie in \[-90, 90\].*100"),
        ({"src_lon": [0.0, 90.0, 45.0]}, r"source longitude must be strictly monotonic"),
        ({"tgt_lon": np.arange(0, 361, 90.0)}, r"target longitude spans 360.*both 0 and 360"),
        ({"src_lon": [0.0, 0.0, 10.0]}, r"source longitude has duplicated values"),
        ({"method": "nearest"}, r"unknown regridding method 'nearest'; valid methods: bilinear, conservative"),
    ],
)
def test_grid_errors(kwargs, message):
    args = {"src_lat": [-45.0, 45.0], "src_lon": [0.0, 180.0], "tgt_lat": [0.0, 10.0], "tgt_lon": [0.0, 10.0]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Regridder(**args)


def test_shape_error_names_shapes():
    regridder = Regridder(LAT_WB2, LON_WB2, LAT_WB2, LON_WB2)
    with pytest.raises(ValueError, match=r"source grid shape \(lat, lon\) = \(32, 64\); got .* \(5, 64, 32\)"):
        regridder(np.zeros((5, 64, 32)))


@pytest.mark.parametrize("names", [("lat", "lon"), ("latitude", "longitude")])
def test_regrid_dataarray(names):
    lat_name, lon_name = names
    field = np.random.default_rng(8).normal(size=(LAT_05.size, 4, LON_05.size))
    da = xr.DataArray(
        field,
        dims=(lat_name, "time", lon_name),
        coords={lat_name: LAT_05, "time": np.arange(4), lon_name: LON_05, "label": "x"},
        name="precip",
        attrs={"units": "mm/day"},
    )
    da[lat_name].attrs["units"] = "degrees_north"
    out = regrid_dataarray(da, LAT_ERA5, LON_ERA5, method="conservative")
    assert out.dims == da.dims and out.name == "precip" and out.attrs == {"units": "mm/day"}
    np.testing.assert_array_equal(out[lat_name].values, LAT_ERA5)
    np.testing.assert_array_equal(out[lon_name].values, LON_ERA5)
    np.testing.assert_array_equal(out["time"].values, np.arange(4))
    assert out["label"].item() == "x" and out[lat_name].attrs["units"] == "degrees_north"
    expected = Regridder(LAT_05, LON_05, LAT_ERA5, LON_ERA5)(field.transpose(1, 0, 2))
    np.testing.assert_allclose(out.transpose("time", lat_name, lon_name).values, expected, rtol=1e-12)


def test_regrid_dataarray_errors():
    da = xr.DataArray(np.zeros((3, 4)), dims=("y", "x"), coords={"y": np.arange(3.0), "x": np.arange(4.0)})
    with pytest.raises(ValueError, match=r"no latitude dims among \('y', 'x'\)"):
        regrid_dataarray(da, LAT_WB2, LON_WB2)
    out = regrid_dataarray(da, [0.5, 1.5], [0.5, 2.5], method="bilinear", lat_name="y", lon_name="x")
    np.testing.assert_allclose(out.values, 0.0)
    with pytest.raises(ValueError, match=r"latitude dim 'lat' is not a dim .* \('y', 'x'\)"):
        regrid_dataarray(da, LAT_WB2, LON_WB2, lat_name="lat", lon_name="x")
