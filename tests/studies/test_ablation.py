"""The ablation study (slams_jax.studies.ablation): settings, intervals, resume, and tiny end-to-end runs."""

import json
import math
import shutil

import jax
import numpy as np
import pytest
from scipy import stats

from helpers import load_config, tiny_config
from slams_jax.errors import ConfigError
from slams_jax.pipeline.configuration import ObservationSettings
from slams_jax.studies import ablation
from slams_jax.studies.ablation.sweeps import _ends_first
from synthetic_era5 import LAT, era5_config

FACTOR = {"coarsen": "coarsen", "noise": "std", "gap": "gap"}  # the field each sweep varies


@pytest.mark.parametrize("variant", ["", "cpu", "state", "quick", "era5"])
def test_every_sweep_varies_one_factor_about_a_shared_reference(variant):
    s = ablation.ablation_settings(load_config("ablation", variant))  # every configured method is known
    settings = ablation.study_settings(s.study)
    assert len({st.label for st in settings}) == len(settings)  # a setting's keys come from its place
    by = {}
    for st in settings:
        by.setdefault(st.sweep, []).append(st)
    assert list(by) == list(s.study.sweeps)
    for sweep, group in by.items():
        assert [getattr(st, FACTOR[sweep]) for st in group] == [st.severity for st in group]
        others = {tuple(getattr(st, f) for f in ("coarsen", "gap", "std") if f != FACTOR[sweep]) for st in group}
        assert len(others) == 1, (sweep, others)  # the other factors held fixed
        assert all(a.severity < b.severity for a, b in zip(group, group[1:]))  # from mild to severe
    # the sweeps meet: the noise sweep's coarsening is one of the coarsen sweep's points, at whose noise
    # the gap sweep's lattice is observed; only the gap sweep observes points
    assert by["noise"][0].coarsen in [st.coarsen for st in by["coarsen"]]
    assert {st.std for st in by["coarsen"]} == {st.std for st in by["gap"]}
    assert all((st.gap > 0) == (st.sweep == "gap") for st in settings)
    assert all(st.coarsen == 1 for st in by["gap"]) and all(st.gap == 0 for st in by["noise"])


def test_state_variant_runs_the_full_studys_settings_with_the_state_only_prior():
    """:state observes exactly as the full study (the same settings at the same places, so the same keys) and
    trains only what slams_0aux needs; the study's priors train longer than the demo's, :quick's do not."""
    full, state = (ablation.ablation_settings(load_config("ablation", v)) for v in ("", "state"))
    assert ablation.study_settings(state.study) == ablation.study_settings(full.study)
    assert ablation.needed_models(state) == ["state"] and state.models["state"].stages == ("autoencoder", "score")
    assert state.study.windows > full.study.windows and state.study.members >= full.study.members
    steps = lambda v: load_config("ablation", v).experiment.train.score.steps
    assert steps("") > load_config("kolmogorov").train.steps and steps("quick") <= 100


def test_spread_order_covers_every_sweep_first_and_keeps_the_keys():
    settings = ablation.study_settings(ablation.ablation_settings(load_config("ablation")).study)
    n = len(settings)
    assert ablation.run_order(settings, "sweeps") == list(range(n))
    order = ablation.run_order(settings, "spread")
    assert sorted(order) == list(range(n))
    # the extremes of every sweep come before any inner setting
    ends = set()
    for sweep in {st.sweep for st in settings}:
        severities = [st.severity for st in settings if st.sweep == sweep]
        ends |= {f"{sweep}={min(severities):g}", f"{sweep}={max(severities):g}"}
    assert {settings[i].label for i in order[:len(ends)]} == ends
    assert _ends_first(5) == [0, 4, 2, 1, 3] and _ends_first(1) == [0]
    with pytest.raises(ablation.StudyError, match="order='random'"):
        ablation.run_order(settings, "random")


