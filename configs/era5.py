"""The paper's ERA5 setup (Qu et al., 2024): temperature at 10 pressure levels with CPC and OLR.

State: ERA5 temperature at 10, 50, 100, 200, 300, 500, 700, 850, 925, 1000 hPa, daily, 1.5 degrees
(121 x 240, or 120 x 240 without a pole row). Auxiliary modalities: CPC precipitation (in-situ) and
NOAA OLR (satellite). Autoencoder as the reference (conv k5, stride 1, (10 + aux) -> 9 -> 8 -> 7 -> 6 -> 5);
window of 5 latent states; U-Net (32, 64, 128) x (3, 3, 3); AdamW 2e-4, weight decay 1e-3, batch 64,
64 epochs.

The data paths are required: ``--config.data.era5_path=/path/to/era5.zarr`` (WeatherBench2 layout; or a
ChaosBench directory with ``--config.data.era5.layout=chaosbench --config.data.era5.variable=t``) and
``--config.data.era5.aux.precip.path``, ``--config.data.era5.aux.olr.path``. See docs/data.md, "Real data: ERA5".
Latitude is not periodic: its padding goes across the pole (``pole``), longitude wraps.
"""

import importlib.util
from pathlib import Path

import ml_collections

# Load the sibling base config by path, so this file works however it is loaded (config_flags, runpy).
_spec = importlib.util.spec_from_file_location("_slams_base_config", Path(__file__).with_name("kolmogorov.py"))
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)

LEVELS = (10, 50, 100, 200, 300, 500, 700, 850, 925, 1000)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = base.get_config()
    config.data.source = "era5"
    config.data.era5_path = ""
    config.data.n_train = 0
    config.data.n_valid = 0
    config.data.n_test = 0
    config.data.modalities = (
        ml_collections.ConfigDict({"name": "state", "variables": tuple(f"t{p}" for p in LEVELS), "weight": 1.0}),
        ml_collections.ConfigDict({"name": "precip", "variables": ("precip",), "weight": 1.0}),
        ml_collections.ConfigDict({"name": "olr", "variables": ("olr",), "weight": 1.0}),
    )
    # Daily states matched by date across the sources; the splits never overlap (the paper's test year
    # 2020 is left out between validation and test).
    config.data.era5 = ml_collections.ConfigDict()
    config.data.era5.layout = "weatherbench2"  # or "chaosbench" (era5_path: the directory of daily zarr stores)
    config.data.era5.variable = "temperature"  # "t" in ChaosBench
    config.data.era5.levels = tuple(float(p) for p in LEVELS)
    config.data.era5.aggregation = "mean"  # sub-daily analyses averaged to one daily state
    config.data.era5.train = ("2000-01-01", "2015-12-31")
    config.data.era5.valid = ("2016-01-01", "2019-12-31")
    config.data.era5.test = ("2021-01-01", "2022-12-31")
    config.data.era5.missing = "error"  # or "skip": windows avoid days missing in any source
    config.data.era5.normalization_days = 366
    config.data.era5.prepared = ""  # a store written by python -m slams_jax.prepare
    config.data.era5.aux = ml_collections.ConfigDict()
    # NOAA PSL CPC global unified daily precipitation (0.5 deg, NaN over the ocean): area mean onto the grid
    config.data.era5.aux.precip = ml_collections.ConfigDict(
        {"path": "", "variable": "precip", "levels": (), "layout": "store", "regrid": "conservative",
         "aggregation": "mean"})
    # NOAA interpolated OLR (2.5 deg): daily mean, area mean onto the grid
    config.data.era5.aux.olr = ml_collections.ConfigDict(
        {"path": "", "variable": "olr", "levels": (), "layout": "store", "regrid": "conservative",
         "aggregation": "mean"})

    config.autoencoder.latent_channels = 5
    config.autoencoder.hidden_channels = (9, 8, 7, 6)
    config.autoencoder.kernel_size = 5
    config.autoencoder.downsample = 1
    config.autoencoder.norm = "batch"
    config.autoencoder.activation = "relu"
    config.autoencoder.padding = ("pole", "circular")

    config.score.order = 2
    config.score.embedding = 64
    config.score.hidden_channels = (32, 64, 128)
    config.score.hidden_blocks = (3, 3, 3)
    config.score.kernel_size = 3
    config.score.layer_norm = False
    config.score.padding = ("pole", "circular")
    config.score.gaussian_skip = False
    config.pixel_score.gaussian_skip = False
    config.pixel_score.hidden_channels = (64, 128, 256)
    config.pixel_score.hidden_blocks = (3, 3, 3)
    config.pixel_score.layer_norm = False
    config.pixel_score.padding = ("pole", "circular")

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
        config.data.modalities = config.data.modalities[:1]
        config.data.era5.aux = ml_collections.ConfigDict()
        config.assimilation.observations = config.assimilation.observations[:1]
    elif variant:
        raise ValueError(f"configs/era5.py: unknown variant {variant!r}; expected '' or 'state'")
    return config
