"""The paper's ERA5 setup (configs/era5.py: the dataset source with daily means, CPC and OLR) on tiny
synthetic stores: daily alignment by date, regridding, missing days, normalization from the training
period, the prepared store, ChaosBench's daily stores, and a short training run."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from helpers import load_config
from synthetic_era5 import LAT, LEVELS, LON, era5_config, state_store
from slams_jax.data import datasets
from slams_jax.pipeline.configuration import settings_from_config
from slams_jax.data.gridded import load_splits, open_prepared, prepare
from slams_jax.errors import DataError
from slams_jax.data.regrid import Regridder


def test_splits_are_daily_states_aligned_by_date_on_the_state_grid(tmp_path):
    c, state, precip, olr = era5_config(tmp_path)
    settings = settings_from_config(c)
    splits, norm, grid = load_splits(settings.data)
    np.testing.assert_array_equal(grid.latitude, LAT)  # the store's own order (south to north), never flipped
    assert grid.periodic
    test = splits["test"]
    assert test["state"].shape == (1, 8, 8, 16, 2) and test["precip"].shape == (1, 8, 8, 16, 1)
    idx = np.array([0, 3])
    got = {k: datasets.gather(test, np.zeros(2, int), idx)[k] for k in test}
    # state: the daily mean of the 4 analyses of 2000-02-02 and 02-05, levels 850 and 500
    days = pd.to_datetime(["2000-02-02", "2000-02-05"])
    daily = state["temperature"].resample(time="1D").mean().sel(time=days, level=list(LEVELS))
    expected = daily.values.transpose(0, 2, 3, 1)
    mean, std = np.array(norm.mean["state"]), np.array(norm.std["state"])
    np.testing.assert_allclose(got["state"] * std + mean, expected, rtol=1e-5)
    # precipitation: conservative regridding of that day's field, the ocean NaN where mostly ocean
    regrid = Regridder(precip["lat"].values, precip["lon"].values, LAT, LON)
    p = regrid(precip["precip"].sel(time=days).values)
    pm, ps = norm.mean["precip"][0], norm.std["precip"][0]
    np.testing.assert_allclose(got["precip"][..., 0] * ps + pm, p, rtol=1e-5)
    assert np.isnan(got["precip"][..., 12:, 0]).all() and np.isfinite(got["precip"][..., :7, 0]).all()
    # OLR: the mean of its two daily values, regridded from a -180..180 grid
    o = olr["olr"].resample(time="1D").mean().sel(time=days).values
    lon_olr = olr["lon"].values  # the regridder takes either longitude convention
    o_expected = Regridder(olr["lat"].values, lon_olr, LAT, LON)(o)
    np.testing.assert_allclose(got["olr"][..., 0] * norm.std["olr"][0] + norm.mean["olr"][0], o_expected, rtol=1e-4)


def test_normalization_uses_the_training_period_only(tmp_path):
    c, state, _, _ = era5_config(tmp_path)
    _, norm, _ = load_splits(settings_from_config(c).data)
    daily = state["temperature"].resample(time="1D").mean().sel(time=slice("2000-01-01", "2000-01-24"), level=850.0)
    assert norm.mean["state"][0] == pytest.approx(float(daily.mean()), rel=1e-5)
    assert norm.std["state"][0] == pytest.approx(float(daily.std()), rel=1e-4)


def test_a_missing_day_is_reported_or_skipped_as_configured(tmp_path):
    c, *_ = era5_config(tmp_path, missing=["2000-01-10"])
    with pytest.raises(DataError, match=r"config.data.train=.*config.data.aux.olr lacks 1 state\(s\): "
                                         r"2000-01-10.*missing='skip'"):
        load_splits(settings_from_config(c).data)
    c.data.missing = "skip"
    with pytest.warns(UserWarning, match="2000-01-10"):
        splits, _, _ = load_splits(settings_from_config(c).data)
    train = splits["train"]
    assert not train["olr"].present[0, 9] and train["olr"].present[0].sum() == 23
    import jax

    for i in range(20):  # no window of 5 days, and no single state, contains the missing day
        _, time = datasets.window_indices(jax.random.PRNGKey(i), train, 16, 5)
        assert not np.any(time == 9)
        _, t1 = datasets.state_indices(jax.random.PRNGKey(i), train, 16)
        assert not np.any(t1 == 9)


def test_bad_sources_give_clear_errors(tmp_path):
    c, *_ = era5_config(tmp_path)
    c.data.variables = ("t850=temperature@850", "temperature@250")
    with pytest.raises(DataError, match=r"config.data.path: .*era5.zarr: variable 'temperature' has no level 250; "
                                         r"its levels are \[10.0, 50.0"):
        load_splits(settings_from_config(c).data)
    c.data.variables = ("t850=temperature@850", "t500=temperature@500")
    c.data.test = ("2005-01-01", "2005-01-10")
    with pytest.raises(DataError, match=r"config.data.test=.*has no data in that period \(its files cover "
                                         r"2000-01-01.* to 2000-02-09T18"):
        load_splits(settings_from_config(c).data)
    c.data.test = ("2000-01-20", "2000-02-01")
    with pytest.raises(Exception, match="overlaps"):
        settings_from_config(c)


def test_prepared_store_round_trips_and_refuses_other_settings(tmp_path):
    c, *_ = era5_config(tmp_path)
    data = settings_from_config(c).data
    path = prepare(data, tmp_path / "prepared", progress=False)
    c.data.prepared = str(path)
    data = settings_from_config(c).data
    prepared, norm, grid = open_prepared(data)
    lazy, norm2, grid2 = load_splits(data)
    assert norm == norm2 and grid.to_dict() == grid2.to_dict()
    for split in lazy:
        for name in lazy[split]:
            np.testing.assert_array_equal(np.asarray(prepared[split][name]), np.asarray(lazy[split][name]))
    assert [t[:10] for t in json.loads((path / "manifest.json").read_text())["times"]["test"]] == [
        "2000-02-02", "2000-02-09"]
    c.data.aux.olr.aggregation = "instant"
    with pytest.raises(DataError, match="prepared for other data settings"):
        open_prepared(settings_from_config(c).data)


def test_chaosbench_layout_gives_the_same_states(tmp_path):
    """One zarr per day (dims level, latitude, longitude; ``t``), as ChaosBench stores ERA5."""
    c, state, *_ = era5_config(tmp_path)
    root = tmp_path / "chaosbench"
    root.mkdir()
    daily = state["temperature"].resample(time="1D").mean()
    for day in daily["time"].values:
        stamp = pd.Timestamp(day).strftime("%Y%m%d")
        one = daily.sel(time=day).drop_vars("time").rename("t").to_dataset()
        one.to_zarr(root / f"era5_full_1.5deg_{stamp}.zarr", zarr_format=2)
    wb2, norm, _ = load_splits(settings_from_config(c).data)
    c.data.path = str(root)  # a directory of stores, each dated by its name
    c.data.variables = ("t850=t@850", "t500=t@500")
    chaos, norm2, _ = load_splits(settings_from_config(c).data)
    np.testing.assert_allclose(norm2.mean["state"], norm.mean["state"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(chaos["valid"]["state"]), np.asarray(wb2["valid"]["state"]), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.slow
def test_train_then_assimilate_on_a_synthetic_era5_store_with_two_auxiliary_modalities(tmp_path):
    """train (2 steps per stage) then assimilate: the truth is the test period's days, in Kelvin."""
    import jax
    import xarray as xr

    from slams_jax.pipeline.assimilation import assimilate
    from slams_jax.pipeline.pretrained import load_trained
    from slams_jax.pipeline.training import train_and_evaluate

    c, state, *_ = era5_config(tmp_path)
    c.stages = ("autoencoder", "score")
    c.autoencoder.hidden_channels = (4, 4)
    c.autoencoder.latent_channels = 2
    c.autoencoder.kernel_size = 3
    c.score.hidden_channels = (8, 8)
    c.score.hidden_blocks = (1, 1)
    c.score.embedding = 8
    for k, v in dict(steps=2, batch_size=4, warmup_steps=1, log_every=1, eval_every=2, eval_batches=1,
                     checkpoint_every=2).items():
        setattr(c.train, k, v)
    c.train.autoencoder.steps = 2
    a = c.assimilation
    a.start, a.length, a.members, a.steps, a.divergence_bound, a.figures = "1", 6, 2, 2, 0.0, False  # an index (or a date-time) as text
    a.observations = ({"modality": "state", "coarsen": 2, "relative_std": 0.1},
                      {"modality": "olr", "coarsen": 2, "relative_std": 0.1})
    with jax.numpy_dtype_promotion("standard"):
        results = train_and_evaluate(c, tmp_path / "run")
        report = assimilate(c, tmp_path / "run")
    assert np.isfinite(results["autoencoder"]["loss"]) and np.isfinite(results["score"]["loss"])
    model = load_trained(tmp_path / "run")
    assert model.grid == (8, 16)
    assert model.normalization.mean["state"][0] > 200  # statistics of the training period, in Kelvin
    with xr.open_dataset(tmp_path / "run" / "assimilation" / "analysis.nc") as out:
        assert str(out["time"].values[0])[:10] == "2000-02-03"
        truth = state["temperature"].resample(time="1D").mean().sel(time=slice("2000-02-03", "2000-02-08"),
                                                                     level=list(LEVELS))
        np.testing.assert_allclose(out["truth"].values, truth.values.transpose(0, 2, 3, 1), rtol=1e-5)
        np.testing.assert_array_equal(out["latitude"].values, LAT)  # the store's order
    assert np.isfinite(report["analysis"]["state"]["t850"]["rmse"])
    assert report["area_weighted"] and "spread_skill" not in report["baseline"]["state"]["t850"]
    json.dumps(report, allow_nan=False)  # no NaN in metrics.json


