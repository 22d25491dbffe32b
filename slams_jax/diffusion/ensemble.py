r"""Ensembles of the diffused variable: one compiled program integrates every trajectory of a request.

A request is a batch of rows, each a PRNG key and that trajectory's flattened observation data
(:mod:`slams_jax.diffusion.likelihood`); each row is integrated by the sampler with the guided noise
predictor of its own data. The program is one module-level ``jax.jit`` whose arguments are the
:class:`~slams_jax.diffusion.prior.Prior` (a pytree: its arrays are inputs, its modules and callables static)
and the rows; the observation structure, guidance, sampler, ``batch_size`` and mesh are static. So a call with
the same kind of prior and observations reuses the compiled program, with new parameters, values, keys or
problems, without any cache of our own.

With a mesh of several devices the rows are a ``shard_map`` over its ``data`` axis (each device integrates
its own rows, padded to a multiple of the device count with repeated rows whose samples are dropped),
unless the prior spreads its score windows over the mesh; then every device sees every row.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from slams_jax import parallel
from slams_jax._types import Array, Float, PRNGKey
from slams_jax.diffusion.guidance import Guidance, Likelihood
from slams_jax.diffusion.likelihood import Structure, forward, likelihood_data, structure
from slams_jax.diffusion.prior import Prior
from slams_jax.diffusion.samplers import Sampler
from slams_jax.errors import SamplingError
from slams_jax.observation.observations import Observation, ObservationError


def _program_prior(prior: Prior) -> Prior:
    # the bound is checked on the host after sampling: the compiled programs do not depend on it
    return dataclasses.replace(prior, bound=None)


@functools.partial(jax.jit, static_argnames=("pairs", "guidance", "sampler", "batch_size", "mesh"))
def _integrate(prior: Prior, keys: Array, data: tuple, *, pairs: Structure, guidance: Guidance, sampler: Sampler,
               batch_size: int | None, mesh: Mesh | None) -> tuple[Array, Array]:
    """``(samples, finite)`` of one trajectory per row of ``keys`` (with its row of ``data``)."""

    def run(prior, keys, *data):
        def one(row):
            k, *d = row
            eps = prior.eps
            if pairs:
                y, std, scale = d
                eps = guidance.guide(prior.eps, prior.schedule,
                                     Likelihood(forward=forward(prior, pairs), y=y, std=std, scale=scale))
            return sampler.sample(k, eps, prior.shape, prior.schedule)

        return jax.lax.map(one, (keys, *data), batch_size=batch_size)

    if mesh is not None:
        # trajectories are independent: no collective, so the varying-axes check has nothing to verify (and
        # diffrax's loops carry constants it would reject)
        specs = (P(),) + (P(parallel.DATA),) * (1 + len(data))
        run = jax.shard_map(run, mesh=mesh, in_specs=specs, out_specs=(P(parallel.DATA), P(parallel.DATA)),
                            check_vma=False)
    return run(prior, keys, *data)


def _run_rows(prior: Prior, pairs: Structure, keys: Array, data: tuple, guidance: Guidance, sampler: Sampler,
              batch_size: int | None, mesh: Mesh | None) -> tuple[np.ndarray, np.ndarray]:
    """Integrate one trajectory per row of ``keys``; host ``(samples, finite)``.

    ``batch_size`` counts the trajectories a device vmaps at once (``jax.lax.map``); ``None`` integrates them one
    after another.
    """
    n = keys.shape[0]
    rows = (keys, *data)
    prior, split = _program_prior(prior), None
    if mesh is not None and mesh.size > 1:
        prior = parallel.replicate(prior, mesh)  # its arrays on every device (every process on a multi-host mesh)
        if prior.spread_windows is None:
            split = mesh
            pad = -n % mesh.size
            rows = tuple(jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]) for a in rows)
            rows = parallel.put(rows, parallel.batch_sharded(mesh))
        else:
            rows = parallel.replicate(rows, mesh)
    x, finite = parallel.to_host(_integrate(prior, rows[0], rows[1:], pairs=pairs, guidance=guidance, sampler=sampler,
                                            batch_size=batch_size, mesh=split))
    return x[:n], finite[:n]


def failure(x: np.ndarray, finite: np.ndarray, sampler: Sampler, bound: float | None, what: str = "") -> str | None:
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


def sample_posterior_prior(
    key: PRNGKey, prior: Prior, observations: Sequence[Observation] | None, n_samples: int,
    guidance: Guidance, sampler: Sampler, batch_size: int | None = None, mesh: Mesh | None = None,
) -> Float[Array, "n ..."]:
    """Samples of the diffused variable, ``(n_samples, *prior.shape)``; unconditional without observations.

    With a ``mesh`` of several devices, the members are split over its devices, unless the prior spreads its
    windows over the mesh; ``None`` runs on the default device.

    Raises:
        SamplingError: A member became non-finite or went beyond ``prior.bound``.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples}: expected at least 1")
    observations = list(observations or [])
    data = likelihood_data(prior, observations) if observations else ()
    data = tuple(jnp.broadcast_to(a, (n_samples,) + a.shape) for a in data)
    x, finite = _run_rows(prior, structure(observations), jax.random.split(key, n_samples), data, guidance,
                          sampler, batch_size, mesh)
    error = failure(x, finite, sampler, prior.bound)
    if error:
        raise SamplingError(error)
    return jnp.asarray(x)


def sample_posterior_problems(
    keys: Sequence[PRNGKey] | Array, prior: Prior, problems: Sequence[Sequence[Observation]], n_samples: int,
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
    pairs = structure(problems[0])
    for p, obs in enumerate(problems[1:], 1):
        if structure(obs) != pairs:
            raise ObservationError(
                f"problem {p}: its observations {[o.name for o in obs]} differ in modality or operator from "
                f"problem 0's {[o.name for o in problems[0]]}; batched problems must share one structure")
    per_problem = [likelihood_data(prior, obs) if pairs else () for obs in problems]
    data = tuple(jnp.repeat(jnp.stack(parts), n_samples, axis=0) for parts in zip(*per_problem))
    rows = jnp.concatenate([jax.random.split(k, n_samples) for k in keys])
    x, finite = _run_rows(prior, pairs, rows, data, guidance, sampler, batch_size, mesh)
    x = x.reshape((len(problems), n_samples) + x.shape[1:])
    finite = finite.reshape((len(problems), n_samples) + finite.shape[1:])
    failures = [failure(x[p], finite[p], sampler, prior.bound, what=f"problem {p}, ") for p in range(len(problems))]
    return x, failures


@jax.jit
def _outputs(prior: Prior, x: Array) -> Array:
    return jax.vmap(prior.output)(x)


def outputs(prior: Prior, x: Array) -> Array:
    """``prior.output`` of every sample of ``x`` (leading axis), e.g. the state in physical units."""
    return _outputs(_program_prior(prior), jnp.asarray(x))


__all__ = ["sample_posterior_prior", "sample_posterior_problems", "outputs", "failure"]
