"""``python -m slams_jax.assimilate``: assimilate observations of a test window with a trained model.

``assimilate(config, workdir)`` follows the data: it loads the trained experiment of ``workdir`` (its
checkpoints carry the model settings and normalization), takes a window of the test split as the truth
(:func:`slams_jax.pipeline.sources.load_window`), builds the observations of ``config.assimilation``
(synthetic ones from the truth, and/or observation files: :mod:`slams_jax.pipeline.observing`), samples an
ensemble from the posterior with :func:`slams_jax.posterior_sample` (guidance and sampler from
:mod:`slams_jax.pipeline.methods`), scores it next to a baseline, and writes under ``WORKDIR/assimilation/``
(:mod:`slams_jax.pipeline.outputs`). ``config.assimilation.mode`` is ``smoother`` (one posterior of the
window given all its observations) or ``filter`` (cycled through the window, each state's analysis from
the observations up to its time only, :mod:`slams_jax.pipeline.filtering`); either writes

- ``analysis.nc``: the ensemble ``analysis (member, time, y, x, channel)`` with the truth, the ensemble
  mean and spread and the naive baseline, with coordinates and attributes;
- ``metrics.json``: per channel, the RMSE of the ensemble mean, the spread, the CRPS and the Wasserstein-1
  distance, for the analysis and for the baseline (interpolation of the observations, see
  :mod:`slams_jax.baselines.interpolation`), and the same for the auxiliary modalities decoded from the latent analysis;
- ``figures/<channel>.png``: truth, observations, posterior mean, spread and error at a few times.

On a geographic grid (ERA5) every score is weighted by cell area (cos latitude), as WeatherBench does.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax import coords, parallel
from slams_jax.baselines.interpolation import interpolation_baseline, observed_states
from slams_jax.data import datasets
from slams_jax.data.regrid import area_weights
from slams_jax.diffusion.guidance import Guidance
from slams_jax.diffusion.posterior import posterior_sample, posterior_sample_batch
from slams_jax.diffusion.samplers import Sampler
from slams_jax.errors import ConfigError
from slams_jax.metrics import ensemble_scores
from slams_jax.observation.observations import Observation
from slams_jax.pipeline.filtering import cycle_problems, filter_analysis
from slams_jax.pipeline.builder import as_mapping
from slams_jax.pipeline.configuration import (
    AssimilationSettings, assimilation_settings_from_config, parallel_settings_from_config,
)
from slams_jax.pipeline.methods import make_guidance, make_sampler
from slams_jax.pipeline.observing import build_operator, make_observations, read_observation_files
from slams_jax.pipeline.outputs import figures, write_dataset, write_json
from slams_jax.pipeline.pretrained import TrainedModel, load_trained
from slams_jax.pipeline.sources import SourceData, is_geographic, load_source, load_window
from slams_jax.pipeline.verification import baseline_fields, format_verification, threedvar_fields, verify, \
    write_points


def load_truth(a: AssimilationSettings, model: TrainedModel, workdir: Path, source: SourceData | None = None,
               dataset=None) -> tuple[Any, dict[str, np.ndarray]]:
    """The true window of ``a`` as xarray (with coordinates) and as ``{modality: (time, y, x, channel)}``
    arrays in physical units (``dataset``: the in-memory ``xarray.Dataset`` the model was trained on)."""
    settings = model.settings
    score = settings.score if a.space == "latent" else settings.pixel_score
    if a.mode == "smoother" and a.length < score.window:
        raise ConfigError(f"config.assimilation.length={a.length}: the window must hold at least the prior's "
                          f"{score.window} states (2 * order + 1)")
    window = load_window(settings.data, settings.seed, workdir, a.trajectory, a.start, a.length, source, dataset)
    raw = datasets.to_arrays(window.expand_dims("trajectory"), settings.data.modalities)
    return window, {k: v[0] for k, v in raw.items()}


def sample_posterior(key, a: AssimilationSettings, model: TrainedModel, observations: list[Observation],
                     guidance: Guidance, sampler: Sampler, mesh) -> tuple[np.ndarray, jax.Array, float]:
    """``a.members`` posterior trajectories: the state ``(member, time, y, x, channel)`` (NumPy), the
    standardized latents they decode from (``space='latent'``), and the sampling time in seconds."""
    t0 = time.perf_counter()
    analysis, latent = posterior_sample(
        key, model, observations, n_samples=a.members, length=a.length, space=a.space, guidance=guidance,
        sampler=sampler, batch_size=a.batch_size or None, return_latent=True,
        divergence_bound=a.divergence_bound or None, mesh=mesh, progress=True, precision=a.precision,
    )
    return np.asarray(analysis), latent, time.perf_counter() - t0


def sample_filter(key, a: AssimilationSettings, model: TrainedModel, observations: list[Observation],
                  guidance: Guidance, sampler: Sampler, mesh) -> tuple[np.ndarray, float]:
    """The cycled analysis ``(member, time, y, x, channel)`` of ``mode='filter'`` (each state from the
    observations up to its time, :mod:`slams_jax.pipeline.filtering`) and the sampling time in seconds."""
    t0 = time.perf_counter()
    score = model.settings.score if a.space == "latent" else model.settings.pixel_score
    lag = a.lag or score.window
    if lag < score.window:
        raise ConfigError(f"config.assimilation.lag={lag}: a cycle's window must hold the score window of "
                          f"{score.window} states (0, the default, takes it)")
    problems = cycle_problems(observations, a.length, lag)
    keys = jax.random.split(key, len(problems))
    chunk = a.cycle_batch or len(problems)
    windows = [posterior_sample_batch(
        keys[lo:lo + chunk], model, problems[lo:lo + chunk], n_samples=a.members, length=lag, space=a.space,
        guidance=guidance, sampler=sampler, batch_size=a.batch_size or None,
        divergence_bound=a.divergence_bound or None, mesh=mesh, progress=True, precision=a.precision)
        for lo in range(0, len(problems), chunk)]
    return filter_analysis(np.concatenate(windows), a.length, lag), time.perf_counter() - t0


def _deterministic_scores(field: np.ndarray, truth: np.ndarray, channels, weights=None) -> dict:
    scores = ensemble_scores(jnp.asarray(field[None]), jnp.asarray(truth), tuple(channels), weights=weights)
    for s in scores.values():  # a single member has no spread; its CRPS is the mean absolute error
        s.pop("spread")
        s.pop("spread_skill")
    return scores


def score_analysis(a: AssimilationSettings, model: TrainedModel, truth: Mapping[str, np.ndarray],
                   analysis: np.ndarray, latent, state_obs: list[Observation],
                   weights: np.ndarray | None) -> tuple[dict[str, Any], np.ndarray]:
    """Scores of the ensemble and of the interpolation baseline, per modality and channel.

    Args:
        a: The assimilation settings.
        model: The trained model.
        truth: ``{modality: (time, y, x, channel)}`` in physical units.
        analysis: The state ensemble ``(member, time, y, x, channel)``.
        latent: The latent ensemble (``space='latent'``: the auxiliary modalities are decoded from it).
        state_obs: The observations of the state (the baseline interpolates them).
        weights: Cell-area weights of the rows, or ``None``.

    Returns:
        ``({"analysis": {modality: scores}, "baseline": {state: scores}}, baseline (time, y, x, channel))``.
    """
    data = model.settings.data
    state_name, state_vars = data.state.name, data.state.variables
    baseline = interpolation_baseline(state_obs, truth[state_name].shape,
                                      climatology=np.asarray(model.normalization.mean[state_name], np.float32))
    scores = {
        "analysis": {state_name: ensemble_scores(jnp.asarray(analysis), jnp.asarray(truth[state_name]), state_vars,
                                                 weights=weights)},
        "baseline": {state_name: _deterministic_scores(baseline, truth[state_name], state_vars, weights)},
    }
    if a.space == "latent" and latent is not None:  # the filter keeps no latent: its state is scored alone
        for m in data.modalities[1:]:
            decoded = jax.jit(jax.vmap(lambda z, name=m.name: model.normalization.denormalize(name, model.decode(z, name))))
            scores["analysis"][m.name] = ensemble_scores(decoded(latent), jnp.asarray(truth[m.name]), m.variables,
                                                         weights=weights)
    return scores, baseline


def _moved_data(model: TrainedModel, config: Any) -> TrainedModel:
    """``model`` reading its gridded data from ``config.data.path`` when that is given (the files moved);
    every other data setting stays the checkpoint's."""
    raw = as_mapping(config, "").get("data") or {}
    path = raw.get("path", "") if hasattr(raw, "get") else ""
    data = model.settings.data
    if not path or data.source != "dataset" or path == data.path:
        return model
    settings = dataclasses.replace(model.settings, data=dataclasses.replace(data, path=str(path)))
    return dataclasses.replace(model, settings=settings)


