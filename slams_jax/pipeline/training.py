"""Training: the multimodal autoencoder, then the latent score prior (and optionally the pixel prior).

``python -m slams_jax.train --config=configs/kolmogorov.py --workdir=DIR [--config.<key>=<value>]``
trains the stages listed in ``config.stages`` in order:

- ``autoencoder``: every modality of a state -> one latent field -> every modality, masked MSE per
  modality (NaN points carry no loss), optional random hiding of auxiliary modalities;
- ``score``: the VP-diffusion noise predictor over windows of ``2k + 1`` latent states; the frozen
  encoder (EMA parameters, normalization layers in inference mode) runs inside the compiled step and
  its output is standardized with latent statistics of the training split;
- ``pixel_score``: the same prior directly on the normalized physical state (the SDA baseline).

Each stage is described by a :class:`~slams_jax.pipeline.stages.Stage` (its batches, loss, frozen inputs
and checkpoint metadata) and trained by one loop, :func:`run_stage`, around a pure
``train_step(state, batch, key, frozen) -> (state, metrics)`` compiled once
(:mod:`slams_jax.pipeline.optimization`). Batches are drawn statelessly from ``fold_in(key, step)`` and
the step's own randomness from ``fold_in(key, state.step)``, so a run resumed from a checkpoint continues
exactly as an uninterrupted run. Logging, evaluation and checkpoints happen in the Python loop around it.

The step runs on every device of the ``data`` mesh (:mod:`slams_jax.parallel`): the global batch
(``config.train.batch_size``, a multiple of the device count) is split over the devices, the state is
replicated, and the compiled step averages gradients and metrics across devices. ``config.parallel``
chooses the devices and, for a multi-host run, joins the processes; only process 0 writes metrics and
the config, and orbax writes each checkpoint once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np
from tqdm.auto import tqdm

from slams_jax import parallel
from slams_jax._types import PRNGKey, PyTree
from slams_jax.data import datasets
from slams_jax.errors import ConfigError
from slams_jax.pipeline.checkpointing import CheckpointError, StageCheckpointer
from slams_jax.pipeline.checks import check_splits, resolve_settings
from slams_jax.pipeline.configuration import (
    ParallelSettings, Settings, TrainSettings, parallel_settings_from_config, settings_from_config, settings_to_dict,
)
from slams_jax.pipeline.losses import autoencoder_loss_fn, score_loss_fn
from slams_jax.pipeline.optimization import (
    LossFn, TrainState, compile_steps, ema_rate, eval_step, learning_rate_schedule, make_optimizer, train_step,
)
from slams_jax.pipeline.sources import SourceData, is_geographic, load_source
from slams_jax.pipeline.stages import Stage, StageData, build_stage, init_state, latent_statistics

STAGE_IDS = {"autoencoder": 1, "score": 2, "pixel_score": 3}
CHECKPOINT_FORMAT = 1


class MetricsLog:
    """Appends one JSON object per line to ``WORKDIR/metrics.jsonl`` (process 0 only)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.enabled = parallel.is_main_process()
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")


