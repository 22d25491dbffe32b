r"""Linear-Gaussian test problems with a known posterior: the yardstick of the samplers' defaults.

Prior :math:`x \sim N(m, C)` in :math:`d` dimensions, observations :math:`y = x_I + \nu`,
:math:`\nu \sim N(0, s^2 I)` of the components :math:`I`. Under the VP diffusion
:math:`x_t = \mu_t x + \sigma_t z`, the prior's exact noise predictor is

.. math:: \varepsilon(x_t, t) = \sigma_t (\mu_t^2 C + \sigma_t^2 I)^{-1} (x_t - \mu_t m),

computed through the eigendecomposition :math:`C = U \Lambda U^\top`; the exact posterior is the Kalman
update :math:`N(m', C')`. Sampling the posterior with a guidance and a sampler and comparing the ensemble's
mean and covariance to :math:`(m', C')` measures the whole method: the likelihood approximation of the
guidance and the discretisation of the sampler.

:func:`ring_problem` builds the problems of issue 18: a ring of ``dim`` points with squared-exponential
correlations (length 2.5) plus ``0.05 I`` and a random mean, ``observed`` random components with noise ``std``.
The variable is laid out as one trajectory ``(1, 1, dim, 1)`` (time, lat, lon, channel) so that the observations
are ordinary :class:`~slams_jax.observation.operators.Points`.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Points


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianProblem:
    """A Gaussian prior, observed components with Gaussian noise, and the exact posterior.

    Attributes:
        mean: Prior mean ``(d,)``.
        cov: Prior covariance ``(d, d)``.
        index: Observed components ``(m,)``.
        std: Observation noise standard deviation.
        y: Observed values ``(m,)``.
    """

    mean: np.ndarray
    cov: np.ndarray
    index: np.ndarray
    std: float
    y: np.ndarray

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The variable as one trajectory ``(time, lat, lon, channel)``."""
        return (1, 1, self.dim, 1)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """The exact posterior ``(mean (d,), covariance (d, d))`` in float64."""
        a = np.eye(self.dim)[self.index]
        s = a @ self.cov @ a.T + self.std**2 * np.eye(len(self.index))
        gain = np.linalg.solve(s, a @ self.cov).T
        return self.mean + gain @ (self.y - a @ self.mean), self.cov - gain @ a @ self.cov

    def eps(self, schedule: VPSchedule):
        """The prior's exact noise predictor ``eps(x, t)`` on ``x`` of :attr:`shape` (float32)."""
        lam, u = np.linalg.eigh(self.cov)
        lam, u = jnp.asarray(lam, jnp.float32), jnp.asarray(u, jnp.float32)
        mean = jnp.asarray(self.mean, jnp.float32)

        def eps(x, t):
            mu, sigma = schedule.mu(t), schedule.sigma(t)
            r = u.T @ (x.reshape(-1) - mu * mean)
            return (sigma * (u @ (r / (mu**2 * lam + sigma**2)))).reshape(x.shape)

        return eps

    def observations(self) -> list[Observation]:
        op = Points(lat_index=(0,) * len(self.index), lon_index=tuple(int(i) for i in self.index))
        return [Observation("state", op, values=self.y.reshape(1, -1, 1).astype(np.float32), std=self.std,
                            name="gaussian")]

    def errors(self, samples: np.ndarray) -> tuple[float, float]:
        """``(mean error, covariance error)`` of ``samples (n, ...)`` against the exact posterior.

        The mean error is the largest ``|mean - m'_i| / sqrt(C'_ii)``; the covariance error the relative
        Frobenius norm ``||cov - C'|| / ||C'||``.
        """
        x = np.asarray(samples, np.float64).reshape(len(samples), -1)
        m, c = self.posterior()
        mean_error = np.max(np.abs(x.mean(0) - m) / np.sqrt(np.diag(c)))
        cov_error = np.linalg.norm(np.cov(x, rowvar=False) - c) / np.linalg.norm(c)
        return float(mean_error), float(cov_error)


def ring_problem(seed: int = 0, dim: int = 16, observed: int = 6, std: float = 0.3, length: float = 2.5,
                 nugget: float = 0.05) -> GaussianProblem:
    """A ring of ``dim`` points, squared-exponential correlations, ``observed`` random components seen with ``std``.

    The observations are drawn from the model itself (a prior draw plus noise), so the posterior is typical.
    """
    rng = np.random.default_rng(seed)
    i = np.arange(dim)
    gap = np.minimum(np.abs(i[:, None] - i[None, :]), dim - np.abs(i[:, None] - i[None, :]))
    cov = np.exp(-0.5 * (gap / length) ** 2) + nugget * np.eye(dim)
    mean = rng.standard_normal(dim)
    index = np.sort(rng.choice(dim, observed, replace=False))
    truth = mean + np.linalg.cholesky(cov) @ rng.standard_normal(dim)
    y = truth[index] + std * rng.standard_normal(observed)
    return GaussianProblem(mean=mean, cov=cov, index=index, std=float(std), y=y)


__all__ = ["GaussianProblem", "ring_problem"]
