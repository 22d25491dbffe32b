"""Exactness of guidance x sampler on linear-Gaussian problems with a known posterior (issue 18's yardstick).

``python experiments/gaussian_exactness.py [--samples 4096] [--methods default,sda-pc,...]`` samples the
posterior of each problem of :func:`slams_jax.diffusion.gaussian.ring_problem` (16 dims with 6 observations of
noise 0.3 or 12 of noise 0.1, and 64 dims with 24 of noise 0.1) with the exact prior noise predictor as a
callable prior, and prints one JSON line per (method, problem): the largest standardized mean error, the
relative Frobenius covariance error, and the same for exact draws of the posterior (the sampling error floor).
``default`` is what ``posterior_sample`` does when given nothing (MMPS, ``Multistep``); the others are named
guidance-sampler-setting (``pc``: the predictor-corrector with one correction; ``ode``/``sde``: ``Multistep``
with ``eta`` 0 or 1; ``trust``: ``max_shift=3``; ``robust``: ``MMPS(solver="robust")``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slams_jax.diffusion.gaussian import ring_problem
from slams_jax.errors import SamplingError
from slams_jax.diffusion.guidance import DPS, MMPS, SDA
from slams_jax.diffusion.posterior import SamplingOptions, posterior_sample
from slams_jax.diffusion.samplers import PredictorCorrector
from slams_jax.diffusion.schedules import VPSchedule
from slams_jax.diffusion.multistep import Multistep

PROBLEMS = {"16d-6obs-0.3": dict(dim=16, observed=6, std=0.3), "16d-12obs-0.1": dict(dim=16, observed=12, std=0.1),
            "64d-24obs-0.1": dict(dim=64, observed=24, std=0.1)}


def methods(steps: int) -> dict:
    return {
        "default": {},
        "sda-pc-tau1": dict(guidance=SDA(), sampler=PredictorCorrector(steps=steps, tau=1.0)),
        "sda-pc-tau0.1": dict(guidance=SDA(), sampler=PredictorCorrector(steps=steps, tau=0.1)),
        "sda-pc-tau0.3-trust": dict(guidance=SDA(max_shift=3.0), sampler=PredictorCorrector(steps=steps, tau=0.3)),
        "dps-pc-tau1": dict(guidance=DPS(), sampler=PredictorCorrector(steps=steps, tau=1.0)),
        "mmps-pc-tau0.1": dict(guidance=MMPS(), sampler=PredictorCorrector(steps=steps, tau=0.1)),
        "mmps-pc-tau0.2": dict(guidance=MMPS(), sampler=PredictorCorrector(steps=steps, tau=0.2)),
        "mmps-pc-tau0.3": dict(guidance=MMPS(), sampler=PredictorCorrector(steps=steps, tau=0.3)),
        "mmps-robust-pc-tau0.2": dict(guidance=MMPS(solver="robust"),
                                      sampler=PredictorCorrector(steps=steps, tau=0.2)),
        "mmps3-ode": dict(guidance=MMPS(cg_iterations=3, cg_tolerance=0.0), sampler=Multistep(steps=steps)),
        "mmps-ode": dict(guidance=MMPS(), sampler=Multistep(steps=steps, eta=0.0)),
        "mmps-sde": dict(guidance=MMPS(), sampler=Multistep(steps=steps, eta=1.0)),
        "mmps-ode-1st": dict(guidance=MMPS(), sampler=Multistep(steps=steps, eta=0.0, order=1)),
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument("--steps", type=int, default=0, help="sampler steps of the named methods (default: the default's)")
    p.add_argument("--methods", default="default")
    p.add_argument("--problems", default=",".join(PROBLEMS))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    schedule = VPSchedule()
    steps = args.steps or SamplingOptions().sampler.steps
    table = methods(steps)
    rows = []
    for name in args.problems.split(","):
        problem = ring_problem(seed=args.seed, **PROBLEMS[name])
        m, c = problem.posterior()
        exact = np.random.default_rng(1).multivariate_normal(m, c, size=args.samples)
        floor = problem.errors(exact)
        for method in args.methods.split(","):
            t0 = time.perf_counter()
            row = {"problem": name, "method": method, "steps": steps}
            try:
                x = posterior_sample(jax.random.PRNGKey(args.seed), problem.eps(schedule), problem.observations(),
                                     n_samples=args.samples, shape=problem.shape, schedule=schedule, **table[method])
                mean_error, cov_error = problem.errors(np.asarray(x))
                row.update(mean_error=round(mean_error, 4), cov_error=round(cov_error, 4))
            except SamplingError as e:
                row["diverged"] = str(e).split(";")[0]
            row.update(exact_mean_error=round(floor[0], 4), exact_cov_error=round(floor[1], 4),
                       seconds=round(time.perf_counter() - t0, 2))
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
