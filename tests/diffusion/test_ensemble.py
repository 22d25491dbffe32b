"""The compiled ensemble program: members vmapped, steps in chunks, divergence caught between chunks.

- With ``batch_size`` covering the members, the traced program has no loop over them: every loop in it runs
  over steps (or corrections), and the prior is evaluated once per step on all members at once.
- Running a sampler's steps in chunks (``start`` / ``advance``) gives the sample of running them at once.
- A member that becomes non-finite or goes beyond the bound stops the run within one chunk, for a callable
  prior too, and the error names the member and the step.
"""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slams_jax.diffusion import ensemble
from slams_jax.diffusion.gaussian import ring_problem
from slams_jax.diffusion.guidance import DPS, SDA
from slams_jax.diffusion.likelihood import likelihood_data, structure
from slams_jax.diffusion.multistep import Multistep
from slams_jax.diffusion.posterior import posterior_sample
from slams_jax.diffusion.prior import callable_prior
from slams_jax.diffusion.progress import Progress
from slams_jax.diffusion.samplers import DiffraxPredictorCorrector, PredictorCorrector, ReverseSDE
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.errors import SamplingError

SCHEDULE = VPSchedule()
PROBLEM = ring_problem(dim=16, observed=6, std=0.3)


def _subjaxprs(value):
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(getattr(value, "jaxpr", None), "eqns"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _subjaxprs(v)


def _loops(jaxpr):
    """``(primitive, trip count)`` of every scan and of every while loop (count None) in a jaxpr, recursively."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            found.append(("scan", eqn.params["length"]))
        elif eqn.primitive.name == "while":
            found.append(("while", None))
        for value in eqn.params.values():
            for sub in _subjaxprs(value):
                found += _loops(sub)
    return found


def _advance_jaxpr(n, batch_size, count=4):
    prior = callable_prior(PROBLEM.eps(SCHEDULE), PROBLEM.shape, SCHEDULE)
    obs = PROBLEM.observations()
    data = tuple(jnp.broadcast_to(a, (n,) + a.shape) for a in likelihood_data(prior, obs))
    sampler = PredictorCorrector(steps=8, corrections=1)
    carry = ensemble._start(jax.random.split(jax.random.PRNGKey(0), n), sampler=sampler, shape=PROBLEM.shape,
                            mesh=None)
    fn = lambda c: ensemble._advance(prior, jnp.asarray(0, jnp.int32), c, data, pairs=structure(obs),
                                     guidance=SDA(), sampler=sampler, count=count, batch_size=batch_size, mesh=None)
    return jax.make_jaxpr(fn)(carry).jaxpr


@pytest.mark.parametrize("batch_size", [None, 6, 16])
def test_members_are_vmapped_not_looped(batch_size):
    loops = _loops(_advance_jaxpr(6, batch_size))
    # the steps (4) and the corrections (1); a member loop would have 6 (or 3 for lax.map chunks) iterations
    assert {n for kind, n in loops if kind == "scan"} <= {4, 1}, loops


def test_a_smaller_batch_size_maps_chunks_of_members():
    loops = _loops(_advance_jaxpr(6, 2))
    assert ("scan", 3) in loops  # three chunks of two members (the check above can fail)


@pytest.mark.parametrize("sampler", [PredictorCorrector(steps=12, corrections=1), Multistep(steps=12, eta=1.0),
                                     DiffraxPredictorCorrector(steps=12, corrections=1), ReverseSDE(steps=12)])
def test_steps_in_chunks_give_the_sample_of_all_steps_at_once(sampler):
    eps = PROBLEM.eps(SCHEDULE)
    key = jax.random.PRNGKey(3)
    whole, finite = jax.jit(lambda k: sampler.sample(k, eps, PROBLEM.shape, SCHEDULE))(key)
    carry = sampler.start(key, PROBLEM.shape)
    advance = jax.jit(lambda c, first: sampler.advance(c, eps, SCHEDULE, first, 4))
    peaks = []
    for first in (0, 4, 8):
        carry, p = advance(carry, first)
        peaks.append(p)
    np.testing.assert_allclose(carry["x"], whole, rtol=1e-5, atol=1e-5)
    assert finite.all() and np.allclose(np.concatenate(peaks)[-1], np.abs(whole).max(), rtol=1e-5)


def _exploding(x, t):  # a prior whose noise prediction blows the state up below t = 0.5
    return PROBLEM.eps(SCHEDULE)(x, t) - jnp.where(t < 0.5, 50.0, 0.0) * x


def test_a_callable_prior_beyond_the_bound_stops_early_and_names_member_and_step(monkeypatch):
    calls = []
    original = ensemble._advance
    monkeypatch.setattr(ensemble, "_advance", lambda *a, **k: calls.append(k["count"]) or original(*a, **k))
    sampler = PredictorCorrector(steps=64, corrections=0)
    with pytest.raises(SamplingError, match=r"member \d+: the state (diverged|became NaN).* at step \d+ of Pred"):
        posterior_sample(jax.random.PRNGKey(0), _exploding, PROBLEM.observations(), n_samples=4,
                         shape=PROBLEM.shape, schedule=SCHEDULE, sampler=sampler, guidance=SDA())
    assert len(calls) < 64 // calls[0]  # stopped before the last chunk
    # without a bound only non-finite values fail; with one the diverging value is named with the bound
    with pytest.raises(SamplingError, match=r"diverged \(largest \|value\| .*bound 5\b"):
        posterior_sample(jax.random.PRNGKey(0), _exploding, PROBLEM.observations(), n_samples=4,
                         shape=PROBLEM.shape, schedule=SCHEDULE, sampler=sampler, divergence_bound=5.0)


def test_dps_on_a_stiff_problem_is_caught_rather_than_returned():
    stiff = ring_problem(dim=16, observed=12, std=0.1)
    with pytest.raises(SamplingError, match="member"):
        posterior_sample(jax.random.PRNGKey(0), stiff.eps(SCHEDULE), stiff.observations(), n_samples=64,
                         shape=stiff.shape, schedule=SCHEDULE, guidance=DPS(),
                         sampler=PredictorCorrector(steps=32, tau=1.0))


def test_progress_reports_the_steps_from_between_the_chunks(capsys):
    posterior_sample(jax.random.PRNGKey(0), PROBLEM.eps(SCHEDULE), PROBLEM.observations(), n_samples=3,
                     shape=PROBLEM.shape, schedule=SCHEDULE, sampler=Multistep(steps=16), progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("sampling: step 16/16, 3 trajectories")
    assert len(lines) == 8  # one line per chunk of 2 steps
    posterior_sample(jax.random.PRNGKey(0), PROBLEM.eps(SCHEDULE), PROBLEM.observations(), n_samples=3,
                     shape=PROBLEM.shape, schedule=SCHEDULE, sampler=Multistep(steps=16))
    assert capsys.readouterr().err == ""  # off in library calls


def test_progress_rewrites_its_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    report = Progress(4, 2, stream=out)
    report.update(2)
    report.update(4)
    assert out.getvalue().count("\r") == 2 and out.getvalue().endswith("step 4/4, 2 trajectories, 0 s\n")


def test_a_trust_region_keeps_stiff_dps_finite():
    stiff = ring_problem(dim=16, observed=12, std=0.1)
    x = posterior_sample(jax.random.PRNGKey(0), stiff.eps(SCHEDULE), stiff.observations(), n_samples=64,
                         shape=stiff.shape, schedule=SCHEDULE, guidance=DPS(max_shift=3.0),
                         sampler=PredictorCorrector(steps=32, tau=1.0))
    assert np.abs(np.asarray(x)).max() < 20
