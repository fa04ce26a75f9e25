"""1M x 1M cross-match in the database, against astropy and Q3C on the same arrays, in one run.

Two independent random catalogs (``--sources`` and ``--external`` rows, default 1M each),
uniform in discs of ``--field-radius`` arcmin around the 33 ALCS field centres (about 0.4
objects per square arcsec at the defaults, as dense as a deep HST field). The sources are
loaded into a scratch schema of ``--db`` (one ingest run per field), the external catalog
through ``alcsdb external load`` from a FITS file. Timed, each the best of ``--repeat``:

- alcsdb ``match_pairs``: every pair within ``--radius`` into a temp table (the covering, its
  COPY, the hash join and the exact distance; ``--order-offsets`` also times other orders);
- alcsdb ``crossmatch``: the stored run (pairs + is_nearest into ``crossmatch``, with its
  foreign keys), what ``alcsdb crossmatch`` does;
- astropy ``match_to_catalog_sky`` (nearest external of each source, KD-tree build included)
  and ``search_around_sky`` (all pairs within the radius), from the same float64 arrays;
- Q3C ``q3c_join`` (all pairs into a temp table, with ``q3c_dist``) on the same server and
  tables when the extension is available there (created in the scratch schema and dropped with
  it), its index build reported apart.

The pairs are checked: alcsdb's equal astropy's ``search_around_sky`` (and Q3C's), and each
source's nearest equals astropy's nearest within the radius. The last column is the ratio of
each time to alcsdb ``match_pairs``.

Run: ``python benchmarks/crossmatch.py --db postgresql://postgres@127.0.0.1:5432/postgres``
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from astropy import units as u  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.table import Table  # noqa: E402
from sqlalchemy import text  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alcsdb import crossmatch as xm  # noqa: E402
from alcsdb import db, external  # noqa: E402
from alcsdb.copyload import fetch_columns  # noqa: E402
from alcsdb.healpix import hpx29  # noqa: E402
from alcsdb.measurements import write_sources  # noqa: E402
from alcsdb.provenance import stage_run  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="PostgreSQL URL (default: ALCSDB_DATABASE_URL, else the embedded server)")
    parser.add_argument("--sources", type=int, default=1_000_000, help="rows of `source`")
    parser.add_argument("--external", type=int, default=1_000_000, help="rows of the external catalog")
    parser.add_argument("--radius", type=float, default=1.0, help="match radius, arcsec")
    parser.add_argument("--field-radius", type=float, default=2.5, help="radius of each field's disc, arcmin")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each timed step (best is printed)")
    parser.add_argument("--order-offsets", default="0",
                        help="comma-separated offsets from match_order() to time match_pairs at")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-q3c", action="store_true", help="skip Q3C even when available")
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema (printed)")
    return parser.parse_args()


def field_positions(rng, centres: np.ndarray, n: int, radius_arcmin: float):
    """n positions uniform in discs around random field centres (small-angle offsets)."""
    k = rng.integers(0, len(centres), n)
    r = radius_arcmin / 60 * np.sqrt(rng.uniform(0, 1, n))
    th = rng.uniform(0, 2 * np.pi, n)
    dec = centres[k, 1] + r * np.sin(th)
    ra = np.mod(centres[k, 0] + r * np.cos(th) / np.cos(np.radians(dec)), 360.0)
    return k, ra, dec


def best(fn, repeat: int):
    """(best wall time, last result) of `repeat` calls."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    args = parse_args()
    base = db.resolve_url(args.db)
    schema = f"bench_xm_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
        server = conn.execute(text("SHOW server_version")).scalar()
    url = db.with_schema(base, schema)
    engine = db.make_engine(url)
    auto = db.make_engine(url, isolation_level="AUTOCOMMIT")
    rows = []
    try:
        db.upgrade(engine)
        rng = np.random.default_rng(args.seed)
        with engine.connect() as conn:
            fields = conn.execute(text("SELECT field_id, ra, dec FROM field ORDER BY field_id")).all()
        centres = np.array([[f[1], f[2]] for f in fields])
        k, s_ra, s_dec = field_positions(rng, centres, args.sources, args.field_radius)
        _, e_ra, e_dec = field_positions(rng, centres, args.external, args.field_radius)
        area = len(fields) * np.pi * (args.field_radius * 60) ** 2
        print(f"server PostgreSQL {server}; {args.sources} sources x {args.external} external rows in "
              f"{len(fields)} fields ({args.sources / area:.2f} and {args.external / area:.2f} per arcsec^2), "
              f"radius {args.radius}\"")

        t0 = time.perf_counter()
        source_id = np.zeros(args.sources, dtype=np.int64)
        for i, (fid, _, _) in enumerate(fields):
            sel = np.flatnonzero(k == i)
            sel = sel[np.argsort(hpx29(s_ra[sel], s_dec[sel]))]  # rows physically in hpx29 order
            with stage_run(engine, "ingest", field_id=fid, params={"benchmark": "crossmatch"}) as run:
                source_id[sel] = write_sources(run, fid, {"id": np.arange(1, len(sel) + 1), "ra": s_ra[sel],
                                                          "dec": s_dec[sel], "hpx29": hpx29(s_ra[sel], s_dec[sel])})
        load_sources = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "external.fits"
            Table({"id": np.arange(args.external), "ra": e_ra, "dec": e_dec}).write(path)
            t0 = time.perf_counter()
            info = external.load_catalog(engine, path, "bench")
            load_external = time.perf_counter() - t0
        with auto.connect() as conn:
            conn.execute(text("VACUUM ANALYZE source"))
            conn.execute(text("VACUUM ANALYZE external_source"))
        print(f"setup (not compared): sources loaded in {load_sources:.1f} s, external catalog "
              f"(`external load`, FITS) in {load_external:.1f} s")
        with engine.connect() as conn:
            runs = sorted(fr.runs["detect"] for fr in xm.select_fields(conn))
            ext = fetch_columns(conn, [("ext_source_id", "ext_source_id", "i8"), ("row", "ext_id::bigint", "i8")],
                                "FROM external_source", {})
        ext_row = np.zeros(ext["ext_source_id"].max() + 1, dtype=np.int64)
        ext_row[ext["ext_source_id"]] = ext["row"]  # ext_source_id -> row of the arrays

        def pairs_only(order: int):
            with engine.connect() as conn:
                stats = xm.match_pairs(conn, xm.source_side(runs), xm.external_side(info.catalog_id),
                                       args.radius, order)
                got = fetch_columns(conn, [("s", "source_id", "i8"), ("e", "ext_source_id", "i8"),
                                           ("d", "separation_arcsec", "f8")], "FROM xm_pairs", {})
                conn.rollback()
            return stats, got

        base_order = xm.match_order(args.radius)
        for offset in [int(o) for o in args.order_offsets.split(",")]:
            t, (stats, ours) = best(lambda: pairs_only(base_order + offset), args.repeat)
            rows.append((f"alcsdb match_pairs (order {base_order + offset}, {stats.n_cells / stats.n_external:.2f} "
                         f"cells/row, {stats.covered} covered)", t, stats.n_pairs))
            if offset == 0:
                ref_time, ref_pairs = t, ours
        t, res = best(lambda: xm.crossmatch(engine, "bench", args.radius), args.repeat)
        rows.append(("alcsdb crossmatch (stored run, is_nearest)", t, res.stats.n_pairs))

        t, (idx, d2d, _) = best(lambda: SkyCoord(s_ra * u.deg, s_dec * u.deg).match_to_catalog_sky(
            SkyCoord(e_ra * u.deg, e_dec * u.deg)), args.repeat)
        near = d2d.to_value(u.arcsec) <= args.radius
        rows.append(("astropy match_to_catalog_sky (nearest only)", t, int(near.sum())))
        # search_around_sky returns (index into its argument, index into self)
        t, (i_ext, i_src, _, _) = best(lambda: SkyCoord(s_ra * u.deg, s_dec * u.deg).search_around_sky(
            SkyCoord(e_ra * u.deg, e_dec * u.deg), args.radius * u.arcsec), args.repeat)
        rows.append(("astropy search_around_sky (all pairs)", t, len(i_src)))

        # checks: same pairs as astropy; same nearest per source
        order = np.argsort(source_id)
        row_of_source = lambda sid: order[np.searchsorted(source_id, sid, sorter=order)]  # noqa: E731
        mine = set(zip(row_of_source(ref_pairs["s"]).tolist(), ext_row[ref_pairs["e"]].tolist()))
        theirs = set(zip(i_src.tolist(), i_ext.tolist()))
        checks = [f"pairs equal to astropy search_around_sky: {mine == theirs} ({len(mine)} vs {len(theirs)})"]
        with engine.connect() as conn:
            nearest = fetch_columns(conn, [("s", "source_id", "i8"), ("e", "ext_source_id", "i8")],
                                    "FROM crossmatch WHERE run_id = :r AND is_nearest", {"r": res.run_id})
        mine_near = dict(zip(row_of_source(nearest["s"]).tolist(), ext_row[nearest["e"]].tolist()))
        astro_near = {int(i): int(idx[i]) for i in np.flatnonzero(near)}
        checks.append(f"nearest equal to astropy match_to_catalog_sky within the radius: {mine_near == astro_near}")

        with engine.connect() as conn:
            q3c = conn.execute(text("SELECT count(*) FROM pg_available_extensions WHERE name = 'q3c'")).scalar()
        if q3c and not args.no_q3c:
            with auto.connect() as conn:
                conn.execute(text(f"CREATE EXTENSION IF NOT EXISTS q3c SCHEMA {schema}"))
                t0 = time.perf_counter()
                conn.execute(text("CREATE INDEX ON source (q3c_ang2ipix(ra, dec))"))
                conn.execute(text("ANALYZE source"))
                index_time = time.perf_counter() - t0

            def q3c_join():
                with engine.connect() as conn:
                    n = conn.execute(text(
                        "CREATE TEMP TABLE q3c_pairs ON COMMIT DROP AS SELECT s.source_id, e.ext_source_id, "
                        "q3c_dist(e.ra, e.dec, s.ra, s.dec) * 3600 AS sep FROM external_source e, source s "
                        "WHERE e.catalog_id = :c AND q3c_join(e.ra, e.dec, s.ra, s.dec, :r)"),
                        {"c": info.catalog_id, "r": args.radius / 3600}).rowcount
                    got = fetch_columns(conn, [("s", "source_id", "i8"), ("e", "ext_source_id", "i8")],
                                        "FROM q3c_pairs", {})
                    conn.rollback()
                return n, got

            t, (n, got) = best(q3c_join, args.repeat)
            rows.append((f"Q3C q3c_join (index build {index_time:.1f} s apart)", t, n))
            same = set(zip(got["s"].tolist(), got["e"].tolist())) == set(zip(ref_pairs["s"].tolist(),
                                                                              ref_pairs["e"].tolist()))
            checks.append(f"pairs equal to Q3C: {same}")
        else:
            checks.append("Q3C: not available on this server" if not q3c else "Q3C: skipped (--no-q3c)")

        width = max(len(r[0]) for r in rows)
        print(f"{'method':<{width}}  {'time s':>8}  {'pairs':>9}  {'ratio':>6}")
        for name, t, n in rows:
            print(f"{name:<{width}}  {t:8.2f}  {n:9d}  {t / ref_time:6.2f}")
        for line in checks:
            print(line)
    finally:
        engine.dispose()
        auto.dispose()
        if args.keep:
            print(f"scratch schema kept: {schema}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
