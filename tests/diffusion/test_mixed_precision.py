"""Mixed precision (``precision="bf16"``) leaves the Gaussian posterior statistics unchanged.

The prior is the ring problem of the exactness tests (16 points, squared-exponential correlations: a
circulant covariance), whose exact noise predictor ``sigma (mu^2 C + sigma^2 I)^-1 (x_t - mu m)`` is a
circular convolution over the whole ring. It is computed here by :class:`slams_jax.nn.layers.Conv` (the
padding gather, the custom-derivative convolution, flax's ``nn.Conv``), so ``precision="bf16"`` sends the
guidance's forward and backward passes through the networks' bfloat16 path. With the same key, the bf16 and
f32 ensembles of 4096 members must agree within the exactness tolerances, and both match the exact posterior
(the measured bf16 shift is in the test).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from helpers import conv_dtypes
from slams_jax.diffusion.gaussian import ring_problem
from slams_jax.diffusion.posterior import posterior_sample
from slams_jax.diffusion.prior import Prior, with_precision
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.nn.layers import Conv

SCHEDULE = VPSchedule()
MEMBERS = 4096


@dataclasses.dataclass(frozen=True)
class _CirculantEps:
    """The exact eps of a circulant Gaussian prior as one ``Conv`` of the ring's size (circular padding)."""

    compute_dtype: str | None = None

    def __call__(self, params, x, t):
        n = x.size
        mu, sigma = SCHEDULE.mu(t), SCHEDULE.sigma(t)
        # first column of the circulant sigma (mu^2 C + sigma^2 I)^-1, from C's eigenvalues (its FFT)
        column = jnp.real(jnp.fft.ifft(sigma / (jnp.square(mu) * params["eigenvalues"] + jnp.square(sigma))))
        # Conv correlates: y_i = sum_q k_q z_{i + q - lo}, so k_q = column[(lo - q) mod n] with lo = (n - 1) // 2
        kernel = column[(((n - 1) // 2) - np.arange(n)) % n].astype(jnp.float32).reshape(n, 1, 1)
        conv = Conv(1, kernel_size=n, padding_modes=("circular",), use_bias=False, compute_dtype=self.compute_dtype)
        z = (x.reshape(-1) - mu * params["mean"]).reshape(1, n, 1)
        return conv.apply({"params": {"Conv_0": {"kernel": kernel}}}, z).reshape(x.shape)

    def with_compute_dtype(self, dtype):
        return dataclasses.replace(self, compute_dtype=dtype)


def _identity(params, x):
    return x


def _prior(problem) -> Prior:
    eigenvalues = np.real(np.fft.fft(problem.cov[:, 0])).astype(np.float32)
    return Prior(params={"eigenvalues": eigenvalues, "mean": problem.mean.astype(np.float32)},
                 scales={"state": np.asarray(1.0, np.float32)}, bound=None, eps_fn=_CirculantEps(),
                 schedule=SCHEDULE, shape=problem.shape, decoders=(("state", _identity),), state="state")


def test_the_convolution_prior_is_the_exact_noise_predictor():
    problem = ring_problem(dim=16, observed=6, std=0.3)
    prior, exact = _prior(problem), problem.eps(SCHEDULE)
    x = jax.random.normal(jax.random.PRNGKey(3), problem.shape)
    for t in (0.05, 0.5, 0.95):
        np.testing.assert_allclose(prior.eps(x, jnp.float32(t)), exact(x, jnp.float32(t)), rtol=1e-4, atol=1e-5)


def test_bf16_runs_the_guidance_gradient_through_bfloat16_convolutions():
    problem = ring_problem(dim=16, observed=6, std=0.3)
    x, t = jnp.ones(problem.shape, jnp.float32), jnp.float32(0.5)

    def guidance_like(prior):  # the denoiser and its input gradient, as a guidance takes them
        return lambda x: jax.grad(lambda x: jnp.sum(jnp.square(prior.eps(x, t))))(x)

    bf16 = [ins for ins, _ in conv_dtypes(guidance_like(with_precision(_prior(problem), "bf16")), x)]
    f32 = [ins for ins, _ in conv_dtypes(guidance_like(with_precision(_prior(problem), "f32")), x)]
    assert len(bf16) == 2 and all(d == ("bfloat16", "bfloat16") for d in bf16), bf16  # forward and backward
    assert len(f32) == 2 and all(d == ("float32", "float32") for d in f32), f32
    # the gradient is float32 (the sampler's state), and close to the float32 one
    g16, g32 = guidance_like(with_precision(_prior(problem), "bf16"))(x), guidance_like(_prior(problem))(x)
    assert g16.dtype == jnp.float32
    np.testing.assert_allclose(g16, g32, rtol=3e-2, atol=3e-2 * float(jnp.max(jnp.abs(g32))))


def test_bf16_posterior_statistics_match_f32_within_sampling_error():
    problem = ring_problem(dim=16, observed=6, std=0.3)
    prior, key = _prior(problem), jax.random.PRNGKey(0)
    run = lambda precision: np.asarray(posterior_sample(key, prior, problem.observations(), n_samples=MEMBERS,
                                                        precision=precision), np.float64).reshape(MEMBERS, -1)
    x32, x16 = run("f32"), run("bf16")
    assert np.max(np.abs(x16 - x32)) > 1e-4  # the bf16 path really ran (different rounding)
    _, cov = problem.posterior()
    scale = np.sqrt(np.diag(cov))
    # Same noise, so the ensembles differ by the rounding alone. Measured: the bf16 mean is shifted by 0.063
    # posterior standard deviations (largest component; the same with other keys, so a bias, not noise) and
    # the covariance by 1.4%; two independent f32 ensembles differ by 0.043-0.048 and exact draws' errors are
    # 0.026 / 0.036. The bounds are the exactness tests' own (0.1 for a mean, 0.15 for a covariance, halved).
    mean_shift = np.max(np.abs(x16.mean(0) - x32.mean(0)) / scale)
    cov_shift = np.linalg.norm(np.cov(x16, rowvar=False) - np.cov(x32, rowvar=False)) / np.linalg.norm(cov)
    assert mean_shift < 0.1 and cov_shift < 0.075, (mean_shift, cov_shift)
    for x in (x32, x16):  # and both sample the exact posterior (the exactness tests' bounds)
        mean_error, cov_error = problem.errors(x)
        assert mean_error <= 0.1 and cov_error <= 0.15, (mean_error, cov_error)


def test_precision_is_checked():
    problem = ring_problem(dim=16, observed=6, std=0.3)
    try:
        with_precision(_prior(problem), "half")
    except ValueError as error:
        assert "half" in str(error) and "bf16" in str(error)
    else:
        raise AssertionError("an unknown precision was accepted")
    assert with_precision(_prior(problem), "auto").eps_fn.compute_dtype is None  # CPU: float32
