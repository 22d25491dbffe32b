r"""The ablation study: every method on the same observations, swept over coarsening, noise and sparsity.

``python experiments/ablation.py --config=configs/ablation.py --workdir=runs/ablation`` (``:quick`` for a
smoke run) does, on a 2-core CPU or on accelerators alike:

1. trains the models that the configured methods need (one workdir per model under ``WORKDIR/models/``,
   with its own modalities; a rerun resumes or reuses them) on the shared dataset (``WORKDIR/data``);
2. takes ``study.windows`` test windows of ``study.length`` states and, for every setting of the sweeps
   (coarsening factor r at a fixed noise, noise std at a fixed r, gap g of a regular lattice of points at a
   fixed noise; the state is observed every ``study.every`` steps), draws **one** set of observations per
   window and setting with a fixed key, which every method then receives:

   - ``interpolation``: bilinear from coarse fields, inverse distance from points, linear in time;
   - ``persistence``: the same reconstruction, held constant in time from the latest observed state;
   - ``climatology``: an ensemble of random training states (a probabilistic climatology);
   - ``3dvar``: 3D-Var/OI with a static background-error covariance fitted on the training split
     (:mod:`slams_jax.variational`), background = the climatological mean, an RML ensemble;
   - ``score`` methods: posterior ensembles with a trained prior (every window of a setting in one program,
     :func:`slams_jax.posterior_sample_batch`; the auxiliary instruments are fixed): the pixel-space SDA prior,
     or latent SLAMS with 0, 1 or 2 auxiliary modalities (observed as configured in ``config.aux``); with
     ``observe="latent"`` the paper's own setting (the encoded truth observed in latent space, the
     coarsening factor and gap divided by the autoencoder's downsampling);

3. scores each ensemble against the truth (RMSE and bias of the mean, spread, spread-skill ratio, fair CRPS,
   Wasserstein-1; per channel and their mean over channels) and writes

   - ``results.jsonl`` (appended as it goes, so a killed study resumes where it stopped) and ``results.csv``:
     every number;
   - ``summary.csv``: per sweep, severity, method and channel, the mean over windows with a t confidence
     interval (``study.confidence``);
   - ``table.md``: RMSE, CRPS and spread-skill ratio per method against severity;
   - ``figures/<sweep>.png`` (metric against severity per method, with the intervals) and
     ``figures/maps.png`` (truth, observations and each method's mean for ``study.example_setting``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from slams_jax import datasets  # noqa: E402
from slams_jax.assimilate import make_guidance, make_sampler  # noqa: E402
from slams_jax.baselines import climatology_ensemble, persistence, spatial_interpolation  # noqa: E402
from slams_jax.configuration import AssimilationSettings, settings_from_config  # noqa: E402
from slams_jax.metrics import ensemble_scores  # noqa: E402
from slams_jax.observations import Observation, observe  # noqa: E402
from slams_jax.operators import Coarsen, Operator, Swath, TimeSubsample, random_points, regular_points  # noqa: E402
from slams_jax.posterior import latent_observation, posterior_sample_batch  # noqa: E402
from slams_jax.pretrained import TrainedModel, load_trained  # noqa: E402
from slams_jax.train import prepare_data, train_and_evaluate  # noqa: E402
from slams_jax.variational import fit_static_covariance, three_dvar_ensemble  # noqa: E402

KINDS = ("interpolation", "persistence", "climatology", "3dvar", "score")
SWEEPS = ("coarsen", "noise", "gap")
METRICS = ("rmse", "bias", "spread", "spread_skill", "crps", "wasserstein1")


class StudyError(ValueError):
    """A study config that cannot run; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One point of a sweep: how the state is observed."""

    sweep: str
    severity: float
    coarsen: int = 1
    gap: int = 0
    std: float = 0.1

    @property
    def label(self) -> str:
        return f"{self.sweep}={self.severity:g}"


def study_settings(study) -> list[Setting]:
    """The settings of ``study.sweeps``, in order: r at ``coarsen_std``, noise at ``noise_coarsen``, gap at
    ``gap_std``."""
    out = []
    for sweep in study.sweeps:
        if sweep not in SWEEPS:
            raise StudyError(f"config.study.sweeps: unknown sweep {sweep!r}; expected some of {SWEEPS}")
        if sweep == "coarsen":
            out += [Setting("coarsen", r, coarsen=int(r), std=float(study.coarsen_std)) for r in study.coarsen]
        elif sweep == "noise":
            out += [Setting("noise", s, coarsen=int(study.noise_coarsen), std=float(s)) for s in study.noise]
        else:
            out += [Setting("gap", g, gap=int(g), std=float(study.gap_std)) for g in study.gap]
    return out


def _ends_first(n: int) -> list[int]:
    """Indices ``0..n-1`` ends first, then recursively the middles: 5 -> [0, 4, 2, 1, 3]."""
    order, spans = [], [(0, n - 1)]
    for i in (0, n - 1):
        if 0 <= i < n and i not in order:
            order.append(i)
    while spans:
        nxt = []
        for lo, hi in spans:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                order.append(mid)
                nxt += [(lo, mid), (mid, hi)]
        spans = nxt
    return order


def run_order(settings: Sequence[Setting], order: str) -> list[int]:
    """The order in which the study runs its settings (indices into ``settings``).

    ``sweeps``: as listed. ``spread``: round-robin over the sweeps, each from its two ends inwards, so a study
    stopped early (a CPU with a time limit) has covered every sweep's range; the results are the same,
    because every observation and sampling key derives from the setting's place in the list, not the order.
    """
    if order == "sweeps":
        return list(range(len(settings)))
    if order != "spread":
        raise StudyError(f"config.study.order={order!r}: expected 'sweeps' or 'spread'")
    per_sweep: dict[str, list[int]] = {}
    for i, st in enumerate(settings):
        per_sweep.setdefault(st.sweep, []).append(i)
    queues = [[idx[j] for j in _ends_first(len(idx))] for idx in per_sweep.values()]
    out = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def state_operator(setting: Setting, grid: tuple[int, int], every: int) -> Operator:
    """Time subsampling, then a block mean (coarsen sweeps) or a regular lattice of points (gap sweep)."""
    time_op = TimeSubsample(every) if every > 1 else None
    space = regular_points(grid, setting.gap) if setting.gap else Coarsen(setting.coarsen)
    return space if time_op is None else time_op >> space


def latent_setting(setting: Setting, downsample: int) -> Setting:
    """The paper's latent setting: coarsening factor and gap in latent cells (divided by the downsampling)."""
    return dataclasses.replace(setting, coarsen=max(1, round(setting.coarsen / downsample)),
                               gap=max(1, round(setting.gap / downsample)) if setting.gap else 0)


