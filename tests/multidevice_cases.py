"""Multi-device cases, run by ``tests/test_parallel.py`` in a subprocess with 4 CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``): one process cannot change its device count.

Run directly: ``XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m pytest tests/multidevice_cases.py``.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config
from slams_jax import parallel
from slams_jax.pipeline.checkpointing import StageCheckpointer
from slams_jax.diffusion.guidance import SDA
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Coarsen, TimeSubsample
from slams_jax.diffusion.posterior import posterior_sample
from slams_jax.pipeline.pretrained import load_trained
from slams_jax.diffusion.samplers import DiffraxPredictorCorrector, PredictorCorrector
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.pipeline.training import train_and_evaluate

N = 4
if jax.device_count() != N:
    raise RuntimeError(
        f"tests/multidevice_cases.py needs {N} devices, found {jax.device_count()}: run it with "
        f"XLA_FLAGS=--xla_force_host_platform_device_count={N} (tests/test_parallel.py does)"
    )


def _config(devices, cache_dir, steps=2, batch_size=8):
    c = tiny_config(stages=("autoencoder", "score"), steps=steps)
    c.data.cache_dir = str(cache_dir)
    c.parallel.devices = devices
    c.train.batch_size = batch_size
    c.train.log_every = 1
    c.train.eval_every = steps
    c.train.checkpoint_every = steps
    return c


def _final_state(workdir, stage):
    ckpt = StageCheckpointer(workdir / "checkpoints" / stage)
    try:
        state, _ = ckpt.restore(None)
    finally:
        ckpt.close()
    return state


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same two-step training (autoencoder with BatchNorm, then the latent score) on 1 and on 4 devices."""
    root = tmp_path_factory.mktemp("parallel")
    out = {}
    for devices in (1, N):
        workdir = root / f"devices{devices}"
        with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
            train_and_evaluate(_config(devices, root / "data"), workdir)
        out[devices] = workdir
    return out


def _metrics(workdir):
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {(r["stage"], r["step"], r["split"]): r for r in lines}


def test_training_on_4_devices_equals_1_device(runs):
    """The real command on 1 and 4 devices: same losses, gradient norms and BatchNorm statistics.

    Parameters are compared exactly in ``test_steps_on_4_devices_equal_1_device``: under AdamW, a parameter
    whose gradient is zero in exact arithmetic (a conv bias before BatchNorm) moves by +-lr depending on the
    sign of its rounding noise, on one device as on four.
    """
    m1, m4 = _metrics(runs[1]), _metrics(runs[N])
    assert m1.keys() == m4.keys() and len(m1) == 6  # 2 train steps + 1 validation, 2 stages
    for k in m1:
        # validation runs BatchNorm on running statistics, where the +-lr bias noise above shows (1e-5);
        # the score stage encodes with the autoencoder trained on 1 or 4 devices, so inherits that noise
        tol = 2e-3 if k[0] == "score" else 1e-4 if k[2] == "valid" else 1e-5
        for name in ("loss", "grad_norm", "mse_state", "mse_precip"):
            if name in m1[k]:
                np.testing.assert_allclose(m4[k][name], m1[k][name], rtol=tol, err_msg=f"{k} {name}")
    s1, s4 = _final_state(runs[1], "autoencoder"), _final_state(runs[N], "autoencoder")
    assert int(s4["step"]) == 2
    stats1, stats4 = jax.tree_util.tree_leaves(s1["batch_stats"]), jax.tree_util.tree_leaves(s4["batch_stats"])
    assert stats1, "the tiny autoencoder is expected to use BatchNorm"
    # statistics of the global batch: per-device statistics of 2 rows would differ at O(1)
    for a, b in zip(stats1, stats4):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stage", ["autoencoder", "score"])
