"""The study's flow: train what is needed, load the data, then per setting observe every window once and run
every method on those observations, recording as it goes; finally summarize, tabulate and draw.

Keys: from ``PRNGKey(config.seed)`` (``base``), the auxiliary instrument ``i`` of ``config.aux`` is drawn
with ``fold_in(base, 1000 + i)``; window ``w`` of the setting at place ``s`` of the sweeps' list observes
the state with the first of ``split(fold_in(fold_in(base, w), s), 3)``, instrument ``i`` with
``fold_in(fold_in(base, w), 1000 + i)``, and method ``m`` samples with the third folded with ``crc32(m)``.
So every method gets the same observations, and no number depends on the order the settings run in.
"""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from slams_jax.baselines.interpolation import spatial_interpolation
from slams_jax.baselines.covariance_fit import fit_static_covariance
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Operator
from slams_jax.pipeline.configuration import ObservationSettings
from slams_jax.studies.ablation.data import StudyData, load_study_data
from slams_jax.studies.ablation.figures import maps_figure, sweep_figures
from slams_jax.studies.ablation.methods import Context, run_method, run_score, score_inputs
from slams_jax.studies.ablation.models import train_models
from slams_jax.studies.ablation.observations import aux_observation, aux_operator, state_observation
from slams_jax.studies.ablation.results import Recorder
from slams_jax.studies.ablation.settings import AblationSettings, ablation_settings
from slams_jax.studies.ablation.sweeps import Setting, run_order, study_settings
from slams_jax.studies.ablation.tables import study_table, summarize, write_csv

# name -> (place in config.aux, its settings, its operator fixed for the whole study)
Instruments = dict[str, tuple[int, ObservationSettings, Operator]]


def prepare(s: AblationSettings, workdir: Path, log: Callable[[str], None], report_only: bool) -> Context:
    """The trained models (none with ``report_only``), the data, the climatology and the static B."""
    models = {} if report_only else train_models(s, workdir, log)
    data = load_study_data(s, workdir)
    climatology = data.train_sequences.mean(axis=(0, 1))
    covariance = None
    if not report_only and any(s.methods[m].kind == "3dvar" for m in s.study.methods):
        _, covariance = fit_static_covariance(data.train_sequences, periodic=s.threedvar.periodic,
                                              time_correlation=s.threedvar.time_correlation)
        log(f"3dvar: static B fitted: {covariance!r}")
    return Context(s, data, models, climatology, covariance)


def instruments(s: AblationSettings, data: StudyData, base) -> Instruments:
    """The auxiliary instruments (swath, gauge network) of the modalities the data have, fixed for the
    whole study; their noise is not."""
    return {n: (i, spec, aux_operator(jax.random.fold_in(base, 1000 + i), data.truths, spec))
            for i, (n, spec) in enumerate(s.aux.items()) if spec.modality in data.truths[0]}


def observe_window(ctx: Context, aux: Instruments, base, s_index: int, setting: Setting, w: int
                   ) -> tuple[Any, Observation, dict[str, Observation]]:
    """``(methods' key, state observation, {instrument: observation})`` of window ``w`` in a setting."""
    data = ctx.data
    truth = data.truths[w]
    # one key per window and setting: every method gets the same observations
    k_set = jax.random.fold_in(jax.random.fold_in(base, w), s_index)
    k_state, _, k_methods = jax.random.split(k_set, 3)
    state_obs = state_observation(k_state, truth[data.state], setting, ctx.settings.study.every, data.state,
                                  data.norm.std[data.state])
    aux_obs = {n: aux_observation(jax.random.fold_in(jax.random.fold_in(base, w), 1000 + i), truth, spec, op,
                                  data.norm.std[spec.modality])
               for n, (i, spec, op) in aux.items()}
    return k_methods, state_obs, aux_obs


def _keep_observed_example(ctx: Context, rec: Recorder, w: int, state_obs: Observation) -> None:
    truth = ctx.data.truths[w][ctx.data.state]
    rec.keep_example({"truth": truth, "observations": spatial_interpolation(
        [state_obs], truth.shape, climatology=ctx.climatology, periodic=ctx.settings.threedvar.periodic)})


