r"""Samplers of the reverse diffusion, compiled as one ``lax.scan``.

The predictor-corrector of SDA (Rozet & Louppe, 2023), also used by SLAMS:

- predictor (exponential integrator of the probability-flow ODE from :math:`t` to :math:`s = t - \Delta t`):
  :math:`x_s = r\, x_t + (\sigma_s - r\, \sigma_t)\, \hat\varepsilon(x_t, t)`, :math:`r = \mu_s / \mu_t`;
- corrector (Langevin Monte Carlo at :math:`s`, ``corrections`` times):
  :math:`x \leftarrow x - \sigma_s (\delta\, \hat\varepsilon(x, s) + \sqrt{2\delta}\, z)` with
  :math:`\delta = \tau / \overline{\hat\varepsilon^2}` (mean over the event axes), :math:`z \sim N(0, I)`.

``eps_fn`` may be any noise predictor ``(x, t) -> eps``, a prior or a guided (posterior) one.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from slams_jax._types import Array, Float, PRNGKey
from slams_jax.schedules import VPSchedule

ScalarEpsFn = Callable[[Float[Array, "..."], Float[Array, ""]], Float[Array, "..."]]


def predictor_corrector(
    key: PRNGKey,
    eps_fn: ScalarEpsFn,
    shape: tuple[int, ...],
    schedule: VPSchedule,
    steps: int = 64,
    corrections: int = 0,
    tau: float = 1.0,
    event_ndim: int | None = None,
    dtype=jnp.float32,
) -> Array:
    """Sample from the diffusion model by integrating the reverse process from t=1 to t=0.

    Args:
        key: PRNG key.
        eps_fn: Noise predictor ``(x: shape, t: scalar) -> eps: shape``.
        shape: Sample shape ``(*batch, *event)``.
        schedule: The VP schedule.
        steps: Number of predictor steps.
        corrections: Langevin corrections after each predictor step.
        tau: Langevin step-size factor.
        event_ndim: Trailing axes forming one sample (for the corrector's step size); default: all but
            the first.
        dtype: Floating dtype of the samples.

    Returns:
        Samples of ``shape``.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: expected at least 1")
    event_ndim = len(shape) - 1 if event_ndim is None else event_ndim
    axes = tuple(range(len(shape) - event_ndim, len(shape)))
    key_init, key_loop = jax.random.split(key)
    x = jax.random.normal(key_init, shape, dtype)
    times = jnp.linspace(1.0, 0.0, steps + 1, dtype=dtype)

    def step(x, inputs):
        t, s, k = inputs
        r = schedule.mu(s) / schedule.mu(t)
        x = r * x + (schedule.sigma(s) - r * schedule.sigma(t)) * eps_fn(x, t)

        def correct(x, kc):
            eps = eps_fn(x, s)
            delta = tau / jnp.mean(jnp.square(eps), axis=axes, keepdims=True)
            z = jax.random.normal(kc, x.shape, x.dtype)
            return x - schedule.sigma(s) * (delta * eps + jnp.sqrt(2.0 * delta) * z), None

        if corrections:
            x, _ = jax.lax.scan(correct, x, jax.random.split(k, corrections))
        return x, None

    keys = jax.random.split(key_loop, steps)
    x, _ = jax.lax.scan(step, x, (times[:-1], times[1:], keys))
    return x


__all__ = ["predictor_corrector"]