def test_steps_on_4_devices_equal_1_device(runs, stage):
    """Two steps of the real loss (BatchNorm, aux dropout, diffusion noise) with SGD: same parameters."""
    import optax
    from slams_jax.pipeline.configuration import settings_from_config
    from slams_jax.pipeline.pretrained import autoencoder_variables
    from slams_jax.pipeline.training import (
        StageData, autoencoder_loss_fn, compile_steps, init_state, latent_statistics, prepare_data, score_loss_fn,
    )

    settings = settings_from_config(_config(1, runs[1].parent / "data"))
    arrays, _ = prepare_data(settings, runs[1])
    modalities = settings.data.modalities
    if stage == "autoencoder":
        frozen, loss_fn, window = {}, autoencoder_loss_fn(settings, 0.25), None
    else:
        variables, _ = autoencoder_variables(runs[1])
        mean, std = latent_statistics(settings, variables, arrays["train"])
        frozen = {"autoencoder": variables, "latent_mean": jnp.asarray(mean), "latent_std": jnp.asarray(std)}
        loss_fn, window = score_loss_fn(settings, stage), settings.score.window
    data = StageData(arrays["train"], arrays["valid"], window, modalities)
    init = init_state(settings, stage, jax.random.PRNGKey(1), data.batch(jax.random.PRNGKey(0), "train", 2), frozen)
    out = {}
    for n in (1, N):
        mesh = parallel.data_mesh(n)
        step_fn, _ = compile_steps(loss_fn, optax.sgd(0.1), 0.9, mesh)
        state, fz, key = parallel.replicate((init, frozen, jax.random.PRNGKey(2)), mesh)
        for step in range(2):
            batch = data.global_batch(jax.random.PRNGKey(10 + step), "train", 8, mesh, "test batch")
            state, metrics = step_fn(state, batch, key, fz)
        out[n] = parallel.to_host((state, metrics))
    (s1, m1), (s4, m4) = out[1], out[N]
    np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-5)
    moved = False
    for a, b, a0 in zip(jax.tree_util.tree_leaves(s1.params), jax.tree_util.tree_leaves(s4.params),
                        jax.tree_util.tree_leaves(init.params)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        moved |= np.max(np.abs(a - np.asarray(a0))) > 1e-3  # the steps did move the parameters
    assert moved
    for a, b in zip(jax.tree_util.tree_leaves(s1.batch_stats), jax.tree_util.tree_leaves(s4.batch_stats)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_train_step_is_partitioned_with_a_gradient_all_reduce():
    """The compiled step splits the batch (each device sees batch/4 rows) and all-reduces inside."""
    from slams_jax.pipeline.training import compile_steps, make_optimizer
    from slams_jax.pipeline.configuration import TrainSettings

    mesh = parallel.data_mesh()

    def loss_fn(params, batch_stats, frozen, batch, key, train):
        pred = batch["x"] @ params["w"]
        return jnp.mean(jnp.square(pred - batch["y"])), ({}, batch_stats)

    from slams_jax.pipeline.training import TrainState

    params = {"w": jnp.ones((3, 2), jnp.float32)}
    opt = make_optimizer(TrainSettings(warmup_steps=0))
    state = TrainState(step=jnp.array(0, jnp.int32), params=params, ema_params=params, opt_state=opt.init(params),
                       batch_stats={})
    step_fn, _ = compile_steps(loss_fn, opt, 0.9, mesh)
    rng = np.random.default_rng(0)
    batch = {"x": rng.standard_normal((8, 3)).astype(np.float32), "y": rng.standard_normal((8, 2)).astype(np.float32)}
    gbatch = parallel.global_batch(lambda rows: {k: v[rows] for k, v in batch.items()}, 8, mesh)
    assert [s.data.shape for s in gbatch["x"].addressable_shards] == [(2, 3)] * N
    state_r, key = parallel.replicate((state, jax.random.PRNGKey(0)), mesh)
    hlo = step_fn.lower(state_r, gbatch, key, {}).compile().as_text()
    assert "all-reduce" in hlo
    new, metrics = step_fn(state_r, gbatch, key, {})
    # against the gradient of the global-batch loss computed by hand
    x, y = batch["x"], batch["y"]
    grad = 2 * x.T @ (x @ np.ones((3, 2)) - y) / y.size
    np.testing.assert_allclose(float(metrics["grad_norm"]), np.linalg.norm(grad), rtol=1e-5)
    assert new.params["w"].sharding.is_fully_replicated


def test_global_batch_fetches_each_device_rows_once():
    mesh = parallel.data_mesh()
    calls = []

    def fetch(rows):
        calls.append(tuple(rows))
        return {"a": np.stack([rows, -rows], 1).astype(np.float32)}

    out = parallel.global_batch(fetch, 12, mesh)["a"]
    assert sorted(calls) == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11)]
    np.testing.assert_array_equal(np.asarray(out)[:, 0], np.arange(12))
    assert out.sharding.spec == jax.sharding.PartitionSpec(parallel.DATA)


