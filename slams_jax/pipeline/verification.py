"""Verification at withheld stations (``config.assimilation.verify``): every method scored where nobody looked.

A second observation table (:func:`slams_jax.read_table`'s schema: ``time, lat, lon, variable,
observation``) holds stations that are **not** assimilated. Each method's analysis of the window is sampled
at its rows (:func:`slams_jax.to_points`, bilinear, the same weights as the ``Stations`` operator) and
scored per variable with :func:`slams_jax.metrics.ensemble_scores` against the withheld values: RMSE of
the (ensemble) mean, spread, spread/RMSE, CRPS. The methods:

- ``analysis``: the posterior ensemble;
- ``interpolation``: the assimilated state observations spread in space (bilinear for block means,
  inverse-distance weighting for points and stations, periodic only where the grid is) and linearly in
  time (:func:`slams_jax.baselines.interpolation.spatial_interpolation`);
- ``3dvar``: 3D-Var with the static B tuned on held-out training observations, and its randomized
  maximum-likelihood ensemble (:mod:`slams_jax.baselines.covariance_tuning`), when ``config.assimilation.threedvar``;
- ``climatology``: an ensemble of training states (evenly spaced over the training period);
- ``climatology_hour``: the same, restricted at each time to training states at the same hour of day
  (sub-daily cadences only: the diurnal cycle is what a station climatology knows).

The report goes to ``metrics.json`` (``verify``), the analysis at the stations to
``verification.csv`` (:func:`write_points`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from slams_jax import coords
from slams_jax.baselines.interpolation import spatial_interpolation
from slams_jax.baselines.verification import spread_skill_noise
from slams_jax.errors import ConfigError
from slams_jax.metrics import ensemble_scores
from slams_jax.observation.files import read_table
from slams_jax.observation.observations import Observation
from slams_jax.observation.points import to_points

#: Training states drawn for the climatological ensembles.
CLIMATOLOGY_MEMBERS = 32
#: The most (latest) training states 3D-Var's B is tuned on.
TUNING_STATES = 2048


def _ensemble_array(ens: np.ndarray, window: xr.Dataset, channels) -> xr.DataArray:
    """``(member, time, lat, lon, channel)`` with the window's coordinates (what ``to_points`` samples)."""
    lat, lon = coords.find(window.coords, "latitude"), coords.find(window.coords, "longitude")
    return xr.DataArray(ens, dims=("member", "time", "latitude", "longitude", "channel"),
                        coords={"time": window["time"].values, "latitude": window[lat].values,
                                "longitude": window[lon].values, "channel": list(channels)})


def point_scores(points, members: int) -> dict[str, dict[str, float]]:
    """Per variable, the scores of sampled members (``member_k`` columns, or ``mean``) against ``observation``.

    Where the table gives every row's noise (``std``), ensembles also get ``noise_std`` (the RMS of the stds)
    and ``spread_skill_noise`` (:func:`slams_jax.baselines.verification.spread_skill_noise`: 1 for a calibrated
    ensemble scored against noisy values, where the plain ``spread_skill`` falls short of 1)."""
    out = {}
    kept = points[np.isfinite(points["mean"].to_numpy(float)) & np.isfinite(points["observation"].to_numpy(float))]
    for variable, rows in kept.groupby("variable", sort=False):
        cols = [f"member_{k}" for k in range(members)] if members > 1 else ["mean"]
        ens = jnp.asarray(rows[cols].to_numpy(np.float32).T[..., None])  # (member, row, 1)
        truth = jnp.asarray(rows["observation"].to_numpy(np.float32)[:, None])
        s = ensemble_scores(ens, truth, (str(variable),))[str(variable)]
        if members == 1:  # one field: no spread; its CRPS is the mean absolute error
            s.pop("spread"), s.pop("spread_skill")
        elif "std" in rows and np.isfinite(rows["std"].to_numpy(float)).all():  # the withheld values are noisy
            noise = float(np.sqrt(np.mean(np.square(rows["std"].to_numpy(np.float64)))))
            s.update(noise_std=noise, spread_skill_noise=spread_skill_noise(s["spread"], s["rmse"], noise, members))
        s["count"] = int(len(rows))
        out[str(variable)] = s
    return out


def _read(train, normalization, state: str, rows: np.ndarray) -> np.ndarray:
    """Training states ``rows`` (present ones) in physical units ``(n, lat, lon, channel)``."""
    return normalization.denormalize(state, np.asarray(train[np.zeros_like(rows), rows], np.float32))


def climatologies(train, normalization, state: str, window: xr.Dataset, count: int = CLIMATOLOGY_MEMBERS
                  ) -> dict[str, np.ndarray]:
    """``climatology`` (and ``climatology_hour`` on sub-daily windows) as ensembles ``(member, time, ...)``.

    ``climatology``: ``count`` present training states drawn at random (seeded); ``climatology_hour``: at each
    time, ``count`` drawn among the present training states at its hour of day (training times known)."""
    from slams_jax.data.gridded.splits import sample_indices

    present = np.flatnonzero(np.asarray(getattr(train, "present", np.ones((1, train.shape[1]), bool)))[0])
    n_time = window.sizes["time"]
    every = _read(train, normalization, state, present[sample_indices(len(present), count)])
    out = {"climatology": np.repeat(every[:, None], n_time, axis=1)}
    hours = window["time"].values.astype("datetime64[h]").astype(np.int64) % 24
    times = getattr(train, "times", None)
    if times is None or len(np.unique(hours)) < 2:
        return out
    train_hours = np.asarray(times)[present].astype("datetime64[h]").astype(np.int64) % 24
    by_hour = {}
    for h in np.unique(hours):
        rows = present[train_hours == h]
        if not len(rows):
            return out
        by_hour[h] = _read(train, normalization, state, rows[sample_indices(len(rows), count)])
    members = min(len(v) for v in by_hour.values())
    out["climatology_hour"] = np.stack([by_hour[h][:members] for h in hours], axis=1)
    return out


