"""One optimizer step of a training stage, pure and compiled once: AdamW, clipping, EMA, the data mesh.

A stage's step is ``train_step(state, batch, key, frozen) -> (state, metrics)``: the loss and its gradient
with respect to ``state.params`` (``frozen`` holds inputs that are not trained, e.g. the frozen encoder),
global-norm clipping, an AdamW update with a warm-up then cosine/linear/constant learning rate, and an
exponential moving average of the parameters with decay ``min(decay, (1 + step) / (10 + step))``. The
step's randomness is ``fold_in(key, state.step)``, so a resumed run draws what an uninterrupted one would.

:func:`compile_steps` compiles the train and eval steps for the ``data`` mesh
(:mod:`slams_jax.parallel`): the batch split over the devices, everything else replicated.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import optax

from slams_jax import parallel
from slams_jax._types import PRNGKey, PyTree
from slams_jax.pipeline.configuration import TrainSettings


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


__all__ = ["TrainState", "LossFn", "learning_rate_schedule", "make_optimizer", "ema_rate", "train_step", "eval_step",
           "compile_steps"]
