"""Cone-search latency: alcsdb's Python path and SQL function against Q3C and pgSphere.

Loads N random sources (default 1 million, clustered within 4' of the 33 ALCS field centres;
``--uniform`` spreads them over the sky) into a scratch database ``alcsdb_cone_bench`` on the
system PostgreSQL (migrated with alcsdb's migrations, COPY in hpx29 order, ANALYZE), gives each
peer its own copy of the rows with its own index (Q3C: ``q3c_ang2ipix`` B-tree, rows in Q3C
order; pgSphere: ``spoint`` GiST), and loads the same rows into a scratch embedded server. It
then times cone searches, the methods taking turns query by query, checks that every method
returns the rows of a brute-force scan (pgSphere may add rows within its 1e-9 rad tolerance of
the edge), and prints p50/p95 latencies and the ratios of alcsdb's methods to each peer.

All connections run with jit=off and autocommit; every query fetches source_id, field name,
ra, dec and distance. Methods: SELECT 1 and a primary-key lookup (the floors); alcsdb's
`cone_search_rows` (tuples) and `cone_search` (astropy Table); ``alcs_cone_search()``; Q3C
``q3c_radial_query`` plain and PREPAREd with plan_cache_mode = force_generic_plan; pgSphere
``pos <@ scircle(...)``.

Peers, for the system PostgreSQL 15 (Debian):
    apt-get install -y postgresql-15-q3c postgresql-15-pgsphere
A peer that is not installed is skipped with a message. Debian's pgSphere 1.2.0 fails
CREATE EXTENSION on current PostgreSQL minor releases ("commutator operator @> is already the
commutator of operator <@", postgrespro/pgsphere#85); the benchmark then runs the extension's
SQL script without its two obsolete DaCHS compatibility operators (upstream's fix,
postgrespro/pgsphere#92) in the scratch database only (the script must be readable locally).

    python benchmarks/cone_search.py                                 # 1M clustered
    python benchmarks/cone_search.py --uniform --n 10000000 --keep  # 10M uniform, keep the data
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import make_url

from alcsdb import db, healpix
from alcsdb.copyload import copy_columns
from alcsdb.provenance import insert_run
from alcsdb.query import cone_search, cone_search_rows

SCRATCH_DB = "alcsdb_cone_bench"
CLUSTER_RADIUS_ARCSEC = 240.0
PGSPHERE_EPSILON_ARCSEC = 1e-9 * healpix.ARCSEC_PER_RAD


# --- data ---------------------------------------------------------------------------------

def field_centres(engine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 33 release fields as loaded by the migrations (alcsdb/data/fields.csv)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT field_id, ra, dec FROM field ORDER BY field_id")).all()
    return tuple(np.array(col) for col in zip(*rows))


def make_sources(rng, n: int, uniform: bool, centres) -> dict[str, np.ndarray]:
    """Positions (uniform sky, or uniform within 4' of a random field centre), in hpx29 order."""
    field_ids, fra, fdec = centres
    pick = rng.integers(0, len(field_ids), n)
    if uniform:
        ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    else:
        rho = np.radians(CLUSTER_RADIUS_ARCSEC / 3600) * np.sqrt(rng.uniform(0, 1, n))
        az = rng.uniform(0, 2 * np.pi, n)
        d0, a0 = np.radians(fdec[pick]), np.radians(fra[pick])
        sin_d = np.sin(d0) * np.cos(rho) + np.cos(d0) * np.sin(rho) * np.cos(az)
        a = a0 + np.arctan2(np.sin(az) * np.sin(rho) * np.cos(d0), np.cos(rho) - np.sin(d0) * sin_d)
        ra, dec = np.degrees(a) % 360.0, np.degrees(np.arcsin(sin_d))
    ra[ra >= 360.0] = 0.0
    hpx = healpix.hpx29(ra, dec)
    order = np.argsort(hpx, kind="stable")
    return {"source_id": np.arange(1, n + 1), "field_id": field_ids[pick][order], "ra": ra[order],
            "dec": dec[order], "hpx29": hpx[order]}


def load_sources(engine, src: dict[str, np.ndarray], chunk: int = 1_000_000) -> float:
    """COPY the sources (hpx29 order) and ANALYZE; returns the seconds taken."""
    t0 = time.perf_counter()
    n = len(src["ra"])
    with engine.begin() as conn:
        run_id = insert_run(conn, "ingest", params={"benchmark": "cone_search", "n": n})
        for start in range(0, n, chunk):
            part = {k: v[start:start + chunk] for k, v in src.items()}
            part["run_id"] = np.full(len(part["ra"]), run_id)
            part["id"] = part["source_id"]
            copy_columns(conn, "source", part)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE source"))
    return time.perf_counter() - t0


def scratch_engine(base_url: str, fresh: bool):
    """An engine on the scratch database of a server, created (and migrated) when needed."""
    admin = db.make_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": SCRATCH_DB}).scalar()
        if exists and fresh:
            conn.execute(text(f"DROP DATABASE {SCRATCH_DB} WITH (FORCE)"))
        if fresh or not exists:
            conn.execute(text(f"CREATE DATABASE {SCRATCH_DB}"))
    admin.dispose()
    engine = db.make_engine(make_url(base_url).set(database=SCRATCH_DB).render_as_string(hide_password=False))
    if fresh or not exists:
        db.upgrade(engine)
    return engine


def drop_scratch(base_url: str) -> None:
    admin = db.make_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)"))
    admin.dispose()