def verify_withheld(a: AssimilationSettings, model: TrainedModel, workdir: Path, window, truth: np.ndarray,
                    analysis: np.ndarray, state_obs: list[Observation], source: SourceData | None, dataset):
    """The analysis and the classical methods scored at the withheld stations of ``a.verify``."""
    data = model.settings.data
    if not is_geographic(data):
        raise ConfigError(f"config.assimilation.verify={a.verify!r}: station verification needs a latitude-longitude "
                          "grid (config.data.source='dataset')")
    source = source or load_source(data, model.settings.seed, workdir, dataset, model.normalization)
    state = data.state.name
    train = source.arrays["train"][state]
    fields = {"analysis": analysis, **baseline_fields(state_obs, window, truth.shape,
                                                      np.asarray(source.normalization.mean[state], np.float32),
                                                      train, source.normalization, state)}
    tuning = None
    if a.threedvar:
        extra, tuning = threedvar_fields(a, source, state_obs, window)
        fields.update(extra)
    report, points = verify(a.verify, window, data.state.variables, fields)
    if tuning is not None:
        report["3dvar_tuning"] = tuning
    return report, points


def _describe(a: AssimilationSettings, guidance, sampler, observations: list[Observation], sampling_s: float,
              mesh, weights) -> dict[str, Any]:
    """The report's header: the window, the method, the observations, where and how long it ran."""
    return {
        "window": {"trajectory": a.trajectory, "start": a.start, "length": a.length},
        "mode": a.mode,
        "members": a.members, "space": a.space, "guidance": repr(guidance), "sampler": repr(sampler),
        "observations": [{"name": o.name, "operator": repr(o.operator), "n_values": int(o.values.size),
                          "std": o.std_summary()} for o in observations],
        "sampling_s": sampling_s,
        "device": str(jax.devices()[0].device_kind),
        "devices": parallel.describe(mesh),
        "area_weighted": weights is not None,
    }


