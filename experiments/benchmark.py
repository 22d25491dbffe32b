"""Benchmark: training throughput and posterior-sampling time of a workload, on 1 to N devices.

``python experiments/benchmark.py [--height=120 --width=240 ...] [--devices=1,2,4,8]`` builds the models of
``configs/era5.py`` at the given sizes with random parameters (speed does not depend on training) and
prints one JSON line per device count:

- ``forward_gflop_per_sample``: XLA's cost analysis of one window-score forward pass (batch 1);
- ``train``: the real compiled train step (denoising loss, AdamW, clipping, EMA) on a global batch of
  ``--batch`` windows split over the devices: ``compile_s`` (lowering and compiling it, explicitly),
  ``step_s`` (median of ``--train-steps`` timed steps after a warm-up step) and ``samples_per_s``;
- ``sample``: ``posterior_sample``'s ensemble programs (``--members`` members split over the devices,
  ``--steps`` predictor steps with ``--corrections`` Langevin corrections, SDA guidance through the decoder's
  state head and a ``--coarsen``x block mean): ``first_call_s`` (tracing, compiling every program of the call
  and one run), ``seconds`` (median of the timed calls), ``compile_s`` = the difference, ``programs`` (XLA
  compilations in the first call), ``seconds_per_member``, and the process CPU time of the same calls
  (``cpu_seconds``, ``cpu_seconds_per_member``: all cores together, robust to a loaded machine when pinned to
  one). ``--members=1,8`` times every count (each compiles its own programs) into ``sample_by_members``
  (``{"1": {...}, "8": {...}}``); ``sample`` is the first count. ``--precision=bf16`` runs the networks'
  convolutions in bfloat16 (``workload.precision``);
- ``compile_s``: ``{"train": ..., "sample": ...}``, the two compile times side by side;
  ``compilation_cache``: whether JAX's persistent cache was on (then compile times are cache reads; the
  benchmark itself never turns it on);
- ``peak_memory_bytes`` (accelerators only), the device kind and count, and ``speedup`` relative to the
  first device count of the run.

Defaults: the reference's latent workload (5 states x 5 latent channels = 25 channels at 120 x 240, U-Net
(32, 64, 128) x (3, 3, 3), embedding 64, batch 64; 8 members, 64 steps, 1 correction, 4x coarsening).
The pixel workload: ``--space=pixel --hidden=64,128,256`` (5 states x 10 channels, no decoder). Small CPU
run: ``--height=32 --width=64 --batch=8 --members=2 --steps=4``; ``--eager`` adds ``eager_s``, the same
sampling call run op by op (``jax.disable_jit``), and ``eager_over_compiled``; ``--windows=3`` adds
``sample.windows``: that many windows one call after another against one batched program
(``posterior_sample_batch``). Several device counts on a CPU:
``XLA_FLAGS=--xla_force_host_platform_device_count=4``. Timings are ``time.perf_counter``; the CPU-time
comparison with the PyTorch reference swaps it for ``time.process_time`` (``../shared/reference``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import runpy
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slams_jax import parallel
from slams_jax.pipeline.configuration import settings_from_config
from slams_jax.diffusion.guidance import SDA
from slams_jax.pipeline.models import build_autoencoder, build_score, decode_with
from slams_jax.observation.observations import Observation
from slams_jax.observation.operators import Coarsen
from slams_jax.diffusion.ensemble import sample_posterior_prior, sample_posterior_problems
from slams_jax.diffusion.prior import PRECISIONS, callable_prior
from slams_jax.diffusion.samplers import PredictorCorrector
from slams_jax.diffusion.score import denoising_loss
from slams_jax.pipeline.training import TrainState, compile_steps, make_optimizer


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=120)
    p.add_argument("--width", type=int, default=240)
    p.add_argument("--space", choices=("latent", "pixel"), default="latent")
    p.add_argument("--channels", type=int, default=0, help="channels per state (default: 5 latent, 10 pixel)")
    p.add_argument("--order", type=int, default=2, help="Markov order k: windows of 2k+1 states")
    p.add_argument("--hidden", type=_ints, default=(32, 64, 128))
    p.add_argument("--blocks", type=_ints, default=(3, 3, 3))
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--batch", type=int, default=64, help="global training batch (windows)")
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps")
    p.add_argument("--members", type=_ints, default=(8,), help="ensemble sizes to time, e.g. 1,8")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--corrections", type=int, default=1)
    p.add_argument("--length", type=int, default=0, help="states of the sampled trajectory (default: one window)")
    p.add_argument("--coarsen", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2, help="timed sampling calls")
    p.add_argument("--devices", type=_ints, default=(), help="device counts to run, e.g. 1,2,4 (default: all)")
    p.add_argument("--skip", choices=("", "train", "sample"), default="")
    p.add_argument("--windows", type=int, default=0,
                   help="also sample this many independent windows (each --members members) one call after another "
                        "and batched in one program (posterior_sample_batch), and time both")
    p.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                   help="bf16: the U-Net's and the decoder's convolutions on bfloat16 operands (float32 sums, "
                        "parameters and sampler state); slow on a CPU without native bfloat16")
    p.add_argument("--eager", action="store_true",
                   help="also time one sampling call op by op (jax.disable_jit: every scan step and every "
                        "operation dispatched from Python, like an eager framework) against the compiled one")
    return p.parse_args(argv)


def build(args):
    """Settings, score, autoencoder variables and the trajectory shape of the workload."""
    config = runpy.run_path(str(ROOT / "configs" / "era5.py"))["get_config"]()
    channels = args.channels or (5 if args.space == "latent" else 10)
    config.autoencoder.latent_channels = channels if args.space == "latent" else 5
    stage = "score" if args.space == "latent" else "pixel_score"
    section = config.score if args.space == "latent" else config.pixel_score
    section.order = args.order
    section.hidden_channels = args.hidden
    section.hidden_blocks = args.blocks
    section.embedding = args.embedding
    if args.space == "pixel":
        config.data.variables = tuple(f"v{i}" for i in range(channels))
    for group in (config.autoencoder, config.score, config.pixel_score):
        group.padding = ("pole", "circular")  # what "auto" resolves to on the paper's global grid
    config.train.batch_size = args.batch
    settings = settings_from_config(config)
    score = build_score(settings, stage)
    if args.precision == "bf16":
        score = dataclasses.replace(score, network=score.network.clone(compute_dtype="bfloat16"))
    length = args.length or score.window
    return settings, stage, score, (length, args.height, args.width, channels)


def gflop_per_sample(score, params, shape) -> float | None:
    x = jnp.zeros((1, score.window) + shape[1:], jnp.float32)
    t = jnp.zeros((1,), jnp.float32)
    cost = jax.jit(lambda p, x, t: score.window_eps(p, x, t)).lower(params, x, t).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = (cost or {}).get("flops")
    return None if flops is None else flops / 1e9


def bench_train(args, settings, stage, score, params, shape, mesh) -> dict:
    ts = settings.train[stage]
    optimizer = make_optimizer(ts)

    def loss_fn(p, batch_stats, frozen, batch, key, train):
        return denoising_loss(lambda xt, t: score.window_eps(p, xt, t), settings.sde, key, batch["x"]), ({}, batch_stats)

    state = TrainState(step=jnp.array(0, jnp.int32), params=params, ema_params=jax.tree_util.tree_map(jnp.copy, params),
                       opt_state=optimizer.init(params), batch_stats={})
    state, key = parallel.replicate((state, jax.random.PRNGKey(0)), mesh)
    rng = np.random.default_rng(0)
    window = (score.window,) + shape[1:]
    batch = parallel.global_batch(
        lambda rows: {"x": rng.standard_normal((len(rows),) + window, dtype=np.float32)}, args.batch, mesh)
    step_fn, _ = compile_steps(loss_fn, optimizer, ts.ema_decay, mesh)
    t0 = time.perf_counter()
    compiled = step_fn.lower(state, batch, key, {}).compile()
    compile_s = time.perf_counter() - t0
    state, metrics = compiled(state, batch, key, {})  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(args.train_steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch, key, {})
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    return {"compile_s": compile_s, "step_s": step_s, "samples_per_s": args.batch / step_s,
            "loss": float(parallel.to_host(metrics)["loss"])}


def sampling_problem(args, settings, score, params, shape):
    """The prior (score and decoder), the coarsened state observation and the sampler of the workload."""
    key = jax.random.PRNGKey(1)
    if args.space == "latent":
        model = build_autoencoder(settings).clone(compute_dtype=PRECISIONS[args.precision])
        fields = {m.name: jnp.zeros((1,) + shape[1:3] + (len(m.variables),), jnp.float32)
                  for m in settings.data.modalities}
        variables = jax.jit(lambda k: model.init(k, fields, train=False))(key)
        decode = lambda z: decode_with(model, variables, z, settings.data.state.name)
    else:
        decode = lambda x: x
    prior = callable_prior(lambda x, t: score.trajectory_eps(params, x, t), shape, settings.sde,
                           decoders={"state": decode}, scales={"state": 1.0})
    state_shape = jax.eval_shape(decode, jax.ShapeDtypeStruct(shape, jnp.float32)).shape
    op = Coarsen(args.coarsen)
    values = np.zeros(op.check(tuple(state_shape)), np.float32)
    obs = [Observation("state", op, values=values, std=0.1)]
    return prior, obs, PredictorCorrector(steps=args.steps, corrections=args.corrections)


_COMPILES: list[float] = []  # one entry per XLA compilation (JAX's backend-compile event)
_LISTENING: list = []


def _count_compiles(event: str, duration: float, **kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES.append(duration)


def time_sampling(args, prior, obs, sampler, members: int, mesh) -> dict:
    """First call (compiling) and the median of ``--repeats`` calls of a ``members``-member ensemble."""

    def run(k):
        return jax.block_until_ready(sample_posterior_prior(k, prior, obs, members, SDA(), sampler, mesh=mesh))

    before = len(_COMPILES)
    t0 = time.perf_counter()
    run(jax.random.PRNGKey(2))
    first = time.perf_counter() - t0
    programs = len(_COMPILES) - before
    times, cpu = [], []
    for r in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run(jax.random.PRNGKey(3 + r))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    seconds, cpu_seconds = statistics.median(times), statistics.median(cpu)
    return {"first_call_s": first, "seconds": seconds, "compile_s": max(first - seconds, 0.0),
            "programs": programs, "members": members, "seconds_per_member": seconds / members,
            "cpu_seconds": cpu_seconds, "cpu_seconds_per_member": cpu_seconds / members}


def bench_sample(args, settings, score, params, shape, mesh) -> tuple[dict, dict]:
    """``(sample, sample_by_members)``: the first ensemble size with the options' extras, and every size."""
    prior, obs, sampler = sampling_problem(args, settings, score, params, shape)
    by_members = {m: time_sampling(args, prior, obs, sampler, m, mesh) for m in args.members}
    members = args.members[0]
    out = {**by_members[members], "steps": args.steps, "corrections": args.corrections, "length": shape[0]}
    seconds = out["seconds"]
    if args.eager:
        run = lambda k: jax.block_until_ready(sample_posterior_prior(k, prior, obs, members, SDA(), sampler, mesh=mesh))
        # the first op-by-op call also compiles every primitive once per shape (cached): time the second
        with jax.disable_jit():
            run(jax.random.PRNGKey(2))
            t0 = time.perf_counter()
            run(jax.random.PRNGKey(3))
            out["eager_s"] = time.perf_counter() - t0
        out["eager_over_compiled"] = out["eager_s"] / seconds
    if args.windows:
        out["windows"] = bench_windows(args, prior, obs, sampler, mesh, seconds)
    return out, {str(m): v for m, v in by_members.items()}