# ------------------------------------------------------------------------------------------------ models
def model_config(config, name: str, workdir: Path):
    """The experiment config of model ``name``: its modalities (in the experiment's order) and stages."""
    spec = config.models[name]
    exp = config.experiment.copy_and_resolve_references()
    known = [m.name for m in exp.data.modalities]
    missing = [m for m in spec.modalities if m not in known]
    if missing or not spec.modalities or spec.modalities[0] != known[0]:
        raise StudyError(f"config.models.{name}.modalities={tuple(spec.modalities)}: expected the state "
                         f"{known[0]!r} first, then some of {known[1:]}")
    with exp.unlocked():
        exp.data.modalities = tuple(m for m in exp.data.modalities if m.name in spec.modalities)
        if exp.data.source == "era5":  # only the sources of the model's own modalities
            exp.data.era5.aux = ml_collections.ConfigDict(
                {k: v for k, v in exp.data.era5.aux.items() if k in spec.modalities})
        exp.stages = tuple(spec.stages)
        if not exp.data.cache_dir:
            exp.data.cache_dir = str(workdir / "data")
    return exp


def needed_models(config) -> list[str]:
    names = []
    for m in config.study.methods:
        spec = config.methods[m]
        if spec.kind == "score" and spec.model not in names:
            if spec.model not in config.models:
                raise StudyError(f"config.methods.{m}.model={spec.model!r}: expected one of {sorted(config.models)}")
            names.append(spec.model)
    return names


def train_models(config, workdir: Path, log: Callable[[str], None]) -> dict[str, TrainedModel]:
    """Train (or resume, or reuse) every model a configured score method needs."""
    models = {}
    for name in needed_models(config):
        t0 = time.perf_counter()
        summary = train_and_evaluate(model_config(config, name, workdir), workdir / "models" / name)
        log(f"model {name}: {json.dumps(summary)} ({time.perf_counter() - t0:.0f} s)")
        models[name] = load_trained(workdir / "models" / name)
    return models


