"""Export speed: `export_version` of one release-sized field against astropy writing the same arrays.

A field like the release's largest (default 30,000 sources, 12 HST filters, IRAC, zout) is
written with `ingest.fixtures`, ingested into a scratch schema of the embedded server (or
`--db URL`), and frozen as a version. Then, in the same process, alternately:

- export: `alcsdb.export.export_version(engine, version, out, field=F)`: the whole command
  (read the rows by binary COPY, build the release columns, write both FITS files with
  headers and checksums, sha256 them, register them in an export run);
- floor: the tables `phot_table` / `zout_table` return, already in memory, written to FITS by
  astropy (`Table(arrays).write(...)`, and `fits.BinTableHDU.from_columns(...).writeto(...)`).

Median times over `--repeats` and the ratio export / floor (the faster floor) are printed,
with a breakdown of the export's steps (timed separately on the same data). Target: <= 1.5.

Run: ``python benchmarks/export.py [--sources 30000] [--filters 12] [--repeats 5] [--profile]``
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
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile of one export")
    return parser.parse_args()


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median_time(fn, repeats: int) -> float:
    return float(statistics.median(seconds(fn) for _ in range(repeats)))


def build(engine, work: Path, n_sources: int, filters: list[str]) -> None:
    from alcsdb import versions
    from ingest import fixtures
    from ingest.load import ingest_path

    name, root, ra, dec = FIELD
    rel = work / "release"
    cat = fixtures.write_phot_apcorr(rel / f"{name}_irac_phot_apcorr.fits", name, ra, dec, n_sources, filters, seed=1)
    fixtures.write_zout(rel / f"{name}_irac.eazypy.zout.fits", cat["id"], cat["ra"], cat["dec"], seed=1)
    ingest_path(engine, rel)
    versions.create_version(engine, "bench")


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

    from alcsdb import db, export
    from alcsdb.provenance import file_sha256
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
        build(engine, work, args.sources, filters)
        t_build = time.perf_counter() - t0
        name = FIELD[0]
        with engine.connect() as conn:
            version, fields = version_runs(conn, "bench")
            fr = fields[0]
            phot, _ = export.phot_table(conn, fr)
            zout = export.zout_table(conn, fr)
        out = work / "export"
        floor_dir = work / "floor"
        floor_dir.mkdir()

        def run_export() -> None:
            export.export_version(engine, "bench", out, field=name)

        run_export()  # warm-up: imports, caches, the server's buffers
        with_table, with_columns = floor_writers(phot, zout, floor_dir)
        with_table()
        with_columns()
        sides = {"export": run_export, "table": with_table, "columns": with_columns}
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.repeats):  # interleaved, so all sides see the same machine state
            for key, fn in sides.items():
                times[key].append(seconds(fn))
        med = {k: statistics.median(v) for k, v in times.items()}
        floor = min(med["table"], med["columns"])

        # the export's steps, each timed alone on the same data
        steps = {}
        with engine.connect() as conn:
            steps["read + build phot columns (phot_table)"] = median_time(lambda: export.phot_table(conn, fr),
                                                                          args.repeats)
            steps["read + build zout columns (zout_table)"] = median_time(lambda: export.zout_table(conn, fr),
                                                                          args.repeats)
            cards = export._header_cards(conn, version, fr)
        steps["write phot FITS (_write_fits)"] = median_time(
            lambda: export._write_fits(floor_dir / "w_phot.fits", phot, cards, "phot"), args.repeats)
        steps["write zout FITS (_write_fits)"] = median_time(
            lambda: export._write_fits(floor_dir / "w_zout.fits", zout, cards, "zout"), args.repeats)
        steps["sha256 of both files"] = median_time(
            lambda: [file_sha256(p) for p in (floor_dir / "w_phot.fits", floor_dir / "w_zout.fits")], args.repeats)
        sizes = sum(p.stat().st_size for p in out.iterdir()) / 1e6

        print(f"# field {name}: {args.sources} sources, {len(filters)} HST filters + IRAC + zout; "
              f"{len(phot)} phot columns, {len(zout)} zout columns; files {sizes:.1f} MB")
        print(f"# built and ingested in {t_build:.1f} s; astropy {astropy.__version__}, numpy {np.__version__}; "
              f"median of {args.repeats} interleaved repeats")
        print(f"{'':44s} {'median s':>9s} {'x floor':>8s}")
        print(f"{'export_version (field)':44s} {med['export']:9.3f} {med['export'] / floor:8.2f}")
        print(f"{'floor: Table(arrays).write':44s} {med['table']:9.3f} {med['table'] / floor:8.2f}")
        print(f"{'floor: BinTableHDU.from_columns().writeto':44s} {med['columns']:9.3f} {med['columns'] / floor:8.2f}")
        print("# export steps, timed alone:")
        for label, t in steps.items():
            print(f"  {label:42s} {t:9.3f} {t / floor:8.2f}")
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
