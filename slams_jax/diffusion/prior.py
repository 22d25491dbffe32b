r"""The prior of posterior sampling as an object: a hashable pytree that ``jax.jit`` caches on.

A :class:`Prior` holds what the sampler needs from a diffusion prior over one trajectory :math:`x`:

- the noise predictor :math:`\hat\varepsilon(x_t, t)`, the VP schedule and the shape of :math:`x`;
- for every observable modality, a map from :math:`x` to that modality's physical trajectory (in latent
  assimilation the decoder head and the de-normalization; the identity for a plain prior), and the typical
  size of its values (the scale :math:`c` of SDA's covariance term).

Its arrays (network parameters, latent statistics, normalization) are pytree **leaves**, so they enter a
compiled sampler as arguments; everything else (the networks as Flax modules, the callables, shapes and the
schedule) is **static metadata**, compared by value. Two priors built alike from the same kind of model, even
from different parameters, therefore share one compiled program, and no cache keyed by ``id()`` is needed.
The callables are given the leaves explicitly: ``eps_fn(params, x, t)`` and ``decode(params, x)``.

A trained experiment becomes a :class:`Prior` through the :class:`PosteriorPrior` protocol (its method
``posterior_prior(length, space, spread_windows)``), which keeps this package free of the runtime that
loads checkpoints; :func:`callable_prior` wraps a plain ``eps(x, t)``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import jax
import numpy as np
from jax.sharding import Mesh

from slams_jax import parallel
from slams_jax._types import Array, EpsFn, PyTree
from slams_jax.diffusion.schedules import VPSchedule

Decoder = Callable[[PyTree, Array], Array]  # (params, x) -> a modality's physical trajectory


@dataclasses.dataclass(frozen=True)
class Prior:
    """A diffusion prior over trajectories of ``shape``, with its observable modalities.

    Attributes:
        params: Arrays of the prior (leaves), handed to ``eps_fn`` and the decoders.
        scales: Per observable modality and channel, the typical size of its physical values (leaves).
        bound: Largest plausible magnitude of a sample (standardized variables: 100); beyond it the sampling
            is reported as diverged. ``None`` disables the check. Checked on the host: the compiled samplers
            are given the prior without it, so changing it does not recompile.
        eps_fn: ``(params, x: shape, t: scalar) -> eps`` for one trajectory (static, compared by value).
        schedule: The VP schedule the predictor was trained with.
        shape: Shape of one sample of the diffused variable.
        decoders: ``(modality, decode)`` pairs, ``decode(params, x) -> (time, lat, lon, channel)`` in physical
            units.
        state: The modality returned to the caller; ``None``: the diffused variable itself.
        channels: Names of the returned state's channels (labels of an xarray result), if known.
        spread_windows: ``eps_fn`` splits the score windows of a trajectory over the devices of this mesh;
            then members are not split over devices.
    """

    params: PyTree
    scales: Mapping[str, Any]
    bound: float | None
    eps_fn: Callable[[PyTree, Array, Array], Array]
    schedule: VPSchedule
    shape: tuple[int, ...]
    decoders: tuple[tuple[str, Decoder], ...]
    state: str | None = None
    channels: tuple[str, ...] | None = None
    spread_windows: Mesh | None = None

    def eps(self, x: Array, t: Array) -> Array:
        """The noise predictor of one trajectory ``x`` at time ``t``."""
        return self.eps_fn(self.params, x, t)

    @property
    def observables(self) -> tuple[str, ...]:
        """The modalities an observation may refer to."""
        return tuple(name for name, _ in self.decoders)

    def decode(self, modality: str, x: Array) -> Array:
        """The physical trajectory of ``modality`` for the diffused variable ``x``."""
        return dict(self.decoders)[modality](self.params, x)

    def output(self, x: Array) -> Array:
        """The trajectory returned to the caller (the state in physical units)."""
        return x if self.state is None else self.decode(self.state, x)


jax.tree_util.register_dataclass(
    Prior, data_fields=["params", "scales"],
    meta_fields=["bound", "eps_fn", "schedule", "shape", "decoders", "state", "channels", "spread_windows"],
)


@runtime_checkable
class PosteriorPrior(Protocol):
    """What ``posterior_sample`` accepts besides a :class:`Prior` or a callable: a model that builds its prior
    (e.g. :class:`slams_jax.TrainedModel`)."""

    def posterior_prior(self, length: int, space: str, spread_windows: Mesh | None) -> Prior:
        """The prior over trajectories of ``length`` states in ``space`` (``latent`` or ``pixel``), its
        score windows split over ``spread_windows`` when given (the model may decline: one window)."""


@dataclasses.dataclass(frozen=True)
class _Plain:
    """A callable of the diffused variable alone, given the (empty) parameters first; equal when ``fn`` is."""

    fn: Callable

    def __call__(self, params, *args):
        del params
        return self.fn(*args)


def _identity(x):
    return x


def callable_prior(
    eps: EpsFn, shape: tuple[int, ...], schedule: VPSchedule,
    decoders: Mapping[str, Callable[[Array], Array]] | None = None,
    scales: Mapping[str, Sequence[float] | float] | None = None,
) -> Prior:
    """Wrap a plain noise predictor ``eps(x, t)`` over trajectories of ``shape`` (e.g. an analytic prior).

    By default the variable is the physical state itself (modality ``state``, scale 1); the returned state
    is modality ``state`` if there is one, else the variable. Compiled samplers are shared by calls with the
    same ``eps`` and decoder objects.
    """
    decoders = {"state": _identity} if decoders is None else dict(decoders)
    scales = {k: 1.0 for k in decoders} if scales is None else dict(scales)
    return Prior(
        params=(), scales={k: np.asarray(v, np.float32) for k, v in scales.items()}, bound=None, eps_fn=_Plain(eps),
        schedule=schedule, shape=tuple(shape), decoders=tuple((k, _Plain(f)) for k, f in decoders.items()),
        state="state" if "state" in decoders else None,
    )


#: ``precision`` -> the networks' convolution operand dtype (``None``: as the parameters, float32).
PRECISIONS = {"f32": None, "bf16": "bfloat16"}


def with_precision(prior: Prior, precision: str) -> Prior:
    """``prior`` with its networks' convolutions in ``precision``: ``f32``, ``bf16`` or ``auto``.

    ``bf16`` rounds the operands of every convolution of the score network and the decoders to bfloat16 and
    sums in float32 (:class:`~slams_jax.nn.layers.Conv`); the parameters, the sampler's state, the guidance's
    likelihood and solves stay float32. ``auto`` is ``bf16`` on accelerators and ``f32`` on a CPU, which has no
    fast bfloat16 convolutions. Only the prior's callables that offer ``with_compute_dtype(dtype)`` (a trained
    model's networks) change; a plain callable ``eps(x, t)`` keeps its own precision.
    """
    if precision == "auto":
        precision = "f32" if jax.default_backend() == "cpu" else "bf16"
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {sorted(PRECISIONS) + ['auto']}")
    dtype = PRECISIONS[precision]

    def cast(fn):
        return fn.with_compute_dtype(dtype) if hasattr(fn, "with_compute_dtype") else fn

    return dataclasses.replace(prior, eps_fn=cast(prior.eps_fn), decoders=tuple((k, cast(d)) for k, d in prior.decoders))


def resolve_prior(prior: Any, *, length: int | None, shape: tuple[int, ...] | None, schedule: VPSchedule | None,
                  space: str, trajectories: int, divergence_bound: float | None, mesh: Mesh | None
                  ) -> tuple[Prior, Mesh]:
    """The :class:`Prior` of what ``posterior_sample`` was given, for ``trajectories`` trajectories at once.

    Args:
        prior: A :class:`Prior` (used as it is), a :class:`PosteriorPrior` (needs ``length``; its bound becomes
            ``divergence_bound``) or a callable ``eps(x, t)`` (needs ``shape`` and ``schedule``; its bound is
            ``divergence_bound`` in units of ``x``, whose VP diffusion starts from unit noise).
        mesh: The devices; ``None``: every visible device. A model spreads its score windows over them when
            there are fewer trajectories than devices.

    Returns:
        ``(prior, mesh)``.
    """
    if isinstance(prior, (str, os.PathLike)):
        raise TypeError(f"prior={os.fspath(prior)!r} is a path: load the experiment first with "
                        "slams_jax.load_trained(path) and pass the model")
    mesh = parallel.data_mesh() if mesh is None else mesh
    if isinstance(prior, Prior):
        return prior, mesh
    if isinstance(prior, PosteriorPrior):
        if length is None:
            raise ValueError("posterior_sample: give length= (states of the trajectory) for a trained prior")
        built = prior.posterior_prior(length, space, mesh if trajectories < mesh.size else None)
        return dataclasses.replace(built, bound=divergence_bound), mesh
    if callable(prior):
        if shape is None or schedule is None:
            raise ValueError("posterior_sample: a callable prior eps(x, t) needs shape= and schedule=")
        return dataclasses.replace(callable_prior(prior, shape, schedule), bound=divergence_bound), mesh
    raise TypeError(f"prior: expected a Prior, a trained model (slams_jax.load_trained) or a callable eps(x, t), "
                    f"got {type(prior)}")


__all__ = ["Prior", "PosteriorPrior", "callable_prior", "resolve_prior", "with_precision", "PRECISIONS", "Decoder"]
