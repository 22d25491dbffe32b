"""Test configuration: strict dtype promotion and rank promotion raise inside tests."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import pytest


@pytest.fixture(autouse=True)
def _float32_precision():
    # GPUs default to TF32 convolutions and matmuls (~1e-3 relative error); the comparisons assume float32.
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(autouse=True)
def _strict_promotion():
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny experiment (autoencoder, latent and pixel priors) trained once per session: (workdir, results)."""
    from helpers import tiny_config
    from slams_jax.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("run")
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        results = train_and_evaluate(tiny_config(stages=("autoencoder", "score", "pixel_score")), workdir)
    return workdir, results
