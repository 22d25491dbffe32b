"""Bring your own data, end to end: a regional hourly dataset, station tables in, withheld stations scored."""

import json

import jax
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from helpers import load_config, shrink_networks
from synthetic_regional import LON, regional_t2m, station_table


@pytest.mark.slow
def test_stations_in_withheld_stations_scored_smoother_and_filter(tmp_path):
    """configs/dataset.py on a netCDF file (6-hourly states of hourly data), 20 assimilated stations from a CSV
    table and 8 withheld ones from a parquet table: metrics.json scores the analysis, interpolation, 3D-Var
    and both climatologies at the withheld stations; the filter gives one analysis per state."""
    from slams_jax.pipeline.assimilation import assimilate, format_report
    from slams_jax.pipeline.training import train_and_evaluate

    ds = regional_t2m()
    ds.to_netcdf(tmp_path / "t2m.nc")
    c = load_config("dataset")
    c.data.path, c.data.variables, c.data.cadence = str(tmp_path / "t2m.nc"), ("t2m",), "6h"
    c.data.train, c.data.valid, c.data.test = ("2021-01-01", "2021-01-07"), ("2021-01-08", "2021-01-09"), (
        "2021-01-10", "2021-01-12")
    shrink_networks(c)
    times = pd.date_range("2021-01-10", periods=6, freq="6h")
    station_table(ds, times, 20, seed=1).to_csv(tmp_path / "stations.csv", index=False)
    station_table(ds, times, 8, seed=2, prefix="W").to_parquet(tmp_path / "withheld.parquet")
    a = c.assimilation
    a.length, a.members, a.steps, a.figures, a.divergence_bound = 6, 4, 4, False, 0.0
    a.observations = ()
    a.files = ({"path": str(tmp_path / "stations.csv"), "kind": "stations", "modality": "state"},)
    a.verify = str(tmp_path / "withheld.parquet")
    with jax.numpy_dtype_promotion("standard"):
        train_and_evaluate(c, tmp_path / "run")
        report = assimilate(c, tmp_path / "run")
    v = report["verify"]
    assert v["matched"] == 48 and set(v["methods"]) == {"analysis", "interpolation", "3dvar", "climatology",
                                                        "climatology_hour"}
    for method, scores in v["methods"].items():
        assert np.isfinite(scores["t2m"]["rmse"]) and scores["t2m"]["count"] == 48, method
    # interpolating 20 stations beats knowing nothing of the day; the hour-of-day climatology beats the plain one
    assert v["methods"]["interpolation"]["t2m"]["rmse"] < v["methods"]["climatology"]["t2m"]["rmse"]
    assert v["methods"]["climatology_hour"]["t2m"]["rmse"] < v["methods"]["climatology"]["t2m"]["rmse"]
    assert 0.3 < v["3dvar_tuning"]["spread_skill_after"] < 3.0
    out = tmp_path / "run" / "assimilation"
    json.loads((out / "metrics.json").read_text())
    points = pd.read_csv(out / "verification.csv")
    assert len(points) == 48 and {"mean", "spread", "member_0", "station"} <= set(points.columns)
    assert "withheld station values" in format_report(report)

    a.mode = "filter"
    with jax.numpy_dtype_promotion("standard"):
        report = assimilate(c, tmp_path / "run")
    assert report["mode"] == "filter" and report["verify"]["matched"] == 48
    with xr.open_dataset(out / "analysis.nc") as analysis:
        assert analysis.sizes["valid_time"] == 6 and np.isfinite(analysis["analysis"].values).all()  # the file's name
        np.testing.assert_array_equal(analysis["longitude"].values, LON)


def test_withheld_scores_account_for_the_stations_noise():
    """A calibrated ensemble scored against noisy withheld values: the plain spread/RMSE falls short of 1 by the
    noise, the noise-aware one is 1; without a ``std`` column only the plain one is reported."""
    from slams_jax.pipeline.verification import point_scores

    rng = np.random.default_rng(0)
    rows, members, sigma, noise = 40_000, 8, 0.3, 0.5
    centre = rng.normal(size=rows)
    truth = centre + sigma * rng.normal(size=rows)
    ens = centre + sigma * rng.normal(size=(members, rows))
    table = pd.DataFrame({"variable": "t2m", "observation": truth + noise * rng.normal(size=rows), "std": noise,
                          "mean": ens.mean(0), **{f"member_{k}": ens[k] for k in range(members)}})
    s = point_scores(table, members)["t2m"]
    assert s["noise_std"] == pytest.approx(noise)
    assert s["spread_skill_noise"] == pytest.approx(1.0, abs=0.02)
    # the plain ratio carries the finite-ensemble factor (metrics.ensemble_scores) but not the noise
    expected_plain = np.sqrt(1 + 1 / members) * sigma / np.sqrt((1 + 1 / members) * sigma**2 + noise**2)
    assert s["spread_skill"] == pytest.approx(expected_plain, abs=0.02) and s["spread_skill"] < 0.6
    assert "spread_skill_noise" not in point_scores(table.drop(columns="std"), members)["t2m"]
