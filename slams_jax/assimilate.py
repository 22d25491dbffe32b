"""``python -m slams_jax.assimilate --workdir=DIR [--config=...] [--config.assimilation.<key>=<value>]``.

Assimilates observations of a test window with the trained model of ``DIR``
(:func:`slams_jax.pipeline.assimilation.assimilate`), or runs the filter and smoother of a Lorenz twin
experiment for ``configs/lorenz*.py``, and prints the metrics table. A :class:`slams_jax.Error` is printed
as one line (exit status 2).
"""

from __future__ import annotations

from pathlib import Path

from slams_jax.pipeline.assimilation import assimilate, format_report


def main(argv):
    from slams_jax.errors import ConfigError
    from slams_jax.pipeline import cli

    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {argv[1:]}")
    workdir = cli.workdir_from_flags()
    config = cli.config_from_flags()
    from slams_jax.twin.settings import maybe_twin_settings

    twin = maybe_twin_settings(config)  # a Lorenz twin experiment: filter and smoother on an independent truth run
    if twin is not None:
        from slams_jax.twin import experiment

        experiment.assimilate(twin, workdir)
        return
    report = assimilate(config, workdir)
    print(format_report(report))
    print(f"outputs in {Path(workdir) / 'assimilation'}")


__all__ = ["assimilate", "format_report", "main"]

if __name__ == "__main__":
    from slams_jax.pipeline import cli

    cli.run_main(main)
