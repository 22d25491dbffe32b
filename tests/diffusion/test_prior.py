"""The prior object: a pytree that ``jit`` caches on (no recompilation), the protocol, the options record.

The prior is N(m, 1) per coordinate with m a parameter (a leaf): eps(x_t, t) = sigma_t (x_t - mu_t m) /
(mu_t^2 + sigma_t^2). Its ``eps_fn`` counts how often it is traced, a Python side effect that only runs
while JAX traces.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.diffusion import ensemble
from slams_jax.diffusion.guidance import SDA
from slams_jax.diffusion.posterior import SamplingError, SamplingOptions, posterior_sample, posterior_sample_batch
from slams_jax.diffusion.prior import Prior, PosteriorPrior, callable_prior
from slams_jax.diffusion.samplers import PredictorCorrector
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Coarsen, TimeSubsample

SCHEDULE = VPSchedule()
SHAPE = (4, 4, 4, 1)
SAMPLER = PredictorCorrector(steps=4, corrections=1)
TRACES = {"eps": 0}


def _eps(params, x, t):
    TRACES["eps"] += 1
    mu, sigma = SCHEDULE.mu(t), SCHEDULE.sigma(t)
    return sigma * (x - mu * params["mean"]) / (mu**2 + sigma**2)


def _state(params, x):
    return 2.0 * x + params["offset"]


def _prior(mean: float, offset: float = 0.0, bound=None) -> Prior:
    """A new object each call, built alike: equal static fields, its own leaves."""
    params = {"mean": jnp.full(SHAPE, mean, jnp.float32), "offset": jnp.asarray(offset, jnp.float32)}
    return Prior(params=params, scales={"state": np.float32(2.0)}, bound=bound, eps_fn=_eps, schedule=SCHEDULE,
                 shape=SHAPE, decoders=(("state", _state),), state="state")


def _obs(op=TimeSubsample(2) >> Coarsen(2), shift=0.0):
    values = np.asarray(op(jnp.ones(SHAPE, jnp.float32))) + shift
    return [Observation("state", op, values=values, std=0.3)]


def _sample(prior, obs, seed=0, **kw):
    kw = dict(n_samples=3, guidance=SDA(), sampler=SAMPLER, mesh=None) | kw
    return np.asarray(posterior_sample(jax.random.PRNGKey(seed), prior, obs, **kw))


def test_prior_is_a_pytree_of_its_arrays():
    prior = _prior(0.5, bound=100.0)
    leaves, treedef = jax.tree_util.tree_flatten(prior)
    assert len(leaves) == 3  # mean, offset, the scale
    assert treedef == jax.tree_util.tree_structure(_prior(-1.0, bound=100.0))  # static parts equal by value
    assert treedef != jax.tree_util.tree_structure(dataclasses.replace(_prior(0.5), shape=(2, 4, 4, 1)))
    assert hash(treedef) == hash(jax.tree_util.tree_structure(_prior(3.0)))


def test_same_kind_of_prior_and_observations_does_not_recompile():
    a = _sample(_prior(0.5), _obs())
    traces, programs = TRACES["eps"], ensemble._advance._cache_size()
    assert traces > 0
    # a new prior object with other parameters and bound, new values, a new key: the same program
    b = _sample(_prior(-1.0, offset=3.0, bound=1e6), _obs(shift=0.5), seed=1)
    assert TRACES["eps"] == traces and ensemble._advance._cache_size() == programs
    assert not np.allclose(a, b)
    # the parameters are inputs, not constants: they change the samples (the mean moves them towards -1)
    assert _sample(_prior(-1.0), _obs(), seed=0).mean() < a.mean() - 0.1
    # another observation structure is another program: the counter does see retracing
    _sample(_prior(0.5), _obs(op=Coarsen(2)))
    assert TRACES["eps"] > traces and ensemble._advance._cache_size() == programs + 1


def test_outputs_are_decoded_with_the_prior_parameters():
    prior = _prior(0.0, offset=10.0)
    state, x = posterior_sample(jax.random.PRNGKey(0), prior, _obs(), n_samples=2, sampler=SAMPLER, mesh=None,
                                return_latent=True)
    np.testing.assert_allclose(np.asarray(state), 2.0 * np.asarray(x) + 10.0, rtol=1e-6)


@dataclasses.dataclass(frozen=True)
class _Model:
    """A stand-in for a trained model: it builds its prior through the protocol."""

    mean: float

    def posterior_prior(self, length, space, spread_windows):
        assert space == "latent" and spread_windows is None
        return dataclasses.replace(_prior(self.mean), shape=(length,) + SHAPE[1:])


def test_models_give_their_prior_through_the_protocol():
    assert isinstance(_Model(0.5), PosteriorPrior) and not isinstance(_prior(0.5), PosteriorPrior)
    x = _sample(_Model(0.5), _obs(), length=4)
    np.testing.assert_array_equal(x, _sample(_prior(0.5), _obs()))
    traces = TRACES["eps"]
    _sample(_Model(2.0), _obs(), length=4)  # another model of the same kind: no retrace
    assert TRACES["eps"] == traces
    with pytest.raises(ValueError, match="give length="):
        _sample(_Model(0.5), _obs())
    # the divergence bound applies to a model's prior (standardized variables), here far exceeded
    with pytest.raises(SamplingError, match="diverged"):
        _sample(_Model(0.5), _obs(shift=5.0), length=4, divergence_bound=1.0)


def test_a_path_is_refused_with_the_way_to_load_it(tmp_path):
    with pytest.raises(TypeError, match=r"slams_jax.load_trained\(path\)"):
        _sample(tmp_path, _obs(), length=4)
    with pytest.raises(TypeError, match="load_trained"):
        _sample(str(tmp_path), _obs(), length=4)


def test_options_record_and_keywords_are_one_setting():
    opts = SamplingOptions(guidance=SDA(gamma=0.1), sampler=SAMPLER, mesh=None)
    x = np.asarray(posterior_sample(jax.random.PRNGKey(0), _prior(0.5), _obs(), n_samples=2, options=opts))
    y = np.asarray(posterior_sample(jax.random.PRNGKey(0), _prior(0.5), _obs(), n_samples=2, guidance=SDA(gamma=0.1),
                                    sampler=SAMPLER, mesh=None))
    np.testing.assert_array_equal(x, y)
    z = np.asarray(posterior_sample(jax.random.PRNGKey(0), _prior(0.5), _obs(), n_samples=2, options=opts,
                                    guidance=SDA()))  # a keyword overrides the record
    assert not np.allclose(x, z)
    batch = posterior_sample_batch(jax.random.PRNGKey(0)[None], _prior(0.5), [_obs()], n_samples=2, options=opts)
    np.testing.assert_allclose(batch[0], x, rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="unexpected keyword 'gudiance'"):
        posterior_sample(jax.random.PRNGKey(0), _prior(0.5), _obs(), gudiance=SDA())
    assert SamplingOptions().sampler.steps == 32 and SamplingOptions().sampler.order == 2  # the Multistep default


def test_callable_priors_keep_their_defaults():
    eps = lambda x, t: _eps({"mean": 0.0}, x, t)  # noqa: E731
    prior = callable_prior(eps, SHAPE, SCHEDULE)
    assert prior.observables == ("state",) and prior.bound is None and prior.state == "state"
    assert prior == callable_prior(eps, SHAPE, SCHEDULE)  # equal static parts: one compiled program
    custom = callable_prior(eps, SHAPE, SCHEDULE, decoders={"olr": lambda x: x[..., :1]}, scales={"olr": 3.0})
    assert custom.state is None and float(custom.scales["olr"]) == 3.0
    x = jnp.ones(SHAPE, jnp.float32)
    np.testing.assert_array_equal(custom.output(x), x)