def loaded_matches(engine, meta: str) -> bool:
    with engine.connect() as conn:
        if not conn.execute(text("SELECT to_regclass('bench_meta') IS NOT NULL")).scalar():
            return False
        return conn.execute(text("SELECT meta FROM bench_meta")).scalar() == meta


def mark_loaded(engine, meta: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_meta"))
        conn.execute(text("CREATE TABLE bench_meta AS SELECT CAST(:m AS text) AS meta"), {"m": meta})


# --- peers --------------------------------------------------------------------------------

def install_pgsphere(raw) -> str:
    """CREATE EXTENSION pg_sphere, or its script minus the two DaCHS operators (see module doc)."""
    cur = raw.cursor()
    try:
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_sphere")
        return "extension"
    except Exception as exc:  # psycopg2 errors: the message decides
        if "is already the commutator" not in str(exc):
            raise
    cur.execute("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'")
    sharedir = Path(cur.fetchone()[0]) / "extension"
    control = (sharedir / "pg_sphere.control").read_text()
    version = re.search(r"default_version\s*=\s*'([^']+)'", control).group(1)
    script = (sharedir / f"pg_sphere--{version}.sql").read_text()
    script = "\n".join(line for line in script.splitlines() if not line.startswith("\\"))
    script = re.sub(r"CREATE OPERATOR @ \(\s*LEFTARG\s*=\s*\w+,\s*RIGHTARG\s*=\s*smoc,.*?\);", "", script, flags=re.S)
    cur.execute(script.replace("MODULE_PATHNAME", "$libdir/pg_sphere"))
    return f"script pg_sphere--{version}.sql without the DaCHS @ operators"


def setup_peers(engine, reuse: bool) -> dict[str, str]:
    """Q3C and pgSphere copies of `source` with their indexes; returns {peer: how} for those available."""
    raw = engine.raw_connection()
    raw.driver_connection.autocommit = True
    cur = raw.driver_connection.cursor()
    cur.execute("SELECT name FROM pg_available_extensions WHERE name IN ('q3c', 'pg_sphere')")
    available = {r[0] for r in cur.fetchall()}
    peers = {}
    for peer, ext in (("q3c", "q3c"), ("pgsphere", "pg_sphere")):
        if ext not in available:
            print(f"# {peer}: not installed on this server, skipped "
                  f"(apt-get install -y postgresql-15-{'q3c' if ext == 'q3c' else 'pgsphere'})")
            continue
        table = f"{peer}_source"
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        if reuse and cur.fetchone()[0]:
            peers[peer] = "reused"
            continue
        t0 = time.perf_counter()
        if peer == "q3c":
            cur.execute("CREATE EXTENSION IF NOT EXISTS q3c")
            how = "extension"
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} AS SELECT source_id, field_id, ra, dec FROM source "
                        "ORDER BY q3c_ang2ipix(ra, dec)")
            cur.execute(f"CREATE INDEX ON {table} (q3c_ang2ipix(ra, dec))")
        else:
            how = install_pgsphere(raw.driver_connection)
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} AS SELECT source_id, field_id, ra, dec, "
                        "spoint(radians(ra), radians(dec)) AS pos FROM source ORDER BY hpx29")
            cur.execute(f"CREATE INDEX ON {table} USING gist (pos)")
        cur.execute(f"VACUUM ANALYZE {table}")
        peers[peer] = f"{how}, table + index built in {time.perf_counter() - t0:.0f} s"
    raw.close()
    return peers


