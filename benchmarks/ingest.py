"""Ingest speed and memory against the floor: a plain COPY of the same rows from prepared CSV.

    python benchmarks/ingest.py                 # 3 fields x 30,000 sources x 12 HST filters x 7 apertures
    python benchmarks/ingest.py --fields 33     # the whole release size
    python benchmarks/ingest.py --sources 5000  # quicker

Steps, in one run on one server (the embedded one unless --db):
1. write release-format catalogs and zout files (`ingest.fixtures`) for the fields;
2. ours: `alcsdb ingest FILE` as a subprocess per file (FITS reading, validation, COPY,
   provenance), timing the wall clock and the child's peak RSS;
3. floor: dump the rows ours wrote to CSV files, then in a fresh schema time
   `COPY table FROM STDIN (FORMAT csv)` of the same rows into the same tables (the run and
   product rows they reference are loaded first, untimed).
Prints rows/s of both and the ratio (target >= 0.7), and the peak memory (target < 2 GB).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and its name would hide the `ingest` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from sqlalchemy import text  # noqa: E402

from alcsdb import db  # noqa: E402
from alcsdb.config import home  # noqa: E402
from ingest import fixtures  # noqa: E402

FILTERS = ["f435w", "f606w", "f775w", "f814w", "f850lp", "f105w", "f110w", "f125w", "f140w", "f160w", "f275w",
           "f336w"]
TABLES = ["source", "aperture_flux", "total_correction", "irac_flux", "zout"]


def copy_csv(url: str, table: str, path: Path, direction: str) -> float:
    engine = db.make_engine(url)
    with engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        t0 = time.perf_counter()
        if direction == "out":
            with open(path, "w") as fh:
                cursor.copy_expert(f'COPY "{table}" TO STDOUT WITH (FORMAT csv)', fh)
        else:
            with open(path) as fh:
                cursor.copy_expert(f'COPY "{table}" FROM STDIN WITH (FORMAT csv)', fh)
        elapsed = time.perf_counter() - t0
    engine.dispose()
    return elapsed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fields", type=int, default=3, help="number of fields (max 33)")
    ap.add_argument("--sources", type=int, default=30000, help="sources per field")
    ap.add_argument("--db", help="server URL (default: the embedded server)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch schemas")
    args = ap.parse_args(argv)

    base = db.resolve_url(args.db)
    from alcsdb.db import _csv_rows

    fields = [(r["name"], r["hst_root"], float(r["ra"]), float(r["dec"])) for r in _csv_rows("fields.csv")][: args.fields]
    work = Path(tempfile.mkdtemp(prefix="alcsdb-bench-ingest-", dir=home()))
    print(f"writing {len(fields)} fields x {args.sources} sources x {len(FILTERS)} filters in {work}")
    files = []
    for k, (name, hst_root, ra, dec) in enumerate(fields):
        cat_path = work / f"{name}_irac_phot_apcorr.fits"
        cat = fixtures.write_phot_apcorr(cat_path, name, ra, dec, args.sources, FILTERS, seed=k)
        zout_path = work / f"{name}_irac.eazypy.zout.fits"
        fixtures.write_zout(zout_path, cat["id"], cat["ra"], cat["dec"], seed=k)
        files += [cat_path, zout_path]
    size_mb = sum(f.stat().st_size for f in files) / 1e6

    stack = contextlib.ExitStack()
    ours_url = stack.enter_context(db.scratch_schema(base, "bench_ingest"))
    t_ours = 0.0
    for f in files:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "alcsdb", "--db", ours_url, "ingest", str(f)], check=True,
                       capture_output=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        t_ours += time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child's peak
    engine = db.make_engine(ours_url)
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in TABLES}
    engine.dispose()
    total = sum(counts.values())

    floor_url = stack.enter_context(db.scratch_schema(base, "bench_floor"))
    csv = {t: work / f"{t}.csv" for t in ["run", "product", *TABLES]}
    for t, path in csv.items():
        copy_csv(ours_url, t, path, "out")
    for t in ("run", "product"):
        copy_csv(floor_url, t, csv[t], "in")
    t_floor = sum(copy_csv(floor_url, t, csv[t], "in") for t in TABLES)

    print()
    print("| rows | files | MB | alcsdb ingest s | rows/s | COPY-from-CSV floor s | rows/s | ratio | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {total:,} | {len(files)} | {size_mb:.0f} | {t_ours:.1f} | {total / t_ours:,.0f} | {t_floor:.1f} | "
          f"{total / t_floor:,.0f} | {t_floor / t_ours:.2f} | {peak:.0f} |")
    print("rows per table: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    print("ratio = (our rows/s) / (floor rows/s); target >= 0.7. Peak RSS of one `alcsdb ingest` process; "
          "target < 2048 MB")
    if not args.keep:
        stack.close()  # drops both scratch schemas
        for f in work.iterdir():
            f.unlink()
        work.rmdir()


if __name__ == "__main__":
    main()
