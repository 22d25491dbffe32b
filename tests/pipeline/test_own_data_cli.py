"""The issue's commands, as a user types them: train and assimilate a regional hourly file through the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from synthetic_regional import LAT, LON, regional_t2m, station_table, with_levels

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--config.autoencoder.hidden_channels=(4,)", "--config.autoencoder.latent_channels=2",
        "--config.score.hidden_channels=(8,8)", "--config.score.hidden_blocks=(1,1)", "--config.score.embedding=8",
        "--config.train.steps=2", "--config.train.autoencoder.steps=2", "--config.train.batch_size=4",
        "--config.train.warmup_steps=1", "--config.train.eval_every=2", "--config.train.checkpoint_every=2",
        "--config.train.eval_batches=1"]


def _run(*args):
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_the_documented_commands_on_a_regional_hourly_file(tmp_path):
    ds = with_levels(regional_t2m())
    path = tmp_path / "t2m.nc"
    ds.to_netcdf(path)
    times = pd.date_range("2021-01-10T06", periods=6, freq="6h")
    station_table(ds.rename(lat="latitude", lon="longitude"), times, 12, seed=1).to_csv(tmp_path / "obs.csv",
                                                                                        index=False)
    station_table(ds.rename(lat="latitude", lon="longitude"), times, 5, seed=2, prefix="W").to_csv(
        tmp_path / "withheld.csv", index=False)
    work = tmp_path / "W"
    _run("slams_jax.train", "--config=configs/dataset.py", f"--workdir={work}", f"--config.data.path={path}",
         "--config.data.variables=('t2m','t850=t@850')", "--config.data.cadence=6h",
         "--config.data.train=('2021-01-01','2021-01-07')", "--config.data.valid=('2021-01-08','2021-01-09')",
         "--config.data.test=('2021-01-10','2021-01-12')", *TINY)
    done = _run("slams_jax.assimilate", "--config=configs/dataset.py", f"--workdir={work}", f"--config.data.path={path}",
                "--config.assimilation.start=2021-01-10T06", "--config.assimilation.length=6",
                f"--config.assimilation.stations={tmp_path / 'obs.csv'}",
                f"--config.assimilation.verify={tmp_path / 'withheld.csv'}", "--config.assimilation.observations=()",
                "--config.assimilation.members=2", "--config.assimilation.steps=4",
                "--config.assimilation.divergence_bound=0", "--config.assimilation.figures=False")
    assert "withheld station values" in done.stdout
    metrics = json.loads((work / "assimilation" / "metrics.json").read_text())
    assert set(metrics["verify"]["methods"]) >= {"analysis", "interpolation", "3dvar", "climatology"}
    assert metrics["verify"]["matched"] == 30 and metrics["window"]["start"] == "2021-01-10T06"
    with xr.open_dataset(work / "assimilation" / "analysis.nc") as out:
        # the file's coordinate names, order, dtype and attributes, the window from the requested date
        assert out["analysis"].dims == ("member", "valid_time", "lat", "lon", "channel")
        assert out["lat"].dtype == np.float32 and out["lat"].attrs["standard_name"] == "latitude"
        np.testing.assert_array_equal(out["lat"].values, LAT.astype(np.float32))
        np.testing.assert_array_equal(out["lon"].values, LON.astype(np.float32))
        np.testing.assert_array_equal(out["valid_time"].values, times.values)
        np.testing.assert_allclose(out["truth"].sel(channel="t850").values,
                                   ds["t"].sel(level=850.0, valid_time=times).values, rtol=1e-6)
