r"""``posterior_sample``: ensembles from :math:`p(x_{1:L} \mid y)` for multimodal observations.

This module only assembles the pieces: a prior (:mod:`slams_jax.diffusion.prior`: a trained model's latent or
pixel prior, composed over the trajectory from its Markov windows, or any callable ``eps(x, t)``), the
Gaussian observation model of :class:`~slams_jax.observation.observations.Observation` objects
(:mod:`slams_jax.diffusion.likelihood`), a guidance method (:mod:`slams_jax.diffusion.guidance`) and a sampler
(:mod:`slams_jax.diffusion.samplers`), run by one compiled program (:mod:`slams_jax.diffusion.ensemble`). The
sampling settings both entry points share are one record, :class:`SamplingOptions`.

Every observation is compared in its own modality's physical space, through that modality's decoder head.
The paper's setting, observing the encoded truth in latent space, is :func:`latent_observation` (modality
``latent``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from slams_jax._types import Array, ArrayLike, Float, PRNGKey
from slams_jax.diffusion.ensemble import outputs, sample_posterior_prior, sample_posterior_problems
from slams_jax.diffusion.guidance import MMPS, Guidance
from slams_jax.diffusion.prior import resolve_prior, with_precision
from slams_jax.diffusion.multistep import Multistep
from slams_jax.diffusion.samplers import Sampler
from slams_jax.errors import SamplingError
from slams_jax.observation.files.stations import as_observations
from slams_jax.observation.observations import Observation, ObservationError
from slams_jax.observation.operators import Operator


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """How ``posterior_sample`` and ``posterior_sample_batch`` sample; any field is also their keyword.

    Attributes:
        guidance: :class:`~slams_jax.diffusion.guidance.MMPS` (default: conjugate gradients to a 1% residual,
            at most 16 iterations), ``SDA`` or ``DPS``.
        sampler: A :class:`~slams_jax.diffusion.samplers.Sampler`; default
            :class:`~slams_jax.diffusion.multistep.Multistep`, the second-order probability-flow sampler with 32
            steps. Together they sample linear-Gaussian posteriors within the sampling error of 4096 members
            (``experiments/gaussian_exactness.py``; docs/assimilation.md has the table).
        batch_size: Members sampled at once on each device (memory); ``None``: all.
        divergence_bound: The largest plausible magnitude of a standardized latent, normalized pixel or (for a
            callable prior) diffused value; a member beyond it, at any step, stops the sampling with a
            :class:`SamplingError`. ``None`` disables the check (non-finite values are always caught).
        mesh: Devices to use (:func:`slams_jax.parallel.data_mesh`); ``None``: every visible device. Members
            are split over them; with fewer members than devices, a trained prior's score windows are.
        progress: Write a progress line (steps done, trajectories, elapsed) to standard error.
        precision: ``f32``, ``bf16`` (the networks' convolutions on bfloat16 operands, summed in float32;
            parameters, sampler state, likelihood and solves in float32) or ``auto`` (``bf16`` on accelerators,
            ``f32`` on a CPU): :func:`~slams_jax.diffusion.prior.with_precision`. The returned state is decoded
            in float32.
    """

    guidance: Guidance = MMPS()
    sampler: Sampler = Multistep()
    batch_size: int | None = None
    divergence_bound: float | None = 100.0
    mesh: Mesh | None = None
    progress: bool = False
    precision: str = "f32"

    @classmethod
    def merge(cls, options: SamplingOptions | None, overrides: Mapping[str, Any], caller: str) -> SamplingOptions:
        """``options`` (default: the defaults) with the fields named in ``overrides`` replaced."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"{caller}: unexpected keyword {', '.join(map(repr, unknown))}; the sampling options "
                            f"are {sorted(names)}")
        return dataclasses.replace(options or cls(), **overrides)


class _Encodes(Protocol):
    def encode(self, values: Mapping[str, Array]) -> Array: ...


def latent_observation(
    key: PRNGKey, model: _Encodes, truth: Mapping[str, Float[ArrayLike, "time lat lon channel"]],
    operator: Operator, std: float, name: str = "",
) -> Observation:
    """The paper's setting: observe the **encoded truth** in the standardized latent space.

    ``values = operator(encode(truth)) + std * noise``, compared with ``operator(z_hat)`` during sampling.
    Provided to reproduce the paper's numbers; it flatters the method. The encoder sees the complete,
    noise-free, full-resolution truth of every modality, so even a "coarse" or "sparse" latent observation
    carries information about scales and places that a real instrument never measured, and its noise is
    added in latent units rather than to the physical measurement. Real observations can only be compared in
    physical space (the default: any other modality name).

    Args:
        key: PRNG key of the noise.
        model: The trained experiment (anything with ``encode(normalized modalities) -> latent``).
        truth: Normalized trajectories ``(time, lat, lon, channel)`` of every modality (NaN where missing).
        operator: Operator applied to the latent trajectory ``(time, h, w, latent)``.
        std: Noise standard deviation in standardized latent units.
    """
    z = model.encode({k: jnp.asarray(v, jnp.float32) for k, v in truth.items()})
    clean = operator(z)
    values = clean + std * jax.random.normal(key, clean.shape, clean.dtype)
    return Observation(modality="latent", operator=operator, values=np.asarray(values), std=std,
                       name=name or f"latent:{operator!r}")


