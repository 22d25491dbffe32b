"""``python -m slams_jax.train --config=configs/kolmogorov.py --workdir=DIR [--config.<key>=<value>]``.

Trains the stages of the config (:func:`slams_jax.pipeline.training.train_and_evaluate`), or the priors of
a Lorenz twin experiment for ``configs/lorenz*.py`` (:func:`slams_jax.twin.training.train_twin`), and
prints the final metrics. A :class:`slams_jax.Error` is printed as one line (exit status 2).
"""

from __future__ import annotations

import json

from slams_jax.pipeline.training import train_and_evaluate


def main(argv):
    from slams_jax.errors import ConfigError
    from slams_jax.pipeline.cli import config_from_flags, workdir_from_flags

    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {argv[1:]}")
    config = config_from_flags()
    from slams_jax.twin.settings import maybe_twin_settings

    twin = maybe_twin_settings(config)  # a Lorenz twin experiment (configs/lorenz63.py, configs/lorenz96.py)
    if twin is not None:
        from slams_jax.twin import experiment

        experiment.train(twin, workdir_from_flags())
        return
    results = train_and_evaluate(config, workdir_from_flags())
    print(json.dumps(results, indent=2))


__all__ = ["train_and_evaluate", "main"]

if __name__ == "__main__":
    from slams_jax.pipeline.cli import run_main

    run_main(main)
