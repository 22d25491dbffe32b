"""Training: the multimodal autoencoder, then the latent score prior (and optionally the pixel prior).

``python -m slams_jax.train --config=configs/kolmogorov.py --workdir=DIR [--config.<key>=<value>]``
trains the stages listed in ``config.stages`` in order:

- ``autoencoder``: every modality of a state -> one latent field -> every modality, masked MSE per
  modality (NaN points carry no loss), optional random hiding of auxiliary modalities;
- ``score``: the VP-diffusion noise predictor over windows of ``2k + 1`` latent states; the frozen
  encoder (EMA parameters, normalization layers in inference mode) runs inside the compiled step and
  its output is standardized with latent statistics of the training split;
- ``pixel_score``: the same prior directly on the normalized physical state (the SDA baseline).

Each stage is a pure ``train_step(state, batch, key, frozen) -> (state, metrics)`` compiled once;
batches are drawn statelessly from ``fold_in(key, step)`` and the step's own randomness from
``fold_in(key, state.step)``, so a run resumed from a checkpoint continues exactly as an uninterrupted
run. Logging, evaluation and checkpoints happen in the Python loop around it.

The step runs on every device of the ``data`` mesh (:mod:`slams_jax.parallel`): the global batch
(``config.train.batch_size``, a multiple of the device count) is split over the devices, the state is
replicated, and the compiled step averages gradients and metrics across devices. ``config.parallel``
chooses the devices and, for a multi-host run, joins the processes; only process 0 writes metrics and
the config, and orbax writes each checkpoint once.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from slams_jax._types import PRNGKey, PyTree
from slams_jax.autoencoder import masked_mse
from slams_jax.checkpointing import CheckpointError, StageCheckpointer
from slams_jax.configuration import (
    Settings, TrainSettings, parallel_settings_from_config, settings_from_config, settings_to_dict,
)
from slams_jax import datasets, parallel
from slams_jax.models import build_autoencoder, build_score, encode_states, standardize
from slams_jax.pretrained import autoencoder_variables
from slams_jax.score import denoising_loss

STAGE_IDS = {"autoencoder": 1, "score": 2, "pixel_score": 3}
CHECKPOINT_FORMAT = 1


@flax.struct.dataclass
class TrainState:
    """Everything a stage's optimisation carries from one step to the next."""

    step: jax.Array
    params: PyTree
    ema_params: PyTree
    opt_state: optax.OptState
    batch_stats: PyTree


def learning_rate_schedule(ts: TrainSettings) -> optax.Schedule:
    """Linear warm-up to ``learning_rate``, then cosine, linear (to zero) or constant."""
    warmup = min(ts.warmup_steps, max(ts.steps - 1, 0))
    decay_steps = max(ts.steps - warmup, 1)
    if ts.lr_schedule == "cosine":
        after = optax.cosine_decay_schedule(ts.learning_rate, decay_steps)
    elif ts.lr_schedule == "linear":
        after = optax.linear_schedule(ts.learning_rate, 0.0, decay_steps)
    else:
        after = optax.constant_schedule(ts.learning_rate)
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, ts.learning_rate, warmup), after], [warmup])


def make_optimizer(ts: TrainSettings) -> optax.GradientTransformation:
    """AdamW with the stage's learning-rate schedule, after global-norm clipping."""
    parts = [optax.clip_by_global_norm(ts.grad_clip)] if ts.grad_clip > 0 else []
    parts.append(optax.adamw(learning_rate_schedule(ts), weight_decay=ts.weight_decay))
    return optax.chain(*parts)


def ema_rate(step: jax.Array, decay: float) -> jax.Array:
    """EMA decay with warm-up, ``min(decay, (1 + step) / (10 + step))``, so early averages are not stale."""
    step = step.astype(jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + step) / (10.0 + step))


