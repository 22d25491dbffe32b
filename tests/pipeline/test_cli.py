"""The entry points print a slams_jax.Error as one line on stderr and exit with status 2; --traceback shows where."""

import os
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow  # each test starts an entry point in a subprocess

# the environment of a user's shell, minus the noise that is not the entry point's (accelerator probing, warnings)
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore"}


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=ENV, cwd=cwd,
                          timeout=300)


def _one_line(done, kind, *words):
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith(f"error ({kind}): ") and "--traceback" in lines[0], lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("module", ["slams_jax.train", "slams_jax.prepare"])
def test_a_missing_store_is_one_line_with_status_2(module, tmp_path):
    done = _run(module, "--config=configs/era5.py", "--config.data.path=/nonexistent", f"--workdir={tmp_path}")
    _one_line(done, "MissingFileError", "config.data.path='/nonexistent'", "no such file")


def test_traceback_shows_where(tmp_path):
    done = _run("slams_jax.train", "--config=configs/era5.py", "--config.data.path=/nonexistent",
                f"--workdir={tmp_path}", "--traceback")
    assert done.returncode not in (0, 2), done.stderr[-2000:]
    assert "Traceback (most recent call last)" in done.stderr
    assert "MissingFileError: config.data.path='/nonexistent': no such file" in done.stderr
    assert "slams_jax/data/gridded/files.py" in done.stderr  # the frame that raised it


def test_assimilate_without_a_trained_model(tmp_path):
    done = _run("slams_jax.assimilate", f"--workdir={tmp_path}")
    _one_line(done, "CheckpointError", "no autoencoder checkpoint", str(tmp_path), "python -m slams_jax.train")


def test_prepare_refuses_another_source(tmp_path):
    done = _run("slams_jax.prepare", "--config=configs/kolmogorov.py", f"--workdir={tmp_path}")
    _one_line(done, "ConfigError", "config.data.source='kolmogorov'", "dataset source")