# ------------------------------------------------------------------------------------------------ data
@dataclasses.dataclass
class StudyData:
    """Physical-unit test windows and training statistics shared by every method."""

    state: str
    variables: tuple[str, ...]
    modalities: tuple[str, ...]
    norm: datasets.Normalization
    windows: list[tuple[int, int]]
    truths: list[dict[str, np.ndarray]]  # per window: {modality: (time, lat, lon, channel)}
    train_states: np.ndarray  # (n, lat, lon, channel), physical
    train_sequences: np.ndarray  # (trajectory, time, lat, lon, channel), physical
    latitude: np.ndarray | None = None  # (lat,) degrees on a geographic grid (ERA5), else None

    @functools.cached_property
    def weights(self) -> np.ndarray | None:
        """``(lat,)`` cell-area weights of every score on a geographic grid, else ``None``."""
        from slams_jax.regrid import area_weights

        return None if self.latitude is None else area_weights(self.latitude)


def _window_starts(present: np.ndarray | None, n_traj: int, n_time: int, count: int, length: int,
                   spacing: str = "first") -> list[tuple[int, int]]:
    """``count`` disjoint windows ``(trajectory, start)`` of states that all exist (``present``, a
    ``(trajectory, time)`` mask on real data, or ``None``).

    ``first``: the first ones, one per test trajectory, then further along them. ``even``: evenly spaced over
    all of them (e.g. every season of ERA5's test years, which are one trajectory).
    """
    per_traj = n_time // length
    blocks = [(i % n_traj, (i // n_traj) * length) for i in range(n_traj * per_traj)]
    if present is not None:
        blocks = [(t, s) for t, s in blocks if present[t, s:s + length].all()]
    if count > len(blocks):
        raise StudyError(f"config.study.windows={count}: the test split has only {len(blocks)} disjoint windows of "
                         f"length {length} ({n_traj} trajectories x {n_time} states"
                         + (", without missing days)" if present is not None else ")"))
    if spacing == "first":
        return blocks[:count]
    if spacing == "even":
        return [blocks[i] for i in np.linspace(0, len(blocks) - 1, count).round().astype(int)]
    raise StudyError(f"config.study.window_spacing={spacing!r}: expected 'first' or 'even'")


def load_study_data(config, workdir: Path, max_fit_states: int = 4096) -> StudyData:
    exp = model_config(config, next(iter(config.models)), workdir)
    with exp.unlocked():  # every modality: the auxiliary observations need their truths
        exp.data.modalities = config.experiment.data.modalities
        if exp.data.source == "era5":
            exp.data.era5.aux = config.experiment.data.era5.aux
    settings = settings_from_config(exp)
    arrays, norm = prepare_data(settings, workdir / "models")
    state = settings.data.state.name
    test = arrays["test"]
    shape = test[state].shape
    study = config.study
    windows = _window_starts(datasets.present_mask(test), shape[0], shape[1], study.windows, study.length,
                             str(study.get("window_spacing", "first")))
    truths = []
    for traj, start in windows:  # integer indices: the lazy ERA5 arrays read only those days
        steps = np.arange(start, start + study.length)
        truths.append({name: norm.denormalize(name, np.asarray(a[traj, steps], np.float32))
                       for name, a in test.items()})
    train = arrays["train"][state]
    n_traj, n_time = train.shape[:2]
    rng = np.random.default_rng(int(config.seed))
    seq_len = min(n_time, max(2, study.length))
    per_traj = n_time // seq_len
    blocks = np.arange(n_traj * per_traj)
    present = datasets.present_mask(arrays["train"])
    if present is not None:  # training sequences without missing days
        blocks = blocks[present[:, :per_traj * seq_len].reshape(n_traj, per_traj, seq_len).all(-1).ravel()]
    n_seq = max(1, min(len(blocks), max_fit_states // seq_len))
    picks = rng.choice(blocks, size=n_seq, replace=False)
    traj, block = np.divmod(np.sort(picks), per_traj)
    seqs = np.stack([np.asarray(train[t, np.arange(b * seq_len, (b + 1) * seq_len)], np.float32)
                     for t, b in zip(traj, block)])
    seqs = norm.denormalize(state, seqs)
    latitude = None
    if settings.data.source == "era5":  # a geographic grid: every score weighted by cell area, as WeatherBench
        from slams_jax.era5 import grid_latitude

        latitude = np.asarray(grid_latitude(settings.data), np.float64)
        if latitude.shape != shape[2:3]:
            raise StudyError(f"ERA5 grid latitude has {latitude.shape[0]} rows but the test split has {shape[2]}")
    return StudyData(state=state, variables=tuple(settings.data.state.variables),
                     modalities=tuple(m.name for m in settings.data.modalities), norm=norm, windows=windows,
                     truths=truths, train_states=seqs.reshape((-1,) + seqs.shape[2:]), train_sequences=seqs,
                     latitude=latitude)


# ------------------------------------------------------------------------------------------------ observations
def state_observation(key, data: StudyData, truth: np.ndarray, setting: Setting, every: int) -> Observation:
    op = state_operator(setting, truth.shape[1:3], every)
    std = tuple(setting.std * s for s in data.norm.std[data.state])
    return observe(key, truth, op, std, modality=data.state, name=f"{data.state}:{setting.label}")


def aux_operator(key, data: StudyData, spec) -> Operator:
    """The instrument of ``config.aux.<name>``, fixed for the whole study (a swath or a gauge network).

    Gauges are drawn once, where the modality is defined in every test window (e.g. precipitation over land
    only): real networks do not move between windows, and one structure keeps every window in one program.
    """
    if spec.get("swath_footprint", 0):
        return Swath(int(spec.swath_footprint), int(spec.get("swath_width", 1)))
    if spec.get("points", 0.0):
        valid = np.logical_and.reduce([np.isfinite(t[spec.modality]).all(axis=(0, 3)) for t in data.truths])
        return random_points(key, valid.shape, float(spec.points), valid=valid)
    raise StudyError(f"config.aux for {spec.modality!r}: expected swath_footprint > 0 or points > 0")


def aux_observation(key, data: StudyData, truth: Mapping[str, np.ndarray], spec, op: Operator) -> Observation:
    """One auxiliary observation (``config.aux.<name>``) of a window through its study-wide operator."""
    std = tuple(float(spec.relative_std) * s for s in data.norm.std[spec.modality])
    return observe(key, truth[spec.modality], op, std, modality=spec.modality, name=f"{spec.modality}:aux")


# ------------------------------------------------------------------------------------------------ methods
@dataclasses.dataclass
class Context:
    config: Any
    data: StudyData
    models: dict[str, TrainedModel]
    climatology: np.ndarray  # (lat, lon, channel), physical
    covariance: Any  # variational.StaticCovariance


def _sampling_settings(s) -> AssimilationSettings:
    return AssimilationSettings(guidance=s.guidance, gamma=s.gamma, zeta=s.zeta, cg_iterations=s.cg_iterations,
                                sampler=s.sampler, steps=s.steps, corrections=s.corrections, tau=s.tau)


def run_method(ctx: Context, name: str, key, window: int, setting: Setting, state_obs: Observation,
               aux_obs: Mapping[str, Observation]) -> np.ndarray:
    """The ensemble ``(member, time, lat, lon, channel)`` (physical units) of classical method ``name``."""
    spec, study, data = ctx.config.methods[name], ctx.config.study, ctx.data
    truth = data.truths[window]
    shape = truth[data.state].shape
    members = int(study.members)
    periodic = tuple(bool(p) for p in ctx.config.threedvar.periodic)
    if spec.kind == "interpolation":
        return spatial_interpolation([state_obs], shape, climatology=ctx.climatology, periodic=periodic)[None]
    if spec.kind == "persistence":
        return persistence([state_obs], shape, climatology=ctx.climatology, periodic=periodic)[None]
    if spec.kind == "climatology":
        return climatology_ensemble(key, data.train_states, members, shape[0])
    if spec.kind == "3dvar":
        background = np.broadcast_to(ctx.climatology, shape).astype(np.float32)
        return three_dvar_ensemble(key, [state_obs], background, ctx.covariance, members,
                                   tol=float(ctx.config.threedvar.tol), maxiter=int(ctx.config.threedvar.maxiter))
    if spec.kind == "score":
        raise StudyError(f"config.methods.{name}: a score method is sampled by run_score")
    raise StudyError(f"config.methods.{name}.kind={spec.kind!r}: expected one of {KINDS}")


def score_inputs(ctx: Context, name: str, key, window: int, setting: Setting, state_obs: Observation,
                 aux_obs: Mapping[str, Observation]) -> tuple[Any, list[Observation]]:
    """``(sampling key, observations)`` of score method ``name`` on one window."""
    spec, study = ctx.config.methods[name], ctx.config.study
    model = ctx.models[spec.model]
    k_obs, k_sample = jax.random.split(key)
    if spec.observe == "latent":
        if spec.space != "latent":
            raise StudyError(f"config.methods.{name}: observe='latent' needs space='latent'")
        lat = latent_setting(setting, model.settings.autoencoder.downsample)
        op = state_operator(lat, model.latent_shape()[:2], int(study.every))
        truth = ctx.data.truths[window]
        normalized = {m.name: model.normalization.normalize(m.name, truth[m.name])
                      for m in model.settings.data.modalities}
        return k_sample, [latent_observation(k_obs, model, normalized, op, setting.std, name=f"latent:{lat.label}")]
    if spec.observe == "physical":
        unknown = [m for m in spec.aux if m not in aux_obs]
        if unknown:
            raise StudyError(f"config.methods.{name}.aux={tuple(spec.aux)}: {unknown} not in config.aux "
                             f"({sorted(aux_obs)})")
        return k_sample, [state_obs] + [aux_obs[m] for m in spec.aux]
    raise StudyError(f"config.methods.{name}.observe={spec.observe!r}: expected 'physical' or 'latent'")


def run_score(ctx: Context, name: str, keys: Sequence[Any], problems: Sequence[Sequence[Observation]]
              ) -> list[tuple[np.ndarray | None, str]]:
    """Score method ``name`` on several windows at once (one compiled program): per window ``(ensemble
    (member, time, lat, lon, channel) in physical units, "")``, or ``(None, why it failed)``."""
    spec, s = ctx.config.methods[name], ctx.config.sampling
    a = _sampling_settings(s)
    states, failures = posterior_sample_batch(
        jnp.stack(keys), ctx.models[spec.model], problems, n_samples=int(ctx.config.study.members),
        length=int(ctx.config.study.length), space=spec.space, guidance=make_guidance(a), sampler=make_sampler(a),
        divergence_bound=float(s.divergence_bound) or None, errors="return")
    return [(None, f.splitlines()[0][:300]) if f else (np.asarray(x, np.float32), "") for x, f in zip(states, failures)]


def score_rows(ens: np.ndarray, truth: np.ndarray, variables: Sequence[str], weights: np.ndarray | None = None
               ) -> dict[str, dict[str, float]]:
    """Per channel and their mean (``all``): the ensemble scores (spread and its ratio NaN for one member),
    weighted by ``weights`` ``(lat,)`` (cell areas on a geographic grid) when given."""
    w = None if weights is None else jnp.asarray(weights, jnp.float32)
    scores = ensemble_scores(jnp.asarray(ens), jnp.asarray(truth), tuple(variables), w)
    if ens.shape[0] == 1:
        for s in scores.values():
            s["spread"] = s["spread_skill"] = float("nan")
    scores["all"] = {k: float(np.mean([scores[v][k] for v in variables])) for k in METRICS}
    return scores


# ------------------------------------------------------------------------------------------------ outputs
def read_results(path: Path) -> list[dict]:
    """Rows of ``results.jsonl``; a line cut by a kill is dropped."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _t_quantile(p: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(p, dof))


def summarize(rows: Sequence[Mapping], confidence: float) -> list[dict]:
    """Mean over windows of every metric with a two-sided t interval, per sweep/severity/method/channel."""
    groups: dict[tuple, list[Mapping]] = {}
    for r in rows:
        groups.setdefault((r["sweep"], r["severity"], r["method"], r["channel"]), []).append(r)
    out = []
    for (sweep, severity, method, channel), rs in groups.items():
        rec: dict[str, Any] = {"sweep": sweep, "severity": severity, "method": method, "channel": channel,
                               "windows": len(rs), "failed": sum(bool(r.get("error")) for r in rs)}
        for m in METRICS + ("seconds",):
            v = np.array([r[m] for r in rs if r.get(m) is not None and np.isfinite(r[m])], np.float64)
            rec[m] = float(v.mean()) if v.size else float("nan")
            half = (_t_quantile(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
                    if v.size > 1 else float("nan"))
            rec[m + "_ci"] = half
        out.append(rec)
    return out


def _write_csv(path: Path, rows: Sequence[Mapping]) -> None:
    import csv

    if not rows:
        return
    fields = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def markdown_table(summary: Sequence[Mapping], methods: Sequence[str], metric: str, channel: str = "all") -> str:
    """One table per sweep: methods as rows, severities as columns, ``mean ± half-width`` cells."""
    lines = []
    by = {(r["sweep"], r["severity"], r["method"]): r for r in summary if r["channel"] == channel}
    for sweep in SWEEPS:
        sev = sorted({s for (sw, s, _) in by if sw == sweep})
        if not sev:
            continue
        what = "mean over channels" if channel == "all" else f"channel {channel}"
        lines.append(f"**{metric}**, sweep `{sweep}` ({what}; mean ± CI half-width over windows)")
        lines.append("")
        lines.append("| method | " + " | ".join(f"{sweep}={s:g}" for s in sev) + " |")
        lines.append("| --- | " + " | ".join("---:" for _ in sev) + " |")
        for m in methods:
            cells = []
            for s in sev:
                r = by.get((sweep, s, m))
                if r is None or not np.isfinite(r[metric]):
                    cells.append("—" if r is None or not r["failed"] else "diverged")
                    continue
                ci = r[metric + "_ci"]
                cell = f"{r[metric]:.3f}" + (f" ± {ci:.3f}" if np.isfinite(ci) else "")
                cells.append(cell + (f" ({r['failed']} failed)" if r["failed"] else ""))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def sweep_figures(summary: Sequence[Mapping], methods: Sequence[str], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    xlabels = {"coarsen": "coarsening factor r", "noise": "noise std (x state std)", "gap": "point gap g"}
    for sweep in SWEEPS:
        rows = [r for r in summary if r["sweep"] == sweep and r["channel"] == "all"]
        if not rows:
            continue
        fig, axes = plt.subplots(1, 3, figsize=(17, 4))
        for ax, metric in zip(axes, ("rmse", "crps", "spread_skill")):
            for i, m in enumerate(methods):
                pts = sorted((r["severity"], r[metric], r[metric + "_ci"]) for r in rows if r["method"] == m)
                if not pts or not any(np.isfinite(p[1]) for p in pts):
                    continue  # e.g. no spread for one member: the method's style stays its own in every panel
                x, y, e = (np.array(v, np.float64) for v in zip(*pts))
                ax.errorbar(x, y, yerr=np.where(np.isfinite(e), e, 0.0), color=f"C{i % 10}",
                            marker="osD^v"[i // 10 % 5], capsize=3, label=m)
            ax.set_xlabel(xlabels[sweep])
            ax.set_title(metric)
            if sweep == "noise":
                ax.set_xscale("log", base=2)
            if metric == "spread_skill":
                ax.axhline(1.0, color="k", lw=0.5)
        handles, labels = axes[0].get_legend_handles_labels()  # beside the panels, not over the curves
        fig.legend(handles, labels, loc="center right", fontsize=8)
        fig.tight_layout(rect=(0, 0, 0.86, 1))
        path = folder / f"{sweep}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(str(path))
    return paths


def maps_figure(examples: Mapping[str, np.ndarray], folder: Path, variables: Sequence[str], title: str,
                north_first: bool = False) -> str:
    """Truth, the interpolated observations and each method's ensemble mean, first channel, two states
    (north up: ``north_first`` says the rows run north to south, as the ERA5 grid's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = list(examples)
    truth = examples["truth"]
    times = sorted({0, truth.shape[0] // 2 + (1 if truth.shape[0] > 2 else 0) - 1})
    vmax = float(np.nanmax(np.abs(truth[..., 0])))
    fig, axes = plt.subplots(len(times), len(names), figsize=(2.4 * len(names), 2.6 * len(times)), squeeze=False)
    for row, t in zip(axes, times):
        for ax, n in zip(row, names):
            ax.imshow(examples[n][t, ..., 0], cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                      origin="upper" if north_first else "lower")
            ax.set_title(f"{n}, state {t}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{variables[0]}: {title}", fontsize=9)
    fig.tight_layout()
    path = folder / "maps.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


# ------------------------------------------------------------------------------------------------ driver
def check_config(config) -> None:
    study = config.study
    for m in study.methods:
        if m not in config.methods:
            raise StudyError(f"config.study.methods: {m!r} is not in config.methods ({sorted(config.methods)})")
        if config.methods[m].kind not in KINDS:
            raise StudyError(f"config.methods.{m}.kind={config.methods[m].kind!r}: expected one of {KINDS}")
    if study.members < 2:
        raise StudyError(f"config.study.members={study.members}: expected at least 2 (spread, CRPS)")
    if not 0 < study.confidence < 1:
        raise StudyError(f"config.study.confidence={study.confidence}: expected a level in (0, 1)")
    if study.every < 1 or study.length < 2:
        raise StudyError(f"config.study.every={study.every}, length={study.length}: expected >= 1 and >= 2")
    window = 2 * int(config.experiment.score.order) + 1
    if study.length < window:
        raise StudyError(f"config.study.length={study.length}: the score methods need windows of at least the "
                         f"prior's {window} states (config.experiment.score.order={config.experiment.score.order})")
    if config.experiment.data.source == "era5" and bool(config.threedvar.periodic[0]):
        raise StudyError(f"config.threedvar.periodic={tuple(config.threedvar.periodic)}: latitude is not periodic "
                         "on the ERA5 grid (the poles must not wrap onto each other); expected (False, True)")


def run_study(config, workdir: str | os.PathLike, log: Callable[[str], None] = print,
              report_only: bool = False) -> dict[str, Any]:
    """Train what is needed, run every (window, setting, method) not yet in ``results.jsonl``, write outputs.

    With ``report_only``, nothing is trained or run: the outputs are rewritten from ``results.jsonl`` as it
    stands (e.g. while a long study is still running, or after it was stopped).

    Returns:
        ``{"rows": [...], "summary": [...], "table": str, "figures": [...]}``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    check_config(config)
    study = config.study
    settings_list = study_settings(study)
    methods = list(study.methods)
    t_start = time.perf_counter()
    models = {} if report_only else train_models(config, workdir, log)
    data = load_study_data(config, workdir)
    climatology = data.train_sequences.mean(axis=(0, 1))
    covariance = None
    if not report_only and any(config.methods[m].kind == "3dvar" for m in methods):
        _, covariance = fit_static_covariance(data.train_sequences, periodic=tuple(config.threedvar.periodic),
                                              time_correlation=bool(config.threedvar.time_correlation))
        log(f"3dvar: static B fitted: {covariance!r}")
    ctx = Context(config, data, models, climatology, covariance)

    results_path = workdir / "results.jsonl"
    rows = read_results(results_path)
    done = {(r["window"], r["sweep"], r["severity"], r["method"]) for r in rows}
    examples_path = workdir / "examples.npz"
    examples = dict(np.load(examples_path)) if examples_path.exists() else {}

    def save_examples() -> None:  # after every method, so a killed study keeps the maps of what it ran
        tmp = workdir / f"examples.tmp{os.getpid()}.npz"
        np.savez(tmp, **examples)
        os.replace(tmp, examples_path)

    base = jax.random.PRNGKey(int(config.seed))
    # the auxiliary instruments (swath, gauge network) are fixed for the whole study; their noise is not
    aux_ops = {n: aux_operator(jax.random.fold_in(base, 1000 + i), data, config.aux[n])
               for i, n in enumerate(config.aux) if config.aux[n].modality in data.truths[0]}
    periodic = tuple(bool(p) for p in config.threedvar.periodic)
    with results_path.open("a") as out:

        def record(setting: Setting, w: int, m: str, ens: np.ndarray | None, error: str, seconds: float) -> None:
            truth = data.truths[w][data.state]
            if ens is None:
                scores = {c: {k: float("nan") for k in METRICS} for c in data.variables + ("all",)}
            else:
                scores = score_rows(ens, truth, data.variables, data.weights)
                if setting.label == study.example_setting and w == 0:
                    examples[m] = ens.mean(0)
                    save_examples()
            traj, start = data.windows[w]
            for channel, sc in scores.items():
                row = {"sweep": setting.sweep, "severity": setting.severity, "method": m, "window": w,
                       "trajectory": traj, "start": start, "channel": channel, **sc,
                       "members": int(ens.shape[0]) if ens is not None else 0, "seconds": seconds, "error": error}
                rows.append(row)
                out.write(json.dumps(row) + "\n")
            out.flush()
            os.fsync(out.fileno())
            log(f"{setting.label:12s} window {w} {m:24s} RMSE {scores['all']['rmse']:.4f} "
                f"CRPS {scores['all']['crps']:.4f} {seconds:6.1f} s" + (f"  FAILED: {error}" if error else ""))

        for s_index in [] if report_only else run_order(settings_list, str(study.get("order", "sweeps"))):
            setting = settings_list[s_index]
            todo = {w: [m for m in methods if (w, setting.sweep, setting.severity, m) not in done]
                    for w in range(len(data.windows))}
            todo = {w: ms for w, ms in todo.items() if ms}
            if not todo:
                continue
            observed = {}
            for w in todo:
                truth = data.truths[w]
                # one key per window and setting: every method gets the same observations
                k_set = jax.random.fold_in(jax.random.fold_in(base, w), s_index)
                k_state, _, k_methods = jax.random.split(k_set, 3)
                state_obs = state_observation(k_state, data, truth[data.state], setting, int(study.every))
                aux_obs = {n: aux_observation(jax.random.fold_in(jax.random.fold_in(base, w), 1000 + i), data, truth,
                                              config.aux[n], aux_ops[n])
                           for i, n in enumerate(config.aux) if n in aux_ops}
                observed[w] = (k_methods, state_obs, aux_obs)
                if setting.label == study.example_setting and w == 0:
                    examples["truth"] = truth[data.state]
                    examples["observations"] = spatial_interpolation(
                        [state_obs], truth[data.state].shape, climatology=climatology, periodic=periodic)
            for m in methods:
                ws = [w for w in todo if m in todo[w]]
                if not ws:
                    continue
                keys = {w: jax.random.fold_in(observed[w][0], zlib.crc32(m.encode()) & 0x7FFFFFFF) for w in ws}
                if config.methods[m].kind == "score":
                    # every window of the setting in one compiled program; the time is shared between them
                    t0 = time.perf_counter()
                    inputs = [score_inputs(ctx, m, keys[w], w, setting, *observed[w][1:]) for w in ws]
                    results = run_score(ctx, m, [k for k, _ in inputs], [obs for _, obs in inputs])
                    seconds = (time.perf_counter() - t0) / len(ws)
                    for w, (ens, error) in zip(ws, results):
                        record(setting, w, m, ens, error, seconds)
                else:
                    for w in ws:
                        t0 = time.perf_counter()
                        ens = run_method(ctx, m, keys[w], w, setting, *observed[w][1:])
                        record(setting, w, m, ens, "", time.perf_counter() - t0)

    summary = summarize(rows, float(study.confidence))
    _write_csv(workdir / "results.csv", rows)
    _write_csv(workdir / "summary.csv", summary)
    header = (f"Ablation on {config.experiment.data.source}: {len(data.windows)} test windows of {study.length} "
              f"states (state observed every {study.every}), {study.members} members; mean over windows "
              f"± {study.confidence:.0%} t-interval half-width"
              + ("; scores weighted by cell area" if data.weights is not None else "") + ".\n\n")
    table = header + "\n".join(markdown_table(summary, methods, m) for m in ("rmse", "crps", "spread_skill"))
    (workdir / "table.md").write_text(table)
    figures = sweep_figures(summary, methods, workdir / "figures")
    if examples:
        order = ["truth", "observations"] + [m for m in methods if m in examples]
        north_first = data.latitude is not None and data.latitude[0] > data.latitude[-1]
        figures.append(maps_figure({k: examples[k] for k in order if k in examples}, workdir / "figures",
                                   data.variables, study.example_setting, north_first))
    log(f"study done in {time.perf_counter() - t_start:.0f} s; outputs in {workdir}")
    return {"rows": rows, "summary": summary, "table": table, "figures": figures}


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    from absl import flags, logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint read at INFO
    result = run_study(flags.FLAGS.config, flags.FLAGS.workdir, report_only=flags.FLAGS.report_only)
    print(result["table"])


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "ablation.py"), "Study config file.",
                                    lock_config=True)
    flags.DEFINE_string("workdir", "runs/ablation", "Directory for models, data and results.")
    flags.DEFINE_bool("report_only", False, "Only rewrite the outputs from results.jsonl (no training, no runs).")
    app.run(main)
