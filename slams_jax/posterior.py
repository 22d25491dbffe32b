r"""``posterior_sample``: ensembles from :math:`p(x_{1:L} \mid y)` for multimodal observations.

This module only assembles the pieces: a prior noise predictor (a trained latent or pixel prior, composed
over the trajectory from its Markov windows, or any callable ``eps(x, t)``), a Gaussian observation model
built from :class:`~slams_jax.observations.Observation` objects, a guidance method
(:mod:`slams_jax.guidance`) and a sampler (:mod:`slams_jax.samplers`).

**Where observations are compared.** In latent assimilation every observation is compared in its own
modality's physical space: latent trajectory :math:`z_t` :math:`\to` Tweedie estimate :math:`\hat z` :math:`\to`
that modality's decoder head :math:`\to` de-normalization :math:`\to` operator, and the likelihood gradient is
taken through that whole chain. So a coarse, noisy state, sparse rain gauges and a satellite swath all
constrain the same latent trajectory, each with its physical noise level. The paper's setting, observing
the encoded truth in latent space, is :func:`latent_observation` (modality ``latent``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from slams_jax import parallel

from slams_jax._types import Array, Float, PRNGKey
from slams_jax.guidance import SDA, Guidance, Likelihood
from slams_jax.observations import Observation, ObservationError, check_observations
from slams_jax.operators import Operator
from slams_jax.pretrained import TrainedModel, load_trained
from slams_jax.samplers import DiffraxPredictorCorrector, Sampler
from slams_jax.schedules import VPSchedule

EpsFn = Callable[[Float[Array, "..."], Float[Array, ""]], Float[Array, "..."]]


class SamplingError(RuntimeError):
    """Sampling produced non-finite values; the message names the member and the step."""


@dataclasses.dataclass(frozen=True)
class PriorModel:
    """What ``posterior_sample`` needs from a prior: its noise predictor and how to read its variable.

    Attributes:
        eps: Noise predictor ``(x: shape, t: scalar) -> eps`` for one trajectory.
        schedule: The VP schedule the predictor was trained with.
        shape: Shape of one sample of the diffused variable.
        decoders: For each observable modality, ``x -> trajectory (time, lat, lon, channel)`` in physical
            units (the decoder head and de-normalization in latent assimilation; identity for a plain prior).
        scales: Per modality and channel, the typical size of the physical values (SDA's covariance term).
        output: ``x -> physical state trajectory`` returned to the caller.
        cache_key: Identifies the prior for reusing compiled samplers across calls (``None``: no reuse).
        bound: Largest plausible magnitude of a sample (standardized variables: 100); beyond it the
            sampling is reported as diverged. ``None`` disables the check.
        spread_windows: ``eps`` splits the score windows of a trajectory over the devices of this mesh;
            then members are not split over devices.
    """

    eps: EpsFn
    schedule: VPSchedule
    shape: tuple[int, ...]
    decoders: Mapping[str, Callable[[Array], Array]]
    scales: Mapping[str, Sequence[float] | float]
    output: Callable[[Array], Array]
    cache_key: Any = None
    bound: float | None = None
    spread_windows: Mesh | None = None


def trained_prior(model: TrainedModel, length: int, space: str = "latent", spread_windows: Mesh | None = None
                  ) -> PriorModel:
    """The prior of a trained experiment over trajectories of ``length`` states.

    Args:
        model: A trained experiment (:func:`slams_jax.load_trained`).
        length: Number of states of the trajectory to sample (at least the score window).
        space: ``latent`` (SLAMS: the latent prior, observations through the decoder heads) or ``pixel``
            (SDA baseline: the prior over the normalized state; only the state is observable).
        spread_windows: Split the score windows of each trajectory over the devices of this mesh.
    """
    norm, settings = model.normalization, model.settings
    state = settings.data.state.name
    if space == "latent":
        score, params = model.prior("score")
        shape = (length,) + tuple(model.latent_shape())

        def decoder(name):
            return lambda z: norm.denormalize(name, model.decode(z, name))

        decoders = {m.name: decoder(m.name) for m in settings.data.modalities}
        decoders["latent"] = lambda z: z
        scales = {m.name: norm.std[m.name] for m in settings.data.modalities}
        scales["latent"] = 1.0
    elif space == "pixel":
        score, params = model.prior("pixel_score")
        shape = (length,) + tuple(model.grid) + (len(settings.data.state.variables),)
        decoders = {state: lambda x: norm.denormalize(state, x)}
        scales = {state: norm.std[state]}
    else:
        raise ValueError(f"space={space!r}: expected 'latent' or 'pixel'")
    if length < score.window:
        raise ValueError(f"length={length}: the trajectory must hold at least one score window of {score.window} states")
    if spread_windows is not None and spread_windows.size == 1:
        spread_windows = None
    return PriorModel(
        eps=lambda x, t: score.trajectory_eps(params, x, t, spread_windows=spread_windows), schedule=settings.sde,
        shape=shape, decoders=decoders, scales=scales, output=decoders[state],
        cache_key=("trained", id(model), length, space, spread_windows), bound=100.0, spread_windows=spread_windows,
    )


def callable_prior(
    eps: EpsFn, shape: tuple[int, ...], schedule: VPSchedule,
    decoders: Mapping[str, Callable[[Array], Array]] | None = None,
    scales: Mapping[str, Sequence[float] | float] | None = None,
) -> PriorModel:
    """Wrap a plain noise predictor ``eps(x, t)`` over trajectories of ``shape`` (e.g. an analytic prior).

    By default the variable is the physical state itself (modality ``state``, scale 1).
    """
    # compiled samplers are reused for the same eps only when no custom decoder could differ between calls
    cache_key = ("callable", id(eps), tuple(shape), schedule) if decoders is None else None
    decoders = {"state": lambda x: x} if decoders is None else dict(decoders)
    scales = {k: 1.0 for k in decoders} if scales is None else dict(scales)
    output = decoders.get("state", lambda x: x)
    return PriorModel(eps=eps, schedule=schedule, shape=tuple(shape), decoders=decoders, scales=scales, output=output,
                      cache_key=cache_key)


def _scale_array(op: Operator, scale, shape, dtype) -> np.ndarray:
    """The scale of each observed value: the operator applied to a field of per-channel scales."""
    field = jnp.broadcast_to(jnp.abs(jnp.asarray(scale, dtype)), shape)
    return np.abs(np.asarray(op(field)))


def _observable_shapes(prior: PriorModel) -> dict[str, tuple[int, ...]]:
    x = jax.ShapeDtypeStruct(prior.shape, jnp.float32)
    return {name: tuple(jax.eval_shape(decode, x).shape) for name, decode in prior.decoders.items()}


def _forward(prior: PriorModel, pairs: Sequence[tuple[str, Operator]]) -> Callable[[Array], Array]:
    """``x -> `` the concatenated predictions of ``(modality, operator)`` observations, flattened."""
    names = sorted({m for m, _ in pairs})

    def forward(x):
        fields = {name: prior.decoders[name](x) for name in names}  # each head decoded once
        return jnp.concatenate([op(fields[m]).ravel() for m, op in pairs])

    return forward


def _likelihood_data(prior: PriorModel, observations: Sequence[Observation]) -> tuple[Array, Array, Array]:
    shapes = _observable_shapes(prior)
    check_observations(observations, shapes)
    y = np.concatenate([o.values.ravel() for o in observations])
    std = np.concatenate([o.std_array().ravel() for o in observations])
    scale = np.concatenate([
        _scale_array(o.operator, prior.scales[o.modality], shapes[o.modality], jnp.float32).ravel()
        for o in observations
    ])
    return jnp.asarray(y), jnp.asarray(std), jnp.asarray(scale)


def build_likelihood(prior: PriorModel, observations: Sequence[Observation]) -> Likelihood:
    """The flattened Gaussian observation model of ``observations`` for one trajectory of the prior."""
    y, std, scale = _likelihood_data(prior, observations)
    return Likelihood(forward=_forward(prior, [(o.modality, o.operator) for o in observations]), y=y, std=std,
                      scale=scale)


def _failure(x: np.ndarray, finite: np.ndarray, sampler: Sampler, bound: float | None, what: str = "") -> str | None:
    """Why an ensemble ``x`` (members first) failed, or ``None``: a non-finite step or a value beyond ``bound``."""
    if not finite.all():
        member, step = (int(i) for i in np.argwhere(~finite)[0])
        return (
            f"{what}member {member}: the state became NaN or infinite at step {step + 1} of {sampler!r} "
            f"(diffusion time about t={1 - (step + 1) / max(finite.shape[1], 1):.3f}); {int((~finite.all(1)).sum())} "
            f"of {finite.shape[0]} members affected. Check the observations' units and noise std, or use more steps."
        )
    flat = x.reshape(x.shape[0], -1)
    if not np.isfinite(flat).all():
        return f"{what}{sampler!r} returned non-finite samples"
    if bound is not None:
        peak = np.max(np.abs(flat), axis=1)
        if (peak > bound).any():
            member = int(np.argmax(peak > bound))
            return (
                f"{what}member {member}: the sampling diverged (largest |value| {peak[member]:.3g} of a standardized "
                f"variable, bound {bound:g}); {int((peak > bound).sum())} of {len(peak)} members "
                f"affected. The guided process is too stiff for {sampler!r}: use more steps, a larger SDA gamma, "
                "MMPS guidance, or larger observation noise."
            )
    return None


_CACHE: dict = {}
_CACHE_SIZE = 16


def _compiled(prior: PriorModel, structure: tuple, guidance: Guidance, sampler: Sampler, batch_size: int | None,
              mesh: Mesh | None = None):
    """The jitted ensemble sampler ``(keys, *data) -> (samples, finite)``.

    ``data`` holds each trajectory's own observed values, noise stds and scales (one row per key), so new
    values of the same kind of observations, new keys, and several independent problems (e.g. test windows)
    batched together all reuse the compiled program.

    With a ``mesh`` of several devices (and a prior that does not spread its windows), the trajectories are
    a ``shard_map`` over its ``data`` axis: each device integrates its own rows; ``batch_size`` then counts
    the trajectories a device samples at once."""
    if mesh is not None and (mesh.size == 1 or prior.spread_windows is not None):
        mesh = None
    key = None if prior.cache_key is None else (prior.cache_key, structure, guidance, sampler, batch_size, mesh)
    if key is not None and key in _CACHE:
        return _CACHE[key][0]

    def one(row):
        k, *data = row
        if structure:
            y, std, scale = data
            lik = Likelihood(forward=_forward(prior, structure), y=y, std=std, scale=scale)
            eps = guidance.guide(prior.eps, prior.schedule, lik)
        else:
            eps = prior.eps
        return sampler.sample(k, eps, prior.shape, prior.schedule)

    def run(keys, *data):
        return jax.lax.map(one, (keys, *data), batch_size=batch_size)

    if mesh is not None:
        # trajectories are independent: no collective, so the varying-axes check has nothing to verify (and
        # diffrax's loops carry constants it would reject)
        specs = (P(parallel.DATA),) * (4 if structure else 1)
        run = jax.shard_map(run, mesh=mesh, in_specs=specs, out_specs=(P(parallel.DATA), P(parallel.DATA)),
                            check_vma=False)
    run = jax.jit(run)
    if key is not None:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (run, prior)  # the prior is kept alive so that its id is not reused
    return run


def _structure(observations: Sequence[Observation]) -> tuple:
    return tuple((o.modality, o.operator) for o in observations)


def _run_rows(prior: PriorModel, structure: tuple, keys: Array, data: tuple, guidance: Guidance,
              sampler: Sampler, batch_size: int | None, mesh: Mesh | None) -> tuple[np.ndarray, np.ndarray]:
    """Integrate one trajectory per row of ``keys`` (with its row of ``data``); host ``(samples, finite)``."""
    run = _compiled(prior, structure, guidance, sampler, batch_size, mesh)
    n = keys.shape[0]
    rows = (keys, *data)
    if mesh is not None and mesh.size > 1:
        if prior.spread_windows is None:
            pad = -n % mesh.size
            rows = tuple(jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]) for a in rows)
            rows = parallel.put(rows, parallel.batch_sharded(mesh))
        else:
            rows = parallel.replicate(rows, mesh)
    x, finite = parallel.to_host(run(*rows))
    return x[:n], finite[:n]


def sample_posterior_prior(
    key: PRNGKey, prior: PriorModel, observations: Sequence[Observation] | None, n_samples: int,
    guidance: Guidance, sampler: Sampler, batch_size: int | None = None, mesh: Mesh | None = None,
) -> Float[Array, "n ..."]:
    """Samples of the diffused variable, ``(n_samples, *prior.shape)``; unconditional without observations.

    With a ``mesh``, the members are split over its devices (padded to a multiple of the device count with
    repeated keys, whose samples are dropped), unless the prior spreads its windows over the mesh.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples}: expected at least 1")
    observations = list(observations or [])
    data = _likelihood_data(prior, observations) if observations else ()
    data = tuple(jnp.broadcast_to(a, (n_samples,) + a.shape) for a in data)
    x, finite = _run_rows(prior, _structure(observations), jax.random.split(key, n_samples), data, guidance,
                          sampler, batch_size, mesh)
    error = _failure(x, finite, sampler, prior.bound)
    if error:
        raise SamplingError(error)
    return jnp.asarray(x)


