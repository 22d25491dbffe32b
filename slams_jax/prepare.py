"""``python -m slams_jax.prepare --config=configs/era5.py --config.data.path=PATH --workdir=DIR``.

Reads the state and the auxiliary modalities of a ``dataset`` config (``configs/dataset.py``,
``configs/era5.py``) by date, resamples them to the cadence, regrids them to the state's grid, normalizes
them with statistics of the training period and writes every split as memory-mappable ``.npy`` files (with
a progress bar) to ``config.data.prepared``, or ``WORKDIR/prepared`` when that is empty. Train from it with
``--config.data.prepared=<that path>``: epochs then read plain arrays instead of decoding, averaging and
regridding the files again.
"""

from __future__ import annotations

from pathlib import Path

from slams_jax.errors import ConfigError
from slams_jax.pipeline.configuration import settings_from_config


def main(argv):
    from slams_jax.data import gridded
    from slams_jax.pipeline import cli

    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments: {argv[1:]}")
    settings = settings_from_config(cli.config_from_flags())
    if settings.data.source != "dataset":
        raise ConfigError(f"config.data.source={settings.data.source!r}: prepare is for the dataset source "
                          "(configs/dataset.py, configs/era5.py)")
    out = settings.data.prepared or str(Path(cli.workdir_from_flags()) / "prepared")
    path = gridded.prepare(settings.data, out)
    print(f"prepared store written to {path}; train from it with --config.data.prepared={path}")


if __name__ == "__main__":
    from slams_jax.pipeline import cli

    cli.run_main(main)