LossFn = Callable[[PyTree, PyTree, PyTree, Mapping[str, jax.Array], PRNGKey, bool], tuple[jax.Array, tuple[dict, PyTree]]]


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    key: PRNGKey,
    frozen: PyTree,
    *,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    ema_decay: float,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step; pure. ``frozen`` holds non-trained inputs (e.g. the frozen encoder)."""
    key = jax.random.fold_in(key, state.step)

    def objective(params):
        return loss_fn(params, state.batch_stats, frozen, batch, key, True)

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    # optax's bias correction raises a python float to an int32 count, which strict dtype promotion
    # (on in the tests) rejects; the optimizer's own arithmetic is trusted to standard promotion.
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = optax.incremental_update(params, state.ema_params, 1.0 - ema_rate(state.step, ema_decay))
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads)}
    new_state = state.replace(
        step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state, batch_stats=batch_stats
    )
    return new_state, metrics


def eval_step(state: TrainState, batch, key, frozen, *, loss_fn: LossFn) -> dict[str, jax.Array]:
    """Validation loss with the EMA parameters and normalization layers in inference mode."""
    loss, (metrics, _) = loss_fn(state.ema_params, state.batch_stats, frozen, batch, key, False)
    return {**metrics, "loss": loss}


# ----------------------------------------------------------------------------------------------
# Stage definitions: initial state, loss and batches.


def autoencoder_loss_fn(settings: Settings, aux_dropout: float, lat_weights: np.ndarray | None = None) -> LossFn:
    """Masked reconstruction loss of every modality, weighted by ``modality.weight`` (and by cell area along
    latitude with ``lat_weights``)."""
    area = None if lat_weights is None else jnp.asarray(lat_weights, jnp.float32).reshape(-1, 1, 1)
    model = build_autoencoder(settings)
    modalities = settings.data.modalities
    total_weight = sum(m.weight for m in modalities)

    def loss_fn(params, batch_stats, frozen, batch, key, train):
        del frozen
        masks = {}
        keys = jax.random.split(key, len(modalities))
        for i, m in enumerate(modalities):
            valid = jnp.isfinite(batch[m.name])
            if train and i > 0 and aux_dropout > 0:
                n = batch[m.name].shape[0]
                keep = jax.random.uniform(keys[i], (n, 1, 1, 1)) >= aux_dropout
                valid = valid & keep
            masks[m.name] = valid
        variables = {"params": params}
        mutable = False
        if batch_stats:
            variables["batch_stats"] = batch_stats
            mutable = ["batch_stats"] if train else False
        out = model.apply(variables, dict(batch), masks, train=train, mutable=mutable)
        if mutable:
            (_, recon), updates = out
            new_stats = updates["batch_stats"]
        else:
            _, recon = out
            new_stats = batch_stats
        metrics, loss = {}, jnp.float32(0.0)
        for m in modalities:
            target = batch[m.name]
            err = masked_mse(recon[m.name], target, jnp.isfinite(target), area)
            metrics[f"mse_{m.name}"] = err
            loss = loss + (m.weight / total_weight) * err
        return loss, (metrics, new_stats)

    return loss_fn


def score_loss_fn(settings: Settings, stage: str, lat_weights: np.ndarray | None = None) -> LossFn:
    """Denoising loss of the window score, on standardized latents (``score``) or states (``pixel_score``);
    ``lat_weights`` (on the data grid) weights it by cell area along latitude."""
    score = build_score(settings, stage)
    state_name = settings.data.state.name
    area = None
    if lat_weights is not None:
        w = np.asarray(lat_weights, np.float64)
        factor = settings.autoencoder.downsample if stage == "score" else 1
        if factor > 1:  # the latent rows cover `factor` data rows each
            rows = len(w) // factor
            w = w[: rows * factor].reshape(rows, factor).mean(1)
        area = jnp.asarray(w, jnp.float32).reshape(-1, 1, 1)

    def loss_fn(params, batch_stats, frozen, batch, key, train):
        del batch_stats, train
        if stage == "score":
            z = encode_states(settings, frozen["autoencoder"], batch)  # (B, W, h, w, c)
            x = jax.lax.stop_gradient(standardize(z, frozen["latent_mean"], frozen["latent_std"]))
        else:
            x = batch[state_name]
        weights = None if area is None else area[: x.shape[-3]]
        loss = denoising_loss(lambda xt, t: score.window_eps(params, xt, t), settings.sde, key, x, weights)
        return loss, ({}, {})

    return loss_fn


def init_state(settings: Settings, stage: str, key: PRNGKey, example: Mapping[str, np.ndarray], frozen) -> TrainState:
    """Initial :class:`TrainState` of a stage, shaped after an example batch."""
    optimizer = make_optimizer(settings.train[stage])
    # Initialisation runs once: compile it as one program, unoptimised (eager init of these networks
    # takes 10-20 s on a CPU, an optimised compile about 6 s, this about 3 s).
    jit_init = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
    if stage == "autoencoder":
        model = build_autoencoder(settings)
        variables = jit_init(functools.partial(model.init, train=False))(
            key, {k: jnp.asarray(v) for k, v in example.items()})
        params = variables["params"]
        batch_stats = variables.get("batch_stats", {})
    else:
        score = build_score(settings, stage)
        if stage == "score":
            batch = {k: jnp.asarray(v) for k, v in example.items()}
            z = jax.eval_shape(functools.partial(encode_states, settings), frozen["autoencoder"], batch)
            z = jnp.zeros(z.shape, z.dtype)
        else:
            z = jnp.asarray(example[settings.data.state.name])
        params = jit_init(score.init)(key, z)
        batch_stats = {}
    return TrainState(
        step=jnp.array(0, jnp.int32),
        params=params,
        # a separate copy: the step donates the state, and one buffer cannot be donated twice
        ema_params=jax.tree_util.tree_map(jnp.copy, params),
        opt_state=optimizer.init(params),
        batch_stats=batch_stats,
    )


def latent_statistics(settings: Settings, variables: PyTree, arrays: datasets.Arrays, max_states: int = 512):
    """Per-channel mean and std of the encoded training states (at most ``max_states`` of them)."""
    first = next(iter(arrays.values()))
    n = first.shape[0] * first.shape[1]
    idx = np.linspace(0, n - 1, min(n, max_states)).astype(int)
    traj, time_ = np.divmod(idx, first.shape[1])
    encode = jax.jit(functools.partial(encode_states, settings))
    zs = []
    for lo in range(0, len(idx), 64):
        batch = {k: jnp.asarray(a[traj[lo:lo + 64], time_[lo:lo + 64]]) for k, a in arrays.items()}
        zs.append(np.asarray(encode(variables, batch)))
    z = np.concatenate(zs).astype(np.float64)
    z = z.reshape(-1, z.shape[-1])
    return z.mean(0).astype(np.float32), np.maximum(z.std(0), 1e-6).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# The outer loop (side effects live here).


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


@dataclasses.dataclass
class StageData:
    """Normalized arrays of the train and validation splits, and how to draw batches from them."""

    train: datasets.Arrays
    valid: datasets.Arrays
    window: int | None  # None: single states (autoencoder); else windows of consecutive states
    modalities: tuple  # ModalitySettings of the arrays, the state first

    def _indices(self, key: PRNGKey, split: str, batch_size: int):
        arrays = self.train if split == "train" else self.valid
        if self.window is None:
            return arrays, datasets.state_indices(key, arrays, batch_size)
        return arrays, datasets.window_indices(key, arrays, batch_size, self.window)

    def batch(self, key: PRNGKey, split: str, batch_size: int) -> dict[str, np.ndarray]:
        """A host batch (NumPy)."""
        arrays, (traj, time_) = self._indices(key, split, batch_size)
        return datasets.gather(arrays, traj, time_)

    def global_batch(self, key: PRNGKey, split: str, batch_size: int, mesh, what: str) -> dict[str, jax.Array]:
        """The same batch split over the mesh: each device's rows are gathered (and checked) on their own."""
        arrays, (traj, time_) = self._indices(key, split, batch_size)

        def fetch(rows):
            shard = datasets.gather(arrays, traj[rows], time_[rows])
            datasets.check_batch(shard, self.modalities, f"{what} (rows {rows[0]}-{rows[-1]})")
            return shard

        return parallel.global_batch(fetch, batch_size, mesh)


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


