"""slams_jax: score-based latent multimodal data assimilation (SLAMS) in JAX/Flax.

A functional reimplementation of Qu, Nathaniel, Li & Gentine, "Deep Generative Data Assimilation in
Multimodal Setting" (CVPR EarthVision 2024), built on Rozet & Louppe, "Score-based Data Assimilation"
(NeurIPS 2023). Modules, one concept each:

- :mod:`slams_jax.schedules`: the VP diffusion schedule;
- :mod:`slams_jax.layers`, :mod:`slams_jax.unet`, :mod:`slams_jax.autoencoder`: Flax networks;
- :mod:`slams_jax.score`: Markov-window scores composed over trajectories, the denoising loss;
- :mod:`slams_jax.samplers`: reverse-diffusion samplers (``lax.scan`` and diffrax);
- :mod:`slams_jax.operators`, :mod:`slams_jax.observations`, :mod:`slams_jax.observation_files`: measurement
  operators and observations; :mod:`slams_jax.guidance`: SDA, DPS and MMPS posterior scores;
- :mod:`slams_jax.posterior`: ``posterior_sample`` (``posterior_sample_batch``: several windows in one
  program); :mod:`slams_jax.assimilate`: the assimilation entry point;
- :mod:`slams_jax.metrics`, :mod:`slams_jax.baselines`, :mod:`slams_jax.variational`: scores, classical
  baselines (interpolation, persistence, climatology) and 3D-Var/OI with a static B;
- :mod:`slams_jax.kolmogorov`: the embedded Kolmogorov-flow data generator;
- :mod:`slams_jax.datasets`, :mod:`slams_jax.configuration`, :mod:`slams_jax.checkpointing`;
- :mod:`slams_jax.train`, :mod:`slams_jax.demo`: entry points; :mod:`slams_jax.pretrained`: loading back.
"""

from slams_jax.autoencoder import MultimodalAutoencoder, masked_mse
from slams_jax.baselines import climatology_ensemble, interpolation_baseline, persistence, spatial_interpolation
from slams_jax.guidance import DPS, MMPS, SDA, Guidance
from slams_jax.checkpointing import CheckpointError, StageCheckpointer
from slams_jax.configuration import (
    AutoencoderSettings,
    ConfigError,
    DataSettings,
    ModalitySettings,
    ScoreSettings,
    Settings,
    TrainSettings,
    settings_from_config,
    settings_from_dict,
    settings_to_dict,
)
from slams_jax.kolmogorov import KolmogorovConfig, make_dataset as make_kolmogorov_dataset, simulate as simulate_kolmogorov
from slams_jax.metrics import (
    crps_ensemble, ensemble_mean_bias, ensemble_mean_rmse, ensemble_scores, ensemble_spread,
    isotropic_energy_spectrum, rank_histogram, spread_skill_ratio, wasserstein1, zonal_power_spectrum,
)
from slams_jax.observations import Observation, ObservationError, observe
from slams_jax.posterior import SamplingError, latent_observation, posterior_sample, posterior_sample_batch
from slams_jax.pretrained import TrainedModel, load_trained
from slams_jax.samplers import (
    DiffraxPredictorCorrector,
    PredictorCorrector,
    ProbabilityFlow,
    ReverseSDE,
    Sampler,
    predictor_corrector,
)
from slams_jax.schedules import VPSchedule
from slams_jax.score import MarkovScore, denoising_loss, tweedie_denoise
from slams_jax.unet import ScoreUNet, UNet
from slams_jax.variational import StaticCovariance, fit_static_covariance, three_dvar, three_dvar_ensemble

__version__ = "0.1.0"

__all__ = [
    "AutoencoderSettings", "CheckpointError", "ConfigError", "DataSettings", "KolmogorovConfig",
    "MarkovScore", "ModalitySettings", "MultimodalAutoencoder", "ScoreSettings", "ScoreUNet", "Settings",
    "StageCheckpointer", "TrainSettings", "TrainedModel", "UNet", "VPSchedule", "denoising_loss",
    "isotropic_energy_spectrum", "load_trained", "make_kolmogorov_dataset", "masked_mse",
    "predictor_corrector", "settings_from_config", "settings_from_dict", "settings_to_dict",
    "simulate_kolmogorov", "tweedie_denoise",
    "DPS", "MMPS", "SDA", "Guidance", "Observation", "ObservationError", "observe", "posterior_sample",
    "posterior_sample_batch",
    "latent_observation", "SamplingError", "DiffraxPredictorCorrector", "PredictorCorrector", "ProbabilityFlow",
    "ReverseSDE", "Sampler", "crps_ensemble", "ensemble_scores", "wasserstein1", "interpolation_baseline",
    "ensemble_mean_bias", "ensemble_mean_rmse", "ensemble_spread", "rank_histogram", "spread_skill_ratio",
    "zonal_power_spectrum", "climatology_ensemble", "persistence", "spatial_interpolation", "StaticCovariance",
    "fit_static_covariance", "three_dvar", "three_dvar_ensemble",
]
