"""experiments/prior_quality.py on a trained tiny experiment: what it writes is measured on the test split."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

import slams_jax
from slams_jax.pipeline.sources import load_source

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "prior_quality.py"


@pytest.mark.slow
def test_prior_quality_reports_the_test_splits_moments_and_band_ratios(trained, monkeypatch, capsys):
    workdir, _ = trained
    monkeypatch.setattr(sys, "argv", ["prior_quality.py", f"--workdir={workdir}", "--samples=2", "--steps=4"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    assert "kinetic energy, samples / test" in capsys.readouterr().out
    report = json.loads((workdir / "prior_quality.json").read_text())
    model = slams_jax.load_trained(workdir)
    source = load_source(model.settings.data, model.settings.seed, workdir)
    state = model.settings.data.state
    test = model.normalization.denormalize(state.name, np.asarray(source.arrays["test"][state.name]))
    prior = report["prior"]
    assert prior["n_trajectories"] == 2 and prior["steps"] == 4 and prior["finite"]
    # the test split's statistics are its own (every state of the tiny split is used)
    for c, v in enumerate(state.variables):
        assert prior["std"][v]["test"] == pytest.approx(float(test[..., c].std()), rel=1e-3)
    # the spectra are the states' mean spectra over wavenumber shells, and the bands are bands of shells
    _, per_state = slams_jax.isotropic_energy_spectrum(test.reshape((-1,) + test.shape[2:]))
    spec = {k: np.asarray(v) for k, v in prior["spectrum"].items()}
    np.testing.assert_allclose(spec["test"], np.asarray(per_state).mean(0), rtol=1e-4, atol=1e-7)
    for band, ratio in prior["reconstruction_energy_spectrum_ratio"].items():
        lo, hi = (int(k) for k in band[1:].split("-"))
        assert ratio == pytest.approx(spec["reconstruction"][lo:hi].sum() / spec["test"][lo:hi].sum(), rel=1e-5)
