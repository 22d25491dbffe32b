r"""Training of a twin experiment: the training run, the autoencoder and the window priors; resumable.

The training run is a long free run of the model at the observation cadence
(:func:`slams_jax.twin.lorenz.free_run`), standardized per variable. The autoencoder (latent space) is fit
by the reconstruction error of noisy latents plus a small latent penalty; each window prior by the
denoising loss of windows of :math:`2k+1` consecutive states (:func:`slams_jax.diffusion.score.denoising_loss`).

Each stage runs Adam with a cosine decay in chunks of steps and checkpoints after each chunk its
parameters, optimizer state, PRNG key (split at every step) and step count, so a killed run resumes where
it stopped and gives the parameters of an uninterrupted one. The loop is the twin's own rather than the
pipeline's :func:`~slams_jax.pipeline.training.train_step`: that step folds the step count into the key,
takes its batch from the host and runs AdamW with an EMA, which would change the twin's numbers and the
layout of its checkpoints.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from slams_jax._types import Array, PRNGKey, PyTree
from slams_jax.diffusion.score import MarkovScore, denoising_loss
from slams_jax.errors import TwinError
from slams_jax.pipeline.checkpointing import StageCheckpointer
from slams_jax.twin import lorenz
from slams_jax.twin.model import TwinModel, broadcast
from slams_jax.twin.networks import TwinAutoencoder, build_score
from slams_jax.twin.settings import TwinSettings

Log = Callable[[str], None]


def _restore(ckpt: StageCheckpointer, state: dict, steps: int) -> dict:
    """The last checkpointed state of a stage, or ``state`` when there is none."""
    if ckpt.latest_step() is None:
        return state
    state, meta = ckpt.restore(state)
    if int(meta.get("steps", -1)) != steps:
        raise TwinError(f"{ckpt.directory}: trained for {meta.get('steps')} steps, the config asks for {steps}; "
                        "use a new workdir")
    return state


def _chunk_runner(loss_fn: Callable[[PyTree, PRNGKey], Array], optimizer: optax.GradientTransformation):
    """``(state, n) -> (state, losses (n,))``: ``n`` optimizer steps, each one compiled call.

    The steps are dispatched from the host rather than scanned: XLA:CPU runs a convolution's kernel gradient
    inside a loop body in a slow generic layout (measured on the ring ResNet: 582 ms per scanned step against
    50 ms per call), and the dispatch costs nothing next to a step.
    """

    @jax.jit
    def step(state):
        key, sub = jax.random.split(state["key"])
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], sub)
        # optax raises a python float to an int32 count (rejected by strict promotion, as in train.py)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt = optimizer.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt, "key": key,
                "step": state["step"] + 1}, loss

    def run(state, n):
        losses = []
        for _ in range(n):
            state, loss = step(state)
            losses.append(loss)
        return state, jnp.stack(losses)

    return run


def fit(stage: str, workdir: Path, loss_fn: Callable[[PyTree, PRNGKey], Array], params: PyTree, key: PRNGKey,
        steps: int, lr: float, chunk: int, log: Log) -> PyTree:
    """Minimize ``loss_fn(params, key)`` by Adam with a cosine decay from ``lr`` over ``steps`` steps.

    ``chunk`` steps between checkpoints, one under ``WORKDIR/checkpoints/<stage>`` after each
    (parameters, optimizer state, key, step); a killed run resumes from the last chunk.

    Returns:
        The trained parameters.
    """
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps))
    state = {"params": params, "opt": optimizer.init(params), "key": key, "step": jnp.zeros((), jnp.int32)}
    ckpt = StageCheckpointer(workdir / "checkpoints" / stage, max_to_keep=1)
    state = _restore(ckpt, state, steps)
    done = int(state["step"])
    if done >= steps:
        log(f"{stage}: {done} steps (restored)")
        return state["params"]
    run = _chunk_runner(loss_fn, optimizer)
    t0 = time.perf_counter()
    while done < steps:
        n = min(chunk, steps - done)
        state, losses = run(state, n)
        done += n
        ckpt.save(done, state, {"steps": steps, "loss": float(jnp.mean(losses))})
        log(f"{stage}: step {done}/{steps} loss {float(jnp.mean(losses)):.4f} ({time.perf_counter() - t0:.0f} s)")
    ckpt.close()
    return state["params"]


def windows(states: Array, index: Array, window: int) -> Array:
    """The windows ``(len(index), window, ...)`` of ``states`` starting at ``index``."""
    return states[index[:, None] + jnp.arange(window)[None, :]]


def random_shifts(key: PRNGKey, x: Array, axis: int) -> Array:
    """Each sample of ``x`` rolled by its own random shift along ``axis`` (a periodic ring)."""
    n = x.shape[axis]
    shifts = jax.random.randint(key, (x.shape[0],), 0, n)
    index = (jnp.arange(n)[None, :] + shifts[:, None]) % n
    index = index.reshape((x.shape[0],) + (1,) * (axis % x.ndim - 1) + (n,) + (1,) * (x.ndim - 1 - axis % x.ndim))
    return jnp.take_along_axis(x, jnp.broadcast_to(index, x.shape), axis=axis)


def training_states(settings: TwinSettings, workdir: Path, key: PRNGKey, log: Log) -> np.ndarray:
    """The training free run ``(train_states, dim)``, generated once and kept in ``WORKDIR/train_states.npy``."""
    setup, n = settings.setup, settings.twin.train_states
    path = workdir / "train_states.npy"
    if path.exists():
        train = np.load(path)
    else:
        t0 = time.perf_counter()
        train = np.asarray(lorenz.free_run(setup, key, n), np.float32)
        tmp = workdir / f"train_states.tmp{os.getpid()}.npy"
        np.save(tmp, train)
        os.replace(tmp, path)
        log(f"training run: {train.shape} at the observation cadence ({time.perf_counter() - t0:.1f} s)")
    if train.shape != (n, setup.dim):
        raise TwinError(f"{path}: shape {train.shape}, expected {(n, setup.dim)}; use a new workdir")
    return train


def train_autoencoder(settings: TwinSettings, workdir: Path, u: Array, std: np.ndarray, key: PRNGKey, log: Log
                      ) -> tuple[TwinAutoencoder, PyTree, np.ndarray, np.ndarray]:
    """The autoencoder of the standardized states ``u`` ``(n, dim)`` and the mean and std of its latents."""
    ac, batch, augment = settings.autoencoder, settings.train.batch_size, settings.twin.augment_shifts
    ae = TwinAutoencoder(dim=settings.setup.dim, kind=ac.kind, latent=ac.latent, hidden=ac.hidden,
                         downsample=ac.downsample)
    params = ae.init(key, u[:2, :, None])["params"]

    def loss(p, k):
        k1, k2, k3 = jax.random.split(k, 3)
        x = u[jax.random.randint(k1, (batch,), 0, u.shape[0])][..., None]
        if augment:
            x = random_shifts(k3, x, axis=1)
        z = ae.apply({"params": p}, x, method=TwinAutoencoder.encode)
        # a little latent noise keeps the decoder smooth around the training latents
        z = z + ac.latent_noise * jax.random.normal(k2, z.shape)
        rec = ae.apply({"params": p}, z, method=TwinAutoencoder.decode)
        return jnp.mean(jnp.square(rec - x)) + ac.latent_penalty * jnp.mean(jnp.square(z))

    params = fit("autoencoder", workdir, loss, params, key, ac.steps, ac.learning_rate, settings.train.chunk, log)
    z = ae.apply({"params": params}, u[..., None], method=TwinAutoencoder.encode)
    latent_mean, latent_std = np.asarray(z.mean(0)), np.asarray(z.std(0)) + 1e-6
    rec = ae.apply({"params": params}, z, method=TwinAutoencoder.decode)[..., 0]
    log(f"autoencoder: reconstruction RMSE {float(jnp.sqrt(jnp.mean(jnp.square((rec - u) * broadcast(std, u))))):.4f} "
        f"(physical units), latent {tuple(z.shape[1:])}")
    return ae, params, latent_mean, latent_std


def train_score(settings: TwinSettings, workdir: Path, space: str, seq: Array, key: PRNGKey, log: Log
                ) -> tuple[MarkovScore, PyTree]:
    """The window prior of ``space`` on the standardized sequence ``seq`` ``(n, *state_shape)``."""
    tc, window, schedule = settings.train, settings.score.window, settings.score.vp_schedule
    score = build_score(settings.score, seq.shape[-1], schedule)
    params = score.init(key, seq[None, :window])
    # the ring of Lorenz-96 is homogeneous: every rotation of a state is as likely, so the state prior's
    # windows are rotated at random (the latent prior learns the encoded states as they are)
    shift = settings.twin.augment_shifts and space == "pixel"

    def loss(p, k):
        k1, k2, k3 = jax.random.split(k, 3)
        x = windows(seq, jax.random.randint(k1, (tc.batch_size,), 0, seq.shape[0] - window + 1), window)
        if shift:  # (batch, window, dim, 1): the same shift for every state of a window
            x = random_shifts(k3, x, axis=2)
        return denoising_loss(lambda x_t, t: score.window_eps(p, x_t, t), schedule, k2, x)

    return score, fit(f"score_{space}", workdir, loss, params, key, tc.steps, tc.learning_rate, tc.chunk, log)


def train_twin(settings: TwinSettings, workdir: str | os.PathLike, log: Log = print) -> TwinModel:
    """Generate the training run, train the autoencoder (latent space) and the window priors; resumable."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    k_data, k_ae, k_pixel, k_latent = jax.random.split(jax.random.PRNGKey(settings.seed), 4)
    train = training_states(settings, workdir, k_data, log)
    mean, std = train.mean(0), train.std(0)
    u = jnp.asarray((train - mean) / std)
    spaces = settings.twin.spaces
    ae = ae_params = latent_mean = latent_std = None
    if "latent" in spaces:
        ae, ae_params, latent_mean, latent_std = train_autoencoder(settings, workdir, u, std, k_ae, log)
    scores = {}
    if "pixel" in spaces:
        scores["pixel"] = train_score(settings, workdir, "pixel", u[..., None], k_pixel, log)
    if "latent" in spaces:
        z = ae.apply({"params": ae_params}, u[..., None], method=TwinAutoencoder.encode)
        seq = (z - broadcast(latent_mean, z)) / broadcast(latent_std, z)
        scores["latent"] = train_score(settings, workdir, "latent", seq, k_latent, log)
    return TwinModel(setup=settings.setup, mean=mean, std=std, autoencoder=ae, ae_params=ae_params,
                     latent_mean=latent_mean, latent_std=latent_std, scores=scores, schedule=settings.score.vp_schedule)


__all__ = ["train_twin", "fit", "training_states", "train_autoencoder", "train_score", "windows", "random_shifts"]
