"""``python experiments/ablation.py`` / ``python -m slams_jax.studies.ablation``: ``--config`` (default
``configs/ablation.py``), ``--workdir`` (default ``runs/ablation``), ``--report_only``; prints ``table.md``.
A :class:`slams_jax.Error` is printed as one line (exit status 2; ``--traceback`` shows where)."""

from __future__ import annotations

from pathlib import Path

from slams_jax.errors import ConfigError, one_line_errors

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "ablation.py"


def main(argv) -> None:
    from absl import flags, logging

    from slams_jax.studies.ablation.running import run_study

    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint read at INFO
    result = run_study(flags.FLAGS.config, flags.FLAGS.workdir, report_only=flags.FLAGS.report_only)
    print(result["table"])


def run() -> None:
    """Define the flags and run :func:`main` (flags are defined here, not at import)."""
    from absl import app, flags
    from ml_collections import config_flags

    from slams_jax import compilation_cache

    compilation_cache.enable()
    config_flags.DEFINE_config_file("config", str(DEFAULT_CONFIG), "Study config file.", lock_config=True)
    flags.DEFINE_string("workdir", "runs/ablation", "Directory for models, data and results.")
    flags.DEFINE_bool("report_only", False, "Only rewrite the outputs from results.jsonl (no training, no runs).")
    flags.DEFINE_bool("traceback", False, "Show the whole traceback of a slams_jax error.")
    app.run(one_line_errors(main, lambda: flags.FLAGS.traceback))


__all__ = ["main", "run"]