def run_stage(
    settings: Settings,
    stage: str,
    workdir: Path,
    data: StageData,
    frozen: PyTree,
    loss_fn: LossFn,
    meta: dict[str, Any],
    log: MetricsLog,
    mesh: jax.sharding.Mesh,
) -> tuple[TrainState, dict[str, float]]:
    """Train one stage to ``settings.train[stage].steps`` on the devices of ``mesh``, resuming from its latest
    checkpoint."""
    ts = settings.train[stage]
    base = jax.random.fold_in(jax.random.PRNGKey(settings.seed), STAGE_IDS[stage])
    init_key, data_key, step_key, eval_key = jax.random.split(base, 4)
    example = data.batch(jax.random.PRNGKey(0), "train", 2)
    state = init_state(settings, stage, init_key, example, frozen)
    ckpt = StageCheckpointer(workdir / "checkpoints" / stage, max_to_keep=ts.max_to_keep)
    start = ckpt.latest_step() or 0
    if start:
        _check_compatible(stage, ckpt.restore_meta(start), settings)
        state, _ = ckpt.restore(parallel.to_host(state), start)
    state, frozen = parallel.replicate((state, frozen), mesh)
    optimizer = make_optimizer(ts)
    step_fn, eval_fn = compile_steps(loss_fn, optimizer, ts.ema_decay, mesh)
    step_key, eval_key = parallel.replicate((step_key, eval_key), mesh)
    schedule = learning_rate_schedule(ts)
    summary: dict[str, float] = {"steps": ts.steps}

    def evaluate(step):
        vals = []
        for i in range(ts.eval_batches):
            batch = data.global_batch(jax.random.fold_in(eval_key, i), "valid", ts.batch_size, mesh,
                                      f"{stage} validation batch {i}")
            vals.append(parallel.to_host(eval_fn(state, batch, jax.random.fold_in(eval_key, 10_000 + i), frozen)))
        record = {k: float(np.mean([v[k] for v in vals])) for k in vals[0]}
        log.write({"stage": stage, "step": step, "split": "valid", **record})
        summary["val_loss"] = record["loss"]
        return record

    if start >= ts.steps:
        summary["resumed_from"] = start
        ckpt.close()
        return state, summary

    bar = tqdm(total=ts.steps, initial=start, desc=stage, unit="step", mininterval=1.0, file=sys.stderr,
               disable=os.environ.get("SLAMS_JAX_NO_PROGRESS") == "1" or not parallel.is_main_process())
    t_last, n_last = time.perf_counter(), start
    t0 = time.perf_counter()
    for step in range(start, ts.steps):
        batch = data.global_batch(jax.random.fold_in(data_key, step), "train", ts.batch_size, mesh,
                                  f"{stage} batch at step {step}")
        state, metrics = step_fn(state, batch, step_key, frozen)
        done = step + 1
        last = done == ts.steps
        if done % ts.log_every == 0 or last:
            metrics = {k: float(v) for k, v in parallel.to_host(metrics).items()}
            if not np.isfinite(metrics["loss"]):
                raise FloatingPointError(
                    f"{stage}: the training loss became {metrics['loss']} at step {done} "
                    f"(metrics {metrics}); the last good checkpoint is in {ckpt.directory}"
                )
            now = time.perf_counter()
            rate = (done - n_last) * ts.batch_size / max(now - t_last, 1e-9)
            t_last, n_last = now, done
            log.write({"stage": stage, "step": done, "split": "train", **metrics,
                       "lr": float(schedule(done - 1)), "samples_per_s": rate})
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", samples_s=f"{rate:.0f}")
            summary["loss"] = metrics["loss"]
        if done % ts.eval_every == 0 or last:
            evaluate(done)
        if done % ts.checkpoint_every == 0 or last:
            ckpt.save(done, parallel.to_host(state), meta)
        bar.update(1)
    bar.close()
    summary["wall_s"] = time.perf_counter() - t0
    ckpt.close()
    return state, summary