def _write_outputs(out: Path, workdir: Path, a: AssimilationSettings, model: TrainedModel, window,
                   observations: list[Observation], analysis: np.ndarray, truth: np.ndarray, baseline: np.ndarray,
                   report: dict[str, Any]) -> None:
    """``analysis.nc`` and the figures under ``out`` (the figures' paths are added to ``report``)."""
    state_vars = model.settings.data.state.variables
    out.mkdir(parents=True, exist_ok=True)
    units = [str(window[v].attrs.get("units", "")) for v in state_vars]
    attrs = {"title": "slams_jax posterior ensemble", "guidance": report["guidance"], "sampler": report["sampler"],
             "space": a.space, "mode": a.mode, "observations": "; ".join(o.name for o in observations),
             "source_workdir": str(workdir.resolve())}
    write_dataset(out / "analysis.nc", window, state_vars, units, analysis, truth, baseline, attrs)
    if a.figures:
        state_obs = [o for o in observations if o.modality == model.settings.data.state.name]
        observed = observed_states(state_obs, truth.shape)
        report["figures"] = figures(out / "figures", truth, analysis, baseline, observed, state_vars)


def assimilate(config: Any, workdir: str | os.PathLike, *, model: TrainedModel | None = None,
               source: SourceData | None = None, dataset=None) -> dict[str, Any]:
    """Assimilate ``config.assimilation`` observations of a test window; writes ``WORKDIR/assimilation/``.

    Args:
        config: A ConfigDict (or nested dict) with an ``assimilation`` group (absent: the defaults).
        workdir: The trained experiment's directory.
        model: The model of ``workdir`` if already loaded (else it is loaded from the checkpoints).
        source: The experiment's data if already loaded (Kolmogorov flow is then not read again).
        dataset: The ``xarray.Dataset`` the model was trained on, when it was passed in from Python
            (``train_and_evaluate(config, workdir, dataset=ds)``).

    Returns:
        The metrics report (also written to ``WORKDIR/assimilation/metrics.json``).
    """
    t_start = time.perf_counter()
    workdir = Path(workdir)
    a = assimilation_settings_from_config(config)
    par = parallel_settings_from_config(config)
    parallel.initialize(par)
    mesh = parallel.data_mesh(par.devices)
    model = _moved_data(load_trained(workdir) if model is None else model, config)
    window, truth = load_truth(a, model, workdir, source, dataset)

    k_obs, k_sample = jax.random.split(jax.random.PRNGKey(a.seed))
    observations = make_observations(a, model, truth, k_obs) + read_observation_files(a, model, window)
    guidance, sampler = make_guidance(a), make_sampler(a)
    if a.mode == "filter":
        latent = None
        analysis, sampling_s = sample_filter(k_sample, a, model, observations, guidance, sampler, mesh)
    else:
        analysis, latent, sampling_s = sample_posterior(k_sample, a, model, observations, guidance, sampler, mesh)

    state_name = model.settings.data.state.name
    state_obs = [o for o in observations if o.modality == state_name]
    latitude = coords.find(window.coords, "latitude")
    weights = area_weights(window[latitude].values) if is_geographic(model.settings.data) else None
    scores, baseline = score_analysis(a, model, truth, analysis, latent, state_obs, weights)
    report = {**_describe(a, guidance, sampler, observations, sampling_s, mesh, weights), **scores}
    points = None
    if a.verify:
        report["verify"], points = verify_withheld(a, model, workdir, window, truth[state_name], analysis,
                                                         state_obs, source, dataset)

    if not parallel.is_main_process():  # every process sampled its members; process 0 writes
        return report
    out = workdir / "assimilation"
    _write_outputs(out, workdir, a, model, window, observations, analysis, truth[state_name], baseline, report)
    if points is not None:
        write_points(out / "verification.csv", points)
    report["wall_s"] = time.perf_counter() - t_start
    write_json(out / "metrics.json", report)
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
    if "verify" in report:
        lines.append(format_verification(report["verify"]))
    return "\n".join(lines)


__all__ = ["assimilate", "build_operator", "make_observations", "make_guidance", "make_sampler", "format_report",
           "load_truth", "sample_posterior", "score_analysis", "read_observation_files"]
