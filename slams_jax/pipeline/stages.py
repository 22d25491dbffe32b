"""What each training stage is: its data, its loss, its frozen inputs, its initial state, its metadata.

:func:`build_stage` describes a stage of ``config.stages`` as a :class:`Stage`, and one loop
(:func:`slams_jax.pipeline.training.run_stage`) trains any of them:

- ``autoencoder``: single states of every modality; nothing frozen;
- ``score``: windows of ``2k + 1`` states of every modality, encoded inside the step by the trained
  autoencoder (frozen: its inference variables and the latent statistics, which the checkpoint also
  stores so the prior can be used without the training data);
- ``pixel_score``: windows of the normalized state alone; nothing frozen.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax import parallel
from slams_jax._types import PRNGKey, PyTree
from slams_jax.data import datasets
from slams_jax.data.regrid import area_weights
from slams_jax.pipeline.configuration import Settings
from slams_jax.pipeline.losses import autoencoder_loss_fn, score_loss_fn
from slams_jax.pipeline.models import build_autoencoder, build_score, encode_states
from slams_jax.pipeline.optimization import LossFn, TrainState, make_optimizer
from slams_jax.pipeline.pretrained import autoencoder_variables
from slams_jax.pipeline.sources import SourceData

# Initialisation runs once: compile it as one program, unoptimised (eager init of these networks takes
# 10-20 s on a CPU, an optimised compile about 6 s, this about 3 s).
_jit_init = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _init_autoencoder(settings: Settings, key: PRNGKey, example: Mapping[str, np.ndarray]) -> tuple[PyTree, PyTree]:
    model = build_autoencoder(settings)
    variables = _jit_init(functools.partial(model.init, train=False))(
        key, {k: jnp.asarray(v) for k, v in example.items()})
    return variables["params"], variables.get("batch_stats", {})


def _init_score(settings: Settings, stage: str, key: PRNGKey, example: Mapping[str, np.ndarray],
                frozen: PyTree) -> tuple[PyTree, PyTree]:
    score = build_score(settings, stage)
    if stage == "score":  # the network sees latents: shape them with the frozen encoder, without running it
        batch = {k: jnp.asarray(v) for k, v in example.items()}
        z = jax.eval_shape(functools.partial(encode_states, settings), frozen["autoencoder"], batch)
        z = jnp.zeros(z.shape, z.dtype)
    else:
        z = jnp.asarray(example[settings.data.state.name])
    return _jit_init(score.init)(key, z), {}


def init_state(settings: Settings, stage: str, key: PRNGKey, example: Mapping[str, np.ndarray], frozen) -> TrainState:
    """Initial :class:`TrainState` of a stage, shaped after an example batch.

    Args:
        settings: The experiment's settings.
        stage: ``autoencoder``, ``score`` or ``pixel_score``.
        key: Initialisation key.
        example: A host batch of the stage (``{modality: (batch, [window,] y, x, channel)}``).
        frozen: The stage's frozen inputs (``{}`` but for ``score``).
    """
    optimizer = make_optimizer(settings.train[stage])
    if stage == "autoencoder":
        params, batch_stats = _init_autoencoder(settings, key, example)
    else:
        params, batch_stats = _init_score(settings, stage, key, example, frozen)
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


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage as the training loop consumes it.

    Attributes:
        name: ``autoencoder``, ``score`` or ``pixel_score`` (its checkpoints are ``WORKDIR/checkpoints/<name>``).
        data: The batches it is trained and validated on.
        loss_fn: Its loss.
        frozen: Inputs of the step that are not trained (``{}`` if none).
        meta: What its checkpoints store beside the state (settings, normalization, grid, ...).
    """

    name: str
    data: StageData
    loss_fn: LossFn
    frozen: PyTree
    meta: Mapping[str, Any]


def _lat_weights(settings: Settings, stage: str, source: SourceData) -> np.ndarray | None:
    """Cell-area weights of the grid's rows if ``config.train.<stage>.area_weighted``, else ``None``."""
    if not settings.train[stage].area_weighted:
        return None
    return area_weights(source.latitude())


def _autoencoder_stage(settings: Settings, source: SourceData, workdir: Path, meta: dict) -> Stage:
    arrays = source.arrays
    data = StageData(arrays["train"], arrays["valid"], None, settings.data.modalities)
    loss_fn = autoencoder_loss_fn(settings, settings.train["autoencoder"].aux_dropout,
                                  _lat_weights(settings, "autoencoder", source))
    return Stage("autoencoder", data, loss_fn, {}, {**meta, "stage": "autoencoder"})


def _score_stage(settings: Settings, source: SourceData, workdir: Path, meta: dict) -> Stage:
    arrays = source.arrays
    variables, _ = autoencoder_variables(workdir)
    mean, std = latent_statistics(settings, variables, arrays["train"])
    frozen = {"autoencoder": variables, "latent_mean": jnp.asarray(mean), "latent_std": jnp.asarray(std)}
    data = StageData(arrays["train"], arrays["valid"], settings.score.window, settings.data.modalities)
    stage_meta = {**meta, "stage": "score", "latent_mean": mean.tolist(), "latent_std": std.tolist()}
    return Stage("score", data, score_loss_fn(settings, "score", _lat_weights(settings, "score", source)), frozen,
                 stage_meta)


def _pixel_score_stage(settings: Settings, source: SourceData, workdir: Path, meta: dict) -> Stage:
    arrays, name = source.arrays, settings.data.state.name
    data = StageData({name: arrays["train"][name]}, {name: arrays["valid"][name]}, settings.pixel_score.window,
                     settings.data.modalities[:1])
    loss_fn = score_loss_fn(settings, "pixel_score", _lat_weights(settings, "pixel_score", source))
    return Stage("pixel_score", data, loss_fn, {}, {**meta, "stage": "pixel_score"})


_BUILDERS: dict[str, Callable[[Settings, SourceData, Path, dict], Stage]] = {
    "autoencoder": _autoencoder_stage, "score": _score_stage, "pixel_score": _pixel_score_stage,
}


def build_stage(settings: Settings, name: str, source: SourceData, workdir: Path, meta: dict) -> Stage:
    """The :class:`Stage` ``name``, on the data of ``source``.

    Args:
        settings: The experiment's settings.
        name: A stage of :data:`slams_jax.pipeline.configuration.STAGES`.
        source: The loaded data.
        workdir: The experiment's directory (``score`` reads the trained autoencoder from it).
        meta: The metadata every stage's checkpoints store; the stage adds its name (and ``score`` the
            latent statistics).
    """
    return _BUILDERS[name](settings, source, Path(workdir), meta)


__all__ = ["Stage", "StageData", "build_stage", "init_state", "latent_statistics"]
