"""slams_jax.compilation_cache: where the CLIs put JAX's persistent cache, how to move or disable it."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from slams_jax.compilation_cache import ENV, MIN_COMPILE_S, cache_directory, enable

KEYS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


@pytest.fixture
def saved_config():
    saved = {k: getattr(jax.config, k) for k in KEYS}
    yield
    for k, v in saved.items():
        jax.config.update(k, v)


def test_cache_directory_follows_the_environment(tmp_path):
    assert cache_directory({}) == str(Path.home() / ".cache" / "slams_jax" / "jax")
    assert cache_directory({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "slams_jax" / "jax")
    assert cache_directory({ENV: str(tmp_path / "c"), "XDG_CACHE_HOME": "/elsewhere"}) == str(tmp_path / "c")
    assert cache_directory({ENV: "~/c"}) == str(Path.home() / "c")
    assert cache_directory({ENV: ""}) is None and cache_directory({ENV: "  "}) is None


def test_run_main_turns_the_cache_on_and_the_empty_variable_off(monkeypatch, tmp_path, saved_config):
    from slams_jax.pipeline import cli

    ran = []
    monkeypatch.setattr(cli.app, "run", lambda main, flags_parser=None: ran.append(main))
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "before"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 60.0)
    monkeypatch.setenv(ENV, "")
    cli.run_main(lambda argv: None)
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "before")  # disabled: left alone
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 60.0
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    cli.run_main(lambda argv: None)
    assert len(ran) == 2
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    # low enough that every network program (seconds to compile) is written
    assert jax.config.jax_persistent_cache_min_compile_time_secs == MIN_COMPILE_S <= 1.0


def test_enable_returns_what_it_set(tmp_path, saved_config):
    assert enable({ENV: ""}) is None
    assert enable({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "slams_jax" / "jax")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "slams_jax" / "jax")


def test_importing_the_entry_points_leaves_the_cache_off(tmp_path):
    code = ("import slams_jax, slams_jax.train, slams_jax.assimilate, slams_jax.prepare, slams_jax.demo, jax; "
            "print(jax.config.jax_compilation_cache_dir)")
    env = {**os.environ, ENV: str(tmp_path / "cache"), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "None"
