r"""Ensembles of the diffused variable: compiled programs integrate every trajectory of a request.

A request is a batch of rows, each a PRNG key and that trajectory's flattened observation data
(:mod:`slams_jax.diffusion.likelihood`); each row is integrated by the sampler with the guided noise
predictor of its own data. All rows of a device run at once, ``vmap``-ed (``batch_size`` bounds how many:
then ``jax.lax.map`` runs chunks of that many, each chunk vmapped).

The steps run in chunks: a compiled program ``_advance`` takes the samplers' states (donated) and runs a
fixed number of steps from a traced first step, so one program serves every chunk. Between chunks the host
reads each trajectory's largest magnitude after every step: a non-finite state or one beyond the prior's
``bound`` stops the run within a chunk of it with a :class:`~slams_jax.errors.SamplingError` naming the member
and the step, and a progress line can be written. The programs are module-level ``jax.jit`` functions whose
arguments are the :class:`~slams_jax.diffusion.prior.Prior` (a pytree: its arrays are inputs, its modules and
callables static) and the rows; the observation structure, guidance, sampler, ``batch_size`` and mesh are
static. So a call with the same kind of prior and observations reuses the compiled programs, with new
parameters, values, keys or problems.

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
from slams_jax.diffusion.progress import Progress
from slams_jax.diffusion.samplers import Sampler
from slams_jax.errors import SamplingError
from slams_jax.observation.observations import Observation, ObservationError

#: Chunks a run of steps is cut into (at least, with chunks of a divisor of the steps): the divergence check and
#: the progress report run between them.
CHUNKS = 8


def _program_prior(prior: Prior) -> Prior:
    # the bound is checked on the host between chunks: the compiled programs do not depend on it
    return dataclasses.replace(prior, bound=None)


def _rows(fn, mesh: Mesh | None, replicated: int, rows: int, batch_size: int | None = None):
    """``fn`` over the leading axis of ``rows`` arguments after ``replicated`` shared ones, split over ``mesh``."""

    def run(*args):
        shared, per_row = args[:replicated], args[replicated:]
        one = lambda row: fn(*shared, *row)
        n = jax.tree_util.tree_leaves(per_row)[0].shape[0]
        if batch_size is None or batch_size >= n:
            return jax.vmap(one)(per_row)  # every trajectory of the device at once
        return jax.lax.map(one, per_row, batch_size=batch_size)  # chunks of batch_size, each vmapped

    if mesh is None:
        return run
    # trajectories are independent: no collective, so the varying-axes check has nothing to verify (and
    # diffrax's loops carry constants it would reject)
    return jax.shard_map(run, mesh=mesh, in_specs=(P(),) * replicated + (P(parallel.DATA),) * rows,
                         out_specs=P(parallel.DATA), check_vma=False)


@functools.partial(jax.jit, static_argnames=("sampler", "shape", "mesh"))
def _start(keys: Array, *, sampler: Sampler, shape: tuple[int, ...], mesh: Mesh | None) -> dict:
    return _rows(lambda k: sampler.start(k, shape), mesh, 0, 1)(keys)


@functools.partial(jax.jit, donate_argnames=("carry",),
                   static_argnames=("pairs", "guidance", "sampler", "count", "batch_size", "mesh"))
def _advance(prior: Prior, first: Array, carry: dict, data: tuple, *, pairs: Structure, guidance: Guidance,
             sampler: Sampler, count: int, batch_size: int | None, mesh: Mesh | None) -> tuple[dict, Array]:
    """Steps ``first .. first + count - 1`` of every row: ``(carry, peaks (row, count))``."""

    def one(prior, first, carry, *d):
        eps = prior.eps
        if pairs:
            y, std, scale = d
            eps = guidance.guide(prior.eps, prior.schedule,
                                 Likelihood(forward=forward(prior, pairs), y=y, std=std, scale=scale))
        return sampler.advance(carry, eps, prior.schedule, first, count)

    return _rows(one, mesh, 2, 1 + len(data), batch_size)(prior, first, carry, *data)


def _chunk(sampler: Sampler) -> int:
    """Steps per chunk: the largest divisor of ``steps`` that cuts them into at least :data:`CHUNKS` chunks."""
    if not sampler.chunkable:
        return sampler.steps
    target = max(1, sampler.steps // CHUNKS)
    return max(d for d in range(1, target + 1) if sampler.steps % d == 0)


def _bad(peaks: np.ndarray, bound: float | None) -> np.ndarray:
    return ~np.isfinite(peaks) | (peaks > bound if bound is not None else False)


def _run_rows(prior: Prior, pairs: Structure, keys: Array, data: tuple, guidance: Guidance, sampler: Sampler,
              batch_size: int | None, mesh: Mesh | None, groups: int = 1, progress: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
    """Integrate one trajectory per row of ``keys``: host ``(samples, peaks (row, steps run))``.

    The rows form ``groups`` equal groups (problems); the run stops early once every group has a failed row.
    """
    n, bound = keys.shape[0], prior.bound
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
    carry = _start(rows[0], sampler=sampler, shape=prior.shape, mesh=split)
    count, peaks, failed = _chunk(sampler), [], np.zeros(n, bool)
    report = Progress(sampler.steps, n) if progress else None
    for first in range(0, sampler.steps, count):
        carry, p = _advance(prior, jnp.asarray(first, jnp.int32), carry, rows[1:], pairs=pairs, guidance=guidance,
                            sampler=sampler, count=count, batch_size=batch_size, mesh=split)
        peaks.append(parallel.to_host(p)[:n])
        failed |= _bad(peaks[-1], bound).any(axis=1)
        if report:
            report.update(first + count)
        if failed.reshape(groups, -1).any(axis=1).all():
            break
    if report:
        report.close(first + count)
    return parallel.to_host(carry["x"])[:n], np.concatenate(peaks, axis=1)


def failure(peaks: np.ndarray, sampler: Sampler, bound: float | None, schedule=None, what: str = "") -> str | None:
    """Why an ensemble failed, or ``None``: the first step at which a member became non-finite or beyond ``bound``.

    Args:
        peaks: Largest magnitude of each member after each step run, ``(member, steps run)``.
    """
    bad = _bad(peaks, bound)
    if not bad.any():
        return None
    step = int(np.argmax(bad.any(axis=0)))
    member = int(np.argmax(bad[:, step]))
    where = f"at step {step + 1} of {sampler!r}"
    if schedule is not None and sampler.chunkable:
        where += f" (diffusion time t={float(sampler.times(schedule)[step + 1]):.3f})"
    value = peaks[member, step]
    what_happened = ("became NaN or infinite" if not np.isfinite(value)
                     else f"diverged (largest |value| {value:.3g}, bound {bound:g} in units of the prior's scale)")
    return (f"{what}member {member}: the state {what_happened} {where}; {int(bad[:, :step + 1].any(1).sum())} of "
            f"{peaks.shape[0]} members affected by then, sampling stopped. Check the observations' units and noise "
            "std; more steps, MMPS guidance or a larger observation noise make the guided process less stiff.")


def sample_posterior_prior(
    key: PRNGKey, prior: Prior, observations: Sequence[Observation] | None, n_samples: int,
    guidance: Guidance, sampler: Sampler, batch_size: int | None = None, mesh: Mesh | None = None,
    progress: bool = False,
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
    x, peaks = _run_rows(prior, structure(observations), jax.random.split(key, n_samples), data, guidance,
                         sampler, batch_size, mesh, progress=progress)
    error = failure(peaks, sampler, prior.bound, prior.schedule)
    if error:
        raise SamplingError(error)
    return jnp.asarray(x)


def sample_posterior_problems(
    keys: Sequence[PRNGKey] | Array, prior: Prior, problems: Sequence[Sequence[Observation]], n_samples: int,
    guidance: Guidance, sampler: Sampler, batch_size: int | None = None, mesh: Mesh | None = None,
    progress: bool = False,
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
    x, peaks = _run_rows(prior, pairs, rows, data, guidance, sampler, batch_size, mesh, groups=len(problems),
                         progress=progress)
    x = x.reshape((len(problems), n_samples) + x.shape[1:])
    peaks = peaks.reshape((len(problems), n_samples) + peaks.shape[1:])
    failures = [failure(peaks[p], sampler, prior.bound, prior.schedule, what=f"problem {p}, ")
                for p in range(len(problems))]
    return x, failures


@jax.jit
def _outputs(prior: Prior, x: Array) -> Array:
    return jax.vmap(prior.output)(x)


def outputs(prior: Prior, x: Array) -> Array:
    """``prior.output`` of every sample of ``x`` (leading axis), e.g. the state in physical units."""
    return _outputs(_program_prior(prior), jnp.asarray(x))


__all__ = ["sample_posterior_prior", "sample_posterior_problems", "outputs", "failure"]