def compile_steps(loss_fn: LossFn, optimizer: optax.GradientTransformation, ema_decay: float, mesh):
    """The train and eval steps compiled for ``mesh``: batch split over ``data``, everything else replicated.

    XLA partitions each step over the devices and inserts the cross-device reductions (gradients, loss,
    metrics, BatchNorm statistics), so on any number of devices the step computes the same global-batch
    update. The state is donated on accelerators (its buffers are reused for the new state).
    """
    rep, rows = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    step_fn = jax.jit(
        functools.partial(train_step, loss_fn=loss_fn, optimizer=optimizer, ema_decay=ema_decay),
        in_shardings=(rep, rows, rep, rep), out_shardings=(rep, rep),
        donate_argnums=(0,) if jax.default_backend() != "cpu" else (),
    )
    eval_fn = jax.jit(functools.partial(eval_step, loss_fn=loss_fn), in_shardings=(rep, rows, rep, rep),
                      out_shardings=rep)
    return step_fn, eval_fn


def prepare_data(settings: Settings, workdir: Path) -> tuple[dict[str, datasets.Arrays], datasets.Normalization]:
    """Load (or generate), split and normalize the data; normalization fitted on the train split only.

    ERA5 (``config.data.source = "era5"``): lazy arrays that read the sources (or the prepared store) by
    date as batches are drawn; nothing is loaded whole.
    """
    if settings.data.source == "era5":
        from slams_jax import era5

        return era5.training_arrays(settings.data)
    ds = datasets.load_dataset(settings.data, settings.seed, workdir)
    splits = datasets.split_dataset(ds, settings.data)
    raw = {name: datasets.to_arrays(split, settings.data.modalities) for name, split in splits.items()}
    norm = datasets.fit_normalization(raw["train"])
    return {name: datasets.normalize_arrays(a, norm) for name, a in raw.items()}, norm


