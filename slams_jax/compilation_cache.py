"""JAX's persistent compilation cache, turned on by the command-line entry points (never by an import).

Compiling a sampling program takes tens of seconds on a CPU and every new process compiled it again. With the
cache, XLA's executables are written to disk and a later run with the same programs (same shapes, same kind
of model and sampler) loads them instead.

Where: ``$SLAMS_JAX_COMPILATION_CACHE`` if set (empty: no cache), else ``$XDG_CACHE_HOME/slams_jax/jax``,
else ``~/.cache/slams_jax/jax``. The CLIs (``python -m slams_jax.train``, ``assimilate``, ``prepare``,
``demo`` and the ablation study) call :func:`enable` before anything compiles; a library user who wants the
cache calls it too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import jax

#: Environment variable naming the cache directory; set to the empty string to disable the cache.
ENV = "SLAMS_JAX_COMPILATION_CACHE"

#: Programs that compile faster than this are not written: small jitted operations would fill the cache
#: with entries that cost more to read than to compile, while every network program takes seconds.
MIN_COMPILE_S = 0.5


def cache_directory(environ: Mapping[str, str] | None = None) -> str | None:
    """The cache directory the environment asks for, or ``None`` when ``SLAMS_JAX_COMPILATION_CACHE`` is empty."""
    environ = os.environ if environ is None else environ
    if ENV in environ:
        value = environ[ENV].strip()
        return str(Path(value).expanduser()) if value else None
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base).expanduser() / "slams_jax" / "jax")


def enable(environ: Mapping[str, str] | None = None) -> str | None:
    """Point JAX's persistent compilation cache at :func:`cache_directory` (nothing when it is ``None``).

    Call it before the first compilation: JAX decides whether to use the cache when it first compiles.

    Returns:
        The directory in use, or ``None`` when the cache is disabled.
    """
    directory = cache_directory(environ)
    if directory is None:
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    return directory


__all__ = ["ENV", "MIN_COMPILE_S", "cache_directory", "enable"]
