"""``python -m slams_jax.twin train|assimilate --config=configs/lorenz63.py --workdir=DIR [--config.<key>=<value>]``.

``train`` generates the training run and trains the priors of a twin config
(:func:`slams_jax.twin.training.train_twin`); ``assimilate`` runs its filter and smoother on an independent
truth run (:func:`slams_jax.twin.experiment.run_assimilations`, training first if needed). A
:class:`slams_jax.Error` is printed as one line (exit status 2).
"""

from __future__ import annotations

from slams_jax.errors import TwinError
from slams_jax.twin.experiment import COMMANDS
from slams_jax.twin.settings import maybe_twin_settings


def main(argv):
    from slams_jax.pipeline import cli

    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise TwinError(f"expected one command, {' or '.join(COMMANDS)}, got {argv[1:]}: "
                        "python -m slams_jax.twin train|assimilate --config=configs/lorenz63.py --workdir=DIR")
    settings = maybe_twin_settings(cli.config_from_flags())
    if settings is None:
        raise TwinError("the config has no 'twin' group: give a twin config, e.g. --config=configs/lorenz63.py")
    COMMANDS[argv[1]](settings, cli.workdir_from_flags())


if __name__ == "__main__":
    from slams_jax.pipeline import cli

    cli.run_main(main)