@pytest.mark.slow
def test_prepare_command_writes_the_store(tmp_path):
    """python -m slams_jax.prepare with configs/era5.py (the paper's 10 levels) and paths on the command line."""
    import subprocess
    import sys
    from pathlib import Path

    c, *_ = era5_config(tmp_path)
    root = Path(__file__).resolve().parents[2]
    d = c.data
    cmd = [sys.executable, "-m", "slams_jax.prepare", f"--config={root / 'configs' / 'era5.py'}",
           f"--workdir={tmp_path / 'run'}", f"--config.data.path={d.path}",
           f"--config.data.train=('{d.train[0]}','{d.train[1]}')",
           f"--config.data.valid=('{d.valid[0]}','{d.valid[1]}')",
           f"--config.data.test=('{d.test[0]}','{d.test[1]}')",
           f"--config.data.aux.precip.path={d.aux.precip.path}",
           f"--config.data.aux.olr.path={d.aux.olr.path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "run" / "prepared"
    assert f"--config.data.prepared={out}" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["normalization"]["mean"]["state"]) == 10
    assert np.load(out / "train_state.npy", mmap_mode="r").shape == (1, 24, 8, 16, 10)
    bad = subprocess.run(cmd + ["--config.data.variables=('temperature@850','temperature@250')"], capture_output=True,
                         text=True, cwd=root, timeout=300)
    assert bad.returncode != 0 and "variable 'temperature' has no level 250" in bad.stderr


