"""Export speed: `export_version` of one release-sized field against astropy writing the same arrays.

A field like the release's largest (default 30,000 sources, 12 HST filters, IRAC, zout) is
written with `ingest.fixtures`, ingested into a scratch schema of the embedded server (or
`--db URL`), and frozen twice: as version `bench` (with its snapshot, the default) and as
`bench_rows` (`snapshot=False`, as versions made before migration 0006). Then, in the same
process, alternately:

- export: `alcsdb.export.export_version(engine, "bench", out, field=F)`: the whole command
  (read the version's snapshot, write both FITS files with headers, checksums and sha256,
  register them in an export run);
- export from rows: the same for `bench_rows`, whose tables are rebuilt from the measurement rows;
- floor: the tables `phot_table` / `zout_table` return, already in memory, written to FITS by
  astropy (`Table(arrays).write(...)`, and `fits.BinTableHDU.from_columns(...).writeto(...)`).

Median times over `--repeats` and the ratio export / floor (the faster floor) are printed,
with a breakdown of the export's steps (timed separately on the same data), the cost of the
snapshot at `version create`, and the machine's load average. Target: <= 1.5.
`--read-paths` also times the ways of reading the aperture rows that were weighed against the
snapshot (README, export section).

Run: ``python benchmarks/export.py [--sources 30000] [--filters 12] [--repeats 5] [--read-paths] [--profile]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FILTERS = ("f435w", "f606w", "f625w", "f775w", "f814w", "f850lp", "f105w", "f110w", "f125w", "f140w", "f160w",
           "f275w", "f336w", "f225w", "f475w")
FIELD = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=30000, help="sources in the field")
    parser.add_argument("--filters", type=int, default=12, choices=range(1, len(FILTERS) + 1), metavar="N",
                        help=f"HST filters (1..{len(FILTERS)})")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each side")
    parser.add_argument("--db", help="PostgreSQL URL (default: the embedded server); a scratch schema is used")
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema and files")
    parser.add_argument("--read-paths", action="store_true",
                        help="also time row-based ways of reading the aperture rows against the snapshot")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile of one export")
    return parser.parse_args()


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_time(fn, repeats: int) -> float:
    return float(statistics.median(seconds(fn) for _ in range(repeats)))


def build(engine, work: Path, n_sources: int, filters: list[str]) -> dict[str, float]:
    """Ingest the field; create `bench` (with snapshot) and `bench_rows` (without); their creation times."""
    from alcsdb import versions
    from ingest import fixtures
    from ingest.load import ingest_path

    name, root, ra, dec = FIELD
    rel = work / "release"
    cat = fixtures.write_phot_apcorr(rel / f"{name}_irac_phot_apcorr.fits", name, ra, dec, n_sources, filters, seed=1)
    fixtures.write_zout(rel / f"{name}_irac.eazypy.zout.fits", cat["id"], cat["ra"], cat["dec"], seed=1)
    ingest_path(engine, rel)
    return {"bench_rows": seconds(lambda: versions.create_version(engine, "bench_rows", snapshot=False)),
            "bench": seconds(lambda: versions.create_version(engine, "bench"))}


def read_paths(engine, fr, repeats: int) -> dict[str, float]:
    """Median seconds of ways to get the photometry out of PostgreSQL (evidence for the snapshot)."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text

    from alcsdb.copyload import copy_out_binary, fetch_columns, parse_binary_rows
    from alcsdb.release_tables import APERTURE_SQL
    from alcsdb.snapshot import load

    run = fr.runs["photometry"]
    cols = ", ".join(APERTURE_SQL)
    plain = f"SELECT source_id, filter_id, aperture, {cols} FROM aperture_flux WHERE run_id = :p"
    select = [("sid", "source_id", "i8"), ("filt", "filter_id", "i4"), ("ap", "aperture", "i4")]
    select += [(q, q, "i8" if q == "flag" else "f8") for q in APERTURE_SQL]
    out = {}
    with engine.connect() as conn:
        lo, hi = conn.execute(text("SELECT min(source_id), max(source_id) FROM aperture_flux WHERE run_id = :p"),
                              {"p": run}).one()
        version_id = conn.execute(text("SELECT version_id FROM catalog_version WHERE name = 'bench'")).scalar()
        out["aperture_flux rows: fetch_columns (fixed-width COPY, NULL -> NaN)"] = median_time(
            lambda: fetch_columns(conn, select, "FROM aperture_flux WHERE run_id = :p", {"p": run}), repeats)
        out["aperture_flux rows: fetch_columns ORDER BY source, filter, aperture"] = median_time(
            lambda: fetch_columns(conn, select, "FROM aperture_flux WHERE run_id = :p "
                                                "ORDER BY source_id, filter_id, aperture", {"p": run}), repeats)
        out["aperture_flux rows: raw binary COPY, not parsed (lower bound)"] = median_time(
            lambda: copy_out_binary(conn, plain, {"p": run}), repeats)
        out["array_agg per source (float8[] per quantity), raw COPY"] = median_time(
            lambda: copy_out_binary(conn, "SELECT source_id, " + ", ".join(
                f"array_agg({q} ORDER BY filter_id, aperture)" for q in APERTURE_SQL)
                + " FROM aperture_flux WHERE run_id = :p GROUP BY source_id", {"p": run}), repeats)
        out["snapshot: every column of both files (snapshot.load)"] = median_time(
            lambda: load(conn, version_id, fr.field_id), repeats)
        out["snapshot: raw COPY of its rows, not parsed"] = median_time(
            lambda: parse_binary_rows(copy_out_binary(conn, "SELECT data FROM catalog_version_column WHERE "
                                                            "version_id = :v", {"v": version_id})), repeats)
    mid = (lo + hi) // 2

    def half(bounds) -> bytes:
        with engine.connect() as conn:
            return copy_out_binary(conn, plain + " AND source_id BETWEEN :a AND :b", {"p": run, "a": bounds[0],
                                                                                     "b": bounds[1]})

    with ThreadPoolExecutor(2) as pool:
        out["aperture_flux rows: raw COPY, 2 connections over source_id halves"] = median_time(
            lambda: list(pool.map(half, [(lo, mid), (mid + 1, hi)])), repeats)
    return out


