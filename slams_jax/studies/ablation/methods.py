"""The methods: classical reconstructions and posterior ensembles, each scored against the truth.

- ``interpolation``: bilinear from coarse fields, inverse distance from points, linear in time;
- ``persistence``: the same reconstruction, held constant in time from the latest observed state;
- ``climatology``: an ensemble of random training states (a probabilistic climatology);
- ``3dvar``: 3D-Var/OI with a static background-error covariance fitted on the training split, background
  the climatological mean, an RML ensemble;
- ``score``: posterior ensembles with a trained prior, every window of a setting in one compiled program
  (:func:`slams_jax.diffusion.posterior.posterior_sample_batch`), guided and integrated by the pipeline's
  one factory (:func:`~slams_jax.pipeline.assimilation.make_guidance`,
  :func:`~slams_jax.pipeline.assimilation.make_sampler`) from ``config.sampling``.

Every ensemble is ``(member, time, lat, lon, channel)`` in physical units.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax.baselines.interpolation import spatial_interpolation
from slams_jax.baselines.references import climatology_ensemble, persistence
from slams_jax.baselines.variational import three_dvar_ensemble
from slams_jax.diffusion.posterior import latent_observation, posterior_sample_batch
from slams_jax.metrics import ensemble_scores
from slams_jax.observation.observations import Observation
from slams_jax.pipeline.assimilation import make_guidance, make_sampler
from slams_jax.pipeline.pretrained import TrainedModel
from slams_jax.studies.ablation.data import StudyData
from slams_jax.studies.ablation.observations import latent_setting, state_operator
from slams_jax.studies.ablation.settings import KINDS, AblationSettings, StudyError
from slams_jax.studies.ablation.sweeps import Setting

METRICS = ("rmse", "bias", "spread", "spread_skill", "crps", "wasserstein1")


@dataclasses.dataclass
class Context:
    """What every method of a study draws on."""

    settings: AblationSettings
    data: StudyData
    models: dict[str, TrainedModel]
    climatology: np.ndarray  # (lat, lon, channel), physical
    covariance: Any  # variational.StaticCovariance, or None when no method needs it


def run_method(ctx: Context, name: str, key, window: int, state_obs: Observation) -> Any:
    """The ensemble ``(member, time, lat, lon, channel)`` (physical units) of classical method ``name``
    on test window ``window``, from its state observation."""
    s, data = ctx.settings, ctx.data
    kind = s.methods[name].kind
    shape = data.truths[window][data.state].shape
    members = s.study.members
    periodic = s.threedvar.periodic
    if kind == "interpolation":
        return spatial_interpolation([state_obs], shape, climatology=ctx.climatology, periodic=periodic)[None]
    if kind == "persistence":
        return persistence([state_obs], shape, climatology=ctx.climatology, periodic=periodic)[None]
    if kind == "climatology":
        return climatology_ensemble(key, data.train_states, members, shape[0])
    if kind == "3dvar":
        background = np.broadcast_to(ctx.climatology, shape).astype(np.float32)
        return three_dvar_ensemble(key, [state_obs], background, ctx.covariance, members,
                                   tol=s.threedvar.tol, maxiter=s.threedvar.maxiter)
    if kind == "score":
        raise StudyError(f"config.methods.{name}: a score method is sampled by run_score")
    raise StudyError(f"config.methods.{name}.kind={kind!r}: expected one of {KINDS}")


def score_inputs(ctx: Context, name: str, key, window: int, setting: Setting, state_obs: Observation,
                 aux_obs: Mapping[str, Observation]) -> tuple[Any, list[Observation]]:
    """``(sampling key, observations)`` of score method ``name`` on one window: the state and auxiliary
    observations (``observe="physical"``), or the encoded truth observed in latent space (``"latent"``)."""
    spec = ctx.settings.methods[name]
    model = ctx.models[spec.model]
    k_obs, k_sample = jax.random.split(key)
    if spec.observe == "latent":
        if spec.space != "latent":
            raise StudyError(f"config.methods.{name}: observe='latent' needs space='latent'")
        lat = latent_setting(setting, model.settings.autoencoder.downsample)
        op = state_operator(lat, model.latent_shape()[:2], ctx.settings.study.every)
        truth = ctx.data.truths[window]
        normalized = {m.name: model.normalization.normalize(m.name, truth[m.name])
                      for m in model.settings.data.modalities}
        return k_sample, [latent_observation(k_obs, model, normalized, op, setting.std, name=f"latent:{lat.label}")]
    if spec.observe == "physical":
        unknown = [m for m in spec.aux if m not in aux_obs]
        if unknown:
            raise StudyError(f"config.methods.{name}.aux={tuple(spec.aux)}: {unknown} not in config.aux "
                             f"({sorted(aux_obs)})")
        return k_sample, [state_obs] + [aux_obs[m] for m in spec.aux]
    raise StudyError(f"config.methods.{name}.observe={spec.observe!r}: expected 'physical' or 'latent'")


def run_score(ctx: Context, name: str, keys: Sequence[Any], problems: Sequence[Sequence[Observation]]
              ) -> list[tuple[np.ndarray | None, str]]:
    """Score method ``name`` on several windows at once (one compiled program): per window ``(ensemble
    (member, time, lat, lon, channel) in physical units, "")``, or ``(None, why it failed)``."""
    spec, a = ctx.settings.methods[name], ctx.settings.sampling
    states, failures = posterior_sample_batch(
        jnp.stack(keys), ctx.models[spec.model], problems, n_samples=ctx.settings.study.members,
        length=ctx.settings.study.length, space=spec.space, guidance=make_guidance(a), sampler=make_sampler(a),
        divergence_bound=a.divergence_bound or None, errors="return", progress=True)
    return [(None, f.splitlines()[0][:300]) if f else (np.asarray(x, np.float32), "") for x, f in zip(states, failures)]


def score_rows(ens: Any, truth: np.ndarray, variables: Sequence[str], weights: np.ndarray | None = None
               ) -> dict[str, dict[str, float]]:
    """Per channel and their mean (``all``): the ensemble scores (spread and its ratio NaN for one member),
    weighted by ``weights`` ``(lat,)`` (cell areas on a geographic grid) when given.

    Args:
        ens: ``(member, time, lat, lon, channel)`` ensemble; truth: ``(time, lat, lon, channel)``.
    """
    w = None if weights is None else jnp.asarray(weights, jnp.float32)
    scores = ensemble_scores(jnp.asarray(ens), jnp.asarray(truth), tuple(variables), w)
    if ens.shape[0] == 1:
        for s in scores.values():
            s["spread"] = s["spread_skill"] = float("nan")
    scores["all"] = {k: float(np.mean([scores[v][k] for v in variables])) for k in METRICS}
    return scores


__all__ = ["METRICS", "Context", "run_method", "score_inputs", "run_score", "score_rows"]