# --- methods ------------------------------------------------------------------------------

Method = Callable[[float, float, float], list]


def raw_cursor(engine, *setup: str):
    raw = engine.raw_connection()
    raw.driver_connection.autocommit = True
    cur = raw.driver_connection.cursor()
    for statement in setup:
        cur.execute(statement)
    return raw, cur


def methods_for(engine, peers: dict[str, str], n_rows: int, order_deltas: list[int]) -> tuple[dict[str, Method], list]:
    """The timed methods on one server, each on its own connection; returns (methods, resources)."""
    keep = []
    methods: dict[str, Method] = {}

    def cursor(*setup):
        raw, cur = raw_cursor(engine, *setup)
        keep.append(raw)
        return cur

    c_one = cursor()
    methods["SELECT 1"] = lambda ra, dec, r: (c_one.execute("SELECT 1"), c_one.fetchall())[1]
    c_pk = cursor()
    pk_ids = iter(np.random.default_rng(1).integers(1, n_rows + 1, 10 ** 7).tolist())
    methods["PK lookup"] = lambda ra, dec, r: (c_pk.execute(
        "SELECT source_id, ra, dec FROM source WHERE source_id = %s", (next(pk_ids),)), c_pk.fetchall())[1]
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    keep.append(conn)
    methods["alcsdb Python rows"] = lambda ra, dec, r: cone_search_rows(conn, ra, dec, r)
    methods["alcsdb Python Table"] = lambda ra, dec, r: cone_search(conn, ra, dec, r)
    for delta in order_deltas:
        methods[f"alcsdb Python rows, order {delta:+d}"] = (
            lambda ra, dec, r, d=delta: cone_search_rows(conn, ra, dec, r, order=max(0, min(29, healpix.coarse_order(r) + d))))
    c_fn = cursor()
    methods["alcsdb SQL function"] = lambda ra, dec, r: (c_fn.execute(
        "SELECT source_id, field, ra, dec, distance_arcsec FROM alcs_cone_search(%s, %s, %s)", (ra, dec, r)),
        c_fn.fetchall())[1]
    q3c_sql = ("SELECT s.source_id, f.name, s.ra, s.dec, q3c_dist({0}, {1}, s.ra, s.dec) * 3600 FROM q3c_source s "
               "JOIN field f ON f.field_id = s.field_id WHERE q3c_radial_query(s.ra, s.dec, {0}, {1}, {2})")
    if "q3c" in peers:
        c_q3c = cursor()
        methods["Q3C"] = lambda ra, dec, r: (c_q3c.execute(
            q3c_sql.format("%(ra)s", "%(dec)s", "%(r)s"), {"ra": ra, "dec": dec, "r": r / 3600}), c_q3c.fetchall())[1]
        c_q3p = cursor("SET plan_cache_mode = force_generic_plan",
                       "PREPARE q3c_cone (float8, float8, float8) AS " + q3c_sql.format("$1", "$2", "$3"))
        methods["Q3C prepared"] = lambda ra, dec, r: (c_q3p.execute(
            "EXECUTE q3c_cone (%s, %s, %s)", (ra, dec, r / 3600)), c_q3p.fetchall())[1]
    if "pgsphere" in peers:
        c_sph = cursor()
        methods["pgSphere"] = lambda ra, dec, r: (c_sph.execute(
            "SELECT s.source_id, f.name, s.ra, s.dec, degrees(s.pos <-> spoint(radians(%(ra)s), radians(%(dec)s))) * 3600 "
            "FROM pgsphere_source s JOIN field f ON f.field_id = s.field_id "
            "WHERE s.pos <@ scircle(spoint(radians(%(ra)s), radians(%(dec)s)), radians(%(r)s))",
            {"ra": ra, "dec": dec, "r": r / 3600}), c_sph.fetchall())[1]
    return methods, keep