def posterior_sample(
    key: PRNGKey, prior: Any, observations: Sequence[Observation] | Any, *, n_samples: int = 1,
    length: int | None = None, shape: tuple[int, ...] | None = None, schedule=None, space: str = "latent",
    like=None, return_latent: bool = False, options: SamplingOptions | None = None, times=None, grid=None,
    modalities: Mapping[str, Sequence[str]] | None = None, **settings: Any,
):
    """Sample an ensemble of trajectories from the posterior given observations.

    Args:
        key: PRNG key; the same key gives the same ensemble.
        prior: A trained experiment (:func:`slams_jax.load_trained`; any
            :class:`~slams_jax.diffusion.prior.PosteriorPrior`), a :class:`~slams_jax.diffusion.prior.Prior`,
            or a plain noise predictor ``eps(x, t)`` of one trajectory ``x`` of ``shape`` (then
            ``shape`` and ``schedule`` are required and the observable modality is ``state`` = ``x`` itself).
        observations: :class:`~slams_jax.observation.observations.Observation` objects, any mix of modalities;
            a pandas DataFrame (an observation table, :func:`slams_jax.table_observations`) may stand for some
            of them, or for all: it needs ``times`` and ``grid`` (or ``like``) and is matched with the default
            tolerance, its stds from its ``std`` column (else build its observations with
            :func:`~slams_jax.table_observations` first).
        n_samples: Ensemble size (members are mapped over keys and split over the devices).
        length: Number of states of the trajectory (trained priors; any length >= the score window).
        shape, schedule: Shape of one trajectory and VP schedule of a callable prior.
        space: ``latent`` (SLAMS) or ``pixel`` (the SDA pixel-space prior) for a trained experiment.
        like: Optional xarray ``DataArray``/``Dataset`` with the truth's ``time`` and spatial coordinates; the
            result is then an ``xarray.DataArray`` ``(member, time, lat, lon, channel)``.
        return_latent: Also return the samples of the diffused variable (latent for SLAMS).
        options, **settings: The :class:`SamplingOptions` (``guidance``, ``sampler``, ``batch_size``,
            ``divergence_bound``, ``mesh``), as a record and/or as keywords (keywords win).
        times, grid: For observation tables: the trajectory's state times ``(time,)`` and its grid, a pair
            ``(lat, lon)`` or an xarray object with those coordinates (and ``time``); default: ``like``'s, else
            the grid a trained model was trained on (``TrainedModel.coordinates``, gridded data).
        modalities: For observation tables: ``{modality: variable names}``; default: a trained model's
            modalities (``prior.settings.data.modalities``), else the prior's state channels.

    Returns:
        The state ensemble in physical units, ``(n_samples, time, lat, lon, channel)`` (for a callable prior:
        ``(n_samples, *shape)``); with ``return_latent``, a pair ``(state, latent)``.

    Raises:
        ObservationError: An observation does not fit (unknown modality, wrong shape, NaN values, a time
            index past the trajectory, a station outside the grid...), named in the message.
        SamplingError: A member became non-finite or diverged; the message names the member and the step.
        TypeError: ``prior`` is a path (load it with :func:`slams_jax.load_trained` first).
    """
    o = SamplingOptions.merge(options, settings, "posterior_sample")
    prior_obj, mesh = resolve_prior(prior, length=length, shape=shape, schedule=schedule, space=space,
                                    trajectories=n_samples, divergence_bound=o.divergence_bound, mesh=o.mesh)
    if grid is None and like is None and getattr(prior, "coordinates", None):  # a model trained on gridded data
        grid = (prior.coordinates["latitude"], prior.coordinates["longitude"])
    observations = as_observations(observations, grid=like if grid is None else grid, times=times,
                                   modalities=_table_modalities(prior, prior_obj, modalities))
    if not observations:
        raise ObservationError("posterior_sample: no observations given (use TrainedModel.sample_prior for the prior)")
    x = sample_posterior_prior(key, with_precision(prior_obj, o.precision), observations, n_samples, o.guidance,
                               o.sampler, o.batch_size, mesh, o.progress)
    state = outputs(prior_obj, x)
    if like is not None:
        state = to_xarray(np.asarray(state), like, prior_obj.channels)
    return (state, x) if return_latent else state