def test_state_operators_observe_what_the_setting_says():
    grid = (64, 64)
    coarse = ablation.state_operator(ablation.Setting("coarsen", 8, coarsen=8), grid, every=2)
    assert coarse.check((8,) + grid + (2,)) == (4, 8, 8, 2)
    # r = 15 keeps the partial last block: ceil(64 / 15) = 5 cells per axis
    assert ablation.state_operator(ablation.Setting("coarsen", 15, coarsen=15), grid, every=1).check(
        (8,) + grid + (2,)) == (8, 5, 5, 2)
    for g in (4, 8, 16):
        sparse = ablation.state_operator(ablation.Setting("gap", g, gap=g), grid, every=1)
        assert sparse.check((3,) + grid + (2,)) == (3, (64 // g) ** 2, 2)  # 1/g^2 of the points
    lat = ablation.latent_setting(ablation.Setting("gap", 12, gap=12), downsample=4)
    assert lat.gap == 3 and lat.coarsen == 1
    assert ablation.latent_setting(ablation.Setting("coarsen", 20, coarsen=20), downsample=4).coarsen == 5
    assert ablation.latent_setting(ablation.Setting("coarsen", 4, coarsen=4), downsample=4).coarsen == 1


def test_summary_means_and_t_intervals():
    rng = np.random.default_rng(0)
    values = rng.normal(size=5)
    rows = [{"sweep": "noise", "severity": 1.0, "method": "m", "channel": "all", "window": w,
             **{k: float(v) for k in ablation.METRICS}, "seconds": 1.0, "error": ""} for w, v in enumerate(values)]
    rows.append({**rows[0], "window": 9, "rmse": float("nan"), "error": "diverged"})
    (rec,) = ablation.summarize(rows, 0.9)
    assert rec["windows"] == 6 and rec["failed"] == 1
    crps = values.tolist() + [values[0]]  # the failed row still has its other metrics
    np.testing.assert_allclose(rec["rmse"], values.mean())
    half = stats.t.ppf(0.95, 4) * values.std(ddof=1) / math.sqrt(5)
    np.testing.assert_allclose(rec["rmse_ci"], half, rtol=1e-12)
    lo, hi = stats.t.interval(0.9, 5, loc=np.mean(crps), scale=stats.sem(crps))
    np.testing.assert_allclose(rec["crps_ci"], (hi - lo) / 2, rtol=1e-12)


def test_results_file_survives_a_cut_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n" + json.dumps({"a": 2}) + "\n" + '{"a": 3, "b"')
    assert ablation.read_results(path) == [{"a": 1}, {"a": 2}]


def test_bad_config_is_named():
    config = load_config("ablation")
    config.study.methods = ("interpolation", "kriging")
    with pytest.raises(ablation.StudyError, match="kriging"):
        ablation.ablation_settings(config)
    config = load_config("ablation")
    config.study.length = 2  # the prior's windows have 5 states
    with pytest.raises(ablation.StudyError, match="config.study.length=2.*5 states"):
        ablation.ablation_settings(config)
    config = load_config("ablation")
    config.study.sweeps = ("coarsen", "blur")
    with pytest.raises(ablation.StudyError, match="blur"):
        ablation.ablation_settings(config)
    config = load_config("ablation")
    config.methods.slams_1aux.model = "state_sat"
    with pytest.raises(ablation.StudyError, match="config.methods.slams_1aux.model='state_sat'"):
        ablation.ablation_settings(config)
    # the typed groups are read by the main config's builder: a wrong key or type is named
    config = load_config("ablation")
    config.sampling.gama = 0.1
    with pytest.raises(ConfigError, match=r"config.sampling: unknown key\(s\) \['gama'\]"):
        ablation.ablation_settings(config)
    config = load_config("ablation")
    config.aux.precip.points = 2.0
    with pytest.raises(ConfigError, match="config.aux.precip.*points=2.0"):
        ablation.ablation_settings(config)


def _tiny_study(workdir_data, methods, sweeps):
    config = load_config("ablation")
    exp = tiny_config(stages=("autoencoder", "score", "pixel_score"))
    exp.data.n_test = 1
    exp.data.cache_dir = str(workdir_data)
    config.experiment = exp
    config.models = {"all": {"modalities": ("state", "precip", "olr"),
                             "stages": ("autoencoder", "score", "pixel_score")}}
    for m in config.methods:
        if config.methods[m].kind == "score":
            config.methods[m].model = "all"
    config.study.methods = methods
    config.study.sweeps = sweeps
    config.study.coarsen = (2, 8)
    config.study.noise = (1.0,)
    config.study.noise_coarsen = 2
    config.study.gap = (4,)
    config.study.windows = 2
    config.study.length = 4
    config.study.members = 3
    config.study.example_setting = "noise=1"
    config.sampling.steps = 2
    config.aux.olr.swath_footprint = 2
    config.aux.olr.swath_width = 2
    config.aux.precip.points = 0.2
    config.threedvar.maxiter = 50
    return config


CLASSICAL = ("interpolation", "persistence", "climatology", "3dvar")


@pytest.mark.slow
def test_classical_study_end_to_end_and_resume(trained, tmp_path):
    workdir, _ = trained
    config = _tiny_study(workdir / "data", CLASSICAL, ("coarsen", "noise", "gap"))
    logs = []
    result = ablation.run_study(config, tmp_path / "study", log=logs.append)
    rows = result["rows"]
    # 2 + 1 + 1 settings x 2 windows x 4 methods x (2 channels + their mean)
    assert len(rows) == 4 * 2 * 4 * 3
    assert not any(r["error"] for r in rows)
    assert {r["members"] for r in rows if r["method"] in ("interpolation", "persistence")} == {1}
    assert {r["members"] for r in rows if r["method"] in ("climatology", "3dvar")} == {3}
    summary = {(r["sweep"], r["severity"], r["method"], r["channel"]): r for r in result["summary"]}
    # a coarser observation is worse for every method that uses it; climatology ignores it
    for m in ("interpolation", "3dvar"):
        assert summary[("coarsen", 8, m, "all")]["rmse"] > summary[("coarsen", 2, m, "all")]["rmse"]
    np.testing.assert_allclose(summary[("coarsen", 8, "climatology", "all")]["rmse"],
                               summary[("coarsen", 2, "climatology", "all")]["rmse"], rtol=0.5)
    # 3D-Var with a fitted B beats the climatology it starts from
    assert summary[("coarsen", 2, "3dvar", "all")]["rmse"] < summary[("coarsen", 2, "climatology", "all")]["rmse"]
    out = tmp_path / "study"
    table = (out / "table.md").read_text()
    for m in CLASSICAL:
        assert f"| {m} |" in table
    assert (out / "results.csv").exists() and (out / "summary.csv").exists()
    assert (out / "figures" / "coarsen.png").exists() and (out / "figures" / "maps.png").exists()
    assert set(np.load(out / "examples.npz")) == {"truth", "observations", *CLASSICAL}  # the maps' fields

    # the order of the settings does not change any number (keys come from the settings' places)
    config.study.order = "spread"
    spread = ablation.run_study(config, tmp_path / "spread", log=lambda s: None)["rows"]
    key = lambda r: (r["sweep"], r["severity"], r["method"], r["window"], r["channel"])  # noqa: E731
    assert [key(r) for r in spread] != [key(r) for r in rows]
    by_key = {key(r): r for r in rows}
    for r in spread:
        np.testing.assert_allclose(r["rmse"], by_key[key(r)]["rmse"], rtol=1e-5)
    config.study.order = "sweeps"

    # a killed run resumes: drop the last method's rows of the last setting; only those are redone
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:-3]) + "\n" + lines[-3][:20])
    logs.clear()
    again = ablation.run_study(config, out, log=logs.append)
    redone = [line for line in logs if "window" in line and "RMSE" in line]
    assert len(redone) == 1, redone
    assert len(again["rows"]) == len(rows)


