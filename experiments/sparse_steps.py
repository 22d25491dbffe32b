"""Error against step count on a learned prior with sparse point observations (issue 18, item 6).

``python experiments/sparse_steps.py --workdir=runs/demo [--points 40] [--std 0.05] [--members 4]
[--length 8] [--steps 8,16,32,64,128] [--methods default,reference]`` loads a trained Kolmogorov experiment
(the demo's), takes the first test window, observes the state at ``--points`` random grid points at every
state with noise ``--std`` (a fraction of the state's climatological std), and samples the posterior with
each method at each step count. It prints one JSON line per (method, steps): the RMSE of the ensemble mean
over the whole field and at the observed points, the CRPS, the spread, the seconds, or the divergence.

Methods: ``default`` (what ``posterior_sample`` does given nothing, at the given steps), ``reference`` (the
SDA/SLAMS reference: SDA gamma 1e-2, the predictor-corrector with 1 correction, tau 1), ``config`` (what
``configs/kolmogorov.py`` uses for learned priors: the same with the trust region and tau 0.3).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import runpy
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slams_jax.diffusion.guidance import SDA
from slams_jax.diffusion.posterior import SamplingOptions, posterior_sample
from slams_jax.diffusion.samplers import PredictorCorrector
from slams_jax.errors import SamplingError
from slams_jax.metrics import ensemble_scores
from slams_jax.observation.observations import observe
from slams_jax.observation.operators import random_points
from slams_jax.pipeline.assimilation import load_truth
from slams_jax.pipeline.configuration import assimilation_settings_from_config
from slams_jax.pipeline.pretrained import load_trained


def methods(steps: int) -> dict:
    default = SamplingOptions()
    return {
        "default": dict(guidance=default.guidance, sampler=dataclasses.replace(default.sampler, steps=steps)),
        "reference": dict(guidance=SDA(), sampler=PredictorCorrector(steps=steps, corrections=1, tau=1.0)),
        "config": dict(guidance=SDA(max_shift=3.0), sampler=PredictorCorrector(steps=steps, corrections=1, tau=0.3)),
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--points", type=int, default=40)
    p.add_argument("--std", type=float, default=0.05, help="noise, as a fraction of the climatological std")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--length", type=int, default=8)
    p.add_argument("--steps", default="8,16,32,64,128")
    p.add_argument("--methods", default="default,reference")
    args = p.parse_args(argv)
    config = runpy.run_path(str(ROOT / "configs" / "kolmogorov.py"))["get_config"]()
    config.assimilation.length = args.length
    a = assimilation_settings_from_config(config)
    model = load_trained(args.workdir)
    _, truth = load_truth(a, model, Path(args.workdir), None)
    state = model.settings.data.state
    field = truth[state.name]
    scale = float(np.nanstd(field))
    op = random_points(jax.random.PRNGKey(1), field.shape[1:3], density=args.points / np.prod(field.shape[1:3]))
    obs = observe(jax.random.PRNGKey(2), jnp.asarray(field), op, args.std * scale)
    rows = []
    for steps in (int(s) for s in args.steps.split(",")):
        for name in args.methods.split(","):
            row = {"method": name, "steps": steps, "points": op.n_points, "std": args.std * scale}
            t0 = time.perf_counter()
            try:
                ens = np.asarray(posterior_sample(jax.random.PRNGKey(3), model, [obs], n_samples=args.members,
                                                  length=args.length, **methods(steps)[name]))
                scores = ensemble_scores(jnp.asarray(ens), jnp.asarray(field), tuple(state.variables))
                mean = ens.mean(0)
                at_points = np.asarray(op(jnp.asarray(mean))) - np.asarray(op(jnp.asarray(field)))
                row.update(rmse=round(float(np.sqrt(np.mean((mean - field) ** 2))), 4),
                           rmse_at_points=round(float(np.sqrt(np.mean(at_points**2))), 4),
                           crps=round(float(np.mean([scores[v]["crps"] for v in state.variables])), 4),
                           spread=round(float(np.mean([scores[v]["spread"] for v in state.variables])), 4))
            except SamplingError as e:
                row["diverged"] = str(e).split(";")[0]
            row["seconds"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
