r"""The Gaussian observation model of a set of observations, seen from a prior's diffused variable.

**Where observations are compared.** Every observation is compared in its own modality's physical space:
trajectory :math:`x` :math:`\to` that modality's decoder (in latent assimilation: Tweedie estimate
:math:`\hat z` :math:`\to` decoder head :math:`\to` de-normalization) :math:`\to` operator; the guidance takes
the likelihood gradient through that whole chain. So a coarse, noisy state, sparse rain gauges and a
satellite swath all constrain the same latent trajectory, each with its physical noise level.

The observations of one problem are flattened into one vector: :math:`y`, the noise std :math:`s` of each
value, and its scale :math:`c` (the operator applied to a field of the modality's per-channel scales). Their
*structure*, the ``(modality, operator)`` pairs, fixes the compiled program; the values, stds and scales are
its data, so new observations of the same kind reuse it.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array
from slams_jax.diffusion.guidance import Likelihood
from slams_jax.diffusion.prior import Prior
from slams_jax.observation.observations import Observation, check_observations
from slams_jax.observation.operators import Operator

Structure = tuple[tuple[str, Operator], ...]  # (modality, operator) of each observation, in order


def structure(observations: Sequence[Observation]) -> Structure:
    """The ``(modality, operator)`` pairs of ``observations`` (hashable: a static argument of ``jit``)."""
    return tuple((o.modality, o.operator) for o in observations)


def _scale_array(op: Operator, scale, shape, dtype) -> np.ndarray:
    """The scale of each observed value: the operator applied to a field of per-channel scales."""
    field = jnp.broadcast_to(jnp.abs(jnp.asarray(scale, dtype)), shape)
    return np.abs(np.asarray(op(field)))


@functools.partial(jax.jit, static_argnames="name")
def _decoded(prior: Prior, x: Array, *, name: str) -> Array:
    return prior.decode(name, x)


def observable_shapes(prior: Prior) -> dict[str, tuple[int, ...]]:
    """The shape of each observable modality's physical trajectory."""
    x = jax.ShapeDtypeStruct(prior.shape, jnp.float32)
    # one jitted function, whose trace is cached per prior structure: a new lambda was traced at every call
    # (40 ms of Python per sampling call with the benchmark's decoder)
    return {name: tuple(_decoded.eval_shape(prior, x, name=name).shape) for name in prior.observables}


def forward(prior: Prior, pairs: Structure) -> Callable[[Array], Array]:
    """``x -> `` the concatenated predictions of ``(modality, operator)`` observations, flattened."""
    names = sorted({m for m, _ in pairs})

    def predict(x):
        fields = {name: prior.decode(name, x) for name in names}  # each head decoded once
        return jnp.concatenate([op(fields[m]).ravel() for m, op in pairs])

    return predict


def likelihood_data(prior: Prior, observations: Sequence[Observation]) -> tuple[Array, Array, Array]:
    """``(y, std, scale)``, each ``(m,)``: the flattened values, noise stds and scales of ``observations``.

    Raises:
        ObservationError: An observation does not fit the prior's modalities and shapes (named).
    """
    shapes = observable_shapes(prior)
    check_observations(observations, shapes)
    y = np.concatenate([o.values.ravel() for o in observations])
    std = np.concatenate([o.std_array().ravel() for o in observations])
    scale = np.concatenate([
        _scale_array(o.operator, prior.scales[o.modality], shapes[o.modality], jnp.float32).ravel()
        for o in observations
    ])
    return jnp.asarray(y), jnp.asarray(std), jnp.asarray(scale)


def build_likelihood(prior: Prior, observations: Sequence[Observation]) -> Likelihood:
    """The flattened Gaussian observation model of ``observations`` for one trajectory of the prior."""
    y, std, scale = likelihood_data(prior, observations)
    return Likelihood(forward=forward(prior, structure(observations)), y=y, std=std, scale=scale)


__all__ = ["Structure", "structure", "observable_shapes", "forward", "likelihood_data", "build_likelihood"]
