"""The embedded demo: generate Kolmogorov flow, train the autoencoder and the latent prior, report.

``python -m slams_jax.demo --workdir=runs/demo [--quick]`` runs everything on a 2-core CPU (the full
demo within about 10 minutes, ``--quick`` within about 2) and writes ``WORKDIR/metrics.json``:

- ``autoencoder``: reconstruction RMSE per modality and channel on the test split, in physical units
  and relative to the test standard deviation (valid points only);
- ``prior``: statistics of unconditional trajectories sampled from the latent prior and decoded, next
  to the test split: per-channel mean and standard deviation, and the isotropic kinetic-energy spectrum
  (ratio of sampled to true energy in wavenumber bands); the same for the autoencoder's reconstructions,
  which bound what the latent prior can reach;
- ``assimilation``: a multimodal assimilation of a test window (``config.assimilation``: a coarse, noisy
  state every 4th step and a satellite OLR swath) by :func:`slams_jax.pipeline.assimilation.assimilate`, scored next
  to the naive interpolation baseline; its outputs are in ``WORKDIR/assimilation/``.
"""

from __future__ import annotations

from slams_jax.errors import MissingFileError

import json
import os
import runpy
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from slams_jax.data import datasets
from slams_jax.pipeline.assimilation import assimilate
from slams_jax.pipeline.assimilation import format_report as format_assimilation
from slams_jax.metrics import isotropic_energy_spectrum
from slams_jax.pipeline.configuration import parallel_settings_from_config, settings_from_config
from slams_jax.pipeline.pretrained import TrainedModel, load_trained
from slams_jax.pipeline.training import train_experiment

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "kolmogorov.py"
SPECTRUM_BANDS = ((1, 4), (4, 8), (8, 16), (16, 32))


