"""Command-line plumbing shared by the entry points (absl flags + ml_collections config files).

Importing this module defines the ``--config`` and ``--workdir`` flags, so only ``__main__`` blocks
import it; the library modules stay free of import-time side effects.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from slams_jax.errors import one_line_errors

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "kolmogorov.py"


def config_from_flags():
    """The ``--config`` ConfigDict, with its ``--config.<key>=<value>`` overrides applied."""
    return _CONFIG.value


def workdir_from_flags() -> str:
    """The ``--workdir`` directory (a usage error if absent)."""
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required (the directory for data, checkpoints and metrics)")
    return _WORKDIR.value


def _explain_override_error(argv: list[str], error: Exception) -> str:
    """Find which ``--config.a.b`` override names a key that the config file does not have."""
    try:
        path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), str(DEFAULT_CONFIG))
        path = path.split(":", 1)[0]
        module = runpy.run_path(path)
        config = module["get_config"]()
    except Exception:
        return str(error)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        dotted = arg[len("--config."):].split("=", 1)[0]
        node, walked = config, []
        for part in dotted.split("."):
            if not hasattr(node, "keys") or part not in node.keys():
                where = ".".join(walked) or "the top level"
                options = sorted(node.keys()) if hasattr(node, "keys") else []
                return (f"unknown config key {dotted!r} in {arg!r}: {part!r} is not a key of {where} "
                        f"of {path}; valid keys there: {options}")
            node, walked = node[part], walked + [part]
    return str(error)


def _define_config_flag():
    # config_flags reads the --config.<key> overrides from sys.argv while defining the flag, so a bad
    # key surfaces here, before absl parses anything.
    try:
        return config_flags.DEFINE_config_file(
            "config",
            str(DEFAULT_CONFIG),
            "Path of a config file defining get_config(); fields can be overridden with --config.<key>=<value>.",
            lock_config=True,
        )
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        print(f"error: bad config override: {_explain_override_error(sys.argv, e)}", file=sys.stderr)
        sys.exit(2)


_CONFIG = _define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for data, checkpoints and metrics.")
_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show the whole traceback of a slams_jax error.")


def _parse(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"FATAL Flags parsing error: {e}", file=sys.stderr)
        print("Pass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
        sys.exit(1)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        print(f"error: bad config override: {_explain_override_error(argv, e)}", file=sys.stderr)
        sys.exit(2)


def run_main(main) -> None:
    """``absl.app.run`` with clear messages for bad ``--config.<key>`` overrides and for slams_jax errors.

    Turns on the persistent compilation cache first (:mod:`slams_jax.compilation_cache`).
    """
    from absl import logging

    from slams_jax import compilation_cache

    compilation_cache.enable()
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    app.run(one_line_errors(main, lambda: _TRACEBACK.value), flags_parser=_parse)