def floor_writers(phot: dict, zout: dict, out: Path):
    """The two astropy ways of writing the in-memory tables (phot + zout files)."""
    from astropy.io import fits
    from astropy.table import Table

    def with_table() -> None:
        for label, arrays in (("phot", phot), ("zout", zout)):
            Table(arrays, copy=False).write(out / f"table_{label}.fits", overwrite=True)

    def with_columns() -> None:
        for label, arrays in (("phot", phot), ("zout", zout)):
            cols = [fits.Column(name=k, format=_tform(v), array=v) for k, v in arrays.items()]
            fits.BinTableHDU.from_columns(cols).writeto(out / f"columns_{label}.fits", overwrite=True)

    return with_table, with_columns


def same_data(a: Path, b: Path) -> bool:
    """The two files' tables have the same bytes (headers differ: version name, date, hash)."""
    from astropy.io import fits

    with fits.open(a) as x, fits.open(b) as y:
        return x[1].data.tobytes() == y[1].data.tobytes()


def _tform(arr) -> str:
    code = {"f8": "D", "f4": "E", "i2": "I", "i4": "J", "i8": "K"}[arr.dtype.str[1:]]
    repeat = int(arr[0].size) if arr.ndim > 1 else 1
    return f"{repeat if repeat > 1 else ''}{code}"