def run_setting(ctx: Context, rec: Recorder, aux: Instruments, base, s_index: int, setting: Setting) -> None:
    """Every (window, method) of one setting not yet recorded, all on one set of observations per window."""
    methods = ctx.settings.study.methods
    todo = {w: [m for m in methods if (w, setting.sweep, setting.severity, m) not in rec.done]
            for w in range(len(ctx.data.windows))}
    todo = {w: ms for w, ms in todo.items() if ms}
    observed = {}
    for w in todo:
        observed[w] = observe_window(ctx, aux, base, s_index, setting, w)
        if rec.is_example(setting, w):
            _keep_observed_example(ctx, rec, w, observed[w][1])
    for m in methods:
        ws = [w for w in todo if m in todo[w]]
        keys = {w: jax.random.fold_in(observed[w][0], zlib.crc32(m.encode()) & 0x7FFFFFFF) for w in ws}
        if ws and ctx.settings.methods[m].kind == "score":
            # every window of the setting in one compiled program; the time is shared between them
            t0 = time.perf_counter()
            inputs = [score_inputs(ctx, m, keys[w], w, setting, *observed[w][1:]) for w in ws]
            results = run_score(ctx, m, [k for k, _ in inputs], [obs for _, obs in inputs])
            seconds = (time.perf_counter() - t0) / len(ws)
            for w, (ens, error) in zip(ws, results):
                rec.record(setting, w, m, ens, error, seconds)
            continue
        for w in ws:
            t0 = time.perf_counter()
            ens = run_method(ctx, m, keys[w], w, observed[w][1])
            rec.record(setting, w, m, ens, "", time.perf_counter() - t0)


def write_outputs(s: AblationSettings, data: StudyData, workdir: Path, rows: list[dict],
                  examples: dict[str, np.ndarray]) -> dict[str, Any]:
    """``results.csv``, ``summary.csv``, ``table.md`` and the figures, from the rows as they stand."""
    study, methods = s.study, s.study.methods
    summary = summarize(rows, study.confidence)
    write_csv(workdir / "results.csv", rows)
    write_csv(workdir / "summary.csv", summary)
    header = (f"Ablation on {s.experiment_settings.data.source}: {len(data.windows)} test windows of "
              f"{study.length} states (state observed every {study.every}), {study.members} members; mean over "
              f"windows ± {study.confidence:.0%} t-interval half-width"
              + ("; scores weighted by cell area" if data.weights is not None else "") + ".\n\n")
    table = study_table(summary, methods, header)
    (workdir / "table.md").write_text(table)
    figures = sweep_figures(summary, methods, workdir / "figures")
    if examples:
        order = ["truth", "observations"] + [m for m in methods if m in examples]
        north_first = data.latitude is not None and data.latitude[0] > data.latitude[-1]
        figures.append(maps_figure({k: examples[k] for k in order if k in examples}, workdir / "figures",
                                   data.variables, study.example_setting, north_first))
    return {"rows": rows, "summary": summary, "table": table, "figures": figures}


def run_study(config: Any, workdir: str | os.PathLike, log: Callable[[str], None] = print,
              report_only: bool = False) -> dict[str, Any]:
    """Train what is needed, run every (window, setting, method) not yet in ``results.jsonl``, write outputs.

    Args:
        config: ``configs/ablation.py``'s config, or its :class:`AblationSettings`.
        workdir: The study's directory (models, data, results).
        log: Where the progress lines go.
        report_only: Train and run nothing: rewrite the outputs from ``results.jsonl`` as it stands (e.g.
            while a long study is still running, or after it was stopped).

    Returns:
        ``{"rows": [...], "summary": [...], "table": str, "figures": [...]}``.
    """
    s = ablation_settings(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    ctx = prepare(s, workdir, log, report_only)
    base = jax.random.PRNGKey(s.seed)
    aux = instruments(s, ctx.data, base)
    settings = study_settings(s.study)
    with Recorder(workdir, ctx.data, s.study.example_setting, log) as rec:
        for s_index in [] if report_only else run_order(settings, s.study.order):
            run_setting(ctx, rec, aux, base, s_index, settings[s_index])
    result = write_outputs(s, ctx.data, workdir, rec.rows, rec.examples)
    log(f"study done in {time.perf_counter() - t_start:.0f} s; outputs in {workdir}")
    return result


__all__ = ["prepare", "instruments", "observe_window", "run_setting", "write_outputs", "run_study"]
