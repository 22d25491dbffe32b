r"""Score-based assimilation in the classical twin experiments (Lorenz-63 and Lorenz-96): the commands.

The score prior learns windows of :math:`2k+1` consecutive states at the observation cadence from a long
free run of the model (:func:`slams_jax.twin.lorenz.free_run`); the truth and observations of the test come
from an independent run (:func:`slams_jax.twin.lorenz.twin_data`). Two spaces, like the gridded pipeline:

- ``pixel``: the prior over the standardized state itself;
- ``latent``: an autoencoder (an MLP, or circular 1-D convolutions with or without a 2x downsampling)
  maps states to a standardized latent; the prior lives there and the observations are compared with the
  **decoded** state, as in SLAMS.

The window networks are MLPs over the flattened window (``score.network.kind = "mlp"``, Lorenz-63's),
local circular residual convolutions over the ring (``"resnet"``, Lorenz-96's: translation equivariant, as
its dynamics) or circular 1-D U-Nets (``"unet"``). Three assimilation modes: ``filter`` (a lag window),
``cycled`` (a lag window that also carries the previous analysis ensemble as a background) and
``smoother``. The modules, along the data flow: :mod:`.settings` (the
typed config), :mod:`.networks`, :mod:`.training` (:func:`train_twin`), :mod:`.model` (the trained
:class:`~slams_jax.twin.model.TwinModel` and its priors), :mod:`.assimilation` (the filter and smoother).

``python -m slams_jax.twin train|assimilate --config=configs/lorenz63.py --workdir=W`` (or
``python -m slams_jax.train`` / ``python -m slams_jax.assimilate`` with the same flags) trains the priors of
such a config and runs its assimilations; ``experiments/twin.py`` puts everything next to the published
DAPPER numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax

from slams_jax.twin import lorenz
from slams_jax.twin.assimilation import assimilate_twin
from slams_jax.twin.model import TwinModel
from slams_jax.twin.settings import TwinSettings
from slams_jax.twin.training import Log, train_twin


def run_assimilations(settings: TwinSettings, workdir: str | os.PathLike, model: TwinModel | None = None,
                      log: Log = print, data: lorenz.TwinData | None = None) -> list[dict[str, Any]]:
    """Every (space, mode) of the settings on the twin test data; rows appended to ``WORKDIR/results.jsonl``.

    ``model`` defaults to :func:`train_twin` (restored from ``workdir`` when trained), ``data`` to the test
    run of ``settings.twin.test_seed``.
    """
    workdir = Path(workdir)
    model = model if model is not None else train_twin(settings, workdir, log)
    setup, a = model.setup, settings.assimilation
    if data is None:
        data = lorenz.twin_data(setup, jax.random.PRNGKey(settings.twin.test_seed))
    rows = []
    for space in settings.twin.spaces:
        for mode in a.modes:
            k = jax.random.fold_in(jax.random.PRNGKey(settings.seed + 1), len(rows))
            r = assimilate_twin(k, model, data, space, mode, a)
            rows.append({"setup": setup.name, "method": f"slams_jax {space} {mode}", "space": space, "mode": mode,
                         "rmse": r.rmse, "spread": r.spread, "members": a.members, "seconds": r.seconds,
                         "failed": r.failed, "ranks": [round(float(v), 3) for v in r.ranks]})
            log(f"{setup.name} {space:6s} {mode:8s} RMSE {r.rmse:.3f} spread {r.spread:.3f} "
                f"({r.seconds:.1f} s, {r.failed} diverged member samples)")
    with (workdir / "results.jsonl").open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return rows


def train(settings: TwinSettings, workdir: str | os.PathLike) -> None:
    """The ``train`` command: the training run, autoencoder and priors of ``settings`` in ``workdir``."""
    train_twin(settings, workdir)


def assimilate(settings: TwinSettings, workdir: str | os.PathLike) -> None:
    """The ``assimilate`` command: every (space, mode), rows appended to ``WORKDIR/results.jsonl``."""
    run_assimilations(settings, workdir)
    print(f"rows appended to {Path(workdir) / 'results.jsonl'}")


COMMANDS = {"train": train, "assimilate": assimilate}

__all__ = ["run_assimilations", "train", "assimilate", "COMMANDS"]
