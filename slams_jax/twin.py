r"""Score-based assimilation in the classical twin experiments (Lorenz-63 and Lorenz-96).

The score prior learns windows of :math:`2k+1` consecutive states at the observation cadence from a long
free run of the model (:func:`slams_jax.lorenz.free_run`); the truth and observations of the test come from
an independent run (:func:`slams_jax.lorenz.twin_data`). Two spaces, like the gridded pipeline:

- ``pixel``: the prior over the standardized state itself;
- ``latent``: an autoencoder (an MLP, or circular 1-D convolutions with a 2x downsampling of the ring)
  maps states to a standardized latent; the prior lives there and the observations are compared with the
  **decoded** state, as in SLAMS.

The window networks are MLPs (``score.network.kind = "mlp"``) or circular 1-D U-Nets (``"unet"``); the
configs use MLPs, which train in minutes on a CPU, and rotate Lorenz-96 training samples at random around
the ring (its dynamics are rotation invariant).

Two assimilation modes, both scored as the time-mean analysis RMSE of the ensemble mean:

- ``filter``: the analysis at cycle :math:`t` is the last state of a sample of
  :math:`p(x_{t-L+1:t} \mid y_{t-L+1:t})`, a lag window of :math:`L` states, so it uses observations up to
  :math:`t` only. There is no cycling of an ensemble (no model forecast at all): information older than the
  lag is forgotten, which costs little on chaotic systems whose error doubling time is shorter than the lag.
  Every cycle's window is independent, so all cycles are sampled in one batched program.
- ``smoother``: one sample of the whole test trajectory :math:`p(x_{1:T} \mid y_{1:T})` from the composed
  window scores (past and future observations).

``python -m slams_jax.train --config=configs/lorenz63.py --workdir=W`` trains the priors of such a config,
``python -m slams_jax.assimilate --config=configs/lorenz63.py --workdir=W`` runs its assimilations; the
experiments script ``experiments/twin.py`` puts everything next to the published DAPPER numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from slams_jax import lorenz
from slams_jax._types import Array, Float, PRNGKey, PyTree
from slams_jax.checkpointing import StageCheckpointer
from slams_jax.guidance import DPS, MMPS, SDA, Guidance, Likelihood
from slams_jax.layers import TimeEmbedding
from slams_jax.samplers import PredictorCorrector, Sampler
from slams_jax.schedules import VPSchedule
from slams_jax.score import MarkovScore, denoising_loss
from slams_jax.unet import ScoreUNet


class TwinError(ValueError):
    """A bad twin-experiment config or input; the message names the field and what was expected."""


# ----------------------------------------------------------------------------------------------- networks


class MLPScore(nn.Module):
    """Noise predictor over a whole window flattened: ``Dense`` layers modulated by the time embedding.

    Input ``(*batch, n, channels)`` (one spatial axis), output of the same shape.
    """

    hidden: Sequence[int] = (256, 256, 256)
    embedding: int = 64

    @nn.compact
    def __call__(self, x: Float[Array, "*batch n c"], t: Float[Array, "*batch"]) -> Float[Array, "*batch n c"]:
        batch = x.shape[:-2]
        h = x.reshape(batch + (-1,))
        emb = TimeEmbedding(self.embedding)(jnp.broadcast_to(t, batch))
        for width in self.hidden:
            h = nn.silu(nn.Dense(width)(h) + nn.Dense(width)(emb))
        return nn.Dense(x.shape[-2] * x.shape[-1])(h).reshape(x.shape)


class TwinAutoencoder(nn.Module):
    """Autoencoder of one state ``(*b, dim, 1)``.

    ``kind="mlp"``: latent ``(latent, 1)``. ``kind="conv"``: circular 1-D convolutions, one stride-2
    downsampling, latent ``(dim // 2, latent)`` (the periodic ring of Lorenz-96 stays a ring).
    """

    dim: int
    kind: str = "mlp"
    latent: int = 4
    hidden: int = 64

    def setup(self):
        if self.kind == "mlp":
            self.enc = [nn.Dense(self.hidden), nn.Dense(self.hidden), nn.Dense(self.latent)]
            self.dec = [nn.Dense(self.hidden), nn.Dense(self.hidden), nn.Dense(self.dim)]
        elif self.kind == "conv":
            conv = lambda c, s=1: nn.Conv(c, (5,), strides=(s,), padding="CIRCULAR")
            self.enc = [conv(self.hidden), conv(self.hidden, 2), conv(self.hidden), conv(self.latent)]
            self.dec = [conv(self.hidden), conv(self.hidden), conv(self.hidden), conv(1)]
        else:
            raise TwinError(f"autoencoder kind={self.kind!r}: expected 'mlp' or 'conv'")

    @staticmethod
    def _run(layers, h, between=None):
        for i, layer in enumerate(layers):
            h = layer(h)
            if between is not None and i == between:
                h = jnp.repeat(h, 2, axis=-2)  # nearest upsampling x2 along the ring
            if i < len(layers) - 1:
                h = nn.silu(h)
        return h

    def encode(self, x: Float[Array, "*b dim 1"]) -> Array:
        if self.kind == "mlp":
            return self._run(self.enc, x[..., 0])[..., None]
        return self._run(self.enc, x)

    def decode(self, z: Array) -> Float[Array, "*b dim 1"]:
        if self.kind == "mlp":
            return self._run(self.dec, z[..., 0])[..., None]
        return self._run(self.dec, z, between=0)

    def __call__(self, x):
        return self.decode(self.encode(x))


# ----------------------------------------------------------------------------------------------- settings


DIVERGED = 10.0  # a member this many climatological stds from the mean has diverged


def _bc(v, x):
    """``v`` (the trailing axes of ``x``) broadcast to ``x`` explicitly."""
    return jnp.broadcast_to(jnp.asarray(v, x.dtype), x.shape)


@dataclasses.dataclass(frozen=True)
class TwinModel:
    """Everything a twin experiment trained: standardization, autoencoder, latent statistics, priors."""

    setup: lorenz.TwinSetup
    mean: np.ndarray  # (dim,) state mean of the training run
    std: np.ndarray  # (dim,) state std
    autoencoder: TwinAutoencoder | None
    ae_params: PyTree | None
    latent_mean: np.ndarray | None
    latent_std: np.ndarray | None
    scores: Mapping[str, tuple[MarkovScore, PyTree]]  # by space: "pixel", "latent"
    schedule: VPSchedule

    def standardize(self, x):
        return (x - _bc(self.mean, x)) / _bc(self.std, x)

    def physical(self, u):
        return u * _bc(self.std, u) + _bc(self.mean, u)

    def encode(self, x_phys):
        """Physical states ``(..., dim)`` -> standardized latent ``(..., h, c)``."""
        z = self.autoencoder.apply({"params": self.ae_params}, self.standardize(x_phys)[..., None],
                                   method=TwinAutoencoder.encode)
        return (z - _bc(self.latent_mean, z)) / _bc(self.latent_std, z)

    def decode(self, z):
        """Standardized latent ``(..., h, c)`` -> physical states ``(..., dim)``."""
        z = z * _bc(self.latent_std, z) + _bc(self.latent_mean, z)
        u = self.autoencoder.apply({"params": self.ae_params}, z,
                                   method=TwinAutoencoder.decode)
        return self.physical(u[..., 0])

    def state_shape(self, space: str) -> tuple[int, ...]:
        if space == "pixel":
            return (self.setup.dim, 1)
        if space == "latent":
            if self.autoencoder is None:
                raise TwinError("space='latent': this model has no autoencoder (train it with 'latent' in spaces)")
            z = jax.eval_shape(lambda x: self.encode(x), jax.ShapeDtypeStruct((self.setup.dim,), jnp.float32))
            return tuple(z.shape)
        raise TwinError(f"space={space!r}: expected 'pixel' or 'latent'")

    def to_physical(self, space: str) -> Callable[[Array], Array]:
        """``x (..., *state_shape) -> (..., dim)`` physical."""
        return (lambda u: self.physical(u[..., 0])) if space == "pixel" else self.decode


def build_score(config, channels: int, schedule: VPSchedule) -> MarkovScore:
    """The window score model of ``config.score`` for states with ``channels`` channels."""
    net, order = config.score.network, int(config.score.order)
    window = 2 * order + 1
    if net.kind == "mlp":
        module = MLPScore(hidden=tuple(net.hidden), embedding=int(net.embedding))
    elif net.kind == "unet":
        module = ScoreUNet(channels=window * channels, embedding=int(net.embedding),
                           hidden_channels=tuple(net.hidden), hidden_blocks=tuple(net.blocks),
                           kernel_size=int(net.kernel_size), padding_modes=("circular",))
    else:
        raise TwinError(f"config.score.network.kind={net.kind!r}: expected 'mlp' or 'unet'")
    return MarkovScore(module, order=order, spatial=1, skip=schedule)


def schedule_of(config) -> VPSchedule:
    return VPSchedule(alpha=str(config.score.schedule), eta=float(config.score.eta))


def setup_of(config) -> lorenz.TwinSetup:
    name = str(config.twin.setup)
    if name not in lorenz.SETUPS:
        raise TwinError(f"config.twin.setup={name!r}: expected one of {sorted(lorenz.SETUPS)}")
    setup = lorenz.SETUPS[name]
    cycles = int(config.twin.get("cycles", 0))
    if cycles < 0:
        raise TwinError(f"config.twin.cycles={cycles}: expected a positive number of scored cycles, or 0 for the "
                        f"setup's {setup.cycles}")
    return dataclasses.replace(setup, cycles=cycles) if cycles else setup


def check_config(config) -> None:
    spaces = tuple(config.twin.spaces)
    bad = [s for s in spaces if s not in ("pixel", "latent")]
    if bad or not spaces:
        raise TwinError(f"config.twin.spaces={spaces}: expected a non-empty subset of ('pixel', 'latent')")
    modes = tuple(config.assimilation.modes)
    if not modes or [m for m in modes if m not in ("filter", "smoother")]:
        raise TwinError(f"config.assimilation.modes={modes}: expected a non-empty subset of ('filter', 'smoother')")
    setup = setup_of(config)
    lag, window = int(config.assimilation.lag), 2 * int(config.score.order) + 1
    if lag < window:
        raise TwinError(f"config.assimilation.lag={lag}: the filter's lag window must hold at least one score "
                        f"window of {window} states")
    if lag - 1 > setup.burn_in:
        raise TwinError(f"config.assimilation.lag={lag}: at most burn_in + 1 = {setup.burn_in + 1}, so that every "
                        "scored cycle has a full lag window of observations before it")
    if int(config.assimilation.members) < 2:
        raise TwinError(f"config.assimilation.members={config.assimilation.members}: expected at least 2")


# ----------------------------------------------------------------------------------------------- training


def _fit(stage: str, workdir: Path, loss_fn: Callable[[PyTree, PRNGKey], Array], params: PyTree, key: PRNGKey,
         steps: int, lr: float, chunk: int, log: Callable[[str], None]) -> PyTree:
    """Adam with a cosine decay; ``chunk`` steps per compiled ``lax.scan``; checkpoint after each chunk.

    A killed run resumes from the last chunk (the checkpoint holds parameters, optimizer state and key).
    """
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps))
    state = {"params": params, "opt": optimizer.init(params), "key": key, "step": jnp.zeros((), jnp.int32)}
    ckpt = StageCheckpointer(workdir / "checkpoints" / stage, max_to_keep=1)
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state)
        if int(meta.get("steps", -1)) != steps:
            raise TwinError(f"{ckpt.directory}: trained for {meta.get('steps')} steps, the config asks for {steps}; "
                            "use a new workdir")
    done = int(state["step"])
    if done >= steps:
        log(f"{stage}: {done} steps (restored)")
        return state["params"]

    @jax.jit
    def run(state, n_dummy):
        def step(state, _):
            key, sub = jax.random.split(state["key"])
            loss, grads = jax.value_and_grad(loss_fn)(state["params"], sub)
            # optax raises a python float to an int32 count (rejected by strict promotion, as in train.py)
            with jax.numpy_dtype_promotion("standard"):
                updates, opt = optimizer.update(grads, state["opt"], state["params"])
            return {"params": optax.apply_updates(state["params"], updates), "opt": opt, "key": key,
                    "step": state["step"] + 1}, loss
        return jax.lax.scan(step, state, n_dummy)

    t0 = time.perf_counter()
    while done < steps:
        n = min(chunk, steps - done)
        state, losses = run(state, jnp.zeros((n,)))
        done += n
        ckpt.save(done, state, {"steps": steps, "loss": float(jnp.mean(losses))})
        log(f"{stage}: step {done}/{steps} loss {float(jnp.mean(losses)):.4f} ({time.perf_counter() - t0:.0f} s)")
    ckpt.close()
    return state["params"]


def _windows(states: Array, index: Array, window: int) -> Array:
    return states[index[:, None] + jnp.arange(window)[None, :]]


def _random_shifts(key: PRNGKey, x: Array, axis: int) -> Array:
    """Each sample of ``x`` rolled by its own random shift along ``axis`` (a periodic ring)."""
    n = x.shape[axis]
    shifts = jax.random.randint(key, (x.shape[0],), 0, n)
    index = (jnp.arange(n)[None, :] + shifts[:, None]) % n
    index = index.reshape((x.shape[0],) + (1,) * (axis % x.ndim - 1) + (n,) + (1,) * (x.ndim - 1 - axis % x.ndim))
    return jnp.take_along_axis(x, jnp.broadcast_to(index, x.shape), axis=axis)


def train_twin(config, workdir: str | os.PathLike, log: Callable[[str], None] = print) -> TwinModel:
    """Generate the training run, train the autoencoder (latent space) and the window priors; resumable."""
    check_config(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    setup, schedule = setup_of(config), schedule_of(config)
    key = jax.random.PRNGKey(int(config.seed))
    k_data, k_ae, k_pixel, k_latent = jax.random.split(key, 4)
    data_path = workdir / "train_states.npy"
    if data_path.exists():
        train = np.load(data_path)
    else:
        t0 = time.perf_counter()
        train = np.asarray(lorenz.free_run(setup, k_data, int(config.twin.train_states)), np.float32)
        tmp = workdir / f"train_states.tmp{os.getpid()}.npy"
        np.save(tmp, train)
        os.replace(tmp, data_path)
        log(f"training run: {train.shape} at the observation cadence ({time.perf_counter() - t0:.1f} s)")
    if train.shape != (int(config.twin.train_states), setup.dim):
        raise TwinError(f"{data_path}: shape {train.shape}, expected {(int(config.twin.train_states), setup.dim)}; "
                        "use a new workdir")
    mean, std = train.mean(0), train.std(0)
    u = jnp.asarray((train - mean) / std)
    spaces = tuple(config.twin.spaces)
    window = 2 * int(config.score.order) + 1
    tc = config.train
    batch = int(tc.batch_size)
    # the ring of Lorenz-96 is homogeneous: every rotation of a state is as likely, so training samples are
    # rotated at random (the state prior and the autoencoder; the latent prior learns the encoded states)
    augment = bool(config.twin.augment_shifts)
    if augment and setup.model != "lorenz96":
        raise TwinError(f"config.twin.augment_shifts=True: only the periodic lorenz96 ring is rotation "
                        f"invariant, not {setup.model}")

    ae = ae_params = latent_mean = latent_std = None
    if "latent" in spaces:
        ac = config.autoencoder
        ae = TwinAutoencoder(dim=setup.dim, kind=str(ac.kind), latent=int(ac.latent), hidden=int(ac.hidden))
        params = ae.init(k_ae, u[:2, :, None])["params"]

        def ae_loss(p, k):
            k1, k2, k3 = jax.random.split(k, 3)
            x = u[jax.random.randint(k1, (batch,), 0, u.shape[0])][..., None]
            if augment:
                x = _random_shifts(k3, x, axis=1)
            z = ae.apply({"params": p}, x, method=TwinAutoencoder.encode)
            # a little latent noise keeps the decoder smooth around the training latents
            z = z + float(ac.latent_noise) * jax.random.normal(k2, z.shape)
            rec = ae.apply({"params": p}, z, method=TwinAutoencoder.decode)
            return jnp.mean(jnp.square(rec - x)) + float(ac.latent_penalty) * jnp.mean(jnp.square(z))

        ae_params = _fit("autoencoder", workdir, ae_loss, params, k_ae, int(ac.steps), float(ac.learning_rate),
                         int(tc.chunk), log)
        z = ae.apply({"params": ae_params}, u[..., None], method=TwinAutoencoder.encode)
        latent_mean, latent_std = np.asarray(z.mean(0)), np.asarray(z.std(0)) + 1e-6
        rec = ae.apply({"params": ae_params}, z, method=TwinAutoencoder.decode)[..., 0]
        log(f"autoencoder: reconstruction RMSE {float(jnp.sqrt(jnp.mean(jnp.square((rec - u) * _bc(std, u))))):.4f} "
            f"(physical units), latent {tuple(z.shape[1:])}")
    scores = {}
    for space, k in (("pixel", k_pixel), ("latent", k_latent)):
        if space not in spaces:
            continue
        if space == "pixel":
            seq = u[..., None]
        else:
            z = ae.apply({"params": ae_params}, u[..., None], method=TwinAutoencoder.encode)
            seq = (z - _bc(latent_mean, z)) / _bc(latent_std, z)
        score = build_score(config, seq.shape[-1], schedule)
        params = score.init(k, seq[None, :window])

        def score_loss(p, k, seq=seq, score=score, shift=augment and space == "pixel"):
            k1, k2, k3 = jax.random.split(k, 3)
            x = _windows(seq, jax.random.randint(k1, (batch,), 0, seq.shape[0] - window + 1), window)
            if shift:  # (batch, window, dim, 1): the same shift for every state of a window
                x = _random_shifts(k3, x, axis=2)
            return denoising_loss(lambda x_t, t: score.window_eps(p, x_t, t), schedule, k2, x)

        params = _fit(f"score_{space}", workdir, score_loss, params, k, int(tc.steps), float(tc.learning_rate),
                      int(tc.chunk), log)
        scores[space] = (score, params)
    return TwinModel(setup=setup, mean=mean, std=std, autoencoder=ae, ae_params=ae_params, latent_mean=latent_mean,
                     latent_std=latent_std, scores=scores, schedule=schedule)


# ----------------------------------------------------------------------------------------------- assimilation


def make_guidance(a) -> Guidance:
    kind = str(a.guidance)
    if kind == "sda":
        return SDA(gamma=float(a.gamma))
    if kind == "mmps":
        return MMPS(cg_iterations=int(a.cg_iterations))
    if kind == "dps":
        return DPS(zeta=float(a.zeta))
    raise TwinError(f"config.assimilation.guidance={kind!r}: expected 'sda', 'mmps' or 'dps'")


def _sampler(key, model: TwinModel, space: str, y: Array, obs_std: float, sampler: Sampler,
             guidance: Guidance) -> Array:
    """One posterior sample (physical ``(length, dim)``) of a trajectory observed (fully) by ``y``."""
    score, params = model.scores[space]
    to_phys = model.to_physical(space)
    shape = (y.shape[0],) + model.state_shape(space)
    lik = Likelihood(forward=lambda x: to_phys(x).ravel(), y=y.ravel(),
                     std=jnp.full(y.size, obs_std, y.dtype),
                     scale=jnp.broadcast_to(jnp.asarray(model.std, y.dtype), y.shape).ravel())
    eps = guidance.guide(lambda x, t: score.trajectory_eps(params, x, t), model.schedule, lik)
    x, finite = sampler.sample(key, eps, shape, model.schedule)
    return to_phys(x), jnp.all(finite)


@dataclasses.dataclass
class Analysis:
    """Analysis ensemble statistics per cycle and the scores over the scored cycles."""

    means: np.ndarray  # (T, dim), NaN where no analysis (filter: before the first full lag)
    spreads: np.ndarray  # (T,)
    rmse: float
    spread: float
    seconds: float
    failed: int  # member samples dropped as diverged (over all analysed cycles)


def ensemble_statistics(ens: np.ndarray, analysed: np.ndarray, mean: np.ndarray, std: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, int]:
    """Ensemble mean ``(T, dim)`` and spread ``(T,)`` of ``ens`` ``(T, members, dim)``, and the number of
    diverged member samples among the ``analysed`` cycles.

    A member that went non-finite or far off the attractor (beyond ``DIVERGED`` climatological stds ``std``
    from ``mean``) is dropped from its cycle's statistics and counted; a cycle left with fewer than 2
    members is NaN, and so is then the time-mean score.
    """
    far = np.abs(ens - mean) > DIVERGED * std
    diverged = (~np.isfinite(ens) | far).any(-1)  # (T, members)
    failed = int(diverged[analysed].sum())
    ens = np.where(diverged[..., None], np.nan, ens)
    valid = (~diverged).sum(1)
    enough = valid >= 2
    safe = np.where(enough[:, None, None], ens, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.nansum(safe, 1) / np.maximum(valid, 1)[:, None]
        var = np.nansum(np.square(safe - means[:, None]) * ~diverged[..., None], 1) / np.maximum(valid - 1, 1)[:, None]
    means = np.where(enough[:, None], means, np.nan)
    spreads = np.where(enough, np.sqrt(var.mean(-1)), np.nan)
    return means, spreads, failed


def assimilate_twin(key: PRNGKey, model: TwinModel, data: lorenz.TwinData, space: str, mode: str, a) -> Analysis:
    """Run the ``filter`` or ``smoother`` on ``data`` with the prior of ``space``; see the module docstring."""
    if space not in model.scores:
        raise TwinError(f"space={space!r}: no prior trained for it (trained: {sorted(model.scores)})")
    setup = model.setup
    obs = jnp.asarray(data.obs, jnp.float32)
    T = obs.shape[0]
    members = int(a.members)
    sampler = PredictorCorrector(steps=int(a.steps), corrections=int(a.corrections), tau=float(a.tau))
    guidance = make_guidance(a)
    one = lambda k, y: _sampler(k, model, space, y, setup.obs_std, sampler, guidance)
    t0 = time.perf_counter()
    if mode == "filter":
        lag = int(a.lag)
        ends = np.arange(lag - 1, T)
        ys = _windows(obs, jnp.asarray(ends - lag + 1), lag)  # (W, lag, dim)
        keys = jax.random.split(key, len(ends) * members).reshape(len(ends), members, -1)

        @jax.jit
        def run(keys, ys):
            def window(args):
                k, y = args
                x, ok = jax.vmap(lambda kk: one(kk, y))(k)
                return x[:, -1], ok
            return jax.lax.map(window, (keys, ys), batch_size=int(a.batch_windows))

        ens, _ = run(keys, ys)  # (W, members, dim)
        full = np.full((T, members, setup.dim), np.nan, np.float32)
        full[ends] = np.asarray(ens)
        ens = full
        analysed = np.zeros(T, bool)
        analysed[ends] = True
    elif mode == "smoother":
        keys = jax.random.split(key, members)
        run = jax.jit(jax.vmap(lambda k: one(k, obs)))
        ens, _ = run(keys)  # (members, T, dim)
        ens = np.moveaxis(np.asarray(ens), 0, 1)
        analysed = np.ones(T, bool)
    else:
        raise TwinError(f"mode={mode!r}: expected 'filter' or 'smoother'")
    seconds = time.perf_counter() - t0
    means, spreads, failed = ensemble_statistics(ens, analysed, model.mean, model.std)
    return Analysis(means=means, spreads=spreads, rmse=lorenz.analysis_rmse(means, data.truth, setup.burn_in),
                    spread=lorenz.time_mean_spread(spreads, setup.burn_in), seconds=seconds, failed=failed)


def run_assimilations(config, workdir: str | os.PathLike, model: TwinModel | None = None,
                      log: Callable[[str], None] = print, data: lorenz.TwinData | None = None
                      ) -> list[dict[str, Any]]:
    """Every (space, mode) of the config on the twin test data; rows appended to ``WORKDIR/results.jsonl``."""
    workdir = Path(workdir)
    model = model if model is not None else train_twin(config, workdir, log)
    setup = model.setup
    if data is None:
        data = lorenz.twin_data(setup, jax.random.PRNGKey(int(config.twin.test_seed)))
    rows = []
    a = config.assimilation
    for space in config.twin.spaces:
        for mode in a.modes:
            k = jax.random.fold_in(jax.random.PRNGKey(int(config.seed) + 1), len(rows))
            r = assimilate_twin(k, model, data, space, mode, a)
            row = {"setup": setup.name, "method": f"slams_jax {space} {mode}", "space": space, "mode": mode,
                   "rmse": r.rmse, "spread": r.spread, "members": int(a.members), "seconds": r.seconds,
                   "failed": r.failed}
            rows.append(row)
            log(f"{setup.name} {space:6s} {mode:8s} RMSE {r.rmse:.3f} spread {r.spread:.3f} "
                f"({r.seconds:.1f} s, {r.failed} diverged member samples)")
    with (workdir / "results.jsonl").open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return rows


__all__ = ["MLPScore", "TwinAutoencoder", "TwinModel", "TwinError", "Analysis", "build_score", "train_twin",
           "assimilate_twin", "run_assimilations", "check_config", "make_guidance"]