def train_and_evaluate(config: Any, workdir: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Train every stage of ``config.stages`` in order, writing checkpoints and metrics under ``workdir``.

    Args:
        config: An ``ml_collections.ConfigDict`` (or nested dict) as in ``configs/``; ``config.parallel``
            (optional) chooses the devices and joins a multi-host run.
        workdir: Output directory; rerunning with the same directory resumes.

    Returns:
        ``{stage: summary}`` with the final training and validation losses.
    """
    settings = settings_from_config(config)
    par = parallel_settings_from_config(config)
    parallel.initialize(par)
    mesh = parallel.data_mesh(par.devices)
    for stage in settings.stages:  # fail before any work
        parallel.check_divisible(settings.train[stage].batch_size, mesh, f"config.train.batch_size of stage {stage}")
        if settings.train[stage].area_weighted and settings.data.source != "era5":
            raise ValueError(f"config.train.area_weighted (stage {stage}): the {settings.data.source!r} data have "
                             "no latitude; cell-area weights need a geographic grid (the era5 source)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if parallel.is_main_process():
        (workdir / "config.json").write_text(json.dumps(settings_to_dict(settings), indent=2))
    arrays, norm = prepare_data(settings, workdir)
    log = MetricsLog(workdir / "metrics.jsonl")
    grid = list(arrays["train"][settings.data.state.name].shape[2:-1])
    meta = {"format": CHECKPOINT_FORMAT, "settings": settings_to_dict(settings), "normalization": norm.to_dict(),
            "grid": grid}
    results = {}

    def lat_weights(stage):
        if not settings.train[stage].area_weighted:
            return None
        from slams_jax import era5
        from slams_jax.regrid import area_weights

        return area_weights(era5.grid_latitude(settings.data))

    for stage in settings.stages:
        if stage == "autoencoder":
            data = StageData(arrays["train"], arrays["valid"], None, settings.data.modalities)
            _, results[stage] = run_stage(
                settings, stage, workdir, data, {},
                autoencoder_loss_fn(settings, settings.train[stage].aux_dropout, lat_weights(stage)),
                {**meta, "stage": stage}, log, mesh,
            )
        elif stage == "score":
            variables, _ = autoencoder_variables(workdir)
            mean, std = latent_statistics(settings, variables, arrays["train"])
            frozen = {"autoencoder": variables, "latent_mean": jnp.asarray(mean), "latent_std": jnp.asarray(std)}
            data = StageData(arrays["train"], arrays["valid"], settings.score.window, settings.data.modalities)
            stage_meta = {**meta, "stage": stage, "latent_mean": mean.tolist(), "latent_std": std.tolist()}
            _, results[stage] = run_stage(settings, stage, workdir, data, frozen,
                                          score_loss_fn(settings, stage, lat_weights(stage)), stage_meta, log, mesh)
        else:
            name = settings.data.state.name
            data = StageData({name: arrays["train"][name]}, {name: arrays["valid"][name]}, settings.pixel_score.window,
                             settings.data.modalities[:1])
            _, results[stage] = run_stage(settings, stage, workdir, data, {},
                                          score_loss_fn(settings, stage, lat_weights(stage)), {**meta, "stage": stage},
                                          log, mesh)
    return results


def main(argv):
    from slams_jax.cli import config_from_flags, workdir_from_flags

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    config = config_from_flags()
    if "twin" in config:  # a Lorenz twin experiment (configs/lorenz63.py, configs/lorenz96.py)
        from slams_jax import twin

        twin.train_twin(config, workdir_from_flags())
        return
    results = train_and_evaluate(config, workdir_from_flags())
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    from slams_jax.cli import run_main

    run_main(main)
