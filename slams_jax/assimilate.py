"""``python -m slams_jax.assimilate``: assimilate observations of a test window with a trained model.

``assimilate(config, workdir)`` loads the trained experiment of ``workdir`` (its checkpoints carry the
model settings and normalization), takes a window of the test split as the truth, builds the observations
of ``config.assimilation`` (synthetic ones from the truth, and/or observation files), samples an ensemble
from the posterior with :func:`slams_jax.posterior_sample`, and writes under ``WORKDIR/assimilation/``:

- ``analysis.nc``: the ensemble ``analysis (member, time, y, x, channel)`` with the truth, the ensemble
  mean and spread and the naive baseline, with coordinates and attributes;
- ``metrics.json``: per channel, the RMSE of the ensemble mean, the spread, the CRPS and the Wasserstein-1
  distance, for the analysis and for the baseline (interpolation of the observations, see
  :mod:`slams_jax.baselines`), and the same for the auxiliary modalities decoded from the latent analysis;
- ``figures/<channel>.png``: truth, observations, posterior mean, spread and error at a few times.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax import datasets, parallel
from slams_jax.baselines import interpolation_baseline, observed_states
from slams_jax.configuration import (
    AssimilationSettings, ConfigError, ObservationSettings, assimilation_settings_from_config,
    parallel_settings_from_config,
)
from slams_jax.guidance import DPS, MMPS, SDA, Guidance
from slams_jax.metrics import ensemble_scores
from slams_jax.observation_files import read_gridded, read_stations
from slams_jax.observations import Observation, observe
from slams_jax.operators import (
    Channels,
    Coarsen,
    Identity,
    Operator,
    Saturate,
    Swath,
    TimeIndex,
    TimeSubsample,
    random_points,
)
from slams_jax.posterior import latent_observation, posterior_sample
from slams_jax.pretrained import TrainedModel, load_trained
from slams_jax.regrid import area_weights
from slams_jax.samplers import DiffraxPredictorCorrector, PredictorCorrector, ProbabilityFlow, ReverseSDE, Sampler


def make_guidance(a: AssimilationSettings) -> Guidance:
    """The guidance method named by ``a.guidance``."""
    if a.guidance == "sda":
        return SDA(gamma=a.gamma)
    if a.guidance == "dps":
        return DPS(zeta=a.zeta)
    return MMPS(cg_iterations=a.cg_iterations)


def make_sampler(a: AssimilationSettings) -> Sampler:
    """The sampler named by ``a.sampler``."""
    if a.sampler == "diffrax_pc":
        return DiffraxPredictorCorrector(steps=a.steps, corrections=a.corrections, tau=a.tau)
    if a.sampler == "pc":
        return PredictorCorrector(steps=a.steps, corrections=a.corrections, tau=a.tau)
    if a.sampler == "sde":
        return ReverseSDE(steps=a.steps, solver=a.solver or "euler")
    return ProbabilityFlow(steps=a.steps, solver=a.solver or "heun")


def build_operator(o: ObservationSettings, truth: np.ndarray, key) -> Operator:
    """The operator of one configured observation: time -> channels -> space -> saturation.

    Random points are drawn among the cells where ``truth`` (``(time, lat, lon, channel)``) is finite at
    every time, so that a modality with missing values (precipitation over the ocean) is observed only where
    it exists.
    """
    ops: list[Operator] = []
    if o.times:
        ops.append(TimeIndex(o.times))
    elif o.every > 1 or o.offset > 0:
        ops.append(TimeSubsample(o.every, o.offset))
    if o.channels:
        ops.append(Channels(o.channels))
    if o.swath_footprint:
        ops.append(Swath(o.swath_footprint, o.swath_width))
    else:
        valid = np.isfinite(truth).all(axis=(0, 3))
        if o.coarsen > 1:
            coarsen = Coarsen(o.coarsen)
            ops.append(coarsen)
            valid = np.asarray(coarsen(jnp.asarray(valid, jnp.float32)[None, ..., None]))[0, ..., 0] == 1.0
        if o.points > 0:
            ops.append(random_points(key, valid.shape, o.points, valid=valid))
    if o.saturate > 0:
        ops.append(Saturate(o.saturate))
    if not ops:
        return Identity()
    op = ops[0]
    for nxt in ops[1:]:
        op = op >> nxt
    return op


def make_observations(
    a: AssimilationSettings, model: TrainedModel, truth: Mapping[str, np.ndarray], key
) -> list[Observation]:
    """Synthetic observations of the true window ``truth`` (physical units, per modality)."""
    norm = model.normalization
    modalities = {m.name: m for m in model.settings.data.modalities}
    out = []
    for i, o in enumerate(a.observations):
        k_op, k_noise = jax.random.split(jax.random.fold_in(key, i))
        where = f"config.assimilation.observations[{i}]"
        if o.modality == "latent":
            if a.space != "latent":
                raise ConfigError(f"{where}: latent observations need assimilation.space='latent'")
            normalized = {k: norm.normalize(k, v) for k, v in truth.items()}
            z_shape = (next(iter(truth.values())).shape[0],) + tuple(model.latent_shape())
            op = build_operator(o, np.zeros(z_shape, np.float32), k_op)
            out.append(latent_observation(k_noise, model, normalized, op, o.std or o.relative_std,
                                          name=f"obs{i}:latent"))
            continue
        if o.modality not in modalities:
            raise ConfigError(f"{where}.modality={o.modality!r}: expected one of {sorted(modalities)} or 'latent'")
        if a.space == "pixel" and o.modality != model.settings.data.state.name:
            raise ConfigError(f"{where}: pixel-space assimilation observes only the state, not {o.modality!r}")
        op = build_operator(o, truth[o.modality], k_op)
        channels = list(o.channels) if o.channels else list(range(len(modalities[o.modality].variables)))
        if o.std > 0:
            std: Any = o.std
        else:
            std = tuple(o.relative_std * norm.std[o.modality][c] for c in channels)
        out.append(observe(k_noise, truth[o.modality], op, std, modality=o.modality, name=f"obs{i}:{o.modality}"))
    return out


def _read_files(a: AssimilationSettings, model: TrainedModel, window) -> list[Observation]:
    lat_name = next(d for d in ("lat", "latitude", "y") if d in window.coords)
    lon_name = next(d for d in ("lon", "longitude", "x") if d in window.coords)
    grid_lat, grid_lon = window[lat_name].values, window[lon_name].values
    period = float(len(grid_lon) * (grid_lon[1] - grid_lon[0]))
    out = []
    modalities = {m.name: m for m in model.settings.data.modalities}
    for i, f in enumerate(a.files):
        if f.modality not in modalities:
            raise ConfigError(f"config.assimilation.files[{i}].modality={f.modality!r}: expected one of {sorted(modalities)}")
        variables = modalities[f.modality].variables
        kwargs = dict(modality=f.modality, variables=variables, variable=f.variable or variables[0], std=f.std,
                      grid_lat=grid_lat, grid_lon=grid_lon, times=window["time"].values)
        if f.kind == "grid":
            out.extend(read_gridded(f.path, **kwargs))
        else:
            out.extend(read_stations(f.path, period=period, **kwargs))
    return out


def _deterministic_scores(field: np.ndarray, truth: np.ndarray, channels, weights=None) -> dict:
    scores = ensemble_scores(jnp.asarray(field[None]), jnp.asarray(truth), tuple(channels), weights=weights)
    for s in scores.values():  # a single member has no spread; its CRPS is the mean absolute error
        s.pop("spread")
        s.pop("spread_skill")
    return scores


def _write_dataset(path: Path, window, state_vars, units, analysis, truth, baseline, attrs) -> None:
    import xarray as xr

    lat, lon = (d for d in window[state_vars[0]].dims if d not in ("time", "trajectory"))
    coords = {"member": np.arange(analysis.shape[0]), "time": window["time"].values,
              lat: window[lat].values, lon: window[lon].values, "channel": list(state_vars)}
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
    for d in (lat, lon):
        ds[d].attrs.update(window[d].attrs)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    ds.to_netcdf(tmp)
    os.replace(tmp, path)


def _figures(folder: Path, truth, analysis, baseline, observed_times, state_vars) -> list[str]:
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


def assimilate(config: Any, workdir: str | os.PathLike) -> dict[str, Any]:
    """Assimilate ``config.assimilation`` observations of a test window; writes ``WORKDIR/assimilation/``.

    Returns:
        The metrics report (also written to ``WORKDIR/assimilation/metrics.json``).
    """
    t_start = time.perf_counter()
    workdir = Path(workdir)
    a = assimilation_settings_from_config(config)
    par = parallel_settings_from_config(config)
    parallel.initialize(par)
    mesh = parallel.data_mesh(par.devices)
    model = load_trained(workdir)
    settings = model.settings
    state_name = settings.data.state.name
    state_vars = settings.data.state.variables

    if settings.data.source == "era5":  # one test trajectory: the days of the test period
        from slams_jax import era5

        if a.trajectory != 0:
            raise ConfigError(f"config.assimilation.trajectory={a.trajectory}: ERA5's test split is one trajectory (0)")
        window = era5.window_dataset(settings.data, "test", a.start, a.length)
    else:
        ds = datasets.load_dataset(settings.data, settings.seed, workdir)
        test = datasets.split_dataset(ds, settings.data)["test"]
        n_traj, n_time = test.sizes["trajectory"], test.sizes["time"]
        if not 0 <= a.trajectory < n_traj:
            raise ConfigError(f"config.assimilation.trajectory={a.trajectory}: the test split has {n_traj} trajectories")
        if a.start < 0 or a.start + a.length > n_time:
            raise ConfigError(
                f"config.assimilation.start={a.start}, length={a.length}: the test trajectories have {n_time} states"
            )
        window = test.isel(trajectory=a.trajectory, time=slice(a.start, a.start + a.length))
    raw = datasets.to_arrays(window.expand_dims("trajectory"), settings.data.modalities)
    truth = {k: v[0] for k, v in raw.items()}

    key = jax.random.PRNGKey(a.seed)
    k_obs, k_sample = jax.random.split(key)
    observations = make_observations(a, model, truth, k_obs) + _read_files(a, model, window)
    guidance, sampler = make_guidance(a), make_sampler(a)

    t0 = time.perf_counter()
    analysis, latent = posterior_sample(
        k_sample, model, observations, n_samples=a.members, length=a.length, space=a.space, guidance=guidance,
        sampler=sampler, batch_size=a.batch_size or None, return_latent=True,
        divergence_bound=a.divergence_bound or None, mesh=mesh,
    )
    analysis = np.asarray(analysis)
    sampling_s = time.perf_counter() - t0

    state_obs = [o for o in observations if o.modality == state_name]
    # geographic grids: scores weighted by cell area (cos latitude), as WeatherBench does
    weights = area_weights(window["latitude"].values) if settings.data.source == "era5" else None
    baseline = interpolation_baseline(state_obs, truth[state_name].shape,
                                      climatology=np.asarray(model.normalization.mean[state_name], np.float32))
    report: dict[str, Any] = {
        "window": {"trajectory": a.trajectory, "start": a.start, "length": a.length},
        "members": a.members, "space": a.space, "guidance": repr(guidance), "sampler": repr(sampler),
        "observations": [{"name": o.name, "operator": repr(o.operator), "n_values": int(o.values.size),
                          "std": o.std} for o in observations],
        "sampling_s": sampling_s,
        "device": str(jax.devices()[0].device_kind),
        "devices": parallel.describe(mesh),
        "area_weighted": weights is not None,
        "analysis": {state_name: ensemble_scores(jnp.asarray(analysis), jnp.asarray(truth[state_name]), state_vars,
                                                 weights=weights)},
        "baseline": {state_name: _deterministic_scores(baseline, truth[state_name], state_vars, weights)},
    }
    if a.space == "latent":
        for m in settings.data.modalities[1:]:
            decoded = jax.jit(jax.vmap(lambda z, name=m.name: model.normalization.denormalize(name, model.decode(z, name))))
            report["analysis"][m.name] = ensemble_scores(decoded(latent), jnp.asarray(truth[m.name]), m.variables,
                                                         weights=weights)

    out = workdir / "assimilation"
    if not parallel.is_main_process():  # every process sampled its members; process 0 writes
        return report
    out.mkdir(parents=True, exist_ok=True)
    units = [str(window[v].attrs.get("units", "")) for v in state_vars]
    attrs = {"title": "slams_jax posterior ensemble", "guidance": repr(guidance), "sampler": repr(sampler),
             "space": a.space, "observations": "; ".join(o.name for o in observations),
             "source_workdir": str(workdir.resolve())}
    _write_dataset(out / "analysis.nc", window, state_vars, units, analysis, truth[state_name], baseline, attrs)
    if a.figures:
        observed = observed_states(state_obs, truth[state_name].shape)
        report["figures"] = _figures(out / "figures", truth[state_name], analysis, baseline, observed, state_vars)
    report["wall_s"] = time.perf_counter() - t_start
    tmp = out / f"metrics.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out / "metrics.json")
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """The metrics table: analysis next to the baseline, per modality and channel."""
    lines = [f"assimilation: {report['members']} members, {report['guidance']}, {report['sampler']}, "
             f"{report['sampling_s']:.1f} s sampling",
             f"  {'':18s} {'RMSE':>8s} {'spread':>8s} {'CRPS':>8s} {'W1':>8s}   baseline: {'RMSE':>8s} {'CRPS':>8s} {'W1':>8s}"]
    for name, per in report["analysis"].items():
        for var, s in per.items():
            b = report["baseline"].get(name, {}).get(var)
            base = (f"{b['rmse']:8.4f} {b['crps']:8.4f} {b['wasserstein1']:8.4f}" if b else f"{'-':>8s} {'-':>8s} {'-':>8s}")
            lines.append(f"  {name + '.' + var:18s} {s['rmse']:8.4f} {s['spread']:8.4f} {s['crps']:8.4f} "
                         f"{s['wasserstein1']:8.4f}             {base}")
    return "\n".join(lines)


def main(argv):
    from slams_jax import cli

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    workdir = cli.workdir_from_flags()
    config = cli.config_from_flags()
    if "twin" in config:  # a Lorenz twin experiment: filter and smoother on an independent truth run
        from slams_jax import twin

        twin.run_assimilations(config, workdir)
        print(f"rows appended to {Path(workdir) / 'results.jsonl'}")
        return
    report = assimilate(config, workdir)
    print(format_report(report))
    print(f"outputs in {Path(workdir) / 'assimilation'}")


if __name__ == "__main__":
    from slams_jax import cli

    cli.run_main(main)


__all__ = ["assimilate", "build_operator", "make_observations", "make_guidance", "make_sampler", "format_report"]
