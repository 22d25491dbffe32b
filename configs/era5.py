"""The paper's ERA5 setup (Qu et al., 2024): temperature at 10 pressure levels with CPC and OLR.

This is ``configs/dataset.py`` (any gridded data) with the paper's defaults. State: ERA5 temperature at
10, 50, 100, 200, 300, 500, 700, 850, 925, 1000 hPa, daily means, 1.5 degrees (121 x 240, or 120 x 240
without a pole row). Auxiliary modalities: CPC precipitation (in-situ) and NOAA OLR (satellite), each
averaged onto the state's grid. Autoencoder as the reference (conv k5, stride 1, (10 + aux) -> 9 -> 8 ->
7 -> 6 -> 5); window of 5 latent states; U-Net (32, 64, 128) x (3, 3, 3); AdamW 2e-4, weight decay 1e-3,
batch 64, 64 epochs.

The data paths are required: ``--config.data.path=/path/to/era5.zarr`` (WeatherBench2 layout; or a
ChaosBench directory of daily zarr stores with ``--config.data.variables`` spelled ``t@LEVEL``) and
``--config.data.aux.precip.path``, ``--config.data.aux.olr.path``. See docs/data.md. The grid spans the
globe, so longitude wraps and latitude continues across the poles (``padding="auto"`` finds both).
"""

import importlib.util
from pathlib import Path

import ml_collections

_spec = importlib.util.spec_from_file_location("_slams_dataset_config", Path(__file__).with_name("dataset.py"))
dataset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dataset)

LEVELS = (10, 50, 100, 200, 300, 500, 700, 850, 925, 1000)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = dataset.get_config()
    d = config.data
    d.variables = tuple(f"t{p}=temperature@{p}" for p in LEVELS)
    d.cadence = "1D"
    d.aggregation = "mean"  # sub-daily analyses averaged to one daily state
    # The splits never overlap (the paper's test year 2020 is left out between validation and test).
    d.train = ("2000-01-01", "2015-12-31")
    d.valid = ("2016-01-01", "2019-12-31")
    d.test = ("2021-01-01", "2022-12-31")
    d.aux = ml_collections.ConfigDict({
        # NOAA PSL CPC global unified daily precipitation (0.5 deg, NaN over the ocean): area mean onto the grid
        "precip": {"path": "", "variables": ("precip",), "aggregation": "mean", "regrid": "conservative",
                   "weight": 1.0},
        # NOAA interpolated OLR (2.5 deg): daily mean, area mean onto the grid
        "olr": {"path": "", "variables": ("olr",), "aggregation": "mean", "regrid": "conservative", "weight": 1.0},
    }, sort_keys=False)  # the modalities' order: state, precip, olr

    config.autoencoder.latent_channels = 5
    config.autoencoder.hidden_channels = (9, 8, 7, 6)
    config.autoencoder.kernel_size = 5
    config.autoencoder.downsample = 1
    config.autoencoder.norm = "batch"
    config.autoencoder.activation = "relu"

    config.score.order = 2
    config.score.embedding = 64
    config.score.hidden_channels = (32, 64, 128)
    config.score.hidden_blocks = (3, 3, 3)
    config.score.kernel_size = 3
    config.score.layer_norm = False
    config.score.gaussian_skip = False
    config.pixel_score.gaussian_skip = False
    config.pixel_score.hidden_channels = (64, 128, 256)
    config.pixel_score.hidden_blocks = (3, 3, 3)
    config.pixel_score.layer_norm = False

    config.train.batch_size = 64
    config.train.learning_rate = 2e-4
    config.train.weight_decay = 1e-3
    config.train.lr_schedule = "linear"
    # losses weighted by grid-cell area (the reference's are not: set False to reproduce it exactly)
    config.train.area_weighted = True
    config.train.ema_decay = 0.999
    # 64 epochs of 16 years of daily windows at batch 64 is about 5,800 steps.
    config.train.steps = 5800
    config.train.autoencoder.steps = 5800
    config.train.autoencoder.aux_dropout = 0.0
    config.train.log_every = 100
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    # Paper-style instruments: coarse, noisy temperature at every level; in-situ precipitation gauges;
    # satellite OLR seen through a footprint average (observations are compared in physical space).
    config.assimilation.length = 8
    config.assimilation.members = 16
    config.assimilation.steps = 64
    config.assimilation.observations = (
        ml_collections.ConfigDict({"modality": "state", "coarsen": 4, "relative_std": 0.1}),
        ml_collections.ConfigDict({"modality": "precip", "points": 0.05, "relative_std": 0.2}),
        ml_collections.ConfigDict({"modality": "olr", "coarsen": 2, "relative_std": 0.05}),
    )
    if variant == "state":  # the state alone (no auxiliary sources needed): configs/era5.py:state
        d.aux = ml_collections.ConfigDict()
        config.assimilation.observations = config.assimilation.observations[:1]
    elif variant:
        raise ValueError(f"configs/era5.py: unknown variant {variant!r}; expected '' or 'state'")
    return config