def result_ids(name: str, result) -> set[int] | None:
    if name in ("SELECT 1", "PK lookup"):
        return None
    if name.endswith("Table"):
        return set(result["source_id"].tolist())
    return {row[0] for row in result}


# --- timing -------------------------------------------------------------------------------

class BruteForce:
    """Exact reference rows by numpy over a declination band."""

    def __init__(self, src):
        order = np.argsort(src["dec"])
        self.dec, self.ra, self.ids = src["dec"][order], src["ra"][order], src["source_id"][order]

    def __call__(self, ra, dec, radius):
        lo, hi = np.searchsorted(self.dec, [dec - radius / 3600 - 1e-9, dec + radius / 3600 + 1e-9])
        d = healpix.angular_distance_arcsec(ra, dec, self.ra[lo:hi], self.dec[lo:hi])
        inside = d <= radius
        return set(self.ids[lo:hi][inside].tolist()), dict(zip(self.ids[lo:hi].tolist(), d.tolist()))


def time_server(methods: dict[str, Method], centres, radius: float, brute: BruteForce, warmup: int) -> dict:
    names = list(methods)
    times = {name: [] for name in names}
    problems = {name: 0 for name in names}
    rows = []
    for i, (ra, dec) in enumerate(centres):
        want, dist = brute(ra, dec, radius)
        rows.append(len(want))
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t0 = time.perf_counter()
            result = methods[name](ra, dec, radius)
            elapsed = time.perf_counter() - t0
            if i >= warmup:
                times[name].append(elapsed)
            got = result_ids(name, result)
            if got is None or got == want:
                continue
            extra, missing = got - want, want - got
            tolerated = name == "pgSphere" and not missing and all(
                dist.get(s, np.inf) <= radius + PGSPHERE_EPSILON_ARCSEC for s in extra)
            if not tolerated:
                problems[name] += 1
                if problems[name] <= 3:
                    print(f"# MISMATCH {name} at ({ra}, {dec}, {radius}\"): {len(missing)} missing, "
                          f"{len(extra)} extra", file=sys.stderr)
    return {"times": times, "problems": problems, "rows": statistics.mean(rows[warmup:])}


def pct(values, q):
    return float(np.percentile(np.asarray(values) * 1e3, q))


def report(title: str, radii, results: dict, peers: list[str]) -> None:
    names = list(next(iter(results.values()))["times"])
    print(f"\n### {title}\n")
    print("p50 / p95 latency, ms (client side, including the round trip and fetching the rows)\n")
    print("| radius | rows | " + " | ".join(names) + " |")
    print("|---:|---:|" + "---:|" * len(names))
    for radius in radii:
        res = results[radius]
        cells = [f"{pct(res['times'][n], 50):.3f} / {pct(res['times'][n], 95):.3f}" for n in names]
        print(f"| {radius:g}\" | {res['rows']:.1f} | " + " | ".join(cells) + " |")
    bad = {n: sum(results[r]["problems"][n] for r in radii) for n in names}
    print("\nrows check: " + ("every method returned the brute-force rows for every query"
                              if not any(bad.values()) else
                              "MISMATCHES (queries): " + ", ".join(f"{n} {c}" for n, c in bad.items() if c)))
    if not peers:
        return
    ours = [n for n in names if n.startswith("alcsdb")]
    print("\np50 ratios, alcsdb method / peer (< 1: alcsdb faster); targets: Python rows <= fastest peer, "
          "SQL function <= 2x fastest peer\n")
    print("| radius | " + " | ".join(f"{o} / {p}" for o in ours for p in peers) + " | targets |")
    print("|---:|" + "---:|" * (len(ours) * len(peers) + 1))
    for radius in radii:
        p50 = {n: pct(results[radius]["times"][n], 50) for n in names}
        fastest = min(p50[p] for p in peers)
        ok_py = p50["alcsdb Python rows"] <= fastest
        ok_fn = p50["alcsdb SQL function"] <= 2 * fastest
        verdict = f"Python {'met' if ok_py else 'MISSED'}, SQL fn {'met' if ok_fn else 'MISSED'}"
        print(f"| {radius:g}\" | " + " | ".join(f"{p50[o] / p50[p]:.2f}" for o in ours for p in peers)
              + f" | {verdict} |")


