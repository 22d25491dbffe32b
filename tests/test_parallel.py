"""SPMD data parallelism (slams_jax.parallel): one device here, 4 devices and 2 processes in subprocesses.

A process cannot change its device count once JAX has started, so the multi-device cases live in
``multidevice_cases.py`` (run here with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``) and the
multi-host case starts two ``multihost_worker.py`` processes joined by ``jax.distributed``.
"""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from slams_jax import parallel
from slams_jax.pipeline.configuration import ConfigError, ParallelSettings, parallel_settings_from_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", SLAMS_JAX_NO_PROGRESS="1", PYTHONPATH=str(HERE), **extra)
    return env


@pytest.mark.slow
@pytest.mark.multidevice
def test_multi_device_cases_pass_on_4_devices():
    """Training, batches, posterior sampling and the divisibility error on 4 CPU devices (multidevice_cases.py)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", str(HERE / "multidevice_cases.py")],
        cwd=ROOT, env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"), capture_output=True, text=True,
        timeout=1500,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 10 and "skipped" not in summary and "deselected" not in summary, summary


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.multidevice
def test_two_processes_train_and_sample_as_one_device(tmp_path):
    """Two processes x 2 devices (config.parallel.distributed) = one process on 1 device, and only process 0
    writes the metrics."""
    import multihost_worker
    from slams_jax.pipeline.training import train_and_evaluate

    port = _free_port()
    workers = [subprocess.Popen([sys.executable, str(HERE / "multihost_worker.py"), str(i), str(port), str(tmp_path)],
                                cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
    logs = []
    try:
        for w in workers:
            logs.append(w.communicate(timeout=900)[0])
    finally:
        for w in workers:
            w.kill()
    for i, w in enumerate(workers):
        assert w.returncode == 0, f"worker {i}:\n{logs[i][-5000:]}"
    out = [dict(np.load(tmp_path / f"worker{i}.npz")) for i in range(2)]
    np.testing.assert_array_equal(out[0]["ensemble"], out[1]["ensemble"])  # both processes see the whole ensemble
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 6  # written once, not twice

    reference = tmp_path / "reference"
    config = multihost_worker.config(str(tmp_path))
    config.parallel.devices = 1
    with jax.numpy_dtype_promotion("standard"):
        results = train_and_evaluate(config, reference)
    np.testing.assert_allclose(out[0]["autoencoder_loss"], results["autoencoder"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(out[0]["autoencoder_val_loss"], results["autoencoder"]["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(out[0]["score_loss"], results["score"]["loss"], rtol=2e-3)
    # the same checkpoint sampled here on one device gives the ensemble the 4 devices of 2 processes gave
    with jax.numpy_dtype_promotion("standard"):
        single = multihost_worker.ensemble(tmp_path / "run", mesh=parallel.data_mesh(1))
    # float reassociation between the sharded and single-device programs (measured: 1.1e-4 on 1 of 14,336
    # values of size up to 44)
    np.testing.assert_allclose(out[0]["ensemble"], single, rtol=1e-4, atol=3e-4)


def test_divisibility_error_suggests_the_nearest_valid_sizes():
    mesh = parallel.data_mesh(1)
    parallel.check_divisible(7, mesh, "anything")  # one device divides everything

    class FakeMesh:  # the message only needs the size and the devices
        size = 8
        devices = np.asarray(jax.devices() * 8)

    with pytest.raises(ValueError, match=r"batch=60 is not divisible by the 8 cpu devices.*use 56 or 64 \(a multiple of 8\)"):
        parallel.check_divisible(60, FakeMesh, "batch")
    with pytest.raises(ValueError, match=r"batch=3 .* use 8 "):
        parallel.check_divisible(3, FakeMesh, "batch")


def test_data_mesh_and_its_errors():
    mesh = parallel.data_mesh()
    assert mesh.axis_names == (parallel.DATA,) and mesh.size == jax.device_count()
    with pytest.raises(ValueError, match=r"config.parallel.devices=99: 1 device\(s\) are visible"):
        parallel.data_mesh(99)


def test_global_batch_on_one_device_is_the_host_batch():
    rows = np.arange(24, dtype=np.float32).reshape(6, 4)
    out = parallel.global_batch(lambda r: {"a": rows[r]}, 6, parallel.data_mesh())
    np.testing.assert_array_equal(np.asarray(out["a"]), rows)
    np.testing.assert_array_equal(parallel.to_host(out)["a"], rows)


def test_parallel_settings_from_config():
    assert parallel_settings_from_config({}) == ParallelSettings()
    assert parallel_settings_from_config({"parallel": {"devices": 4}}).devices == 4
    with pytest.raises(ConfigError, match="parallel"):
        parallel_settings_from_config({"parallel": {"devices": -1}})
    with pytest.raises(ConfigError, match="parallel"):
        parallel_settings_from_config({"parallel": {"gpus": 4}})
    parallel.initialize(ParallelSettings())  # not distributed: nothing to join
    assert not jax.distributed.is_initialized()