def test_batch_not_divisible_by_devices_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size of stage autoencoder=6 is not divisible by the 4 cpu devices.*use 4 or 8"):
        train_and_evaluate(_config(0, tmp_path / "data", batch_size=6), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def _gaussian_eps(schedule):
    # standard normal prior: eps(x, t) = sigma x / (mu^2 + sigma^2)
    def eps(x, t):
        mu, sigma = schedule.mu(t), schedule.sigma(t)
        return sigma / (mu**2 + sigma**2) * x
    return eps


@pytest.mark.parametrize("n_samples", [6, 8])
def test_posterior_members_split_over_devices_equal_one_device(n_samples):
    schedule = VPSchedule()
    shape = (4, 8, 8, 1)
    truth = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    op = TimeSubsample(2) >> Coarsen(2)
    obs = [Observation("state", op, values=np.asarray(op(jnp.asarray(truth))), std=0.3)]
    sampler = PredictorCorrector(steps=8, corrections=1)
    key = jax.random.PRNGKey(3)
    kw = dict(n_samples=n_samples, shape=shape, schedule=schedule, guidance=SDA(), sampler=sampler)
    one = posterior_sample(key, _gaussian_eps(schedule), obs, mesh=parallel.data_mesh(1), **kw)
    four = posterior_sample(key, _gaussian_eps(schedule), obs, **kw)  # default: every device
    assert four.shape == one.shape == (n_samples,) + shape
    np.testing.assert_allclose(np.asarray(four), np.asarray(one), rtol=1e-5, atol=1e-5)
    # and members differ from each other (padding did not copy one member over the others)
    assert np.min(np.std(np.asarray(four), axis=0)) > 0


@pytest.mark.parametrize("n_samples", [2, 4])
def test_trained_posterior_on_4_devices_equals_1_device(runs, n_samples):
    """4 members: one per device; 2 members: fewer than devices, so the score windows are split instead."""
    model = load_trained(runs[1])
    length = 7  # 5 windows of 3 states (order 1)
    truth = np.zeros((length,) + model.grid + (2,), np.float32)
    op = TimeSubsample(3) >> Coarsen(4)
    obs = [Observation("state", op, values=np.asarray(op(jnp.asarray(truth))) + 0.1, std=0.5)]
    kw = dict(n_samples=n_samples, length=length, sampler=DiffraxPredictorCorrector(steps=4, corrections=1),
              divergence_bound=None, return_latent=True)
    key = jax.random.PRNGKey(0)
    x1, z1 = posterior_sample(key, model, obs, mesh=parallel.data_mesh(1), **kw)
    x4, z4 = posterior_sample(key, model, obs, **kw)
    from slams_jax.diffusion.prior import resolve_prior

    spread = [resolve_prior(model, length=length, shape=None, schedule=None, space="latent", trajectories=n_samples,
                            divergence_bound=None, mesh=mesh)[0].spread_windows for mesh in (parallel.data_mesh(1), None)]
    assert [m.size if m is not None else 1 for m in spread] == ([1, N] if n_samples < N else [1, 1])
    assert np.isfinite(np.asarray(z1)).all()
    # The tiny 6-step model's latents grow to ~1e3, and the programs differ in float rounding (the split windows,
    # parameters as arguments), which the coupled windows spread at the scale of the largest values: compare at
    # float32 precision relative to that scale, far below the O(1) error of a wrong window or member.
    for a4, a1 in ((z4, z1), (x4, x1)):
        a4, a1 = np.asarray(a4), np.asarray(a1)
        np.testing.assert_allclose(a4, a1, rtol=1e-4, atol=1e-6 * float(np.abs(a1).max()))
