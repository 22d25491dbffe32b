"""The quality of a trained latent prior: its unconditional samples against the test split.

``python experiments/prior_quality.py --workdir=runs/ablation/models/state [--samples=16 --steps=64]`` loads a
trained experiment (the demo's workdir, or one model of the ablation study), samples unconditional
trajectories from its latent prior, decodes them and prints what :func:`slams_jax.demo.evaluate` measures: the
autoencoder's reconstruction errors, the samples' per-channel mean and standard deviation next to the test
split's, and the kinetic-energy ratio of samples to test states in wavenumber bands (1-4, 4-8, 8-16, 16-32),
with the reconstructions' ratios, which bound what the latent prior can reach. The numbers also go to
``WORKDIR/prior_quality.json``.
"""

import argparse
import json
from pathlib import Path

import jax

import slams_jax
from slams_jax.demo import evaluate, format_report
from slams_jax.pipeline.sources import load_source


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--samples", type=int, default=16, help="unconditional trajectories")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--corrections", type=int, default=1)
    parser.add_argument("--length", type=int, default=0, help="states per trajectory (0: the window + 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from slams_jax import compilation_cache

    compilation_cache.enable()
    model = slams_jax.load_trained(args.workdir)
    s = model.settings
    source = load_source(s.data, s.seed, args.workdir, normalization=model.normalization)
    report = evaluate(model, source.arrays["test"], jax.random.PRNGKey(args.seed), n_samples=args.samples,
                      steps=args.steps, corrections=args.corrections, length=args.length or s.score.window + 3)
    print(format_report(report))
    (Path(args.workdir) / "prior_quality.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
