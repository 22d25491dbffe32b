"""Benchmark: the same posterior sampling through the plain ``lax.scan`` sampler and the diffrax ones.

``python experiments/bench_samplers.py --workdir=runs/demo [--members=4 --steps=16 --length=12]`` loads a
trained experiment, builds the demo's observations (coarse noisy state every 4th step + OLR swath) and times
``posterior_sample`` per sampler after a warm-up call (compilation excluded; the compiled program is reused),
printing seconds per call and the ratio to the scan predictor-corrector. All rows come from one run on one
device, so the ratios are comparable.
"""

import argparse
import time

import jax
import numpy as np

import slams_jax
from slams_jax.data import datasets
from slams_jax.observation.operators import Coarsen, Swath, TimeSubsample


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--length", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    model = slams_jax.load_trained(args.workdir)
    s = model.settings
    test = datasets.split_dataset(datasets.load_dataset(s.data, s.seed, args.workdir), s.data)["test"]
    window = test.isel(trajectory=0, time=slice(0, args.length)).expand_dims("trajectory")
    truth = {k: v[0] for k, v in datasets.to_arrays(window, s.data.modalities).items()}
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    obs = [slams_jax.observe(k1, truth["state"], TimeSubsample(4) >> Coarsen(8), 0.1),
           slams_jax.observe(k2, truth["olr"], Swath(4, 4), 1.0, modality="olr")]
    samplers = [
        slams_jax.PredictorCorrector(args.steps, corrections=1),
        slams_jax.DiffraxPredictorCorrector(args.steps, corrections=1),
        slams_jax.ReverseSDE(2 * args.steps),  # the same number of score evaluations
        slams_jax.ProbabilityFlow(args.steps, solver="heun"),  # 2 evaluations per step
    ]
    print(f"device {jax.devices()[0].device_kind}; {args.members} members x {args.length} states, "
          f"latent {model.latent_shape()}, SDA guidance, {2 * args.steps} score evaluations per member")
    base = None
    for sampler in samplers:
        run = lambda k: np.asarray(slams_jax.posterior_sample(  # noqa: E731
            k, model, obs, n_samples=args.members, length=args.length, sampler=sampler, divergence_bound=None))
        t0 = time.perf_counter()
        run(jax.random.PRNGKey(1))
        first = time.perf_counter() - t0
        times = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            run(jax.random.PRNGKey(2 + r))
            times.append(time.perf_counter() - t0)
        best = min(times)
        base = base or best
        print(f"{sampler!r:70s} first call {first:7.1f} s   then {best:7.2f} s   ratio to scan PC {best / base:5.2f}")


if __name__ == "__main__":
    main()