def test_area_weighted_losses():
    """masked_mse and the denoising loss with cell-area weights along latitude, against NumPy."""
    import jax
    import jax.numpy as jnp

    from slams_jax.nn.autoencoder import masked_mse
    from slams_jax.data.regrid import area_weights
    from slams_jax.diffusion.schedules import VPSchedule
    from slams_jax.diffusion.score import denoising_loss

    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((2, 2, 8, 16, 3)).astype(np.float32)
    target[0, 0, 0] = np.nan  # a missing point carries no weight
    w = area_weights(LAT)
    got = masked_mse(jnp.asarray(pred), jnp.asarray(target), None, jnp.asarray(w, jnp.float32).reshape(-1, 1, 1))
    ww = np.broadcast_to(w.reshape(-1, 1, 1), pred.shape)
    ok = np.isfinite(target)
    expected = (ww * np.where(ok, pred - np.nan_to_num(target), 0) ** 2).sum() / ww[ok].sum()
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # denoising: the weighted loss of an eps_fn wrong only in the first row is that row's share of the area
    x = jnp.asarray(rng.standard_normal((4, 3, 8, 16, 2)), jnp.float32)
    schedule = VPSchedule()

    def eps_fn(xt, t):
        mu, sigma = schedule.mu(t)[:, None, None, None, None], schedule.sigma(t)[:, None, None, None, None]
        exact = (xt - mu * x) / sigma  # the true noise
        return exact.at[:, :, 0].add(1.0)

    weights = jnp.asarray(w, jnp.float32).reshape(-1, 1, 1)
    loss = denoising_loss(eps_fn, schedule, jax.random.PRNGKey(0), x, weights)
    assert float(loss) == pytest.approx(w[0] / w.sum(), rel=1e-4)
    assert float(denoising_loss(eps_fn, schedule, jax.random.PRNGKey(0), x)) == pytest.approx(1 / 8, rel=1e-4)


def test_area_weighting_needs_a_geographic_grid(tmp_path):
    from helpers import tiny_config
    from slams_jax.pipeline.training import train_and_evaluate

    c = tiny_config()
    c.train.area_weighted = True
    with pytest.raises(ValueError, match="area_weighted .* no latitude"):
        train_and_evaluate(c, tmp_path)


def test_state_only_variant_needs_only_the_era5_store(tmp_path):
    state_store(tmp_path / "era5.zarr")
    c = load_config("era5", "state")
    c.data.path = str(tmp_path / "era5.zarr")
    c.data.train, c.data.valid, c.data.test = (
        ("2000-01-01", "2000-01-24"), ("2000-01-25", "2000-01-31"), ("2000-02-02", "2000-02-09"))
    splits, norm, _ = load_splits(settings_from_config(c).data)
    assert set(splits["train"]) == {"state"} and splits["train"]["state"].shape == (1, 24, 8, 16, 10)
    assert len(norm.mean["state"]) == 10
