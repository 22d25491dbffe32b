"""slams_jax: score-based latent multimodal data assimilation (SLAMS) in JAX/Flax.

A functional reimplementation of Qu, Nathaniel, Li & Gentine, "Deep Generative Data Assimilation in
Multimodal Setting" (CVPR EarthVision 2024), built on Rozet & Louppe, "Score-based Data Assimilation"
(NeurIPS 2023). The subpackages, by role (dependencies point down this list, never up):

- :mod:`slams_jax.pipeline`: the runtime: typed settings from a config, models, checkpoints,
  :func:`load_trained`, training and assimilation as library functions (behind the thin entry points
  :mod:`slams_jax.train`, :mod:`slams_jax.assimilate`, :mod:`slams_jax.demo`, :mod:`slams_jax.prepare`);
  :mod:`slams_jax.twin` (Lorenz twin experiments) and :mod:`slams_jax.studies` (the ablation) are its clients;
- :mod:`slams_jax.diffusion`: VP schedules, window scores, samplers, guidance, the I/O-free posterior sampler
  (it takes prior objects, never paths), the linear solver;
- :mod:`slams_jax.nn`: the Flax networks; :mod:`slams_jax.observation`: measurement operators, observations,
  observation files; :mod:`slams_jax.data`: data settings and sources; :mod:`slams_jax.baselines`: the
  classical methods; :mod:`slams_jax.metrics`: ensemble scores and spectra;
- :mod:`slams_jax.errors` (the :class:`Error` family), :mod:`slams_jax.coords` (coordinate names),
  :mod:`slams_jax.parallel` (the device mesh).

This module re-exports the public names, so ``slams_jax.posterior_sample`` and ``slams_jax.Coarsen`` need no
knowledge of the layout.
"""

from slams_jax.baselines.covariance import StaticCovariance as StaticCovariance
from slams_jax.baselines.covariance_fit import fit_static_covariance as fit_static_covariance
from slams_jax.baselines.covariance_tuning import CovarianceTuning as CovarianceTuning
from slams_jax.baselines.covariance_tuning import tune_static_covariance as tune_static_covariance
from slams_jax.baselines.interpolation import interpolation_baseline as interpolation_baseline
from slams_jax.baselines.interpolation import spatial_interpolation as spatial_interpolation
from slams_jax.baselines.references import climatology_ensemble as climatology_ensemble
from slams_jax.baselines.references import persistence as persistence
from slams_jax.baselines.variational import three_dvar as three_dvar
from slams_jax.baselines.variational import three_dvar_ensemble as three_dvar_ensemble
from slams_jax.baselines.verification import scores_at_observations as scores_at_observations
from slams_jax.data.kolmogorov import KolmogorovConfig as KolmogorovConfig
from slams_jax.data.kolmogorov import make_dataset as make_kolmogorov_dataset
from slams_jax.data.kolmogorov import simulate as simulate_kolmogorov
from slams_jax.data.settings import DataSettings as DataSettings
from slams_jax.data.settings import ModalitySettings as ModalitySettings
from slams_jax.diffusion.guidance import DPS as DPS
from slams_jax.diffusion.guidance import MMPS as MMPS
from slams_jax.diffusion.guidance import SDA as SDA
from slams_jax.diffusion.guidance import Guidance as Guidance
from slams_jax.diffusion.gaussian import GaussianProblem as GaussianProblem
from slams_jax.diffusion.gaussian import ring_problem as ring_problem
from slams_jax.diffusion.multistep import Multistep as Multistep
from slams_jax.diffusion.posterior import SamplingOptions as SamplingOptions
from slams_jax.diffusion.posterior import latent_observation as latent_observation
from slams_jax.diffusion.posterior import posterior_sample as posterior_sample
from slams_jax.diffusion.posterior import posterior_sample_batch as posterior_sample_batch
from slams_jax.diffusion.prior import Prior as Prior
from slams_jax.diffusion.prior import callable_prior as callable_prior
from slams_jax.diffusion.samplers import DiffraxPredictorCorrector as DiffraxPredictorCorrector
from slams_jax.diffusion.samplers import PredictorCorrector as PredictorCorrector
from slams_jax.diffusion.samplers import ProbabilityFlow as ProbabilityFlow
from slams_jax.diffusion.samplers import ReverseSDE as ReverseSDE
from slams_jax.diffusion.samplers import Sampler as Sampler
from slams_jax.diffusion.samplers import predictor_corrector as predictor_corrector
from slams_jax.diffusion.schedules import VPSchedule as VPSchedule
from slams_jax.diffusion.score import MarkovScore as MarkovScore
from slams_jax.diffusion.score import denoising_loss as denoising_loss
from slams_jax.diffusion.score import tweedie_denoise as tweedie_denoise
from slams_jax.errors import CheckpointError as CheckpointError
from slams_jax.errors import ConfigError as ConfigError
from slams_jax.errors import DataError as DataError
from slams_jax.errors import Error as Error
from slams_jax.errors import MissingFileError as MissingFileError
from slams_jax.errors import ObservationError as ObservationError
from slams_jax.errors import SamplingError as SamplingError
from slams_jax.metrics import crps_ensemble as crps_ensemble
from slams_jax.metrics import ensemble_mean_bias as ensemble_mean_bias
from slams_jax.metrics import ensemble_mean_rmse as ensemble_mean_rmse
from slams_jax.metrics import ensemble_scores as ensemble_scores
from slams_jax.metrics import ensemble_spread as ensemble_spread
from slams_jax.metrics import isotropic_energy_spectrum as isotropic_energy_spectrum
from slams_jax.metrics import rank_histogram as rank_histogram
from slams_jax.metrics import spread_skill_ratio as spread_skill_ratio
from slams_jax.metrics import wasserstein1 as wasserstein1
from slams_jax.metrics import zonal_power_spectrum as zonal_power_spectrum
from slams_jax.nn.autoencoder import MultimodalAutoencoder as MultimodalAutoencoder
from slams_jax.nn.autoencoder import masked_mse as masked_mse
from slams_jax.nn.unet import ScoreUNet as ScoreUNet
from slams_jax.nn.unet import UNet as UNet
from slams_jax.observation.files import read_table as read_table
from slams_jax.observation.files import table_observations as table_observations
from slams_jax.observation.observations import Observation as Observation
from slams_jax.observation.observations import observe as observe
from slams_jax.observation.operators import Channels as Channels
from slams_jax.observation.operators import Coarsen as Coarsen
from slams_jax.observation.operators import Compose as Compose
from slams_jax.observation.operators import Identity as Identity
from slams_jax.observation.operators import Operator as Operator
from slams_jax.observation.operators import Points as Points
from slams_jax.observation.operators import Saturate as Saturate
from slams_jax.observation.operators import Stations as Stations
from slams_jax.observation.operators import Swath as Swath
from slams_jax.observation.operators import TimeIndex as TimeIndex
from slams_jax.observation.operators import TimeSubsample as TimeSubsample
from slams_jax.observation.operators import random_points as random_points
from slams_jax.observation.operators import regular_points as regular_points
from slams_jax.observation.points import to_points as to_points
from slams_jax.pipeline.checkpointing import StageCheckpointer as StageCheckpointer
from slams_jax.pipeline.configuration import AutoencoderSettings as AutoencoderSettings
from slams_jax.pipeline.configuration import ScoreSettings as ScoreSettings
from slams_jax.pipeline.configuration import Settings as Settings
from slams_jax.pipeline.configuration import TrainSettings as TrainSettings
from slams_jax.pipeline.configuration import settings_from_config as settings_from_config
from slams_jax.pipeline.configuration import settings_from_dict as settings_from_dict
from slams_jax.pipeline.configuration import settings_to_dict as settings_to_dict
from slams_jax.pipeline.pretrained import TrainedModel as TrainedModel
from slams_jax.pipeline.pretrained import load_trained as load_trained
from slams_jax.pipeline.training import train_and_evaluate as train_and_evaluate

