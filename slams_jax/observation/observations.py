"""Observations: (modality, operator, values, noise std), their validation and synthetic generation.

An :class:`Observation` of modality ``m`` says ``values = operator(x_m) + noise`` where ``x_m`` is the
trajectory ``(time, lat, lon, channel)`` of modality ``m`` **in physical units** (the state or any auxiliary
modality such as precipitation or OLR), and the noise is Gaussian with standard deviation ``std``: a scalar,
one value per output channel (the operator's last axis), or one per value (an array shaped like ``values``,
e.g. the per-row ``std`` of an observation table). The special modality ``latent`` observes the
standardized latent trajectory directly: that is the paper's own setting, see
:func:`slams_jax.diffusion.posterior.latent_observation`.

Bad observations are refused before any sampling, with an error naming the observation.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float, PRNGKey
from slams_jax.errors import ObservationError
from slams_jax.observation.operators import Operator


@dataclasses.dataclass(frozen=True, eq=False)
class Observation:
    """Noisy measurements of one modality of a trajectory.

    Attributes:
        modality: Name of the observed modality (``state``, an auxiliary one, or ``latent``).
        operator: Measurement operator from a trajectory ``(time, lat, lon, channel)`` of that modality.
        values: Observed values, shaped like the operator's output.
        std: Noise standard deviation (physical units): a scalar (stored as a float), one per output channel
            (a tuple) or one per value (a read-only float32 array shaped like ``values``). Consumers that need
            one per value use :meth:`std_array`.
        name: Label used in messages and outputs; defaults to ``modality:operator``.
    """

    modality: str
    operator: Operator
    values: np.ndarray
    std: float | tuple[float, ...] | np.ndarray = 1.0
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "values", np.asarray(self.values, np.float32))
        std = np.asarray(self.std, np.float32)
        if std.ndim == 0:
            object.__setattr__(self, "std", float(std))
        elif std.ndim > 1 or (std.shape == self.values.shape and std.size > 1 and self.values.ndim > 1):
            per_value = std.copy()
            per_value.flags.writeable = False
            object.__setattr__(self, "std", per_value)
        else:
            object.__setattr__(self, "std", tuple(float(s) for s in std.ravel()))
        if not self.name:
            object.__setattr__(self, "name", f"{self.modality}:{self.operator!r}")
        bad = ~np.isfinite(self.values)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ObservationError(
                f"observation {self.name!r}: {int(bad.sum())} of {self.values.size} values are NaN or infinite "
                f"(first at index {first}); drop them with the operator (e.g. Points) instead"
            )
        s = np.atleast_1d(np.asarray(self.std, np.float32))
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            bad_s = np.argwhere(~(np.isfinite(s) & (s > 0)))[0]
            raise ObservationError(f"observation {self.name!r}: noise std {float(s[tuple(bad_s)])!r} (at index "
                                   f"{tuple(int(i) for i in bad_s)}) must be finite and positive")
        if isinstance(self.std, np.ndarray):
            if self.std.shape != self.values.shape:
                raise ObservationError(
                    f"observation {self.name!r}: noise stds of shape {self.std.shape} but values of shape "
                    f"{self.values.shape}; expected a scalar, one per channel (last axis) or one per value"
                )
        elif s.size > 1 and (self.values.ndim == 0 or s.size != self.values.shape[-1]):
            raise ObservationError(
                f"observation {self.name!r}: {s.size} noise stds given but the values have shape "
                f"{self.values.shape}; expected a scalar, one per channel (last axis) or one per value"
            )

    def std_summary(self) -> float | tuple[float, ...] | dict[str, float]:
        """``std`` for a report (JSON): as it is when a scalar or per channel, else its min, mean and max."""
        if not isinstance(self.std, np.ndarray):
            return self.std
        return {"min": float(self.std.min()), "mean": float(self.std.mean()), "max": float(self.std.max())}

    def std_array(self) -> np.ndarray:
        """The noise standard deviation broadcast to the shape of ``values``."""
        return np.broadcast_to(np.asarray(self.std, np.float32), self.values.shape).astype(np.float32)

    def check(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Check the modality exists, the operator accepts its trajectory shape and the values fit its output.

        Args:
            shapes: Trajectory shape ``(time, lat, lon, channel)`` of every observable modality.
        """
        if self.modality not in shapes:
            raise ObservationError(
                f"observation {self.name!r}: unknown modality {self.modality!r}; this model observes {sorted(shapes)}"
            )
        try:
            expected = tuple(self.operator.check(tuple(shapes[self.modality])))
        except ValueError as e:
            raise ObservationError(
                f"observation {self.name!r} on a {self.modality} trajectory of shape {tuple(shapes[self.modality])}: {e}"
            ) from e
        if self.values.shape != expected:
            raise ObservationError(
                f"observation {self.name!r}: values have shape {self.values.shape} but {self.operator!r} maps a "
                f"{self.modality} trajectory of shape {tuple(shapes[self.modality])} to {expected}"
            )


def check_observations(observations: Sequence[Observation], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Validate a set of observations (see :meth:`Observation.check`); at least one is needed."""
    if not observations:
        raise ObservationError("no observations given")
    for obs in observations:
        if not isinstance(obs, Observation):
            raise ObservationError(f"expected Observation objects, got {type(obs).__name__}: {obs!r}")
        obs.check(shapes)


def observe(
    key: PRNGKey,
    truth: Float[Array, "time lat lon channel"],
    operator: Operator,
    std: float | Sequence[float],
    modality: str = "state",
    name: str = "",
) -> Observation:
    """A synthetic observation ``operator(truth) + std * N(0, I)`` of a true trajectory (physical units)."""
    truth = jnp.asarray(truth, jnp.float32)
    clean = operator(truth)
    std_b = jnp.broadcast_to(jnp.asarray(std, clean.dtype), clean.shape)
    values = clean + std_b * jax.random.normal(key, clean.shape, clean.dtype)
    return Observation(modality=modality, operator=operator, values=np.asarray(values),
                       std=std if np.ndim(std) == 0 else tuple(std), name=name)


__all__ = ["Observation", "ObservationError", "check_observations", "observe"]
