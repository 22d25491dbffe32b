"""What an assimilation writes: the ensemble as netCDF, the metrics as JSON, figures as PNG.

Every file is written under a temporary name and renamed into place, so an interrupted run never leaves a
truncated ``analysis.nc`` or ``metrics.json`` behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def write_dataset(path: Path, window, state_vars, units, analysis, truth, baseline, attrs) -> None:
    """``analysis.nc``: the ensemble ``(member, time, lat, lon, channel)`` with its mean, spread, the truth and
    the baseline, on the coordinates of the truth ``window``; written to a temporary file, then renamed."""
    import xarray as xr

    lat, lon = (d for d in window[state_vars[0]].dims if d not in ("time", "trajectory"))
    coords = {"member": np.arange(analysis.shape[0]), "time": window["time"].values,
              lat: window[lat].values, lon: window[lon].values, "channel": list(state_vars)}
    time_name = window.attrs.get("time_name", "time")  # the data files' own spelling (valid_time...)
    dims = ("time", lat, lon, "channel")
    ds = xr.Dataset(
        {
            "analysis": (("member",) + dims, analysis, {"long_name": "posterior ensemble of the state"}),
            "ensemble_mean": (dims, analysis.mean(0), {"long_name": "ensemble mean"}),
            "ensemble_spread": (dims, analysis.std(0, ddof=1) if analysis.shape[0] > 1 else np.zeros_like(truth),
                                {"long_name": "ensemble standard deviation"}),
            "truth": (dims, truth, {"long_name": "true state (test split)"}),
            "baseline": (dims, baseline, {"long_name": "interpolation of the state observations"}),
        },
        coords=coords,
        attrs={**attrs, "channel_units": ", ".join(units)},
    )
    for d in (lat, lon, "time"):
        ds[d].attrs.update(window[d].attrs)
    if time_name != "time":
        ds = ds.rename(time=time_name)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    ds.to_netcdf(tmp)
    os.replace(tmp, path)


def figures(folder: Path, truth, analysis, baseline, observed_times, state_vars) -> list[str]:
    """One PNG per state channel: truth, observations, posterior mean, spread and error at three states
    (the first observed one, an unobserved one in the middle, the last). Returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    length = truth.shape[0]
    unobserved = [t for t in range(length) if t not in observed_times]
    times = sorted({observed_times[0] if observed_times else 0, unobserved[len(unobserved) // 2] if unobserved else length // 2,
                    length - 1})
    mean, spread = analysis.mean(0), analysis.std(0)
    paths = []
    for c, var in enumerate(state_vars):
        fig, axes = plt.subplots(len(times), 5, figsize=(15, 3 * len(times)), squeeze=False)
        vmax = float(np.nanmax(np.abs(truth[..., c])))
        emax = float(np.nanmax(np.abs(mean[..., c] - truth[..., c])))
        for row, t in zip(axes, times):
            panels = [
                ("truth", truth[t, ..., c], "RdBu_r", -vmax, vmax),
                ("observations (interpolated)" if t not in observed_times else "observations", baseline[t, ..., c],
                 "RdBu_r", -vmax, vmax),
                ("posterior mean", mean[t, ..., c], "RdBu_r", -vmax, vmax),
                ("ensemble spread", spread[t, ..., c], "viridis", 0, None),
                ("error of the mean", mean[t, ..., c] - truth[t, ..., c], "PuOr_r", -emax, emax),
            ]
            for ax, (title, field, cmap, lo, hi) in zip(row, panels):
                im = ax.imshow(field, cmap=cmap, vmin=lo, vmax=hi, origin="lower")
                ax.set_title(f"{title}, state {t}", fontsize=9)
                ax.set_xticks([])
                ax.set_yticks([])
                fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        path = folder / f"{var}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(str(path))
    return paths


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    """``report`` as indented JSON, written to a temporary file, then renamed (readers never see half of it)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, path)


__all__ = ["write_dataset", "figures", "write_json"]