def sample_posterior_problems(
    keys: Sequence[PRNGKey] | Array, prior: PriorModel, problems: Sequence[Sequence[Observation]], n_samples: int,
    guidance: Guidance, sampler: Sampler, batch_size: int | None = None, mesh: Mesh | None = None,
) -> tuple[np.ndarray, list[str | None]]:
    """Ensembles of the diffused variable for several independent problems in one compiled program.

    Problem ``p`` (its own observations, all problems of the same structure: modalities and operators) is
    sampled with ``keys[p]`` exactly as :func:`sample_posterior_prior` samples it alone.

    Returns:
        ``(samples (problem, n_samples, *prior.shape), failures)``: per problem ``None``, or why it failed (a
        non-finite step or a divergence); a failed problem does not affect the others.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples}: expected at least 1")
    problems = [list(p) for p in problems]
    keys = jnp.asarray(keys)
    if not problems or keys.shape[0] != len(problems):
        raise ValueError(f"{len(problems)} problems and {keys.shape[0]} keys: expected at least one problem and "
                         "one key per problem")
    structure = _structure(problems[0])
    for p, obs in enumerate(problems[1:], 1):
        if _structure(obs) != structure:
            raise ObservationError(
                f"problem {p}: its observations {[o.name for o in obs]} differ in modality or operator from "
                f"problem 0's {[o.name for o in problems[0]]}; batched problems must share one structure")
    per_problem = [_likelihood_data(prior, obs) if structure else () for obs in problems]
    data = tuple(jnp.repeat(jnp.stack(parts), n_samples, axis=0) for parts in zip(*per_problem))
    rows = jnp.concatenate([jax.random.split(k, n_samples) for k in keys])
    x, finite = _run_rows(prior, structure, rows, data, guidance, sampler, batch_size, mesh)
    x = x.reshape((len(problems), n_samples) + x.shape[1:])
    finite = finite.reshape((len(problems), n_samples) + finite.shape[1:])
    failures = [_failure(x[p], finite[p], sampler, prior.bound, what=f"problem {p}, ") for p in range(len(problems))]
    return x, failures


def latent_observation(
    key: PRNGKey, model: TrainedModel, truth: Mapping[str, Float[Array, "time lat lon channel"]],
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
        model: The trained experiment.
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
    key: PRNGKey,
    prior: TrainedModel | EpsFn | str | os.PathLike,
    observations: Sequence[Observation],
    *,
    n_samples: int = 1,
    length: int | None = None,
    shape: tuple[int, ...] | None = None,
    schedule: VPSchedule | None = None,
    space: str = "latent",
    guidance: Guidance = SDA(),
    sampler: Sampler = DiffraxPredictorCorrector(steps=64, corrections=1, tau=1.0),
    batch_size: int | None = None,
    like=None,
    return_latent: bool = False,
    divergence_bound: float | None = 100.0,
    mesh: Mesh | None = None,
):
    """Sample an ensemble of trajectories from the posterior given observations.

    Args:
        key: PRNG key; the same key gives the same ensemble.
        prior: A trained experiment (:class:`~slams_jax.pretrained.TrainedModel`, or its workdir path), or a
            plain noise predictor ``eps(x, t)`` of one trajectory ``x`` of ``shape`` (then ``shape`` and
            ``schedule`` are required and the observable modality is ``state`` = ``x`` itself).
        observations: :class:`~slams_jax.observations.Observation` objects, any mix of modalities.
        n_samples: Ensemble size (members are a ``vmap`` over keys, split over the devices).
        length: Number of states of the trajectory (trained priors; any length >= the score window).
        shape: Shape of one trajectory (callable priors).
        schedule: VP schedule of a callable prior.
        space: ``latent`` (SLAMS) or ``pixel`` (the SDA pixel-space prior) for a trained experiment.
        guidance: :class:`~slams_jax.guidance.SDA` (default), :class:`~slams_jax.guidance.DPS` or
            :class:`~slams_jax.guidance.MMPS`.
        sampler: A :class:`~slams_jax.samplers.Sampler`; default the diffrax predictor-corrector, 64 steps,
            1 Langevin correction, tau 1 (the reference's settings).
        batch_size: Members sampled at once on each device (memory); default all.
        like: Optional xarray ``DataArray``/``Dataset`` with the truth's ``time`` and spatial coordinates; the
            result is then an ``xarray.DataArray`` ``(member, time, lat, lon, channel)``.
        return_latent: Also return the samples of the diffused variable (latent for SLAMS).
        divergence_bound: For a trained prior, the largest plausible magnitude of a standardized latent (or
            normalized pixel) value; a member beyond it is reported as diverged. ``None`` disables the check.
        mesh: Devices to use (:func:`slams_jax.parallel.data_mesh`); default every visible device. Members
            are split over them; with fewer members than devices, a trained prior's score windows are.

    Returns:
        The state ensemble in physical units, ``(n_samples, time, lat, lon, channel)`` (for a callable prior:
        ``(n_samples, *shape)``); with ``return_latent``, a pair ``(state, latent)``.

    Raises:
        ObservationError: An observation does not fit (unknown modality, wrong shape, NaN values, a time
            index past the trajectory, a station outside the grid...), named in the message.
        SamplingError: A member became non-finite; the message names the member and the step.
    """
    prior_model, channels, mesh = _prior_model(prior, length, shape, schedule, space, n_samples, divergence_bound,
                                               mesh)
    observations = [o for o in observations]
    if not observations:
        raise ObservationError("posterior_sample: no observations given (use TrainedModel.sample_prior for the prior)")
    x = sample_posterior_prior(key, prior_model, observations, n_samples, guidance, sampler, batch_size, mesh)
    state = _outputs(prior_model, x)
    if like is not None:
        state = to_xarray(np.asarray(state), like, channels)
    return (state, x) if return_latent else state


def _prior_model(prior, length, shape, schedule, space, trajectories, divergence_bound, mesh):
    """``(PriorModel, state channel names or None, mesh)`` for ``trajectories`` trajectories at once."""
    if isinstance(prior, (str, os.PathLike)):
        prior = load_trained(prior)
    mesh = parallel.data_mesh() if mesh is None else mesh
    if isinstance(prior, TrainedModel):
        if length is None:
            raise ValueError("posterior_sample: give length= (states of the trajectory) for a trained prior")
        window = (prior.settings.score if space == "latent" else prior.settings.pixel_score).window
        spread = mesh if trajectories < mesh.size and length - window + 1 > 1 else None
        prior_model = dataclasses.replace(trained_prior(prior, length, space, spread), bound=divergence_bound)
        return prior_model, prior.settings.data.state.variables, mesh
    if callable(prior):
        if shape is None or schedule is None:
            raise ValueError("posterior_sample: a callable prior eps(x, t) needs shape= and schedule=")
        return callable_prior(prior, shape, schedule), None, mesh
    raise TypeError(f"prior: expected a TrainedModel, a workdir path or a callable eps(x, t), got {type(prior)}")


_OUTPUTS: dict = {}


def _outputs(prior: PriorModel, x: Array) -> Array:
    """``prior.output`` over the leading axis of ``x`` (compiled once per prior)."""
    key = prior.cache_key
    fn = _OUTPUTS.get(key) if key is not None else None
    if fn is None:
        fn = jax.jit(jax.vmap(prior.output))
        if key is not None:
            if len(_OUTPUTS) >= _CACHE_SIZE:
                _OUTPUTS.pop(next(iter(_OUTPUTS)))
            _OUTPUTS[key] = fn
    return fn(jnp.asarray(x))


def posterior_sample_batch(
    keys: Sequence[PRNGKey] | Array,
    prior: TrainedModel | EpsFn | str | os.PathLike,
    problems: Sequence[Sequence[Observation]],
    *,
    n_samples: int = 1,
    length: int | None = None,
    shape: tuple[int, ...] | None = None,
    schedule: VPSchedule | None = None,
    space: str = "latent",
    guidance: Guidance = SDA(),
    sampler: Sampler = DiffraxPredictorCorrector(steps=64, corrections=1, tau=1.0),
    batch_size: int | None = None,
    divergence_bound: float | None = 100.0,
    mesh: Mesh | None = None,
    errors: str = "raise",
):
    """Posterior ensembles for several independent problems (e.g. test windows) in one compiled program.

    Every problem is a list of observations of one trajectory; all share one structure (the same modalities
    and operators, any values and noise stds), and problem ``p`` gets exactly the ensemble that
    ``posterior_sample(keys[p], prior, problems[p], ...)`` returns. On a CPU or a GPU that a single ensemble
    leaves idle, the batch costs much less than the problems one after another; on several devices, the
    trajectories of all problems are split over them.

    Args:
        keys: One PRNG key per problem.
        prior, n_samples, length, shape, schedule, space, guidance, sampler, batch_size, divergence_bound,
            mesh: As for :func:`posterior_sample`.
        problems: One list of :class:`~slams_jax.observations.Observation` per problem.
        errors: ``raise``: a failed (non-finite or diverged) problem raises :class:`SamplingError` naming it;
            ``return``: return ``(states, failures)`` with ``failures[p]`` ``None`` or the reason (a failed
            problem's states are NaN).

    Returns:
        States ``(problem, n_samples, time, lat, lon, channel)`` in physical units (callable priors:
        ``(problem, n_samples, *shape)``); with ``errors='return'`` a pair ``(states, failures)``.
    """
    if errors not in ("raise", "return"):
        raise ValueError(f"errors={errors!r}: expected 'raise' or 'return'")
    problems = [list(p) for p in problems]
    if any(not p for p in problems):
        raise ObservationError(f"posterior_sample_batch: problem {[len(p) for p in problems].index(0)} has no "
                               "observations")
    prior_model, _, mesh = _prior_model(prior, length, shape, schedule, space, len(problems) * n_samples,
                                        divergence_bound, mesh)
    x, failures = sample_posterior_problems(keys, prior_model, problems, n_samples, guidance, sampler, batch_size,
                                            mesh)
    bad = [f for f in failures if f]
    if bad and errors == "raise":
        raise SamplingError(bad[0])
    flat = np.where(np.isfinite(x), x, 0.0).reshape((-1,) + x.shape[2:])
    state = np.array(_outputs(prior_model, flat))
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
    "posterior_sample", "posterior_sample_batch", "PriorModel", "trained_prior", "callable_prior",
    "build_likelihood", "sample_posterior_prior", "sample_posterior_problems", "latent_observation", "SamplingError",
    "to_xarray",
]