def _table_modalities(prior: Any, prior_obj, modalities) -> dict[str, tuple[str, ...]]:
    """The variables an observation table may name, per observable modality of the prior."""
    if modalities is not None:
        return {str(m): tuple(v) for m, v in modalities.items()}
    data = getattr(getattr(prior, "settings", None), "data", None)  # a trained model knows every modality's
    if data is not None:
        return {m.name: tuple(m.variables) for m in data.modalities if m.name in prior_obj.observables}
    return {prior_obj.state: tuple(prior_obj.channels)} if prior_obj.state and prior_obj.channels else {}


def posterior_sample_batch(
    keys: Sequence[PRNGKey] | Array, prior: Any, problems: Sequence[Sequence[Observation]], *, n_samples: int = 1,
    length: int | None = None, shape: tuple[int, ...] | None = None, schedule=None, space: str = "latent",
    errors: str = "raise", options: SamplingOptions | None = None, **settings: Any,
):
    """Posterior ensembles for several independent problems (e.g. test windows) in one compiled program.

    Every problem is a list of observations of one trajectory; all share one structure (the same modalities
    and operators, any values and noise stds), and problem ``p`` gets exactly the ensemble that
    ``posterior_sample(keys[p], prior, problems[p], ...)`` returns. On a CPU or a GPU that a single ensemble
    leaves idle, the batch costs much less than the problems one after another; on several devices, the
    trajectories of all problems are split over them.

    Args:
        keys: One PRNG key per problem.
        prior, n_samples, length, shape, schedule, space, options, settings: As for :func:`posterior_sample`.
        problems: One list of :class:`~slams_jax.observation.observations.Observation` per problem.
        errors: ``raise``: a failed (non-finite or diverged) problem raises :class:`SamplingError` naming it;
            ``return``: return ``(states, failures)`` with ``failures[p]`` ``None`` or the reason (a failed
            problem's states are NaN).

    Returns:
        States ``(problem, n_samples, time, lat, lon, channel)`` in physical units (callable priors:
        ``(problem, n_samples, *shape)``); with ``errors='return'`` a pair ``(states, failures)``.
    """
    o = SamplingOptions.merge(options, settings, "posterior_sample_batch")
    if errors not in ("raise", "return"):
        raise ValueError(f"errors={errors!r}: expected 'raise' or 'return'")
    problems = [list(p) for p in problems]
    if any(not p for p in problems):
        raise ObservationError(f"posterior_sample_batch: problem {[len(p) for p in problems].index(0)} has no "
                               "observations")
    prior_obj, mesh = resolve_prior(prior, length=length, shape=shape, schedule=schedule, space=space,
                                    trajectories=len(problems) * n_samples, divergence_bound=o.divergence_bound,
                                    mesh=o.mesh)
    x, failures = sample_posterior_problems(keys, with_precision(prior_obj, o.precision), problems, n_samples,
                                            o.guidance, o.sampler, o.batch_size, mesh, o.progress)
    bad = [f for f in failures if f]
    if bad and errors == "raise":
        raise SamplingError(bad[0])
    flat = np.where(np.isfinite(x), x, 0.0).reshape((-1,) + x.shape[2:])
    state = np.array(outputs(prior_obj, flat))
    state = state.reshape(x.shape[:2] + state.shape[1:])
    for p, failure in enumerate(failures):
        if failure:
            state[p] = np.nan
    return (state, failures) if errors == "return" else state


def to_xarray(samples: np.ndarray, like, channels: Sequence[str] | None = None):
    """An ensemble ``(member, time, lat, lon, channel)`` as a DataArray with the coordinates of ``like``."""
    import xarray as xr

    dims = [d for d in like.dims if d not in ("channel", "member", "trajectory")]
    if len(dims) != samples.ndim - 2:
        raise ValueError(f"like has dims {tuple(like.dims)}; expected time and {samples.ndim - 3} spatial dims")
    coords = {d: like[d].values for d in dims if d in like.coords}
    for d, n in zip(dims, samples.shape[1:-1]):
        if d in coords and len(coords[d]) != n:
            raise ValueError(f"like.{d} has {len(coords[d])} values, the samples {n}")
    channel = list(channels) if channels is not None else list(range(samples.shape[-1]))
    return xr.DataArray(samples, dims=["member", *dims, "channel"],
                        coords={**coords, "member": np.arange(samples.shape[0]), "channel": channel},
                        name="analysis")


__all__ = [
    "posterior_sample", "posterior_sample_batch", "SamplingOptions", "latent_observation", "SamplingError",
    "to_xarray",
]