def run_server(label: str, engine, peers: dict[str, str], src, args, rng) -> None:
    methods, keep = methods_for(engine, peers, len(src["ra"]), args.order_deltas)
    brute = BruteForce(src)
    results = {}
    for radius in args.radii:
        if args.uniform:
            centres = list(zip(rng.uniform(0, 360, args.queries + args.warmup).tolist(),
                               np.degrees(np.arcsin(rng.uniform(-1, 1, args.queries + args.warmup))).tolist()))
        else:
            pick = rng.integers(0, len(src["ra"]), args.queries + args.warmup)
            centres = list(zip(src["ra"][pick].tolist(), src["dec"][pick].tolist()))
        results[radius] = time_server(methods, centres, radius, brute, args.warmup)
    peer_names = [n for n in ("Q3C", "Q3C prepared", "pgSphere") if n in methods]
    report(label, args.radii, results, peer_names)
    for resource in keep:
        resource.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--n", type=int, default=1_000_000, help="number of sources (default 1,000,000)")
    ap.add_argument("--uniform", action="store_true", help="uniform over the sky instead of clustered on the fields")
    ap.add_argument("--radii", type=float, nargs="+", default=[1, 5, 30, 120, 600], help="cone radii, arcsec")
    ap.add_argument("--queries", type=int, default=200, help="timed queries per radius and method (default 200)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed queries first (default 20)")
    ap.add_argument("--system-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
                    help="the system PostgreSQL (peers run there); its scratch database is " + SCRATCH_DB)
    ap.add_argument("--no-system", action="store_true", help="skip the system server")
    ap.add_argument("--no-embedded", action="store_true", help="skip the embedded server")
    ap.add_argument("--embedded-home", default="/tmp/alcsdb_cone_bench_home",
                    help="ALCSDB_HOME of the scratch embedded server")
    ap.add_argument("--order-deltas", type=int, nargs="*", default=[],
                    help="also time the Python path at coarse_order(r) + delta (tuning)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch databases (reused by a later --reuse)")
    ap.add_argument("--reuse", action="store_true", help="reuse scratch databases loaded with the same --n/--uniform/--seed")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    meta = f"n={args.n} uniform={args.uniform} seed={args.seed}"
    kind = f"{args.n:,} {'uniform' if args.uniform else 'clustered'} rows"
    servers = []
    if not args.no_system:
        servers.append(("system", args.system_url))
    if not args.no_embedded:
        home = Path(args.embedded_home)
        home.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.environ["ALCSDB_HOME"] = str(home)
        os.environ.pop("ALCSDB_DATABASE_URL", None)
        servers.append(("embedded", db.embedded_url()))
    src = None
    try:
        for label, url in servers:
            engine = scratch_engine(url, fresh=not args.reuse)
            if src is None:
                src = make_sources(rng, args.n, args.uniform, field_centres(engine))
            if args.reuse and loaded_matches(engine, meta):
                db.downgrade(engine, "0001_initial")  # the cone-search functions of this checkout
                db.upgrade(engine)
                print(f"# {label}: reusing the loaded {kind}")
            else:
                if args.reuse:  # stale data: start again
                    engine.dispose()
                    engine = scratch_engine(url, fresh=True)
                seconds = load_sources(engine, src)
                mark_loaded(engine, meta)
                print(f"# {label}: loaded {kind} in {seconds:.0f} s (COPY in hpx29 order, indexes, VACUUM ANALYZE)")
            peers = setup_peers(engine, args.reuse) if label == "system" else {}
            for peer, how in peers.items():
                print(f"# {label}: {peer}: {how}")
            server = make_url(url)
            title = (f"{'system PostgreSQL' if label == 'system' else 'embedded PostgreSQL (pgserver)'} "
                     f"{engine.dialect.server_version_info[0]}, {kind}, {args.queries} cones per radius")
            run_server(title + f" ({server.host or 'unix socket'})", engine, peers, src, args, rng)
            engine.dispose()
            if not args.keep:
                drop_scratch(url)
    finally:
        if not args.no_embedded:
            db.stop_embedded()
            if not args.keep:
                shutil.rmtree(args.embedded_home, ignore_errors=True)


if __name__ == "__main__":
    main()
