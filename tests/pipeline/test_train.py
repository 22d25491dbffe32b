"""Training end to end on a tiny Kolmogorov set: checkpoints, exact resume, errors, loading back."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import jit, tiny_config
from slams_jax.data import datasets
from slams_jax.pipeline.checkpointing import CheckpointError, StageCheckpointer
from slams_jax.pipeline.configuration import settings_from_config
from slams_jax.pipeline.pretrained import load_trained
from slams_jax.pipeline.training import init_state, make_optimizer, train_and_evaluate, train_step, autoencoder_loss_fn


def _final_params(workdir, stage):
    ckpt = StageCheckpointer(workdir / "checkpoints" / stage)
    state, _ = ckpt.restore(None)
    ckpt.close()
    return state


@pytest.mark.slow
def test_end_to_end_writes_metrics_and_checkpoints(trained):
    workdir, results = trained
    assert set(results) == {"autoencoder", "score", "pixel_score"}
    lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
    for stage in results:
        train = [l for l in lines if l["stage"] == stage and l["split"] == "train"]
        valid = [l for l in lines if l["stage"] == stage and l["split"] == "valid"]
        assert [l["step"] for l in train] == [2, 4, 6]
        assert [l["step"] for l in valid] == [3, 6]
        assert all(np.isfinite(l["loss"]) for l in train + valid)
        assert "samples_per_s" in train[0] and "lr" in train[0]
        assert sorted(int(p.name) for p in (workdir / "checkpoints" / stage).iterdir() if p.name.isdigit()) == [3, 6]


@pytest.mark.slow
def test_trained_model_loads_without_config(trained):
    workdir, _ = trained
    model = load_trained(workdir)
    assert model.grid == (16, 16)
    assert model.latent_shape() == (8, 8, 2)
    z = model.sample_prior(jax.random.PRNGKey(0), n=2, length=4, shape=model.latent_shape(), steps=4)
    assert z.shape == (2, 4, 8, 8, 2) and bool(jnp.isfinite(z).all())
    x = model.decode(z, "state")
    assert x.shape == (2, 4, 16, 16, 2)
    allm = model.decode(z)
    np.testing.assert_allclose(allm["state"], x, rtol=1e-5, atol=1e-5)
    assert set(allm) == {"state", "precip", "olr"}
    zp = model.sample_prior(jax.random.PRNGKey(0), n=1, length=3, shape=(16, 16, 2), stage="pixel_score", steps=2)
    assert zp.shape == (1, 3, 16, 16, 2)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["autoencoder", "score"])
def test_resume_continues_exactly(trained, stage, tmp_path):
    """Drop the last checkpoint (as if killed after step 3) and rerun: the same final state."""
    workdir, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    expected = _final_params(workdir, stage)
    shutil.rmtree(copy / "checkpoints" / stage / "6")
    if stage == "autoencoder":  # the score stage depends on it: retrain that too
        shutil.rmtree(copy / "checkpoints" / "score")
    # a save that was killed midway leaves only an orbax temporary directory: it must be ignored
    (copy / "checkpoints" / stage / "9.orbax-checkpoint-tmp-1234").mkdir()
    train_and_evaluate(tiny_config(stages=("autoencoder", "score", "pixel_score")), copy)
    resumed = _final_params(copy, stage)
    assert int(resumed["step"]) == 6
    if jax.default_backend() == "cpu":
        same = np.testing.assert_array_equal
    else:
        # GPU convolutions and reductions are not bitwise reproducible between two runs (without
        # --xla_gpu_deterministic_ops), resumed or not: agree to float32 round-off of the updates.
        same = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    jax.tree_util.tree_map(same, resumed["params"], expected["params"])
    jax.tree_util.tree_map(same, resumed["ema_params"], expected["ema_params"])


@pytest.mark.slow
def test_corrupt_checkpoint_is_named(trained, tmp_path):
    workdir, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    for f in (copy / "checkpoints" / "score" / "6" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"checkpoints/score/6"):
        load_trained(copy)


@pytest.mark.slow
def test_changed_model_settings_refuse_to_resume(trained, tmp_path):
    workdir, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    shutil.rmtree(copy / "checkpoints" / "score" / "6")
    c = tiny_config(stages=("score",))
    c.score.hidden_channels = (8, 16)
    with pytest.raises(CheckpointError, match="score.hidden_channels"):
        train_and_evaluate(c, copy)


def test_batch_errors_name_the_modality():
    settings = settings_from_config(tiny_config())
    good = {"state": np.zeros((2, 4, 4, 2), np.float32), "precip": np.full((2, 4, 4, 1), np.nan, np.float32),
            "olr": np.zeros((2, 4, 4, 1), np.float32)}
    datasets.check_batch(good, settings.data.modalities, "test")  # NaN in an auxiliary modality is missing data
    bad = dict(good, state=good["state"].copy())
    bad["state"][0, 1, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"'state'.*\['v'\]"):
        datasets.check_batch(bad, settings.data.modalities, "test")
    with pytest.raises(KeyError, match="olr"):
        datasets.check_batch({k: v for k, v in good.items() if k != "olr"}, settings.data.modalities, "test")
    with pytest.raises(ValueError, match="precip.*2 channels"):
        datasets.check_batch(dict(good, precip=np.zeros((2, 4, 4, 2), np.float32)), settings.data.modalities, "test")


@pytest.mark.slow
def test_train_step_gradients_state_structure_and_determinism():
    settings = settings_from_config(tiny_config())
    rng = np.random.default_rng(0)
    batch = {"state": rng.normal(size=(4, 16, 16, 2)).astype(np.float32),
             "precip": rng.normal(size=(4, 16, 16, 1)).astype(np.float32),
             "olr": rng.normal(size=(4, 16, 16, 1)).astype(np.float32)}
    batch["precip"][:, :5] = np.nan
    state = init_state(settings, "autoencoder", jax.random.PRNGKey(0), batch, {})
    loss_fn = autoencoder_loss_fn(settings, aux_dropout=0.5)
    grads = jax.grad(lambda p: loss_fn(p, state.batch_stats, {}, batch, jax.random.PRNGKey(1), True)[0])(state.params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.isfinite(g).all()), path
    assert sum(bool(jnp.any(g != 0)) for g in jax.tree_util.tree_leaves(grads)) == len(jax.tree_util.tree_leaves(grads))
    opt = make_optimizer(settings.train["autoencoder"])
    step = lambda s, k: train_step(s, batch, k, {}, loss_fn=loss_fn, optimizer=opt, ema_decay=0.99)
    s1, m1 = jax.jit(step)(state, jax.random.PRNGKey(2))
    s1b, m1b = jax.jit(step)(state, jax.random.PRNGKey(2))
    s1c, m1c = jit(step)(state, jax.random.PRNGKey(2))  # compiled again, unoptimised
    jax.tree_util.tree_map(np.testing.assert_array_equal, s1.params, s1b.params)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), s1.params, s1c.params)
    s2, _ = jax.jit(step)(s1, jax.random.PRNGKey(2))
    assert jax.tree_util.tree_structure(s2) == jax.tree_util.tree_structure(state)
    for a, b in zip(jax.tree_util.tree_leaves(s2), jax.tree_util.tree_leaves(state)):
        assert a.dtype == b.dtype and a.shape == b.shape
    assert int(s2.step) == 2
    assert np.isfinite(float(m1["loss"]))


@pytest.mark.slow
def test_demo_report_on_a_trained_workdir(trained, tmp_path):
    """The demo resumes the finished stages and writes a complete, finite metrics.json."""
    from slams_jax.demo import format_report, run_demo

    workdir, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    config = tiny_config(stages=("autoencoder", "score", "pixel_score"))
    config.assimilation.length, config.assimilation.members, config.assimilation.steps = 4, 2, 2
    config.assimilation.divergence_bound = 0.0  # the 6-step tiny prior diverges by itself
    config.assimilation.figures = False
    report = run_demo(copy, quick=True, config=config)
    saved = json.loads((copy / "metrics.json").read_text())
    assert set(saved["autoencoder"]) == {"state", "precip", "olr"}
    for per in saved["autoencoder"].values():
        for r in per.values():
            assert np.isfinite(r["rmse"]) and r["rmse"] > 0 and np.isfinite(r["relative_rmse"])
    prior = saved["prior"]
    assert prior["finite"] and set(prior["std"]) == {"u", "v"}
    assert prior["energy_spectrum_ratio"] and all(np.isfinite(v) for v in prior["energy_spectrum_ratio"].values())
    assert "kinetic energy" in format_report(report) and "baseline" in format_report(report)
    assert set(saved["assimilation"]["analysis"]["state"]) == {"u", "v"}
