"""Your own data, worked end to end: a regional gridded dataset, station tables in, withheld stations scored.

``python experiments/own_data.py --workdir=runs/own_data`` writes a regional hourly 2 m temperature across
the prime meridian (the generator of ``tests/synthetic_regional.py``: a diurnal cycle and two drifting
patterns, 9 x 9 cells at 2.5 degrees, 20 days) as netCDF, a CSV table of assimilated stations and a
parquet table of withheld ones, then runs exactly what a user runs: ``configs/dataset.py`` trained on the
file (6-hourly states) with :func:`slams_jax.train_and_evaluate`, and ``assimilate`` of a test
window, as a smoother and as a filter, scored at the withheld stations next to interpolation, 3D-Var with
its tuned B and the climatologies. ``--path`` and ``--variables`` take a real file instead (then give the
station tables with ``--stations`` and ``--withheld``, and the dates with ``--train``, ``--valid``,
``--test``). It prints the verification tables and writes the reports under the workdir.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/own_data")
    p.add_argument("--path", default="", help="a netCDF/zarr file (default: write the synthetic one)")
    p.add_argument("--variables", default="t2m")
    p.add_argument("--cadence", default="6h")
    p.add_argument("--stations", default="", help="table of assimilated stations (default: 20 synthetic)")
    p.add_argument("--withheld", default="", help="table of withheld stations (default: 8 synthetic)")
    p.add_argument("--train", default="2021-01-01,2021-01-14")
    p.add_argument("--valid", default="2021-01-15,2021-01-16")
    p.add_argument("--test", default="2021-01-17,2021-01-20")
    p.add_argument("--length", type=int, default=8, help="states of the assimilated test window")
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--steps", type=int, default=0,
                   help="training steps of the score (the autoencoder: half); 0: configs/dataset.py's")
    return p.parse_args(argv)


def _synthetic(out: Path, args) -> None:
    from synthetic_regional import regional_t2m, station_table

    ds = regional_t2m(hours=24 * 20)
    ds.to_netcdf(out / "t2m.nc")
    times = pd.date_range(args.test.split(",")[0], periods=args.length, freq=args.cadence)
    station_table(ds, times, 20, seed=1).to_csv(out / "stations.csv", index=False)
    station_table(ds, times, 8, seed=2, prefix="W").to_parquet(out / "withheld.parquet")


def config(args, out: Path):
    c = runpy.run_path(str(ROOT / "configs" / "dataset.py"))["get_config"]()
    c.data.path = args.path or str(out / "t2m.nc")
    c.data.variables = tuple(args.variables.split(","))
    c.data.cadence = args.cadence
    c.data.train, c.data.valid, c.data.test = (tuple(getattr(args, s).split(",")) for s in ("train", "valid", "test"))
    if args.steps:
        c.train.steps = args.steps
        c.train.autoencoder.steps = max(1, args.steps // 2)
        c.train.eval_every = c.train.checkpoint_every = max(1, args.steps // 4)
    a = c.assimilation
    a.length, a.members, a.figures = args.length, args.members, False
    a.observations = ()
    a.files = ({"path": args.stations or str(out / "stations.csv"), "kind": "stations", "modality": "state"},)
    a.verify = args.withheld or str(out / "withheld.parquet")
    return c


def main(argv=None) -> dict:
    args = _args(argv)
    import slams_jax
    from slams_jax import compilation_cache
    from slams_jax.pipeline.assimilation import assimilate, format_report

    compilation_cache.enable()
    out = Path(args.workdir)
    out.mkdir(parents=True, exist_ok=True)
    if not args.path:
        _synthetic(out, args)
    c = config(args, out)
    t0 = time.perf_counter()
    slams_jax.train_and_evaluate(c, out / "run")
    results = {"train_s": time.perf_counter() - t0}
    for mode in ("smoother", "filter"):
        c.assimilation.mode = mode
        report = assimilate(c, out / "run")
        print(f"--- {mode}")
        print(format_report(report))
        results[mode] = report["verify"]
        (out / f"verification_{mode}.json").write_text(json.dumps(report["verify"], indent=1))
    return results


if __name__ == "__main__":
    main()
