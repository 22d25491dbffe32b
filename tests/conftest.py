"""Test configuration: jaxtyping shape checks, strict dtype and rank promotion inside tests."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jaxtyping

# Every function and dataclass of slams_jax is checked against its jaxtyping annotations (shapes, dtypes) by
# beartype at each call (at trace time under jit): see helpers.array_typechecker. The hook must be installed
# before anything imports slams_jax; SLAMS_JAX_TYPECHECK=0 turns it off (e.g. to time the tests without it).
if os.environ.get("SLAMS_JAX_TYPECHECK", "1") != "0":
    jaxtyping.install_import_hook(["slams_jax"], "helpers.array_typechecker")

from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

# Compiled programs persist between runs (JAX's compilation cache), so a rerun of the inner loop
# (pytest -m "not slow") compiles only what changed; most of a cold run's time is XLA compilation.
# SLAMS_JAX_TEST_CACHE=<dir> moves the cache, SLAMS_JAX_TEST_CACHE= (empty) turns it off.
_CACHE = os.environ.get("SLAMS_JAX_TEST_CACHE", str(Path.home() / ".cache" / "slams_jax" / "jax-tests"))
# the entry points the tests start in subprocesses use the same cache (or none), not the user's
os.environ["SLAMS_JAX_COMPILATION_CACHE"] = _CACHE
if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


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
    from slams_jax.pipeline.training import train_and_evaluate

    workdir = tmp_path_factory.mktemp("run")
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        results = train_and_evaluate(tiny_config(stages=("autoencoder", "score", "pixel_score")), workdir)
    return workdir, results
