"""experiments/benchmark.py on a tiny workload: its numbers are consistent with each other and with the sizes."""

import importlib.util
from pathlib import Path

import jax
import pytest

pytestmark = pytest.mark.slow  # trains and samples the benchmark model

PATH = Path(__file__).resolve().parents[1] / "experiments" / "benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("slams_benchmark", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = ["--hidden=8,8", "--blocks=1,1", "--embedding=8", "--batch=2", "--members=1", "--steps=2",
        "--train-steps=2", "--repeats=1"]


def test_benchmark_prints_a_consistent_row(bench, capsys):
    with jax.numpy_dtype_promotion("standard"):
        (row,) = bench.main(["--height=16", "--width=32", "--windows=2", *TINY, "--members=1,2"])
    assert capsys.readouterr().out.count("\n") == 1  # one JSON line per device count
    assert row["devices"] == jax.device_count() and row["workload"]["channels"] == 25
    train, sample = row["train"], row["sample"]
    assert train["samples_per_s"] == pytest.approx(2 / train["step_s"])
    assert train["compile_s"] > 0 and train["step_s"] > 0 and sample["seconds"] > 0
    assert sample["first_call_s"] >= sample["seconds"] or sample["compile_s"] == 0
    assert sample["compile_s"] == pytest.approx(max(sample["first_call_s"] - sample["seconds"], 0.0))
    assert row["compile_s"] == {"train": train["compile_s"], "sample": sample["compile_s"]}
    assert row["speedup"] == {"train": 1.0, "sample": 1.0}
    by = row["sample_by_members"]
    assert list(by) == ["1", "2"] and sample["members"] == 1 and sample["seconds"] == by["1"]["seconds"]
    for m, r in by.items():
        assert r["members"] == int(m) and r["seconds_per_member"] == pytest.approx(r["seconds"] / int(m))
        assert r["programs"] >= 1  # each ensemble size has its own programs (compiled, or read from a cache)
    windows = sample["windows"]
    assert windows["n"] == 2 and windows["one_by_one_s"] == pytest.approx(2 * sample["seconds"])
    assert windows["speedup"] == pytest.approx(windows["one_by_one_s"] / windows["batched_s"])


def test_forward_flops_scale_with_the_grid(bench):
    """A convolutional network's cost is proportional to the number of grid points."""
    gflop = {}
    for h, w in ((16, 32), (32, 64)):
        args = bench.parse([f"--height={h}", f"--width={w}", *TINY])
        settings, stage, score, shape = bench.build(args)
        x = jax.numpy.zeros((1, score.window) + shape[1:], jax.numpy.float32)
        params = jax.eval_shape(score.init, jax.random.PRNGKey(0), x)
        params = jax.tree_util.tree_map(lambda s: jax.numpy.zeros(s.shape, s.dtype), params)
        gflop[h] = bench.gflop_per_sample(score, params, shape)
    assert gflop[16] > 0
    assert 3.6 < gflop[32] / gflop[16] < 4.4