__version__ = "0.1.0"

__all__ = [
    # the method
    "posterior_sample", "posterior_sample_batch", "SamplingOptions", "Prior", "callable_prior", "latent_observation",
    "SDA", "DPS", "MMPS", "Guidance", "Sampler", "Multistep", "DiffraxPredictorCorrector", "PredictorCorrector", "ReverseSDE",
    "ProbabilityFlow", "predictor_corrector", "GaussianProblem", "ring_problem", "VPSchedule", "MarkovScore", "denoising_loss", "tweedie_denoise",
    # networks
    "MultimodalAutoencoder", "masked_mse", "ScoreUNet", "UNet",
    # observations
    "Observation", "observe", "Operator", "Compose", "Identity", "TimeSubsample", "TimeIndex", "Channels", "Coarsen",
    "Points", "Stations", "Swath", "Saturate", "random_points", "regular_points", "read_table", "table_observations",
    "to_points",
    # data
    "DataSettings", "ModalitySettings", "KolmogorovConfig", "make_kolmogorov_dataset", "simulate_kolmogorov",
    # baselines and metrics
    "interpolation_baseline", "spatial_interpolation", "persistence", "climatology_ensemble", "StaticCovariance",
    "fit_static_covariance", "tune_static_covariance", "CovarianceTuning", "three_dvar", "three_dvar_ensemble",
    "scores_at_observations", "crps_ensemble", "ensemble_mean_bias",
    "ensemble_mean_rmse", "ensemble_scores", "ensemble_spread", "isotropic_energy_spectrum", "rank_histogram",
    "spread_skill_ratio", "wasserstein1", "zonal_power_spectrum",
    # the runtime
    "Settings", "AutoencoderSettings", "ScoreSettings", "TrainSettings", "settings_from_config", "settings_from_dict",
    "settings_to_dict", "StageCheckpointer", "TrainedModel", "load_trained", "train_and_evaluate",
    # errors
    "Error", "ConfigError", "DataError", "MissingFileError", "ObservationError", "CheckpointError", "SamplingError",
]
