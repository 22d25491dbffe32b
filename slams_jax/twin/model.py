r"""A trained twin experiment and its priors as the posterior core sees them.

The priors of a twin live in one of two spaces. ``pixel``: the standardized state
:math:`u = (x - m) / s` (``m``, ``s`` the per-variable mean and std of the training run), carried as
``(dim, 1)``. ``latent``: the standardized latent :math:`z = (E(u) - m_z) / s_z` of the autoencoder.
Either way :meth:`TwinModel.prior` hands the core a :class:`~slams_jax.diffusion.prior.Prior`
whose one observable modality ``state`` is the **physical** trajectory ``(time, dim)`` (time first, the
variables as channels, as :mod:`slams_jax.observation.operators` expects), so observations are compared in
physical units, through the decoder in the latent space.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, PyTree
from slams_jax.diffusion.prior import Prior, callable_prior
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.diffusion.score import MarkovScore
from slams_jax.errors import TwinError
from slams_jax.twin import lorenz
from slams_jax.twin.networks import TwinAutoencoder


def broadcast(v, x):
    """``v`` (the trailing axes of ``x``) broadcast to ``x`` explicitly."""
    return jnp.broadcast_to(jnp.asarray(v, x.dtype), x.shape)


@dataclasses.dataclass(frozen=True)
class TwinModel:
    """Everything a twin experiment trained: standardization, autoencoder, latent statistics, priors."""

    setup: lorenz.TwinSetup
    mean: np.ndarray  # (dim,) state mean of the training run
    std: np.ndarray  # (dim,) state std
    autoencoder: TwinAutoencoder | None
    ae_params: PyTree | None
    latent_mean: np.ndarray | None
    latent_std: np.ndarray | None
    scores: Mapping[str, tuple[MarkovScore, PyTree]]  # by space: "pixel", "latent"
    schedule: VPSchedule

    def standardize(self, x):
        return (x - broadcast(self.mean, x)) / broadcast(self.std, x)

    def physical(self, u):
        return u * broadcast(self.std, u) + broadcast(self.mean, u)

    def encode(self, x_phys):
        """Physical states ``(..., dim)`` -> standardized latent ``(..., h, c)``."""
        z = self.autoencoder.apply({"params": self.ae_params}, self.standardize(x_phys)[..., None],
                                   method=TwinAutoencoder.encode)
        return (z - broadcast(self.latent_mean, z)) / broadcast(self.latent_std, z)

    def decode(self, z):
        """Standardized latent ``(..., h, c)`` -> physical states ``(..., dim)``."""
        z = z * broadcast(self.latent_std, z) + broadcast(self.latent_mean, z)
        u = self.autoencoder.apply({"params": self.ae_params}, z, method=TwinAutoencoder.decode)
        return self.physical(u[..., 0])

    def state_shape(self, space: str) -> tuple[int, ...]:
        """Shape of one state of the diffused variable of ``space``."""
        if space == "pixel":
            return (self.setup.dim, 1)
        if space == "latent":
            if self.autoencoder is None:
                raise TwinError("space='latent': this model has no autoencoder (train it with 'latent' in spaces)")
            z = jax.eval_shape(lambda x: self.encode(x), jax.ShapeDtypeStruct((self.setup.dim,), jnp.float32))
            return tuple(z.shape)
        raise TwinError(f"space={space!r}: expected 'pixel' or 'latent'")

    def to_physical(self, space: str) -> Callable[[Array], Array]:
        """``x (..., *state_shape) -> (..., dim)`` physical."""
        return (lambda u: self.physical(u[..., 0])) if space == "pixel" else self.decode

    def prior(self, space: str, length: int) -> Prior:
        """The prior of ``space`` over trajectories of ``length`` states, observable as the physical ``state``.

        The scale of each observed variable (SDA's covariance term) is its climatological std.
        """
        if space not in self.scores:
            raise TwinError(f"space={space!r}: no prior trained for it (trained: {sorted(self.scores)})")
        score, params = self.scores[space]
        return callable_prior(lambda x, t: score.trajectory_eps(params, x, t), (length,) + self.state_shape(space),
                              self.schedule, decoders={"state": self.to_physical(space)}, scales={"state": self.std})


__all__ = ["TwinModel", "broadcast"]
