"""Load test: cone searches while one process ingests a field and another runs stages on another.

Phases (same readers, same query mix): `idle` (readers alone) and `load` (readers while an
ingest writer loads new catalogs of field A again and again and a stage writer runs
detect + photometry on field B again and again). Readers are threads, each with its own
connection, running `alcs_cone_search` at random positions of the preloaded fields; writers
are processes. Reported: cone-search latency p50 / p99 / max per phase; writes done and the
longest write transaction; samples in which a reader waited for a lock (a monitor polls
`pg_stat_activity` every 20 ms); deadlocks (pg_stat_database); and integrity after the run:
duplicated sources, duplicated ingested files, runs whose rows differ from their `n_rows`,
runs not `succeeded`.

    python benchmarks/load.py                        # embedded server, scratch schema
    python benchmarks/load.py --db postgresql://postgres@127.0.0.1:5432/test --readers 16
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

if __name__ == "__main__":  # run as a script: the repository's packages, not benchmarks/ingest.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402

from alcsdb import db  # noqa: E402
from alcsdb.provenance import stage_run  # noqa: E402
from ingest import fixtures  # noqa: E402
from ingest.load import ingest_path  # noqa: E402

READER_APP = "alcsdb-load-reader"
#: preloaded fields: (name, hst_root, ra, dec); the ingest writer loads the first, the stage writer the second
FIELDS = [("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725),
          ("j114936p2222", "j114936p2222", 177.40125, 22.399472),
          ("j024004m0136", "hff-j024004m0136", 39.970417, -1.576806),
          ("j041620m2406", "hff-j041620m2406", 64.037083, -24.074639)]
FILTERS = ["f606w", "f814w", "f160w"]


def register_fixture_mosaics(engine: Engine, field: tuple, outdir: Path, shape: tuple[int, int] = (160, 160),
                             seed: int = 7) -> int:
    """HST sci/wht mosaics of f105w and f160w (fixtures) registered as a `mosaic` run of `field`.

    This is what `alcsdb run mosaic` leaves for `detect`, without drizzling raw exposures.
    Returns the run id.
    """
    name, hst_root, ra, dec = field
    with engine.connect() as conn:
        fid = conn.execute(text("SELECT field_id FROM field WHERE name = :n"), {"n": name}).scalar_one()
        fids = dict(conn.execute(text("SELECT name, filter_id FROM filter WHERE name IN ('f105w', 'f160w')")).all())
    with stage_run(engine, "mosaic", field_id=fid, params={"fixture": "register_fixture_mosaics"}) as run:
        for filt in ("f105w", "f160w"):
            for kind in ("sci", "wht"):
                path = fixtures.write_mosaic(outdir / f"{hst_root}-{filt}_drz_{kind}.fits", kind, hst_root, filt, ra,
                                             dec, shape, 0.1, seed)
                run.register_product(path, f"hst_{kind}", filter_id=fids[filt])
    return run.run_id


def preload(engine: Engine, n_sources: int, n_fields: int, outdir: Path) -> None:
    for k, (name, _, ra, dec) in enumerate(FIELDS[:n_fields]):
        path = outdir / "preload" / f"{name}_irac_phot_apcorr.fits"
        fixtures.write_phot_apcorr(path, name, ra, dec, n_sources, FILTERS, seed=100 + k)
        ingest_path(engine, path)


# --- workers ---------------------------------------------------------------------------

def reader(url: str, fields: list[tuple], stop: threading.Event, latencies: list[float], seed: int,
           errors: list[BaseException]) -> None:
    """Cone searches (radius 5-30") around random points within 100" of a field centre, until `stop`."""
    rng = np.random.default_rng(seed)
    engine = db.make_engine(url, pool_size=1, connect_args={"application_name": READER_APP})
    sql = text("SELECT source_id, distance_arcsec FROM alcs_cone_search(:ra, :dec, :r)")
    try:
        with engine.connect() as conn:
            while not stop.is_set():
                _, _, ra, dec = fields[rng.integers(len(fields))]
                offset = rng.uniform(-100, 100, 2) / 3600
                params = {"ra": float(ra + offset[0] / np.cos(np.radians(dec))), "dec": float(dec + offset[1]),
                          "r": float(rng.uniform(5, 30))}
                t0 = time.perf_counter()
                conn.execute(sql, params).all()
                conn.commit()
                latencies.append(time.perf_counter() - t0)
    except BaseException as exc:  # reported by run_phase
        errors.append(exc)
    finally:
        engine.dispose()


def lock_monitor(url: str, stop: threading.Event, out: dict) -> None:
    """Every 20 ms: how many reader backends are running a query, and how many wait for a lock."""
    engine = db.make_engine(url, pool_size=1)
    with engine.connect() as conn:
        while not stop.is_set():
            rows = conn.execute(text(
                "SELECT state, wait_event_type FROM pg_stat_activity WHERE application_name = :a AND pid <> "
                "pg_backend_pid()"), {"a": READER_APP}).all()
            conn.commit()
            out["samples"] += 1
            out["active"] += sum(1 for s, _ in rows if s == "active")
            out["lock_waits"] += sum(1 for s, w in rows if s == "active" and w == "Lock")
            time.sleep(0.02)
    engine.dispose()


def ingest_writer(url: str, field: tuple, n_sources: int, workdir: str, ready, stop, queue) -> None:
    """Ingest new catalogs of `field` until `stop` is set (at least one)."""
    engine = db.make_engine(url)
    name, _, ra, dec = field
    ready.set()
    k = 0
    while k == 0 or not stop.is_set():
        path = Path(workdir) / f"ingest{k}" / f"{name}_irac_phot_apcorr.fits"
        fixtures.write_phot_apcorr(path, name, ra, dec, n_sources, FILTERS, seed=1000 + k)
        (result,) = ingest_path(engine, path)
        queue.put(("ingest", result.status, result.run_id))
        k += 1
    engine.dispose()


def stage_writer(url: str, field: str, ready, stop, queue) -> None:
    """Run detect then photometry on `field` (forced: each is a new run) until `stop` is set (at least once)."""
    from pipeline.runner import run_stage, stage_module

    for stage in ("detect", "photometry"):  # imported before the phase starts
        stage_module(stage)

    engine = db.make_engine(url)
    ready.set()
    first = True
    while first or not stop.is_set():
        for stage in ("detect", "photometry"):
            result = run_stage(engine, stage, field, force=True)
            queue.put((stage, "succeeded", result.run_id))
        first = False
    engine.dispose()


# --- phases and checks -----------------------------------------------------------------

@dataclass
class Phase:
    name: str
    seconds: float
    latencies: list[float]
    monitor: dict
    writes: list[tuple] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


def run_phase(url: str, name: str, readers: int, seconds: float, n_fields: int, *, writers: bool = False,
              n_sources: int = 0, workdir: Path | None = None) -> Phase:
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(readers)]
    monitor = {"samples": 0, "active": 0, "lock_waits": 0}
    errors: list[BaseException] = []
    threads = [threading.Thread(target=reader, args=(url, FIELDS[:n_fields], stop, latencies[i], i, errors))
               for i in range(readers)]
    threads.append(threading.Thread(target=lock_monitor, args=(url, stop, monitor)))
    procs, queue = [], None
    if writers:  # started first: the phase begins when they are ready to write
        ctx = mp.get_context("spawn")
        queue, stop_writers = ctx.Queue(), ctx.Event()
        ready = [ctx.Event(), ctx.Event()]
        procs = [ctx.Process(target=ingest_writer,
                             args=(url, FIELDS[0], n_sources, str(workdir), ready[0], stop_writers, queue)),
                 ctx.Process(target=stage_writer, args=(url, FIELDS[1][0], ready[1], stop_writers, queue))]
        for p in procs:
            p.start()
        for event, p in zip(ready, procs):
            while not event.wait(1.0):
                if not p.is_alive():
                    raise RuntimeError(f"writer {p.name} ended before it was ready (exit code {p.exitcode})")
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    if procs:
        stop_writers.set()
    for p in procs:  # a writer finishes the write it started; the readers go on meanwhile
        p.join(timeout=600)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.perf_counter() - t0
    writes = []
    while queue is not None:
        try:
            writes.append(queue.get(timeout=1.0))
        except Empty:
            break
    if errors:
        raise RuntimeError(f"{len(errors)} reader(s) failed") from errors[0]
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a writer failed: exit codes {[p.exitcode for p in procs]}")
    return Phase(name, elapsed, [x for lat in latencies for x in lat], monitor, writes)


def deadlocks(engine: Engine) -> int:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return conn.execute(text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
                            ).scalar_one()


def integrity(engine: Engine) -> dict[str, int]:
    """Counts that must all be zero after a load run."""
    checks = {
        "duplicated sources": "SELECT count(*) FROM (SELECT run_id, id FROM source GROUP BY 1, 2 "
                              "HAVING count(*) > 1) d",
        "duplicated ingested files": "SELECT count(*) FROM (SELECT sha256 FROM product WHERE ingested GROUP BY 1 "
                                     "HAVING count(*) > 1) d",
        "runs not succeeded": "SELECT count(*) FROM run WHERE status <> 'succeeded'",
    }
    out = {}
    with engine.connect() as conn:
        for label, sql in checks.items():
            out[label] = conn.execute(text(sql)).scalar()
        mismatched = 0
        for run_id, n_rows in conn.execute(text("SELECT run_id, n_rows FROM run WHERE status = 'succeeded'")).all():
            for table, n in (n_rows or {}).items():
                got = conn.execute(text(f'SELECT count(*) FROM "{table}" WHERE run_id = :r'), {"r": run_id}).scalar()
                mismatched += got != n
        out["runs whose rows differ from n_rows"] = mismatched
    return out


def longest_write_s(engine: Engine, run_ids: list[int]) -> float:
    with engine.connect() as conn:
        return float(conn.execute(text("SELECT coalesce(max(wall_time_s), 0) FROM run WHERE run_id = ANY(:r)"),
                                  {"r": run_ids}).scalar())


@dataclass
class LoadReport:
    idle: Phase
    load: Phase
    deadlocks: int
    integrity: dict[str, int]
    longest_write_s: float
    rows_written: int


def run_load(url: str, *, readers: int = 8, seconds: float = 20.0, n_sources: int = 20000, n_fields: int = 4,
             mosaic_shape: tuple[int, int] = (600, 600), workdir: Path | None = None) -> LoadReport:
    """Preload, then the idle and the load phase on the migrated database at `url`."""
    engine = db.make_engine(url)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        preload(engine, n_sources, n_fields, work)
        register_fixture_mosaics(engine, FIELDS[1], work / "mosaics", mosaic_shape)
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
        idle = run_phase(url, "idle", readers, seconds, n_fields)
        before = deadlocks(engine)
        load = run_phase(url, "load", readers, seconds, n_fields, writers=True, n_sources=n_sources, workdir=work)
        time.sleep(1.0)  # statistics reach pg_stat_database within a second
        dead = deadlocks(engine) - before
    run_ids = [w[2] for w in load.writes]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT coalesce(sum(v::bigint), 0) FROM run, jsonb_each_text(n_rows) AS e(k, v) "
                                 "WHERE run_id = ANY(:r)"), {"r": run_ids}).scalar()
    report = LoadReport(idle, load, dead, integrity(engine), longest_write_s(engine, run_ids), int(rows))
    engine.dispose()
    return report


def print_report(r: LoadReport, readers: int) -> None:
    print(f"{readers} readers (alcs_cone_search, radius 5-30\"); the load phase lasts until the last write ends")
    print(f"{'phase':<6} {'s':>6} {'queries':>8} {'q/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'lock-wait samples':>18}")
    for p in (r.idle, r.load):
        print(f"{p.name:<6} {p.seconds:>6.1f} {len(p.latencies):>8} {len(p.latencies) / p.seconds:>7.1f} "
              f"{p.percentile(50):>8.2f} "
              f"{p.percentile(99):>8.2f} {max(p.latencies) * 1000:>8.1f} "
              f"{p.monitor['lock_waits']:>8} of {p.monitor['active']:>7}")
    kinds: dict[str, int] = {}
    for kind, _, _ in r.load.writes:
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"writes under load: {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}; {r.rows_written} rows; "
          f"longest write transaction {r.longest_write_s:.2f} s")
    print(f"p99 under load / idle: {r.load.percentile(99) / r.idle.percentile(99):.2f}")
    print(f"deadlocks: {r.deadlocks}; " + "; ".join(f"{k}: {v}" for k, v in r.integrity.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="server URL (default: the embedded server); a scratch schema is used")
    parser.add_argument("--readers", type=int, default=8, help="reader threads (default 8)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase (default 20)")
    parser.add_argument("--sources", type=int, default=20000, help="sources per preloaded catalog (default 20000)")
    parser.add_argument("--fields", type=int, default=4, choices=range(2, len(FIELDS) + 1),
                        help="preloaded fields (default 4)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with db.scratch_schema(db.resolve_url(args.db), "load") as url:
        print_report(run_load(url, readers=args.readers, seconds=args.seconds, n_sources=args.sources,
                              n_fields=args.fields), args.readers)


if __name__ == "__main__":
    main()
