"""Lorenz-96 twin experiment (DAPPER "sakov2008"): configs/lorenz63.py with a larger state and networks.

``python -m slams_jax.twin train --config=configs/lorenz96.py --workdir=runs/lorenz96`` generates the
training run and trains the priors (pixel and latent); ``python -m slams_jax.twin assimilate
--config=configs/lorenz96.py --workdir=runs/lorenz96`` runs the filter and the smoother on an independent
truth run (``python -m slams_jax.train`` / ``slams_jax.assimilate`` take the same flags).
``experiments/twin.py`` runs both systems next to the published numbers and the in-package EnKF/3D-Var.
"""

import importlib.util
from pathlib import Path

import ml_collections

_spec = importlib.util.spec_from_file_location("_slams_lorenz63_config", Path(__file__).with_name("lorenz63.py"))
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in ("", "quick"):
        raise ValueError(f"configs/lorenz96.py: unknown variant {variant!r}; expected '' or 'quick'")
    c = _base.get_config(variant)
    # slams_jax.twin.lorenz.SETUPS: sakov2008 (40 variables, F = 8, RK4 dt 0.05, all observed every step, R = I)
    c.twin.setup = "lorenz96"
    c.twin.augment_shifts = True  # train on random rotations of the ring (its dynamics are rotation invariant)

    # MLPs: on the shared 2-core CPU the circular 1-D "conv" autoencoder took 10 minutes for 1000 steps, and
    # a (32, 64) 1-D U-Net score network over 5 minutes, against 20 s for these MLPs (measured)
    c.autoencoder.latent = 32  # above the attractor's Kaplan-Yorke dimension (about 27)
    c.autoencoder.hidden = 256
    c.score.network.hidden = (512, 512, 512)  # windows of 5 states = 0.25 time units, 200 values
    if variant == "":
        c.autoencoder.steps = 10000  # reconstruction RMSE 0.57 after 4000 steps (measured)
        c.train.steps = 10000  # the 200-value windows of 40 variables learn slower than Lorenz-63's
    return c
