"""StageCheckpointer on its own: round trips, the latest step, atomic saves, errors that name the path."""

import shutil

import numpy as np
import pytest

from slams_jax.errors import CheckpointError, Error
from slams_jax.pipeline.checkpointing import StageCheckpointer


def _state(scale=1.0):
    return {
        "params": {"dense": {"kernel": scale * np.arange(6, dtype=np.float32).reshape(2, 3),
                             "bias": np.full((3,), -scale, np.float32)}},
        "step": np.array(7, np.int32),
        "stats": np.linspace(0, 1, 5, dtype=np.float64) * scale,
    }


META = {"format": 1, "stage": "score", "grid": [16, 16], "latent_mean": [0.25, -1.5],
        "settings": {"data": {"modalities": [{"name": "state", "variables": ["u", "v"], "weight": 1.0}]}}}


def _assert_same(a, b):
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], dict):
            _assert_same(a[k], b[k])
        else:
            got = np.asarray(b[k])
            assert got.dtype == np.asarray(a[k]).dtype and got.shape == np.shape(a[k]), k
            np.testing.assert_array_equal(got, a[k])


@pytest.fixture
def ckpt(tmp_path):
    c = StageCheckpointer(tmp_path / "checkpoints" / "score", max_to_keep=2)
    yield c
    c.close()


def test_round_trip_of_state_and_meta(ckpt):
    ckpt.save(3, _state(), META)
    state, meta = ckpt.restore(_state(0.0))  # into the structure of a template with other values
    _assert_same(_state(), state)
    assert meta == META
    assert ckpt.restore_meta() == META
    raw, _ = ckpt.restore(None)  # without a template: the saved structure
    _assert_same(_state(), raw)


def test_latest_step_and_retention(tmp_path, ckpt):
    assert ckpt.latest_step() is None
    ckpt.save(2, _state(1.0), {**META, "n": 2})
    ckpt.save(5, _state(2.0), {**META, "n": 5})
    assert ckpt.latest_step() == 5
    state, meta = ckpt.restore(None)  # default: the latest
    np.testing.assert_array_equal(state["stats"], _state(2.0)["stats"])
    assert meta["n"] == 5
    assert ckpt.restore_meta(2)["n"] == 2
    ckpt.save(9, _state(3.0), {**META, "n": 9})  # max_to_keep=2: step 2 is dropped
    assert ckpt.latest_step() == 9
    with pytest.raises(CheckpointError, match=r"no checkpoint for step 2 in .*checkpoints/score.*\[5, 9\]"):
        ckpt.restore(None, 2)
    reopened = StageCheckpointer(tmp_path / "checkpoints" / "score")  # a new process sees the same steps
    assert reopened.latest_step() == 9 and reopened.restore_meta()["n"] == 9
    reopened.close()


def test_an_interrupted_save_leaves_the_previous_checkpoint(tmp_path, ckpt):
    ckpt.save(4, _state(), META)
    with pytest.raises(Exception):  # fails while writing step 6 (a leaf orbax cannot serialize)
        ckpt.save(6, {**_state(2.0), "bad": object()}, META)
    leftovers = [p.name for p in ckpt.directory.iterdir() if not p.name.isdigit()]
    assert leftovers and all(p.startswith("6.") for p in leftovers), leftovers  # only a temporary directory
    # a save killed by the OS leaves the same kind of directory, with partial files in it
    (ckpt.directory / "8.orbax-checkpoint-tmp-1234" / "state").mkdir(parents=True)
    (ckpt.directory / "8.orbax-checkpoint-tmp-1234" / "state" / "part").write_bytes(b"\0" * 10)
    reopened = StageCheckpointer(ckpt.directory)
    assert reopened.latest_step() == 4
    state, meta = reopened.restore(_state(0.0))
    _assert_same(_state(), state)
    assert meta == META
    reopened.save(6, _state(3.0), META)  # the resumed run writes the step again, over the leftover
    assert reopened.latest_step() == 6
    np.testing.assert_array_equal(reopened.restore(None)[0]["stats"], _state(3.0)["stats"])
    reopened.close()


def test_missing_checkpoint_names_the_directory(tmp_path):
    empty = StageCheckpointer(tmp_path / "nowhere" / "autoencoder")
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*nowhere/autoencoder"):
        empty.restore(None)
    with pytest.raises(CheckpointError, match=r"nowhere/autoencoder"):
        empty.restore_meta()
    empty.close()
    assert issubclass(CheckpointError, Error) and issubclass(CheckpointError, RuntimeError)


def test_corrupt_state_and_meta_name_the_step_directory(ckpt):
    ckpt.save(3, _state(), META)
    copy = ckpt.directory.parent / "copy"
    shutil.copytree(ckpt.directory, copy)
    for f in (ckpt.directory / "3" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"checkpoints/score/3 could not be restored .*delete that directory"):
        ckpt.restore(_state(0.0))
    broken = StageCheckpointer(copy)
    for f in (copy / "3" / "meta").rglob("*"):
        if f.is_file():
            f.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"checkpoints/copy/3: metadata could not be read"):
        broken.restore_meta()
    broken.close()