def _jsonable(v):
    if isinstance(v, (np.ndarray, jax.Array)):
        v = np.asarray(v)
        return v.item() if v.ndim == 0 else v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def _check_compatible(stage: str, saved: Mapping[str, Any], settings: Settings) -> None:
    """A checkpoint must have been written by the same model; otherwise say which setting differs."""
    current = settings_to_dict(settings)
    old = saved.get("settings", {})
    sections = {"autoencoder": ["autoencoder"], "score": ["autoencoder", "score", "sde"],
                "pixel_score": ["pixel_score", "sde"]}[stage]
    diffs = []
    for sec in sections:
        a, b = old.get(sec) or {}, current.get(sec) or {}
        diffs += [f"{sec}.{k}: checkpoint {a.get(k)!r} vs config {b.get(k)!r}"
                  for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    a, b = old.get("data", {}).get("modalities"), current["data"]["modalities"]
    if a != b:
        diffs.append(f"data.modalities: checkpoint {a!r} vs config {b!r}")
    if diffs:
        raise CheckpointError(
            f"the {stage} checkpoint in the workdir was trained with other settings ({'; '.join(diffs)}); "
            "use a fresh --workdir or restore those settings"
        )



@dataclasses.dataclass
class _Run:
    """What the loop of one stage needs besides the state: the compiled steps, keys, logs and checkpoints."""

    stage: Stage
    ts: TrainSettings
    mesh: jax.sharding.Mesh
    log: MetricsLog
    ckpt: StageCheckpointer
    frozen: PyTree
    step_fn: Callable
    eval_fn: Callable
    data_key: PRNGKey
    step_key: PRNGKey
    eval_key: PRNGKey

    def evaluate(self, state: TrainState, step: int) -> dict[str, float]:
        """Mean validation metrics over ``eval_batches`` batches (the same batches at every evaluation)."""
        ts, name, vals = self.ts, self.stage.name, []
        for i in range(ts.eval_batches):
            batch = self.stage.data.global_batch(jax.random.fold_in(self.eval_key, i), "valid", ts.batch_size,
                                                 self.mesh, f"{name} validation batch {i}")
            key = jax.random.fold_in(self.eval_key, 10_000 + i)
            vals.append(parallel.to_host(self.eval_fn(state, batch, key, self.frozen)))
        record = {k: float(np.mean([v[k] for v in vals])) for k in vals[0]}
        self.log.write({"stage": name, "step": step, "split": "valid", **record})
        return record

    def log_train(self, metrics: Mapping[str, jax.Array], done: int, rate: float) -> dict[str, float]:
        """Write the step's training metrics; a non-finite loss stops the run, naming the last checkpoint."""
        metrics = {k: float(v) for k, v in parallel.to_host(metrics).items()}
        if not np.isfinite(metrics["loss"]):
            raise FloatingPointError(
                f"{self.stage.name}: the training loss became {metrics['loss']} at step {done} "
                f"(metrics {metrics}); the last good checkpoint is in {self.ckpt.directory}"
            )
        lr = float(learning_rate_schedule(self.ts)(done - 1))
        self.log.write({"stage": self.stage.name, "step": done, "split": "train", **metrics, "lr": lr,
                        "samples_per_s": rate})
        return metrics

    def loop(self, state: TrainState, start: int, summary: dict[str, float]) -> TrainState:
        """Steps ``start .. steps - 1``, logging, evaluating and checkpointing at their intervals."""
        ts, name = self.ts, self.stage.name
        bar = tqdm(total=ts.steps, initial=start, desc=name, unit="step", mininterval=1.0, file=sys.stderr,
                   disable=os.environ.get("SLAMS_JAX_NO_PROGRESS") == "1" or not parallel.is_main_process())
        t_last, n_last = time.perf_counter(), start
        for step in range(start, ts.steps):
            batch = self.stage.data.global_batch(jax.random.fold_in(self.data_key, step), "train", ts.batch_size,
                                                 self.mesh, f"{name} batch at step {step}")
            state, metrics = self.step_fn(state, batch, self.step_key, self.frozen)
            done = step + 1
            last = done == ts.steps
            if done % ts.log_every == 0 or last:
                now = time.perf_counter()
                rate = (done - n_last) * ts.batch_size / max(now - t_last, 1e-9)
                t_last, n_last = now, done
                summary["loss"] = self.log_train(metrics, done, rate)["loss"]
                bar.set_postfix(loss=f"{summary['loss']:.4f}", samples_s=f"{rate:.0f}")
            if done % ts.eval_every == 0 or last:
                summary["val_loss"] = self.evaluate(state, done)["loss"]
            if done % ts.checkpoint_every == 0 or last:
                self.ckpt.save(done, parallel.to_host(state), dict(self.stage.meta))
            bar.update(1)
        bar.close()
        return state


def _initial_state(settings: Settings, stage: Stage, key: PRNGKey, ckpt: StageCheckpointer) -> tuple[TrainState, int]:
    """A fresh state of the stage, or its latest checkpoint (after checking it was trained by this model)."""
    example = stage.data.batch(jax.random.PRNGKey(0), "train", 2)
    state = init_state(settings, stage.name, key, example, stage.frozen)
    start = ckpt.latest_step() or 0
    if start:
        _check_compatible(stage.name, ckpt.restore_meta(start), settings)
        state, _ = ckpt.restore(parallel.to_host(state), start)
    return state, start


def run_stage(settings: Settings, stage: Stage, workdir: Path, log: MetricsLog,
              mesh: jax.sharding.Mesh) -> tuple[TrainState, dict[str, float]]:
    """Train one stage to ``settings.train[stage.name].steps`` on the devices of ``mesh``, resuming from its
    latest checkpoint.

    Returns:
        The final state and a summary: ``steps``, the last ``loss`` and ``val_loss``, ``wall_s``
        (``resumed_from`` instead when the checkpoint had already reached ``steps``).
    """
    ts = settings.train[stage.name]
    base = jax.random.fold_in(jax.random.PRNGKey(settings.seed), STAGE_IDS[stage.name])
    init_key, data_key, step_key, eval_key = jax.random.split(base, 4)
    ckpt = StageCheckpointer(workdir / "checkpoints" / stage.name, max_to_keep=ts.max_to_keep)
    state, start = _initial_state(settings, stage, init_key, ckpt)
    state, frozen = parallel.replicate((state, stage.frozen), mesh)
    step_fn, eval_fn = compile_steps(stage.loss_fn, make_optimizer(ts), ts.ema_decay, mesh)
    step_key, eval_key = parallel.replicate((step_key, eval_key), mesh)
    summary: dict[str, float] = {"steps": ts.steps}
    if start >= ts.steps:
        summary["resumed_from"] = start
        ckpt.close()
        return state, summary
    run = _Run(stage, ts, mesh, log, ckpt, frozen, step_fn, eval_fn, data_key, step_key, eval_key)
    t0 = time.perf_counter()
    state = run.loop(state, start, summary)
    summary["wall_s"] = time.perf_counter() - t0
    ckpt.close()
    return state, summary


def prepare_data(settings: Settings, workdir: Path, dataset=None) -> tuple[dict[str, datasets.Arrays],
                                                                          datasets.Normalization]:
    """``({split: arrays}, normalization)`` of :func:`slams_jax.pipeline.sources.load_source`."""
    source = load_source(settings.data, settings.seed, workdir, dataset)
    return dict(source.arrays), source.normalization


def _check_settings(settings: Settings, mesh: jax.sharding.Mesh) -> None:
    """What can be refused before any work: batch sizes that do not split over the mesh, area weights
    without a geographic grid."""
    for stage in settings.stages:
        parallel.check_divisible(settings.train[stage].batch_size, mesh, f"config.train.batch_size of stage {stage}")
        if settings.train[stage].area_weighted and not is_geographic(settings.data):
            raise ConfigError(f"config.train.area_weighted (stage {stage}): the {settings.data.source!r} data have "
                              "no latitude; cell-area weights need a geographic grid (the dataset source)")


def train_experiment(settings: Settings, par: ParallelSettings, workdir: str | os.PathLike,
                     dataset=None) -> tuple[dict[str, dict[str, float]], SourceData]:
    """Train every stage of ``settings.stages`` in order, writing checkpoints and metrics under ``workdir``.

    ``dataset`` (an ``xarray.Dataset``) stands for ``config.data.path`` of the ``dataset`` source. The
    paddings set to ``"auto"`` are resolved against the data's grid first, and the splits checked against
    the score window (:mod:`slams_jax.pipeline.checks`); the checkpoints store the resolved settings.

    Returns:
        ``({stage: summary}, data)``: the summaries of :func:`run_stage` and the data the stages were
        trained on (for the caller to evaluate on without loading them again).
    """
    parallel.initialize(par)
    mesh = parallel.data_mesh(par.devices)
    _check_settings(settings, mesh)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    source = load_source(settings.data, settings.seed, workdir, dataset)
    settings = resolve_settings(settings, source)
    check_splits(settings, source)
    if parallel.is_main_process():
        (workdir / "config.json").write_text(json.dumps(settings_to_dict(settings), indent=2))
    log = MetricsLog(workdir / "metrics.jsonl")
    meta = {"format": CHECKPOINT_FORMAT, "settings": settings_to_dict(settings),
            "normalization": source.normalization.to_dict(), "grid": source.grid,
            "coordinates": None if source.coordinates is None else source.coordinates.to_dict()}
    results = {}
    for name in settings.stages:
        stage = build_stage(settings, name, source, workdir, meta)
        _, results[name] = run_stage(settings, stage, workdir, log, mesh)
    return results, source


def train_and_evaluate(config: Any, workdir: str | os.PathLike, dataset=None) -> dict[str, dict[str, float]]:
    """Train every stage of ``config.stages`` in order, writing checkpoints and metrics under ``workdir``.

    Args:
        config: An ``ml_collections.ConfigDict`` (or nested dict) as in ``configs/``; ``config.parallel``
            (optional) chooses the devices and joins a multi-host run.
        workdir: Output directory; rerunning with the same directory resumes.
        dataset: An ``xarray.Dataset`` in place of ``config.data.path`` (``config.data.source='dataset'``,
            e.g. ``configs/dataset.py``); pass it to :func:`slams_jax.assimilate` too.

    Returns:
        ``{stage: summary}`` with the final training and validation losses.
    """
    settings = settings_from_config(config)
    return train_experiment(settings, parallel_settings_from_config(config), workdir, dataset)[0]


__all__ = [
    "TrainState", "LossFn", "Stage", "StageData", "MetricsLog", "learning_rate_schedule", "make_optimizer",
    "ema_rate", "train_step", "eval_step", "compile_steps", "autoencoder_loss_fn", "score_loss_fn", "init_state",
    "latent_statistics", "build_stage", "run_stage", "prepare_data", "train_experiment", "train_and_evaluate",
    "CheckpointError", "STAGE_IDS", "CHECKPOINT_FORMAT",
]
