"""Your own gridded data: any netCDF or zarr reanalysis or model output, any region and cadence.

Set at least the files, the state's variables and the three date ranges, e.g.::

    python -m slams_jax.train --config=configs/dataset.py --workdir=runs/mine \
        --config.data.path=/data/t2m_europe_2021.nc --config.data.variables="('t2m',)" \
        --config.data.cadence=6h \
        --config.data.train="('2021-01-01','2021-01-20')" \
        --config.data.valid="('2021-01-21','2021-01-24')" \
        --config.data.test="('2021-01-25','2021-01-31')"

- ``path``: one file, a zarr store, a directory of them, or a glob (``'/data/era5/*.nc'``); from Python,
  ``slams_jax.train_and_evaluate(config, workdir, dataset=ds)`` takes an ``xarray.Dataset`` instead.
- ``variables``: ``name`` for a field without levels, ``name@level`` for one level (``temperature@850``),
  ``channel=name@level`` to name the channel (``t850=temperature@850``); several are stacked as channels.
- ``cadence``: empty keeps the files' own step; ``6h``, ``1D``... resample, with ``aggregation`` ``instant``
  (the value at each time) or ``mean`` (the mean over each step).
- The grid is kept as the files have it (latitude either way, longitude in [-180, 180) or [0, 360), a region
  across 0 E included): longitude wraps only when the grid spans the globe (``periodic="auto"``), and
  every network's padding follows from the grid (``padding=("auto", "auto")``).
- Auxiliary modalities: ``config.data.aux.<name> = {"path": ..., "variables": (...)}`` (an empty path: the
  state's files), set in your own config file or from Python (the command line overrides existing keys).
- Assimilation: ``--config.assimilation.start=2021-01-25T00 --config.assimilation.length=8
  --config.assimilation.stations=obs.csv --config.assimilation.verify=withheld.csv`` (docs/own_data.md).

Everything is checked before training: the variables and levels in the files, the dates inside the data,
each split long enough for the score window, the padding against the grid; the errors name the option.
"""

import importlib.util
from pathlib import Path

import ml_collections

# Load the sibling base config by path, so this file works however it is loaded (config_flags, runpy).
_spec = importlib.util.spec_from_file_location("_slams_base_config", Path(__file__).with_name("kolmogorov.py"))
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant:
        raise ValueError(f"configs/dataset.py: unknown variant {variant!r}; expected ''")
    config = base.get_config()
    config.data = ml_collections.ConfigDict({
        "source": "dataset",
        "path": "",
        "variables": (),
        "cadence": "",
        "aggregation": "instant",
        "train": (),
        "valid": (),
        "test": (),
        "periodic": "auto",
        "missing": "error",
        "normalization_states": 366,
        "prepared": "",
        "aux": ml_collections.ConfigDict(),
        "modalities": (),  # follow from variables and aux
    })
    # Any grid size works without spatial compression; the U-Net crops odd sizes at its skips.
    config.autoencoder.downsample = 1
    config.autoencoder.hidden_channels = (16, 16)
    config.autoencoder.latent_channels = 4
    config.autoencoder.padding = ("auto", "auto")
    config.score.padding = ("auto", "auto")
    config.score.hidden_channels = (32, 64, 64)
    config.score.hidden_blocks = (2, 2, 2)
    config.pixel_score.padding = ("auto", "auto")
    config.train.area_weighted = True
    config.train.autoencoder.aux_dropout = 0.0
    # Long enough for the worked example's prior to flatten (docs/own_data.md: validation loss 0.084 at 3000
    # and 6000 steps; 600 left it at 0.39 and its analysis behind 3D-Var).
    config.train.steps = 4000
    config.train.autoencoder.steps = 2000
    config.train.eval_every = config.train.checkpoint_every = 1000
    # Station-like observations of the state by default. MMPS guidance (exact on Gaussian problems) with the
    # predictor-corrector, one Langevin correction per step at tau 0.2: on the worked example's learned prior the
    # probability-flow Multistep sampler was unconverged at 32 steps (withheld-station RMSE 1.08, 0.83 at 64,
    # 0.70 at 128), the predictor-corrector at 0.52-0.54 for tau 0.1-0.3 (docs/own_data.md). On the Gaussian
    # problems (docs/assimilation.md) MMPS with it has its mean within the sampling error at tau 0.1 and 0.3,
    # its covariance error 0.9-1.8x the sampling error at tau 0.1 and up to 2.8x at 0.3.
    with config.assimilation.ignore_type():  # a date-time such as 2021-01-25T00, or an index; empty: the first
        config.assimilation.start = ""
    config.assimilation.stations = ""  # a table of stations to assimilate (time, lat, lon, variable, observation)
    config.assimilation.stations_std = 1.0  # their noise where the table has no std column
    config.assimilation.verify = ""  # a table of withheld stations, scored (not assimilated)
    config.assimilation.length = 8
    config.assimilation.guidance = "mmps"
    config.assimilation.sampler = "pc"
    config.assimilation.steps = 32
    config.assimilation.corrections = 1
    config.assimilation.tau = 0.2
    config.assimilation.observations = (
        ml_collections.ConfigDict({"modality": "state", "points": 0.05, "relative_std": 0.1}),
    )
    return config
