r"""The ablation study: every method on the same observations, swept over coarsening, noise and sparsity.

``python experiments/ablation.py --config=configs/ablation.py --workdir=runs/ablation`` (or ``python -m
slams_jax.studies.ablation ...``; ``:quick`` for a smoke run) does, on a 2-core CPU or on accelerators alike:

1. trains the models that the configured methods need (one workdir per model under ``WORKDIR/models/``,
   with its own modalities; a rerun resumes or reuses them) on the shared dataset (``WORKDIR/data``);
2. takes ``study.windows`` test windows of ``study.length`` states and, for every setting of the sweeps
   (coarsening factor r at a fixed noise, noise std at a fixed r, gap g of a regular lattice of points at a
   fixed noise; the state is observed every ``study.every`` steps), draws **one** set of observations per
   window and setting with a fixed key, which every method then receives:

   - ``interpolation``: bilinear from coarse fields, inverse distance from points, linear in time;
   - ``persistence``: the same reconstruction, held constant in time from the latest observed state;
   - ``climatology``: an ensemble of random training states (a probabilistic climatology);
   - ``3dvar``: 3D-Var/OI with a static background-error covariance fitted on the training split
     (:mod:`slams_jax.baselines.variational`), background = the climatological mean, an RML ensemble;
   - ``score`` methods: posterior ensembles with a trained prior (every window of a setting in one program,
     :func:`slams_jax.posterior_sample_batch`; the auxiliary instruments are fixed): the pixel-space SDA prior,
     or latent SLAMS with 0, 1 or 2 auxiliary modalities (observed as configured in ``config.aux``); with
     ``observe="latent"`` the paper's own setting (the encoded truth observed in latent space, the
     coarsening factor and gap divided by the autoencoder's downsampling);

3. scores each ensemble against the truth (RMSE and bias of the mean, spread, spread-skill ratio, fair CRPS,
   Wasserstein-1; per channel and their mean over channels) and writes

   - ``results.jsonl`` (appended as it goes, so a killed study resumes where it stopped) and ``results.csv``:
     every number;
   - ``summary.csv``: per sweep, severity, method and channel, the mean over windows with a t confidence
     interval (``study.confidence``);
   - ``table.md``: RMSE, CRPS and spread-skill ratio per method against severity;
   - ``figures/<sweep>.png`` (metric against severity per method, with the intervals) and
     ``figures/maps.png`` (truth, observations and each method's mean for ``study.example_setting``).
"""

from slams_jax.studies.ablation.data import StudyData as StudyData, load_study_data as load_study_data
from slams_jax.studies.ablation.data import window_starts as window_starts
from slams_jax.studies.ablation.methods import METRICS as METRICS, Context as Context, run_method as run_method
from slams_jax.studies.ablation.methods import run_score as run_score, score_inputs as score_inputs
from slams_jax.studies.ablation.methods import score_rows as score_rows
from slams_jax.studies.ablation.models import model_config as model_config, needed_models as needed_models
from slams_jax.studies.ablation.models import train_models as train_models
from slams_jax.studies.ablation.observations import aux_observation as aux_observation
from slams_jax.studies.ablation.observations import aux_operator as aux_operator
from slams_jax.studies.ablation.observations import latent_setting as latent_setting
from slams_jax.studies.ablation.observations import state_observation as state_observation
from slams_jax.studies.ablation.observations import state_operator as state_operator
from slams_jax.studies.ablation.results import Recorder as Recorder, read_results as read_results
from slams_jax.studies.ablation.running import run_study as run_study
from slams_jax.studies.ablation.settings import KINDS as KINDS, SWEEPS as SWEEPS
from slams_jax.studies.ablation.settings import AblationSettings as AblationSettings
from slams_jax.studies.ablation.settings import MethodSpec as MethodSpec, ModelSpec as ModelSpec
from slams_jax.studies.ablation.settings import StudyError as StudyError, StudySettings as StudySettings
from slams_jax.studies.ablation.settings import ThreeDVarSettings as ThreeDVarSettings
from slams_jax.studies.ablation.settings import ablation_settings as ablation_settings
from slams_jax.studies.ablation.settings import check_settings as check_settings
from slams_jax.studies.ablation.sweeps import Setting as Setting, run_order as run_order
from slams_jax.studies.ablation.sweeps import study_settings as study_settings
from slams_jax.studies.ablation.tables import markdown_table as markdown_table, summarize as summarize
