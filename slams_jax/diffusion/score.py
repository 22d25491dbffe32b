r"""Markov-window score networks and their composition into trajectory scores.

SDA (Rozet & Louppe, 2023) and SLAMS (Qu et al., 2024) model a trajectory :math:`x_{1:L}` of a
(latent) dynamical state as an order-:math:`k` Markov chain. Its score then decomposes into local
terms, each depending on a window of :math:`2k+1` consecutive states only, so a single network
:math:`\varepsilon_\theta(x_{i-k:i+k}, t)` trained on short windows scores trajectories of any length
:math:`L \ge 2k+1`:

- unfold the trajectory into its :math:`L - 2k` overlapping windows;
- evaluate the window network on every window (one batched call);
- fold back: the first :math:`k` states take their estimate from the first window, the last
  :math:`k` from the last window, and every other state :math:`i` from the window centred on it.

The window network sees a window as one field whose channels are the :math:`2k+1` states stacked
(state-major, channel-minor), exactly like the reference implementation, so the composition is exact
when :math:`L = 2k + 1`.

Optionally (``skip``), the network learns a residual over the noise predictor that is exact for
standardized Gaussian data: :math:`\varepsilon(x_t, t) = \frac{\sigma_t}{\mu_t^2 + \sigma_t^2} x_t + f_\theta(x_t, t)`.
On standardized data this is already right at high noise, where an untrained network is worst and the
sampler's first steps amplify errors by :math:`\mu_{t-\Delta t} / \mu_t`; the reference has no skip.

The prior is trained with the noise-prediction (denoising score matching) loss
:math:`\mathbb{E}_{t, x, \varepsilon} \| \varepsilon_\theta(\mu_t x + \sigma_t \varepsilon, t) - \varepsilon \|^2`,
:math:`t \sim U(0, 1)`.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from slams_jax._types import Array, EpsFn, Float, PRNGKey, PyTree
from slams_jax.diffusion.schedules import VPSchedule


def unfold_windows(x: Float[Array, "..."], order: int, time_axis: int) -> Array:
    """Overlapping windows of ``2 * order + 1`` states along ``time_axis``.

    Returns an array with a new ``window`` axis inserted before the (shortened) time axis:
    ``(*batch, time - 2k, 2k + 1, *rest)``.
    """
    size = 2 * order + 1
    length = x.shape[time_axis]
    if length < size:
        raise ValueError(f"trajectory of length {length} is shorter than the score window {size} (order {order})")
    starts = jnp.arange(length - size + 1)
    index = starts[:, None] + jnp.arange(size)[None, :]
    return jnp.take(x, index, axis=time_axis)


def fold_windows(w: Array, order: int, time_axis: int) -> Array:
    """Inverse of :func:`unfold_windows` for per-window estimates.

    Args:
        w: Per-window estimates ``(*batch, n_windows, 2k + 1, *rest)``, ``n_windows`` at the
            non-negative axis ``time_axis`` and the window axis right after it.
        order: Markov order ``k``.
        time_axis: Position of the ``n_windows`` axis (``len(batch)``).

    Returns:
        ``(*batch, n_windows + 2k, *rest)``: the first ``k`` states from the first window, the centre of
        every window, then the last ``k`` states from the last window.
    """
    if time_axis < 0:
        raise ValueError(f"fold_windows needs a non-negative time_axis, got {time_axis}")
    k = order
    first = jax.lax.index_in_dim(w, 0, time_axis, keepdims=False)
    last = jax.lax.index_in_dim(w, w.shape[time_axis] - 1, time_axis, keepdims=False)
    centre = jax.lax.index_in_dim(w, k, time_axis + 1, keepdims=False)
    head = jax.lax.slice_in_dim(first, 0, k, axis=time_axis)
    tail = jax.lax.slice_in_dim(last, k + 1, 2 * k + 1, axis=time_axis)
    return jnp.concatenate([head, centre, tail], axis=time_axis)


@dataclasses.dataclass(frozen=True)
class MarkovScore:
    """Noise prediction over windows of ``2 * order + 1`` states, composed over trajectories.

    Attributes:
        network: A Flax module ``(x: (*batch, *spatial, channels), t: (*batch,)) -> eps`` with
            ``channels = (2 * order + 1) * state_channels``, e.g. :class:`slams_jax.nn.unet.ScoreUNet`.
        order: Markov order ``k``; the window holds ``2k + 1`` states (``k = 2`` in the paper).
        spatial: Number of spatial axes of a state (1 or 2).
        skip: If set, the schedule of the Gaussian skip term added to the network's output.
    """

    network: nn.Module
    order: int = 2
    spatial: int = 2
    skip: VPSchedule | None = None

    @property
    def window(self) -> int:
        return 2 * self.order + 1

    def _time_axis(self) -> int:
        # (..., time, *spatial, channel)
        return -(self.spatial + 2)

    def _stack(self, x: Array) -> Array:
        """States of a window stacked into channels, state-major: ``(*batch, *spatial, window * channel)``."""
        moved = jnp.moveaxis(x, self._time_axis(), -2)
        return moved.reshape(moved.shape[:-2] + (moved.shape[-2] * moved.shape[-1],))

    def init(self, key: PRNGKey, x: Float[Array, "..."]) -> PyTree:
        """Parameters of the window network for windows shaped like ``x`` ``(*batch, window, ...)``."""
        t = jnp.zeros(x.shape[: self._time_axis() + x.ndim], x.dtype)
        return self.network.init(key, self._stack(x), t)["params"]

    def window_eps(
        self, params: PyTree, x: Float[Array, "..."], t: Float[Array, "*batch"]
    ) -> Float[Array, "..."]:
        """Noise estimate for windows of exactly ``2k + 1`` states."""
        ax = self._time_axis()
        if x.shape[ax] != self.window:
            raise ValueError(f"window_eps expects {self.window} states on axis {ax}, got shape {x.shape}")
        batch = x.shape[:ax]
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), batch)
        eps = self.network.apply({"params": params}, self._stack(x), t)
        eps = jnp.moveaxis(eps.reshape(jnp.moveaxis(x, ax, -2).shape), -2, ax)
        if self.skip is not None:
            mu, sigma = self.skip.mu(t), self.skip.sigma(t)
            gain = (sigma / (mu**2 + sigma**2)).astype(x.dtype)
            eps = eps + gain.reshape(gain.shape + (1,) * (x.ndim - gain.ndim)) * x
        return eps

    def trajectory_eps(
        self, params: PyTree, x: Float[Array, "..."], t: Float[Array, "*batch"], spread_windows: Mesh | None = None
    ) -> Float[Array, "..."]:
        """Noise estimate for trajectories of any length ``L >= 2k + 1`` (composition of windows).

        With ``spread_windows`` (a one-axis mesh, inside ``jit``), the windows are split over its devices:
        one long trajectory then uses every device.
        """
        ax = self._time_axis()
        batch = x.shape[: x.ndim + ax]
        windows = unfold_windows(x, self.order, time_axis=x.ndim + ax)  # (*b, n, 2k+1, ...)
        if spread_windows is not None:
            spec = PartitionSpec(*([None] * len(batch)), spread_windows.axis_names[0])
            windows = jax.lax.with_sharding_constraint(windows, NamedSharding(spread_windows, spec))
        n = windows.shape[len(batch)]
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), batch)
        t = jnp.broadcast_to(jnp.reshape(t, batch + (1,)), batch + (n,))
        eps = self.window_eps(params, windows, t)
        return fold_windows(eps, self.order, time_axis=len(batch))


def denoising_loss(
    eps_fn: EpsFn,
    schedule: VPSchedule,
    key: PRNGKey,
    x: Float[Array, "batch ..."],
    weights: Float[Array, "..."] | None = None,
) -> Float[Array, ""]:
    """Noise-prediction loss ``E ||eps_fn(mu_t x + sigma_t eps, t) - eps||^2`` with ``t ~ U(0, 1)``.

    Args:
        eps_fn: Noise predictor ``(x_t, t) -> eps`` with ``t`` of shape ``(batch,)``.
        schedule: The VP schedule.
        key: PRNG key for ``t`` and ``eps``.
        x: Clean samples; axis 0 is the batch.
        weights: Optional weights broadcastable to ``x`` (e.g. cell areas along latitude), normalized here.

    Returns:
        The (weighted) mean squared error over every element.
    """
    key_t, key_eps = jax.random.split(key)
    t = jax.random.uniform(key_t, (x.shape[0],), x.dtype)
    x_t, eps = schedule.perturb(key_eps, x, t)
    error = jnp.square(eps_fn(x_t, t) - eps)
    if weights is None:
        return jnp.mean(error)
    w = jnp.broadcast_to(jnp.asarray(weights, x.dtype), x.shape)
    return jnp.sum(w * error) / jnp.sum(w)


def tweedie_denoise(
    schedule: VPSchedule, x_t: Float[Array, "*shape"], eps: Float[Array, "*shape"], t: Float[Array, ""]
) -> Float[Array, "*shape"]:
    """Denoised estimate ``E[x | x_t] ~ (x_t - sigma_t eps) / mu_t`` from a noise prediction."""
    return (x_t - schedule.sigma(t) * eps) / schedule.mu(t)


__all__ = ["MarkovScore", "denoising_loss", "tweedie_denoise", "unfold_windows", "fold_windows"]