def load_config(path: str | os.PathLike = DEFAULT_CONFIG, variant: str = ""):
    """``get_config(variant)`` of a config file."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(
            f"config file {path} not found; the demo expects the repository layout (pip install -e .)"
        )
    return runpy.run_path(str(path))["get_config"](variant)


def _test_states(model: TrainedModel, arrays: datasets.Arrays, max_states: int) -> dict[str, np.ndarray]:
    first = next(iter(arrays.values()))
    n = first.shape[0] * first.shape[1]
    idx = np.linspace(0, n - 1, min(n, max_states)).astype(int)
    traj, t = np.divmod(idx, first.shape[1])
    return {k: a[traj, t] for k, a in arrays.items()}


def _mean_spectrum(states: np.ndarray) -> np.ndarray:
    """Kinetic-energy spectrum ``(k,)`` of states ``(n, y, x, 2)``, averaged over the states."""
    return np.asarray(isotropic_energy_spectrum(jnp.asarray(states))[1]).mean(0)


def _band_ratios(spec_a: np.ndarray, spec_b: np.ndarray) -> dict[str, float]:
    """Energy ratio of ``spec_a`` to ``spec_b`` per wavenumber band, of mean spectra ``(k,)``."""
    out = {}
    for lo, hi in SPECTRUM_BANDS:
        if hi <= len(spec_a):
            out[f"k{lo}-{hi}"] = float(spec_a[lo:hi].sum() / max(spec_b[lo:hi].sum(), 1e-30))
    return out


def evaluate(model: TrainedModel, test: datasets.Arrays, key, n_samples: int, steps: int, corrections: int,
             length: int, max_states: int = 256) -> dict[str, Any]:
    """Autoencoder reconstruction errors and prior sample statistics on the test split (physical units)."""
    settings, norm = model.settings, model.normalization
    state_name = settings.data.state.name
    states = _test_states(model, test, max_states)
    report: dict[str, Any] = {"autoencoder": {}, "prior": {}}

    encode = jax.jit(lambda v: model.encode(v))
    decode = jax.jit(lambda z: model.decode(z))
    recon = {k: [] for k in states}
    for lo in range(0, len(states[state_name]), 64):
        chunk = {k: jnp.asarray(v[lo:lo + 64]) for k, v in states.items()}
        out = decode(encode(chunk))
        for k in recon:
            recon[k].append(np.asarray(out[k]))
    for m in settings.data.modalities:
        truth = norm.denormalize(m.name, states[m.name])
        pred = norm.denormalize(m.name, np.concatenate(recon[m.name]))
        valid = np.isfinite(truth)
        per = {}
        for c, var in enumerate(m.variables):
            v = valid[..., c]
            err = pred[..., c][v] - truth[..., c][v]
            rmse = float(np.sqrt(np.mean(err**2)))
            per[var] = {"rmse": rmse, "relative_rmse": rmse / float(np.std(truth[..., c][v]))}
        report["autoencoder"][m.name] = per

    truth_state = norm.denormalize(state_name, states[state_name])
    recon_state = norm.denormalize(state_name, np.concatenate(recon[state_name]))
    true_spec = _mean_spectrum(truth_state)
    recon_spec = _mean_spectrum(recon_state)

    t0 = time.perf_counter()
    sample = jax.jit(lambda k: model.sample_prior(k, n_samples, length, model.latent_shape(),
                                                  steps=steps, corrections=corrections))
    z = np.asarray(sample(key))
    sample_s = time.perf_counter() - t0
    decoded = np.asarray(jax.jit(lambda z: model.decode(z, state_name))(jnp.asarray(z)))
    samples = norm.denormalize(state_name, decoded.reshape((-1,) + decoded.shape[2:]))
    sample_spec = _mean_spectrum(samples)
    state_vars = settings.data.state.variables
    report["prior"] = {
        "n_trajectories": n_samples, "length": length, "steps": steps, "corrections": corrections,
        "sampling_s": sample_s,
        "finite": bool(np.isfinite(samples).all()),
        "mean": {v: {"samples": float(samples[..., c].mean()), "test": float(truth_state[..., c].mean())}
                 for c, v in enumerate(state_vars)},
        "std": {v: {"samples": float(samples[..., c].std()), "test": float(truth_state[..., c].std())}
                for c, v in enumerate(state_vars)},
        "energy_spectrum_ratio": _band_ratios(sample_spec, true_spec),
        "reconstruction_energy_spectrum_ratio": _band_ratios(recon_spec, true_spec),
        "spectrum": {"test": true_spec.tolist(), "samples": sample_spec.tolist(),
                     "reconstruction": recon_spec.tolist()},
    }
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = ["autoencoder reconstruction on the test split (RMSE, relative RMSE):"]
    for name, per in report["autoencoder"].items():
        for var, r in per.items():
            lines.append(f"  {name:>8s}.{var:<8s} rmse {r['rmse']:.4g}   relative {r['relative_rmse']:.3f}")
    p = report["prior"]
    lines.append(f"prior samples ({p['n_trajectories']} x {p['length']} states, {p['steps']} steps, "
                 f"{p['corrections']} corrections, {p['sampling_s']:.1f} s):")
    for v in p["mean"]:
        lines.append(f"  {v:<4s} mean {p['mean'][v]['samples']:+.3f} (test {p['mean'][v]['test']:+.3f})   "
                     f"std {p['std'][v]['samples']:.3f} (test {p['std'][v]['test']:.3f})")
    lines.append("  kinetic energy, samples / test, by wavenumber band: "
                 + ", ".join(f"{k}: {r:.2f}" for k, r in p["energy_spectrum_ratio"].items()))
    lines.append("  kinetic energy, reconstructions / test:             "
                 + ", ".join(f"{k}: {r:.2f}" for k, r in p["reconstruction_energy_spectrum_ratio"].items()))
    if "assimilation" in report:
        lines.append(format_assimilation(report["assimilation"]))
    return "\n".join(lines)


def run_demo(workdir: str | os.PathLike, quick: bool = False, config=None) -> dict[str, Any]:
    """Generate data, train both stages and write ``WORKDIR/metrics.json``; returns the report.

    The data are loaded once (by the training) and the trained model once; the evaluation and the
    assimilation take them from there.
    """
    t0 = time.perf_counter()
    workdir = Path(workdir)
    config = load_config(variant="quick" if quick else "") if config is None else config
    settings = settings_from_config(config)
    training, source = train_experiment(settings, parallel_settings_from_config(config), workdir)
    model = load_trained(workdir)
    key = jax.random.fold_in(jax.random.PRNGKey(settings.seed), 0xDE40)
    report = evaluate(model, source.arrays["test"], key, n_samples=8 if quick else 16, steps=32 if quick else 64,
                      corrections=1, length=settings.score.window + 3)
    report["assimilation"] = assimilate(config, workdir, model=model, source=source)
    report["training"] = training
    report["wall_s"] = time.perf_counter() - t0
    report["quick"] = quick
    report["device"] = str(jax.devices()[0].device_kind)
    (workdir / "metrics.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv):
    from absl import flags

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    report = run_demo(flags.FLAGS.workdir, flags.FLAGS.quick)
    print(format_report(report))
    print(f"wall time {report['wall_s']:.0f} s; metrics in {Path(flags.FLAGS.workdir) / 'metrics.json'}")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", "runs/demo", "Directory for data, checkpoints and metrics.")
    flags.DEFINE_bool("quick", False, "A reduced run of about two minutes.")
    flags.DEFINE_bool("traceback", False, "Show the whole traceback of a slams_jax error.")
    from absl import logging

    from slams_jax import compilation_cache
    from slams_jax.errors import one_line_errors

    compilation_cache.enable()
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    app.run(one_line_errors(main, lambda: flags.FLAGS.traceback))