def main() -> None:
    args = parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import astropy
    import numpy as np
    from sqlalchemy import text

    from alcsdb import db, export, snapshot
    from alcsdb.versions import version_runs

    base = db.resolve_url(args.db)
    schema = f"bench_export_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    work = Path(tempfile.mkdtemp(prefix="alcs_bench_export_"))
    engine = db.make_engine(db.with_schema(base, schema))
    try:
        db.upgrade(engine)
        filters = list(FILTERS[:args.filters])
        t0 = time.perf_counter()
        create = build(engine, work, args.sources, filters)
        t_build = time.perf_counter() - t0
        name = FIELD[0]
        with engine.connect() as conn:
            version, fields = version_runs(conn, "bench")
            fr = fields[0]
            phot, _ = export.phot_table(conn, fr)
            zout = export.zout_table(conn, fr)
            snap_mb = conn.execute(text("SELECT pg_total_relation_size('catalog_version_column')")).scalar() / 1e6
        floor_dir = work / "floor"
        floor_dir.mkdir()

        def exporter(version_name: str):
            return lambda: export.export_version(engine, version_name, work / version_name, field=name)

        run_export, run_export_rows = exporter("bench"), exporter("bench_rows")
        run_export()  # warm-up: imports, caches, the server's buffers
        run_export_rows()
        with_table, with_columns = floor_writers(phot, zout, floor_dir)
        with_table()
        with_columns()
        sides = {"export": run_export, "rows": run_export_rows, "table": with_table, "columns": with_columns}
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.repeats):  # interleaved, so all sides see the same machine state
            for key, fn in sides.items():
                times[key].append(seconds(fn))
        load_after = os.getloadavg()
        med = {k: statistics.median(v) for k, v in times.items()}
        floor = min(med["table"], med["columns"])

        # the export's steps, each timed alone on the same data
        steps = {}
        with engine.connect() as conn:
            steps["read the snapshot (snapshot.load)"] = median_time(
                lambda: snapshot.load(conn, version["version_id"], fr.field_id), args.repeats)
            steps["or build both tables from the rows (snapshot.build)"] = median_time(
                lambda: snapshot.build(conn, fr), args.repeats)
            cards = export._header_cards(conn, version, fr)
        steps["write phot FITS + sha256 (fitswriter)"] = median_time(
            lambda: export._write_fits(floor_dir / "w_phot.fits", phot, cards, "phot"), args.repeats)
        steps["write zout FITS + sha256 (fitswriter)"] = median_time(
            lambda: export._write_fits(floor_dir / "w_zout.fits", zout, cards, "zout"), args.repeats)
        paths = read_paths(engine, fr, args.repeats) if args.read_paths else {}
        sizes = sum(p.stat().st_size for p in (work / "bench").iterdir()) / 1e6
        same = all(same_data(p, work / "bench_rows" / p.name) for p in (work / "bench").iterdir())

        print(f"# field {name}: {args.sources} sources, {len(filters)} HST filters + IRAC + zout; "
              f"{len(phot)} phot columns, {len(zout)} zout columns; files {sizes:.1f} MB")
        print(f"# built and ingested in {t_build:.1f} s; astropy {astropy.__version__}, numpy {np.__version__}; "
              f"median of {args.repeats} interleaved repeats; load average {load_before[0]:.2f} before, "
              f"{load_after[0]:.2f} after the timed repeats ({os.cpu_count()} CPUs)")
        print(f"{'':48s} {'median s':>9s} {'x floor':>8s}")
        print(f"{'export_version (field), from the snapshot':48s} {med['export']:9.3f} {med['export'] / floor:8.2f}")
        print(f"{'export_version (field), tables from the rows':48s} {med['rows']:9.3f} {med['rows'] / floor:8.2f}")
        print(f"{'floor: Table(arrays).write':48s} {med['table']:9.3f} {med['table'] / floor:8.2f}")
        print(f"{'floor: BinTableHDU.from_columns().writeto':48s} {med['columns']:9.3f} {med['columns'] / floor:8.2f}")
        print("# export steps, timed alone:")
        for label, t in steps.items():
            print(f"  {label:46s} {t:9.3f} {t / floor:8.2f}")
        print(f"# version create (content hash, pins): {create['bench_rows']:.1f} s without the snapshot, "
              f"{create['bench']:.1f} s with it; snapshot table {snap_mb:.0f} MB; "
              f"data units of the files from the snapshot and from the rows identical: {same}")
        if paths:
            print("# reading the photometry, timed alone:")
            for label, t in paths.items():
                print(f"  {label:66s} {t:7.3f} {t / floor:6.2f}")
        ratio = med["export"] / floor
        print(f"ratio export / floor = {ratio:.2f} (target <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            run_export()
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    finally:
        engine.dispose()
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# kept schema {schema} and files in {work}")
        admin.dispose()


if __name__ == "__main__":
    main()
