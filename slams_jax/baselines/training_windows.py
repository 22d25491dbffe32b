"""Verification windows cut from training data: the observation network simulated on them, a part withheld.

:func:`~slams_jax.baselines.covariance_tuning.tune_static_covariance` scores candidate covariances by the
3D-Var analysis error at withheld observations of training windows, where the truth is known. This module
makes those windows:

- :func:`holdout_split` keeps a held-out part of the training trajectories (their last states, or their
  last trajectories) away from the fit of :math:`B`, so the windows are out of sample;
- :func:`cut_windows` draws non-overlapping windows of ``window`` states from it;
- :func:`simulate_network` observes each window with the same operators and noise as the real observations
  (templates, or a callable) and splits them into assimilated and withheld ones: a random fraction of the
  *sites* of every observation (the axes between time and channel of its output, e.g. the stations),
  the same sites in every window, like a fixed network; or a second, supplied network of withheld
  observations. Withheld observations carry the noise-free values ``H_w x`` of the training truth.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, ClassVar, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax._types import Array, Float, PRNGKey
from slams_jax.errors import DataError, ObservationError
from slams_jax.observation.observations import Observation, observe
from slams_jax.observation.operators import Operator

#: A network: template observations (their operators and noise are reused) or ``(key, truth) -> observations``.
Network = Union[Observation, Sequence[Observation], Callable[[PRNGKey, np.ndarray], Sequence[Observation]]]


@dataclasses.dataclass(frozen=True, repr=False)
class Sites(Operator):
    """A subset of the sites of an observation: ``(time, *obs, channel) -> (time, site, channel)``.

    The axes between time and channel are flattened (row-major) and ``index`` picks among them, so
    ``op >> Sites(index)`` keeps some stations of :class:`~slams_jax.observation.operators.Stations`, some
    points of ``Points`` or some cells of ``Coarsen``, at every time. Linear.

    Attributes:
        index: Distinct flat site indices, in output order.
    """

    index: tuple[int, ...]
    spatial: ClassVar[bool] = False

    def __post_init__(self):
        index = tuple(int(i) for i in np.asarray(self.index, np.int64).reshape(-1))
        if not index or min(index) < 0 or len(set(index)) != len(index):
            raise ValueError(f"Sites.index={self.index!r}: expected distinct non-negative site indices")
        object.__setattr__(self, "index", index)

    def _validate(self, shape: tuple[int, ...]) -> None:
        super()._validate(shape)
        sites = math.prod(shape[1:-1])
        if max(self.index) >= sites:
            raise ValueError(f"{self!r}: site {max(self.index)} out of range for {sites} sites of shape {shape}")

    def __call__(self, x: Float[Array, "time *obs channel"]) -> Float[Array, "time site channel"]:
        self._validate(x.shape)
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        return flat[:, np.asarray(self.index, np.int32), :]


# ------------------------------------------------------------------------------------------------- windows
def holdout_split(train: np.ndarray, window: int, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, held)``: the training data for fitting ``B`` and the held-out part the windows come from.

    The held-out part is the last ``max(window, round(holdout * time))`` states of every trajectory when
    what remains still has 2 states; otherwise the last ``max(1, round(holdout * trajectory))`` trajectories.
    ``holdout = 0`` uses all the data for both (in-sample windows).

    Args:
        train: ``(trajectory, time, lat, lon, channel)``.
        window: States per verification window.
        holdout: Fraction held out, in ``[0, 1)``.
    """
    n, t = train.shape[:2]
    if t < window:
        raise DataError(f"tune_static_covariance: training trajectories have {t} states, fewer than the window "
                        f"{window}; pass a shorter window")
    if holdout == 0:
        return train, train
    tail = max(window, round(holdout * t))
    if t - tail >= 2:
        return train[:, : t - tail], train[:, t - tail:]
    if n >= 2:
        k = min(n - 1, max(1, round(holdout * n)))
        return train[: n - k], train[n - k:]
    raise DataError(
        f"tune_static_covariance: one training trajectory of {t} states cannot be split into a fit part and "
        f"held-out windows of {window} states; pass holdout=0 (in-sample windows) or more data"
    )


def cut_windows(key: PRNGKey, held: np.ndarray, window: int, count: int) -> np.ndarray:
    """Up to ``count`` distinct non-overlapping, fully finite windows ``(count, window, lat, lon, channel)``.

    Windows start every ``window`` states of every trajectory of ``held``; ``count`` of them are drawn
    without replacement with ``key`` (all if there are fewer), in trajectory-then-time order.
    """
    starts = [(i, s) for i in range(held.shape[0]) for s in range(0, held.shape[1] - window + 1, window)
              if np.all(np.isfinite(held[i, s: s + window]))]
    if not starts:
        raise DataError(
            f"tune_static_covariance: no window of {window} states without missing values in the held-out "
            f"training data of shape {held.shape}"
        )
    picked = np.sort(np.asarray(jax.random.permutation(key, len(starts)))[: min(count, len(starts))])
    return np.stack([held[starts[k][0], starts[k][1]: starts[k][1] + window] for k in picked]).astype(np.float32)