@pytest.mark.slow
def test_score_methods_get_the_same_observations_and_the_latent_setting(trained, tmp_path):
    workdir, _ = trained
    shutil.copytree(workdir / "checkpoints", tmp_path / "study" / "models" / "all" / "checkpoints")
    methods = ("interpolation", "sda_pixel", "slams_2aux", "slams_2aux_latent_obs")
    config = _tiny_study(workdir / "data", methods, ("noise",))
    result = ablation.run_study(config, tmp_path / "study", log=lambda s: None)
    rows = [r for r in result["rows"] if r["channel"] == "all"]
    # both windows of a score method come from one batched program (one gauge network for the study)
    assert [(r["method"], r["window"]) for r in rows] == [(m, w) for m in methods for w in (0, 1)]
    for r in rows:
        assert r["error"] or np.isfinite(r["rmse"]), r
    for m in methods[1:]:
        w0, w1 = (r for r in rows if r["method"] == m)
        assert w0["seconds"] == w1["seconds"]  # the batch's time, shared
        assert w0["error"] or w1["error"] or w0["rmse"] != w1["rmse"]
    assert {r["members"] for r in rows if r["method"] != "interpolation"} <= {0, 3}
    assert (tmp_path / "study" / "figures" / "maps.png").exists()


def test_windows_avoid_missing_days_and_can_spread_over_the_test_period():
    # the Kolmogorov layout: one window per trajectory first, then further along
    assert ablation.window_starts(None, 3, 24, 4, 8) == [(0, 0), (1, 0), (2, 0), (0, 8)]
    present = np.ones((1, 40), bool)
    present[0, 10] = False  # a day missing in one source: the window [8, 16) is unusable
    assert ablation.window_starts(present, 1, 40, 3, 8) == [(0, 0), (0, 16), (0, 24)]
    assert ablation.window_starts(present, 1, 40, 3, 8, "even") == [(0, 0), (0, 24), (0, 32)]  # of 0, 16, 24, 32
    with pytest.raises(ablation.StudyError, match="only 4 disjoint windows of length 8.*without missing days"):
        ablation.window_starts(present, 1, 40, 5, 8)
    with pytest.raises(ablation.StudyError, match="window_spacing='middle'"):
        ablation.window_starts(None, 1, 40, 2, 8, "middle")