def bench_windows(args, prior, obs, sampler, mesh, one_s: float) -> dict:
    """``--windows`` problems of ``--members`` members: one by one (the compiled single-window program, timed
    above as ``one_s``) against all in one compiled program."""
    problems = [[dataclasses.replace(o, values=o.values + w) for o in obs] for w in range(args.windows)]
    keys = jax.random.split(jax.random.PRNGKey(4), args.windows)

    def run():
        x, failures = sample_posterior_problems(keys, prior, problems, args.members[0], SDA(), sampler, mesh=mesh)
        return x

    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    batched = statistics.median(times)
    return {"n": args.windows, "one_by_one_s": args.windows * one_s, "batched_s": batched,
            "batched_compile_s": max(first - batched, 0.0), "speedup": args.windows * one_s / batched}


def peak_memory() -> int | None:
    stats = [d.memory_stats() for d in jax.local_devices()]
    peaks = [s.get("peak_bytes_in_use") for s in stats if s]
    return max(peaks) if peaks and all(p is not None for p in peaks) else None


def main(argv=None) -> list[dict]:
    args = parse(argv)
    if not args.members or min(args.members) < 1:
        raise SystemExit(f"--members={args.members}: expected positive ensemble sizes, e.g. 1,8")
    if not _LISTENING:  # once per process
        jax.monitoring.register_event_duration_secs_listener(_count_compiles)
        _LISTENING.append(_count_compiles)
    settings, stage, score, shape = build(args)
    window = jnp.zeros((1, score.window) + shape[1:], jnp.float32)
    params = jax.jit(score.init)(jax.random.PRNGKey(0), window)
    counts = args.devices or (jax.device_count(),)
    workload = {"height": args.height, "width": args.width, "space": args.space, "channels": shape[-1] * score.window,
                "hidden": list(args.hidden), "blocks": list(args.blocks), "embedding": args.embedding,
                "batch": args.batch, "members": list(args.members), "steps": args.steps, "corrections": args.corrections,
                "length": shape[0], "coarsen": args.coarsen, "dtype": "float32",
                "precision": args.precision}
    gflop = gflop_per_sample(score, params, shape)
    rows, first = [], None
    for n in counts:
        mesh = parallel.data_mesh(n)
        row = {"device": jax.devices()[0].device_kind, "devices": n, "workload": workload,
               "forward_gflop_per_sample": gflop,
               "parameters": int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))}
        if args.skip != "train":
            row["train"] = bench_train(args, settings, stage, score, params, shape, mesh)
        if args.skip != "sample":
            row["sample"], row["sample_by_members"] = bench_sample(args, settings, score, params, shape, mesh)
        row["compile_s"] = {k: row[k]["compile_s"] for k in ("train", "sample") if k in row}
        row["compilation_cache"] = jax.config.jax_compilation_cache_dir is not None
        row["peak_memory_bytes"] = peak_memory()
        first = first or row
        row["speedup"] = {}
        if "train" in row:
            row["speedup"]["train"] = first["train"]["step_s"] / row["train"]["step_s"]
        if "sample" in row:
            row["speedup"]["sample"] = first["sample"]["seconds"] / row["sample"]["seconds"]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