def verify(table_path: str, window: xr.Dataset, channels, fields: Mapping[str, np.ndarray]) -> tuple[dict, Any]:
    """Score every method's ensemble ``(member, time, lat, lon, channel)`` at the withheld stations.

    Returns:
        ``({"table", "rows", "methods": {method: {variable: scores}}}, the analysis's points DataFrame)``.
    """
    table = read_table(table_path)
    known = set(channels)
    unknown = sorted(set(table["variable"].astype(str)) - known)
    if unknown:
        raise ConfigError(f"config.assimilation.verify={table_path!r}: variables {unknown} are not state channels "
                          f"{sorted(known)}")
    periodic = bool(window.attrs.get("periodic_longitude", False))
    report, first = {"table": str(table_path), "rows": int(len(table)), "methods": {}}, None
    for name, ens in fields.items():
        points = to_points(_ensemble_array(ens, window, channels), table, periodic=periodic)
        report["methods"][name] = point_scores(points, ens.shape[0])
        first = points if first is None else first
    report["matched"] = int(np.isfinite(first["mean"].to_numpy(float)).sum())
    return report, first


def baseline_fields(state_obs: list[Observation], window: xr.Dataset, shape, climatology, train, normalization,
                    state: str) -> dict[str, np.ndarray]:
    """The classical methods' ensembles of the window: interpolation (one member) and the climatologies."""
    periodic = bool(window.attrs.get("periodic_longitude", False))
    fields = {"interpolation": spatial_interpolation(state_obs, shape, climatology, periodic=(False, periodic))[None]}
    fields.update(climatologies(train, normalization, state, window))
    return fields


def _training_block(train, normalization, state: str, limit: int) -> np.ndarray:
    """The last ``limit`` training states in physical units ``(1, time, lat, lon, channel)``, NaN where missing."""
    n = train.shape[1]
    rows = np.arange(max(0, n - limit), n)
    present = np.asarray(getattr(train, "present", np.ones((1, n), bool)))[0, rows]
    block = np.full((len(rows),) + tuple(train.shape[2:]), np.nan, np.float32)
    block[present] = _read(train, normalization, state, rows[present])
    return block[None]


def _scalar_std(o: Observation) -> Observation:
    """``o`` with its per-value stds replaced by their RMS (the tuner draws new sites and noise from it)."""
    if not isinstance(o.std, np.ndarray):
        return o
    return Observation(o.modality, o.operator, o.values, float(np.sqrt(np.mean(np.square(o.std_array())))), o.name)


def threedvar_fields(a, source, state_obs: list[Observation], window: xr.Dataset,
                     limit: int = TUNING_STATES) -> tuple[dict[str, np.ndarray], dict]:
    """The 3D-Var ensemble of the window with ``B`` tuned on held-out training windows observed by the same
    network (a fifth of its sites withheld there), and the tuning's report."""
    from slams_jax.baselines.covariance_tuning import tune_static_covariance
    from slams_jax.baselines.variational import three_dvar_ensemble

    linear = [_scalar_std(o) for o in state_obs if o.operator.linear]
    if not linear:
        return {}, {"skipped": "no linear state observation"}
    state = source.data.state.name
    train = _training_block(source.arrays["train"][state], source.normalization, state, limit)
    periodic = (False, bool(window.attrs.get("periodic_longitude", False)))
    k_tune, k_ens = jax.random.split(jax.random.PRNGKey(a.seed + 0x3D))
    mean, cov, report = tune_static_covariance(k_tune, train, linear, periodic, window.sizes["time"])
    background = np.broadcast_to(mean, (window.sizes["time"],) + mean.shape)
    ens = three_dvar_ensemble(k_ens, [o for o in state_obs if o.operator.linear], background, cov, a.members,
                              inflation=report.inflation, tol=report.tol, maxiter=report.maxiter)
    return {"3dvar": np.asarray(ens)}, report.to_dict()


def write_points(path: Path, points) -> None:
    """The analysis at the withheld stations (``to_points``' columns) as CSV."""
    points.to_csv(path, index_label="row")


def format_verification(v: Mapping[str, Any]) -> str:
    """The verification table: per variable, every method's RMSE, spread, spread/RMSE (plain, and with the
    stations' noise: ``+noise``) and CRPS at the withheld stations."""
    lines = [f"verification at {v['matched']} withheld station values ({v['table']}):",
             f"  {'':12s} {'method':18s} {'RMSE':>8s} {'spread':>8s} {'spr/RMSE':>8s} {'+noise':>8s} {'CRPS':>8s}"]
    variables = next(iter(v["methods"].values())).keys()
    for var in variables:
        for method, per in v["methods"].items():
            s = per.get(var)
            if s is None:
                continue
            spread = f"{s['spread']:8.4f} {s['spread_skill']:8.3f}" if "spread" in s else f"{'-':>8s} {'-':>8s}"
            noisy = f"{s['spread_skill_noise']:8.3f}" if "spread_skill_noise" in s else f"{'-':>8s}"
            lines.append(f"  {var:12s} {method:18s} {s['rmse']:8.4f} {spread} {noisy} {s['crps']:8.4f}")
    return "\n".join(lines)


__all__ = ["CLIMATOLOGY_MEMBERS", "TUNING_STATES", "point_scores", "climatologies", "verify", "baseline_fields",
           "threedvar_fields", "write_points", "format_verification"]