def test_the_gauge_network_is_fixed_and_avoids_missing_cells():
    truths = [{"precip": np.ones((3, 8, 8, 1), np.float32)} for _ in range(2)]
    truths[1]["precip"][:, :, :4] = np.nan  # e.g. ocean in one window's source
    spec = ObservationSettings(modality="precip", points=0.25)
    op = ablation.aux_operator(jax.random.PRNGKey(0), truths, spec)
    assert op == ablation.aux_operator(jax.random.PRNGKey(0), truths, spec)
    assert op.n_points == 16 and min(op.lon_index) >= 4  # 25% of the grid, where both windows are defined
    with pytest.raises(ablation.StudyError, match="swath_footprint > 0 or points > 0"):
        ablation.aux_operator(jax.random.PRNGKey(0), truths, ObservationSettings(modality="precip"))


@pytest.mark.slow
def test_era5_study_on_synthetic_sources_is_area_weighted_and_keeps_latitude_open(tmp_path):
    """configs/ablation.py:era5 end to end on tiny ERA5/CPC/OLR sources (2 training steps per stage): every
    method runs, and the scores are weighted by cell area (recomputed from the stored ensemble means)."""
    from slams_jax.data.regrid import area_weights

    exp, *_ = era5_config(tmp_path)
    exp.autoencoder.hidden_channels = (4, 4)
    exp.autoencoder.latent_channels = 2
    exp.autoencoder.kernel_size = 3
    for s in (exp.score, exp.pixel_score):
        s.hidden_channels, s.hidden_blocks, s.embedding = (8, 8), (1, 1), 8
    for k, v in dict(steps=2, batch_size=4, warmup_steps=1, log_every=1, eval_every=2, eval_batches=1,
                     checkpoint_every=2).items():
        setattr(exp.train, k, v)
    exp.train.autoencoder.steps = 2
    exp.score.order = 1  # windows of 3 states
    config = load_config("ablation", "era5")
    assert tuple(config.threedvar.periodic) == (False, True)
    config.experiment = exp
    methods = ("interpolation", "3dvar", "slams_1aux")  # one model: state + OLR, without the precipitation source
    config.study.methods = methods
    config.study.sweeps = ("coarsen",)
    config.study.coarsen = (2,)
    config.study.windows = 2  # the test split: 8 days
    config.study.length = 4
    config.study.members = 2
    config.study.example_setting = "coarsen=2"
    config.sampling.steps = 2
    config.sampling.divergence_bound = 0.0  # priors of 2 steps: the scores, not their quality, are under test
    config.aux.olr.swath_footprint = 2
    config.aux.olr.swath_width = 2
    config.aux.precip.points = 0.2
    config.threedvar.maxiter = 50
    out = tmp_path / "study"
    with jax.numpy_dtype_promotion("standard"):
        result = ablation.run_study(config, out, log=lambda s: None)
    rows = [r for r in result["rows"] if r["channel"] == "t850"]
    assert sorted((r["method"], r["window"]) for r in rows) == sorted((m, w) for m in methods for w in (0, 1))
    for r in rows:
        assert not r["error"] and np.isfinite(r["rmse"]) and np.isfinite(r["crps"]), r
    assert "weighted by cell area" in result["table"]
    examples = np.load(out / "examples.npz")
    truth = examples["truth"][..., 0]  # (time, lat, lon) in Kelvin, rows north to south
    w = area_weights(LAT[::-1])[:, None]
    for m in ("interpolation", "3dvar", "slams_1aux"):
        row = next(r for r in rows if r["method"] == m and r["window"] == 0)
        err = np.square(examples[m][..., 0] - truth)
        weighted, plain = np.sqrt(np.mean(err * w)), np.sqrt(np.mean(err))
        np.testing.assert_allclose(row["rmse"], weighted, rtol=1e-4)
        assert abs(weighted - plain) > 1e-3 * plain  # the weighting is not a no-op on this grid
    assert (out / "figures" / "maps.png").exists()

    config.threedvar.periodic = (True, True)
    with pytest.raises(ablation.StudyError, match="latitude is not periodic"):
        ablation.run_study(config, out, log=lambda s: None)
