"""The pipeline in this process against a dask LocalCluster (issue 9 item 1), same run, same load.

Simulates `--fields` mock fields (`--size-arcmin`, reused from `--workdir` when present), registers
their raw files once, then times the stages (`--stages`, default mosaic, detect, photometry; every
run forced) for one field and for all fields:

- in this process, one field after another (the baseline);
- on a LocalCluster of `--workers` processes (fields in parallel, each field's stages in order),
  without the cluster's start-up, which is printed apart (start + importing the stages on every
  worker: paid once per command).

Prints wall times, the ratio to the baseline, the 1-minute load average around each
measurement (other work on the machine inflates everything: compare ratios) and whether the
cluster's rows equal the baseline's (`source` and `aperture_flux`, exactly).

    python benchmarks/dask_cluster.py --size-arcmin 0.5 --fields 2 --workers 2
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIELDS = ("j001408m3023", "j224900m4432", "j024004m0136", "j023953m0135")


def _rows(conn, run_id: int, table: str) -> list[tuple]:
    from sqlalchemy import text

    if table == "source":
        sql = "SELECT * FROM source WHERE run_id = :r ORDER BY id"
        skip = 2  # source_id, run_id
    else:
        sql = ("SELECT s.id, a.filter_id, a.aperture, a.flux, a.fluxerr, a.flag, a.corr, a.ecorr, a.tot, a.etot, "
               "a.apcorr FROM aperture_flux a JOIN source s USING (source_id) WHERE a.run_id = :r "
               "ORDER BY s.id, a.filter_id, a.aperture")
        skip = 0
    return [tuple(repr(v) for v in row[skip:]) for row in conn.execute(text(sql), {"r": run_id})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-arcmin", type=float, default=0.5)
    ap.add_argument("--fields", type=int, default=2, choices=range(1, len(FIELDS) + 1))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stages", default="mosaic,detect,photometry")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workdir", type=Path, help="mocks kept here (default: a temporary folder)")
    args = ap.parse_args()
    os.environ.setdefault("ALCSDB_HOME", tempfile.mkdtemp(prefix="alcsdb-bench-dask-"))

    from alcsdb import db
    from pipeline import distributed
    from pipeline.mock import _field_defaults, simulate_field
    from pipeline.runner import FieldJob, get_field, run_fields, stage_module
    from pipeline.stages import mosaic

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    root = args.workdir or Path(tempfile.mkdtemp(prefix="dask-mocks-"))
    names = FIELDS[:args.fields]
    for name in names:
        if not (root / name / "mock.json").exists():
            print(f"simulating {name} ({args.size_arcmin}')", flush=True)
            simulate_field(root / name, field=name, size_arcmin=args.size_arcmin, seed=args.seed,
                           **_field_defaults(name))
    jobs = [FieldJob(name, root / name) for name in names]
    results = []

    def measure(label: str, fn) -> dict:
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        outcomes = fn()
        wall = time.perf_counter() - t0
        for o in outcomes:
            if o.error is not None:
                raise SystemExit(f"{label}: {o.field} {o.failed_stage}: {o.error}")
        row = {"label": label, "wall": wall, "load": (load0, os.getloadavg()[0]),
               "runs": {o.field: {r.stage: r.run_id for r in o.results} for o in outcomes}}
        results.append(row)
        print(f"  {label}: {wall:.1f} s", flush=True)
        return row

    with db.scratch_schema(db.embedded_url(), "bench_dask") as url:
        engine = db.make_engine(url)
        for s in stages:
            stage_module(s)
        with engine.connect() as conn:  # raw files registered once, outside the timings
            for job in jobs:
                mosaic.prepare(engine, get_field(conn, job.field), {}, job.input_dir, lambda _m: None)
        t0 = time.perf_counter()
        with distributed.open_cluster(workers=args.workers) as client:
            started = time.perf_counter() - t0
            client.run(lambda: [stage_module(s) for s in stages] and None)
            warm = time.perf_counter() - t0
            print(f"cluster of {args.workers} workers: started in {started:.1f} s, stages imported in "
                  f"{warm:.1f} s", flush=True)
            one, every = jobs[:1], jobs
            base1 = measure("1 field, this process", lambda: run_fields(engine, one, stages=stages, force=True))
            dask1 = measure(f"1 field, {args.workers} workers",
                            lambda: distributed.run_fields(client, engine, one, stages=stages, force=True))
            baseN = measure(f"{len(jobs)} fields, this process",
                            lambda: run_fields(engine, every, stages=stages, force=True))
            daskN = measure(f"{len(jobs)} fields, {args.workers} workers",
                            lambda: distributed.run_fields(client, engine, every, stages=stages, force=True))
        same = True
        with engine.connect() as conn:
            for base, other in ((base1, dask1), (baseN, daskN)):
                for field, runs in base["runs"].items():
                    for stage, table in (("detect", "source"), ("photometry", "aperture_flux")):
                        if stage in runs:
                            same &= _rows(conn, runs[stage], table) == _rows(conn, other["runs"][field][stage], table)
        engine.dispose()

    print(f"\nstages {','.join(stages)}; {args.size_arcmin}' mock fields; {os.cpu_count()} CPUs")
    print(f"{'configuration':<28} {'wall s':>8} {'/ this process':>15} {'load 1-min before-after':>24}")
    for row in results:
        base = base1 if row["label"].startswith("1 field") else baseN
        print(f"{row['label']:<28} {row['wall']:8.1f} {row['wall'] / base['wall']:15.2f} "
              f"{row['load'][0]:11.2f} - {row['load'][1]:.2f}")
    print(f"cluster start-up (not in the times): {warm:.1f} s; cluster rows identical to this process's "
          f"(source, aperture_flux): {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