# ------------------------------------------------------------------------------------------------- network
def _checked(observations, caller: str) -> list[Observation]:
    observations = [observations] if isinstance(observations, Observation) else list(observations)
    if not observations:
        raise ObservationError(f"{caller}: the observation network has no observations")
    for obs in observations:
        if not isinstance(obs, Observation):
            raise ObservationError(f"{caller}: expected Observation objects, got {type(obs).__name__}: {obs!r}")
        if obs.modality != "state":
            raise ObservationError(
                f"{caller}: observation {obs.name!r} of modality {obs.modality!r}; 3D-Var observes the state only")
        if not obs.operator.linear:
            raise ObservationError(f"{caller}: observation {obs.name!r} has the nonlinear operator {obs.operator!r}")
    return observations


def network_function(network: Network, caller: str) -> Callable[[PRNGKey, np.ndarray], list[Observation]]:
    """``(key, truth) -> observations`` of a network given as templates (same operators, noise, names) or a callable."""
    if callable(network) and not isinstance(network, Observation):
        return lambda key, truth: _checked(network(key, truth), caller)
    templates = _checked(network, caller)

    def make(key, truth):
        keys = jax.random.split(key, len(templates))
        return [observe(k, truth, t.operator, t.std, t.modality, t.name) for k, t in zip(keys, templates)]

    return make


def _sites(obs: Observation) -> int:
    return math.prod(obs.values.shape[1:-1])


def _withheld_sites(key: PRNGKey, observations: Sequence[Observation], fraction: float) -> list[np.ndarray | None]:
    """Per observation, the sorted flat sites withheld (``None``: fewer than 2 sites, nothing withheld)."""
    out = []
    for i, obs in enumerate(observations):
        n = _sites(obs)
        if n < 2:
            out.append(None)
            continue
        k = min(n - 1, max(1, round(fraction * n)))
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, i), n))
        out.append(np.sort(order[:k]))
    return out


def _subset(obs: Observation, sites: np.ndarray, values: np.ndarray, prefix: str) -> Observation:
    values = values.reshape(values.shape[0], -1, values.shape[-1])[:, sites, :]
    operator = obs.operator >> Sites(tuple(sites.tolist()))
    return Observation(obs.modality, operator, values, obs.std, f"{prefix}{obs.name}")


def _split_fraction(observations, truth, held_sites):
    assimilated, withheld = [], []
    for obs, held in zip(observations, held_sites):
        if held is None:
            assimilated.append(obs)
            continue
        keep = np.setdiff1d(np.arange(_sites(obs)), held)
        clean = np.asarray(obs.operator(jnp.asarray(truth)))
        assimilated.append(_subset(obs, keep, obs.values, ""))
        withheld.append(_subset(obs, held, clean, "withheld "))
    return assimilated, withheld


def simulate_network(
    key: PRNGKey, truths: np.ndarray, network: Network, withheld: float | Network, caller: str,
) -> tuple[list[list[Observation]], list[list[Observation]]]:
    """Observe every training window and split the observations into assimilated and withheld.

    Args:
        key: PRNG key, split in two: window ``w`` is observed with ``fold_in(first, w)``; the withheld sites
            of observation ``i``, the same in every window, are drawn with ``fold_in(second, i)`` (a withheld
            network observes window ``w`` with ``fold_in(second, w)``).
        truths: Windows ``(window, time, lat, lon, channel)``, the observations' units.
        network: The assimilated network (templates or a callable).
        withheld: The fraction of the sites of every observation withheld, in ``(0, 1)``, or a second network
            whose observations are all withheld (then all of ``network`` is assimilated).
        caller: Name used in error messages.

    Returns:
        ``(assimilated, withheld)``: per window, the observations to assimilate (noisy), and the withheld
        ones, whose ``values`` are the noise-free ``H_w x`` of the window (their ``std`` the real noise).
    """
    make = network_function(network, caller)
    fraction = not (callable(withheld) or isinstance(withheld, (Observation, list, tuple)))
    if fraction and not (isinstance(withheld, (int, float)) and 0 < withheld < 1):
        raise ValueError(f"{caller}: withheld={withheld!r}, expected a fraction in (0, 1) or a network of observations")
    verify = None if fraction else network_function(withheld, caller)
    k_obs, k_sites = jax.random.split(key)
    assimilated, held = [], []
    for w, truth in enumerate(truths):
        observations = make(jax.random.fold_in(k_obs, w), truth)
        if fraction:
            sites = _withheld_sites(k_sites, observations, float(withheld))
            a, h = _split_fraction(observations, truth, sites)
        else:
            a = observations
            h = [Observation(o.modality, o.operator, np.asarray(o.operator(jnp.asarray(truth))), o.std,
                             f"withheld {o.name}") for o in verify(jax.random.fold_in(k_sites, w), truth)]
        if not h:
            raise ObservationError(f"{caller}: no observation has 2 sites or more, so none can be withheld; "
                                   "pass a network of withheld observations instead of a fraction")
        assimilated.append(a)
        held.append(h)
    return assimilated, held


__all__ = ["Network", "Sites", "cut_windows", "holdout_split", "network_function", "simulate_network"]
