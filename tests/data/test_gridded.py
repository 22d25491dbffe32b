"""The dataset source on users' data: a regional hourly grid across 0 E, cadences, periodicity, padding, checks."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from helpers import load_config, shrink_networks
from slams_jax.data.gridded import GriddedSource, Grid, detect_periodic, load_splits, resolve_padding, window_dataset
from slams_jax.errors import ConfigError, DataError
from slams_jax.pipeline.configuration import settings_from_config

LAT = np.arange(60.0, 39.0, -2.5)  # north to south, as ERA5 downloads come
LON = np.arange(-10.0, 12.5, 2.5)  # across the prime meridian


def regional(hours=24 * 12, lon=LON, start="2021-01-01"):
    """An hourly single-level field whose value encodes its hour, latitude and longitude."""
    time = pd.date_range(start, periods=hours, freq="h")
    h = np.arange(hours, dtype=np.float64)
    t2m = 270 + h[:, None, None] * 1e-2 + LAT[None, :, None] * 0.1 + np.asarray(lon)[None, None, :] * 1e-3
    return xr.Dataset({"t2m": (("valid_time", "latitude", "longitude"), t2m.astype(np.float32), {"units": "K"})},
                      coords={"valid_time": time, "latitude": LAT, "longitude": lon})


def dataset_config(**data):
    c = load_config("dataset")
    c.data.variables = ("t2m",)
    c.data.train, c.data.valid, c.data.test = ("2021-01-01", "2021-01-06"), ("2021-01-07", "2021-01-08"), (
        "2021-01-09", "2021-01-12")
    for k, v in data.items():
        setattr(c.data, k, v)
    return c


@pytest.mark.parametrize("lon", [LON, np.mod(LON, 360.0)], ids=["signed", "0-360 across the seam"])
def test_a_regional_grid_across_0E_is_never_reordered(lon, tmp_path):
    path = tmp_path / "t2m.nc"
    ds = regional(lon=lon)
    ds.to_netcdf(path)
    c = dataset_config(path=str(path), cadence="6h")
    data = settings_from_config(c).data
    window = window_dataset(data, "test", 1, 3)
    np.testing.assert_array_equal(window["longitude"].values, lon)  # the file's columns, in the file's order
    np.testing.assert_array_equal(window["latitude"].values, LAT)
    assert not window.attrs["periodic_longitude"]
    hours = np.array([8 * 24 + 6, 8 * 24 + 12, 8 * 24 + 18])  # 2021-01-09 06, 12, 18 UTC (instant)
    np.testing.assert_allclose(window["t2m"].values, ds["t2m"].values[hours], rtol=1e-7)
    np.testing.assert_array_equal(window["time"].values, ds["valid_time"].values[hours])


def test_cadence_instant_mean_and_the_files_own(tmp_path):
    ds = regional()
    native = GriddedSource(ds, ["t2m"])
    assert native.step == np.timedelta64(1, "h")
    assert native.axis("2021-01-02", "2021-01-02").size == 24  # a date runs to the end of its day
    six = GriddedSource(ds, ["t2m"], cadence="6h", aggregation="mean")
    times = six.axis("2021-01-02", "2021-01-02")
    assert times.size == 4
    x = six.read(times[:2])
    np.testing.assert_allclose(x[:, 0], np.stack([ds["t2m"].values[24:30].mean(0), ds["t2m"].values[30:36].mean(0)]),
                               rtol=1e-6)
    daily = GriddedSource(ds, ["t2m"], cadence="1D", aggregation="instant")
    np.testing.assert_allclose(daily.read(daily.axis("2021-01-03", "2021-01-03"))[0, 0], ds["t2m"].values[48])
    with pytest.raises(ConfigError, match=r"config.data.cadence='6 apples'"):
        GriddedSource(ds, ["t2m"], cadence="6 apples")


def test_periodicity_is_detected_and_the_padding_follows_the_grid():
    assert not detect_periodic(LON) and not detect_periodic(np.mod(LON, 360))
    global_lon = np.arange(0.0, 360.0, 5.625)
    assert detect_periodic(global_lon) and detect_periodic(np.where(global_lon >= 180, global_lon - 360, global_lon))
    cell_lat = np.linspace(-87.1875, 87.1875, 32)  # cell centres half a row from the poles
    assert resolve_padding(("auto", "auto"), Grid(LAT, LON, False), "p") == ("edge", "edge")
    assert resolve_padding(("auto", "auto"), Grid(cell_lat, global_lon, True), "p") == ("pole", "circular")
    odd = np.arange(0.0, 360.0, 360 / 63)
    assert resolve_padding(("auto", "auto"), Grid(cell_lat, odd, True), "p") == ("edge", "circular")
    band = np.linspace(-60, 60, 17)  # a global band of latitudes: no pole to cross
    assert resolve_padding(("auto", "auto"), Grid(band, global_lon, True), "p") == ("edge", "circular")
    assert resolve_padding(("auto", "auto"), None, "p") == ("circular", "circular")  # Kolmogorov flow
    with pytest.raises(ConfigError, match=r"config.score.padding\[0\]='pole'.*does not span the globe.*'auto'"):
        resolve_padding(("pole", "circular"), Grid(LAT, LON, False), "config.score.padding")
    with pytest.raises(ConfigError, match=r"odd number of longitudes \(63\)"):
        resolve_padding(("pole", "circular"), Grid(cell_lat, odd, True), "config.score.padding")
    with pytest.raises(ConfigError, match=r"padding\[1\]='circular'.*regional grid.*-10 to 10.*periodic=yes"):
        resolve_padding(("edge", "circular"), Grid(LAT, LON, False), "config.score.padding")
    with pytest.raises(ConfigError, match="latitude never wraps"):
        resolve_padding(("circular", "circular"), Grid(cell_lat, global_lon, True), "config.score.padding")


def test_periodic_can_be_overridden(tmp_path):
    ds = regional(hours=24 * 12)
    c = dataset_config(cadence="1D", periodic="yes")
    _, _, grid = load_splits(settings_from_config(c).data, ds)
    assert grid.periodic
    c.data.periodic = "auto"
    assert not load_splits(settings_from_config(c).data, ds)[2].periodic


def test_an_in_memory_dataset_and_the_training_normalization(tmp_path):
    ds = regional()
    c = dataset_config(cadence="6h")
    splits, norm, _ = load_splits(settings_from_config(c).data, ds)
    assert splits["train"]["state"].shape == (1, 24, 9, 9, 1)  # 6 days x 4 states
    train = ds["t2m"].values[:6 * 24:6]
    assert norm.mean["state"][0] == pytest.approx(float(train.mean()), rel=1e-6)
    assert norm.std["state"][0] == pytest.approx(float(train.std()), rel=1e-4)


def test_checks_name_the_option_to_change(tmp_path):
    ds = regional()
    c = dataset_config(cadence="6h", test=("2022-01-01", "2022-01-03"))
    with pytest.raises(DataError, match=r"config.data.test=\('2022-01-01', '2022-01-03'\).*no data in that period.*"
                                         r"2021-01-01T00.*2021-01-12T23"):
        load_splits(settings_from_config(c).data, ds)
    c = dataset_config(cadence="6h", test=("2021-01-10", "2021-01-14"))  # two days past the data
    with pytest.raises(DataError, match=r"config.data.test=.*lacks 8 state\(s\) \(outside its files' .* shorten the "
                                         r"period\): 2021-01-13T00"):
        load_splits(settings_from_config(c).data, ds)
    c = dataset_config()
    c.data.train = ()
    with pytest.raises(ConfigError, match=r"set config.data.train"):
        settings_from_config(c)
    c = dataset_config(variables=("t2m@850",))
    with pytest.raises(DataError, match=r"variable 't2m' has no level dimension.*drop '@850'"):
        load_splits(settings_from_config(c).data, ds)
    c = dataset_config(modalities=({"name": "state", "variables": ("u",)},))
    with pytest.raises(ConfigError, match="do not match config.data.variables"):
        settings_from_config(c)


def test_a_split_shorter_than_the_score_window_is_refused_before_training(tmp_path):
    from slams_jax.pipeline.training import train_and_evaluate

    c = dataset_config(cadence="1D", valid=("2021-01-07", "2021-01-08"))  # 2 daily states < window 5
    c.stages = ("autoencoder", "score")
    with pytest.raises(ConfigError, match=r"config.data.valid=\('2021-01-07', '2021-01-08'\): the valid split holds 2 "
                                          r"consecutive state\(s\) at cadence 1D, fewer than the score window 5"):
        train_and_evaluate(c, tmp_path / "run", dataset=regional())
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_a_glob_of_files_is_one_time_axis(tmp_path):
    ds = regional(hours=48)
    ds.isel(valid_time=slice(0, 24)).to_netcdf(tmp_path / "t2m-20210101.nc")
    ds.isel(valid_time=slice(24, 48)).to_netcdf(tmp_path / "t2m-20210102.nc")
    src = GriddedSource(str(tmp_path / "t2m-*.nc"), ["t2m"])
    assert src.times.size == 48 and src.step == np.timedelta64(1, "h")
    np.testing.assert_array_equal(src.read(src.times[22:26])[:, 0], ds["t2m"].values[22:26])
    ds.isel(valid_time=slice(23, 25)).to_netcdf(tmp_path / "t2m-dup.nc")
    with pytest.raises(DataError, match="appears twice"):
        GriddedSource(str(tmp_path / "t2m-*.nc"), ["t2m"])


@pytest.mark.slow
def test_train_and_assimilate_an_in_memory_regional_dataset(tmp_path):
    """configs/dataset.py on an xarray.Dataset (hourly, regional across 0 E, 6-hourly states): the paddings
    resolve to the regional ones, the checkpoint keeps the grid, and the analysis has the file's columns."""
    import jax

    from slams_jax.pipeline.assimilation import assimilate
    from slams_jax.pipeline.pretrained import load_trained
    from slams_jax.pipeline.training import train_and_evaluate

    ds = regional()
    c = shrink_networks(dataset_config(cadence="6h"))
    a = c.assimilation
    a.start, a.length, a.members, a.steps, a.figures, a.divergence_bound = "", 6, 2, 4, False, 0.0  # untrained
    with jax.numpy_dtype_promotion("standard"):
        train_and_evaluate(c, tmp_path / "run", dataset=ds)
        model = load_trained(tmp_path / "run")
        assert model.settings.score.padding == ("edge", "edge") == model.settings.autoencoder.padding
        assert model.coordinates["longitude"] == LON.tolist() and model.coordinates["periodic"] is False
        with pytest.raises(ConfigError, match="pass it again"):
            assimilate(c, tmp_path / "run")
        report = assimilate(c, tmp_path / "run", dataset=ds)
    assert np.isfinite(report["analysis"]["state"]["t2m"]["rmse"]) and report["area_weighted"]
    with xr.open_dataset(tmp_path / "run" / "assimilation" / "analysis.nc") as out:
        np.testing.assert_array_equal(out["longitude"].values, LON)
        np.testing.assert_allclose(out["truth"].values[..., 0], ds["t2m"].values[8 * 24:8 * 24 + 36:6], rtol=1e-6)
    # a notebook: a station table straight into posterior_sample, on the grid the model was trained on
    from slams_jax import Multistep, posterior_sample
    from synthetic_regional import station_table

    times = ds["valid_time"].values[8 * 24:8 * 24 + 36:6]
    table = station_table(ds, times, 5, seed=3)
    with jax.numpy_dtype_promotion("standard"):
        ens = posterior_sample(jax.random.PRNGKey(0), model, table, times=times, n_samples=2, length=6,
                               sampler=Multistep(steps=4), divergence_bound=None)
    assert ens.shape == (2, 6, len(LAT), len(LON), 1) and np.isfinite(np.asarray(ens)).all()
    # cycled through the same window: one analysis per state, each from the past observations only
    a.mode, a.lag = "filter", 3
    with pytest.raises(ConfigError, match=r"config.assimilation.lag=3: .*score window of 5"):
        assimilate(c, tmp_path / "run", dataset=ds)
    a.lag = 0  # the score window
    with jax.numpy_dtype_promotion("standard"):
        report = assimilate(c, tmp_path / "run", dataset=ds)
    assert report["mode"] == "filter" and np.isfinite(report["analysis"]["state"]["t2m"]["crps"])
    with xr.open_dataset(tmp_path / "run" / "assimilation" / "analysis.nc") as out:
        assert out.sizes["valid_time"] == 6 and out.attrs["mode"] == "filter"
        assert np.isfinite(out["analysis"].values).all()
