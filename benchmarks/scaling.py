"""Database scale: cone search, per-field ingest / version / export, and deleting a run, at 1x and 10x the release.

    python benchmarks/scaling.py --db postgresql+psycopg2://postgres@127.0.0.1:5432/test   # 1x and 10x
    python benchmarks/scaling.py --quick                   # 3,000 sources per field, 4 filters: minutes
    python benchmarks/scaling.py --scale 1 3 10 --queries 50

docs/scaling.md's figures: `--aperture-fields 6 --queries 40 --partition-queries 20` on the system
server (45 minutes on the shared 2-core machine; all 33 fields' aperture fluxes clone at ~25 s per
field there, and the full 10x does not fit its disk).

The release is 33 fields of ~30,000 sources, each with 12 HST filters (+ the detection image) x 7
apertures of `aperture_flux` (2.73M rows per field, ~91M for the release). Scale s means 33 s
fields at the release's density per field (more sky, not denser fields). Everything runs in one
private schema (`db.scratch_schema`, dropped at the end) of the server given by --db (default:
the embedded server).

1. A template field is written by `ingest.fixtures` (12 filters, IRAC, zout) and ingested with
   `ingest_path` into the empty schema: the per-field ingest of a table holding one field, which
   is what a field-partitioned table would see.
2. The schema grows to each scale in turn (smallest first) by cloning the template, in SQL, to
   other fields (the 33 release fields, then synthetic fields spread over the sky, >= 1 deg apart):
   `source` rows for every field, shifted to the field's centre with their hpx29 recomputed; the
   `aperture_flux`, `total_correction`, `irac_flux` and `zout` rows for the first
   --aperture-fields fields only (default 33: the whole release). 10x of the aperture fluxes
   (~900M rows, ~150 GB with indexes) fits neither this machine's disk nor its RAM, so at 10x the
   source table is complete (10M rows) and the measurement tables hold the release's 33 fields;
   per-field figures are measured on that, and what grows with the table is extrapolated from
   the measured size dependence (printed as such).
3. At each scale, measured on that database:
   - sizes of the tables and their indexes (`pg_table_size`, `pg_indexes_size`);
   - cone search p50/p95 (`alcs_cone_search` and `alcsdb.query.cone_search_rows`, with SELECT 1
     and a primary-key lookup as the same-run floors; methods and brute-force check from
     `benchmarks/cone_search.py`) at cones centred on random sources;
   - per-field ingest (a new release-format field, real `ingest_path`: rows/s), `version create`
     of that field (content hash), `export` of it as FITS and as HATS;
   - deleting one (unpinned) field's photometry run from `aperture_flux` and the VACUUM that
     reclaims it (VACUUM scans every index of the table whole: the one step that grows with the
     table, not with the field). The field is cloned back afterwards.
4. At the largest scale, the partitioning check: copies of `source` as a plain table, partitioned
   by coarse HEALPix pixel (RANGE of hpx29 on order-3 pixels) and by field (LIST of field_id),
   timed with the same explicit range-scan SQL, queries taking turns (the partitioned tables with
   custom plans, pruned at planning; the HEALPix one also with a generic plan).

The machine is shared (2 cores): compare figures within a run (ratios to the floors), and read
the printed load average.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and benchmarks/ingest.py would hide `ingest`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from sqlalchemy import text

from alcsdb import db, healpix, versions
from alcsdb.copyload import fetch_columns
from alcsdb.export import export_version
from alcsdb.provenance import insert_run
from alcsdb.schema import ApertureFlux, IracFlux, Source, TotalCorrection, Zout
from ingest import fixtures
from ingest.load import ingest_path

FILTERS = ["f435w", "f606w", "f775w", "f814w", "f850lp", "f105w", "f110w", "f125w", "f140w", "f160w", "f275w",
           "f336w"]
RELEASE_FIELDS = 33
PARTITION_ORDER = 3  # HEALPix order of the source partitions in the partitioning check (7.3 deg pixels)
MEASUREMENT_TABLES = {"aperture_flux": ApertureFlux, "total_correction": TotalCorrection, "irac_flux": IracFlux,
                      "zout": Zout}


def _cone_module():
    """benchmarks/cone_search.py: its timed methods, brute-force check and percentiles."""
    spec = importlib.util.spec_from_file_location("cone_search_bench", Path(__file__).with_name("cone_search.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cone = _cone_module()


def say(msg: str) -> None:
    print(f"# [{time.strftime('%H:%M:%S')}] load {os.getloadavg()[0]:.1f}: {msg}", flush=True)


def timed(fn, *args, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


# --- data: a template field ingested for real, then cloned in SQL --------------------------------

class Template:
    """The ingested template field: its runs, and its sources' offsets from its centre (arcsec)."""

    def __init__(self, engine, field: str, results):
        self.cat_run = next(r.run_id for r in results if r.kind == "phot_apcorr")
        self.zout_run = next(r.run_id for r in results if r.kind == "zout")
        with engine.connect() as conn:
            fra, fdec = conn.execute(text("SELECT ra, dec FROM field WHERE name = :n"), {"n": field}).one()
            rows = conn.execute(text("SELECT id, ra, dec FROM source WHERE run_id = :r ORDER BY id"),
                                {"r": self.cat_run}).all()
        ids, ra, dec = (np.array(c) for c in zip(*rows))
        self.ids = ids.astype(np.int64)
        self.xi = ((ra - fra + 180) % 360 - 180) * np.cos(np.radians(fdec)) * 3600
        self.eta = (dec - fdec) * 3600


def _columns(model, skip=()) -> list[str]:
    return [c.name for c in model.__table__.columns if c.computed is None and c.name not in skip]


def clone_sources(conn, tpl: Template, field_id: int, ra0: float, dec0: float) -> int:
    """Copy the template's sources to a field centred at (ra0, dec0); returns the new run id."""
    run = insert_run(conn, "ingest", field_id=field_id, params={"benchmark": "scaling", "clone_of": tpl.cat_run})
    conn.execute(text("UPDATE run SET status = 'succeeded', finished_at = now() WHERE run_id = :r"), {"r": run})
    dec = dec0 + tpl.eta / 3600
    ra = (ra0 + tpl.xi / 3600 / np.cos(np.radians(dec0))) % 360.0
    ra[ra >= 360.0] = 0.0
    rest = _columns(Source, skip=("source_id", "run_id", "field_id", "id", "ra", "dec", "hpx29"))
    conn.execute(text(
        f"INSERT INTO source (run_id, field_id, id, ra, dec, hpx29, {', '.join(rest)}) "
        f"SELECT :r, :f, s.id, p.ra, p.dec, p.hpx29, {', '.join('s.' + c for c in rest)} FROM source s "
        "JOIN unnest(CAST(:ids AS integer[]), CAST(:ra AS float8[]), CAST(:dec AS float8[]), CAST(:hpx AS bigint[])) "
        "AS p(id, ra, dec, hpx29) USING (id) WHERE s.run_id = :t ORDER BY s.id"),
        {"r": run, "f": field_id, "t": tpl.cat_run, "ids": tpl.ids.tolist(), "ra": ra.tolist(), "dec": dec.tolist(),
         "hpx": healpix.hpx29(ra, dec).tolist()})
    return run


def clone_measurements(conn, tpl: Template, field_id: int, cat_run: int, tables=tuple(MEASUREMENT_TABLES)) -> None:
    """Copy the template's measurement rows onto the sources of `cat_run` (matched by catalog id)."""
    zrun = None
    for table in tables:
        model = MEASUREMENT_TABLES[table]
        rest = _columns(model, skip=("source_id", "run_id"))
        if table == "zout":
            zrun = insert_run(conn, "ingest", field_id=field_id, params={"benchmark": "scaling",
                                                                         "clone_of": tpl.zout_run})
            conn.execute(text("UPDATE run SET status = 'succeeded', finished_at = now() WHERE run_id = :r"),
                         {"r": zrun})
        conn.execute(text(
            f"INSERT INTO {table} (source_id, run_id, {', '.join(rest)}) "
            f"SELECT n.source_id, :r, {', '.join('m.' + c for c in rest)} FROM {table} m "
            "JOIN source t ON t.source_id = m.source_id AND t.run_id = :tc "
            "JOIN source n ON n.id = t.id AND n.run_id = :nc WHERE m.run_id = :tm"),
            {"r": zrun if table == "zout" else cat_run, "tc": tpl.cat_run, "nc": cat_run,
             "tm": tpl.zout_run if table == "zout" else tpl.cat_run})


def synthetic_centres(rng, existing: np.ndarray, n: int, min_sep_deg: float = 1.0) -> list[tuple[float, float]]:
    """n field centres uniform on the sky within |dec| < 75, at least `min_sep_deg` from each other and the release's."""
    have = [tuple(x) for x in existing]
    out: list[tuple[float, float]] = []
    while len(out) < n:
        ra = float(rng.uniform(0, 360))
        dec = float(np.degrees(np.arcsin(rng.uniform(-np.sin(np.radians(75)), np.sin(np.radians(75))))))
        if have:
            arr = np.array(have)
            if healpix.angular_distance_arcsec(ra, dec, arr[:, 0], arr[:, 1]).min() < min_sep_deg * 3600:
                continue
        have.append((ra, dec))
        out.append((ra, dec))
    return out


class Sky:
    """The fields of the scratch schema and which of them hold cloned rows."""

    def __init__(self, engine, tpl: Template, template_field: str, rng):
        self.engine, self.tpl, self.rng = engine, tpl, rng
        with engine.connect() as conn:
            self.fields = [tuple(r) for r in conn.execute(text("SELECT field_id, name, ra, dec FROM field "
                                                               "ORDER BY field_id"))]
        self.cat_runs = {next(f[0] for f in self.fields if f[1] == template_field): tpl.cat_run}
        self.with_rows = set(self.cat_runs)

    def grow(self, n_fields: int, aperture_fields: int) -> float:
        """Clone until `n_fields` fields have sources and the first `aperture_fields` have measurements."""
        t0 = time.perf_counter()
        if n_fields > len(self.fields):
            centres = synthetic_centres(self.rng, np.array([f[2:] for f in self.fields]), n_fields - len(self.fields))
            with self.engine.begin() as conn:
                for k, (ra, dec) in enumerate(centres, start=len(self.fields) + 1):
                    fid = conn.execute(text(
                        "INSERT INTO field (name, hst_root, cluster, survey, ra, dec) VALUES (:n, :h, 'synthetic', "
                        "'benchmark', :ra, :dec) RETURNING field_id"),
                        {"n": f"syn{k:05d}", "h": f"syn-{k:05d}", "ra": ra, "dec": dec}).scalar_one()
                    self.fields.append((fid, f"syn{k:05d}", ra, dec))
        for rank, (fid, name, ra, dec) in enumerate(self.fields[:n_fields]):
            want_rows = rank < aperture_fields
            if fid in self.cat_runs and (fid in self.with_rows or not want_rows):
                continue
            with self.engine.begin() as conn:
                conn.execute(text("SET LOCAL session_replication_role = replica"))  # no FK/trigger checks per row
                if fid not in self.cat_runs:
                    self.cat_runs[fid] = clone_sources(conn, self.tpl, fid, ra, dec)
                if want_rows:
                    clone_measurements(conn, self.tpl, fid, self.cat_runs[fid])
                    self.with_rows.add(fid)
            if rank % 50 == 49 or want_rows:
                say(f"  cloned field {rank + 1} of {n_fields}{' with measurements' if want_rows else ''}")
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("source", *MEASUREMENT_TABLES, "run"):
                conn.execute(text(f"VACUUM ANALYZE {table}"))
        return time.perf_counter() - t0


# --- measurements ----------------------------------------------------------------------------

def sizes(engine) -> dict[str, dict[str, float]]:
    out = {}
    with engine.connect() as conn:
        for table in ("source", "aperture_flux", "total_correction", "irac_flux", "zout"):
            rows, heap, index = conn.execute(text(
                f"SELECT (SELECT count(*) FROM {table}), pg_table_size('{table}'), pg_indexes_size('{table}')")).one()
            out[table] = {"rows": rows, "heap_gb": heap / 1e9, "index_gb": index / 1e9}
    return out


def source_arrays(engine) -> dict[str, np.ndarray]:
    with engine.connect() as conn:
        return fetch_columns(conn, [("source_id", "source_id", "i8"), ("ra", "ra", "f8"), ("dec", "dec", "f8"),
                                    ("field_id", "field_id", "i8")], "FROM source", {})


def cone_figures(engine, src, radii, queries: int, warmup: int, rng, extra_methods=None) -> dict:
    methods, keep = cone.methods_for(engine, {}, int(src["source_id"].max()), [])
    methods.pop("alcsdb Python Table")
    methods.update(extra_methods or {})
    brute = cone.BruteForce(src)
    out = {}
    for radius in radii:
        pick = rng.integers(0, len(src["ra"]), queries + warmup)
        centres = list(zip(src["ra"][pick].tolist(), src["dec"][pick].tolist()))
        out[radius] = cone.time_server(methods, centres, radius, brute, warmup)
    for resource in keep:
        resource.close()
    return out


def per_field(engine, work: Path, field: str, ra: float, dec: float, n_sources: int, filters, seed: int,
              label: str) -> dict[str, float]:
    """Ingest a new run of `field` (release files), version it, export it as FITS and as HATS."""
    d = work / f"in_{label}"
    d.mkdir()
    cat = fixtures.write_phot_apcorr(d / f"{field}_irac_phot_apcorr.fits", field, ra, dec, n_sources, filters,
                                     seed=seed)
    fixtures.write_zout(d / f"{field}_irac.eazypy.zout.fits", cat["id"], cat["ra"], cat["dec"], seed=seed)
    t_ingest, results = timed(ingest_path, engine, d)
    bad = [r for r in results if r.status != "ingested"]
    if bad:
        raise RuntimeError(f"ingest of {d}: {bad}")
    rows = sum(sum(r.rows.values()) for r in results)
    vname = f"scale-{label}"
    t_version, _ = timed(versions.create_version, engine, vname, fields=[field])
    t_fits, _ = timed(export_version, engine, vname, work / f"fits_{label}", field=field)
    t_hats, _ = timed(export_version, engine, vname, work / f"hats_{label}", fmt="hats")
    for sub in (d, work / f"fits_{label}", work / f"hats_{label}"):
        shutil.rmtree(sub, ignore_errors=True)
    return {"ingest_s": t_ingest, "rows": rows, "rows_per_s": rows / t_ingest, "version_s": t_version,
            "fits_s": t_fits, "hats_s": t_hats, "results": results}


def delete_and_vacuum(engine, sky: Sky, fid: int) -> dict[str, float]:
    """Delete one field's (unpinned) aperture_flux rows, VACUUM the table, then clone them back (untimed)."""
    run = sky.cat_runs[fid]
    with engine.begin() as conn:
        t_delete, res = timed(conn.execute, text("DELETE FROM aperture_flux WHERE run_id = :r"), {"r": run})
        deleted = res.rowcount
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        index_gb = conn.execute(text("SELECT pg_indexes_size('aperture_flux')")).scalar() / 1e9
        t_vacuum, _ = timed(conn.execute, text("VACUUM aperture_flux"))
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        clone_measurements(conn, sky.tpl, fid, run, tables=("aperture_flux",))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE aperture_flux"))
    return {"deleted": deleted, "delete_s": t_delete, "vacuum_s": t_vacuum, "index_gb": index_gb}


# --- the partitioning check --------------------------------------------------------------------

# one UNION ALL branch per range, the bounds as parameters of the table's own quals: a custom plan
# prunes a partitioned table at planning, a generic plan at executor start-up
RANGE_BRANCH = ("SELECT t.source_id, t.field_id, t.ra, t.dec FROM {table} AS t WHERE t.hpx29 >= ${lo}::bigint "
                "AND t.hpx29 < ${hi}::bigint AND abs(t.dec - $2::float8) <= $3::float8 / 3600 + 1e-9")
# the field-partitioned table, told which fields can reach the cone: pruned at planning by field_id
FIELD_BRANCH = RANGE_BRANCH + " AND t.field_id = ANY($4::smallint[])"
RANGE_SQL = ("SELECT s.source_id, s.field_id, s.ra, s.dec, alcs_angdist_arcsec($1::float8, $2::float8, s.ra, s.dec) "
             "FROM ({branches}) AS s WHERE alcs_angdist_arcsec($1::float8, $2::float8, s.ra, s.dec) <= $3::float8")


def build_partition_copies(engine) -> dict[str, float]:
    """src_plain (a copy), src_hpx (RANGE of hpx29 per order-3 pixel) and src_field (LIST of field_id)."""
    t = {}
    shift = 2 * (healpix.ORDER - PARTITION_ORDER)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        pixels = [r[0] for r in conn.execute(text(f"SELECT DISTINCT hpx29 >> {shift} FROM source ORDER BY 1"))]
        fields = [r[0] for r in conn.execute(text("SELECT DISTINCT field_id FROM source ORDER BY 1"))]
        for name in ("src_plain", "src_hpx", "src_field"):
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        t0 = time.perf_counter()
        conn.execute(text("CREATE TABLE src_plain (LIKE source INCLUDING DEFAULTS)"))
        conn.execute(text("CREATE TABLE src_hpx (LIKE source INCLUDING DEFAULTS) PARTITION BY RANGE (hpx29)"))
        for p in pixels:
            conn.execute(text(f"CREATE TABLE src_hpx_{p} PARTITION OF src_hpx FOR VALUES FROM ({p << shift}) "
                              f"TO ({(p + 1) << shift})"))
        conn.execute(text("CREATE TABLE src_field (LIKE source INCLUDING DEFAULTS) PARTITION BY LIST (field_id)"))
        for f in fields:
            conn.execute(text(f"CREATE TABLE src_field_{f} PARTITION OF src_field FOR VALUES IN ({f})"))
        for name in ("src_plain", "src_hpx", "src_field"):
            t1 = time.perf_counter()
            conn.execute(text(f"INSERT INTO {name} SELECT * FROM source ORDER BY source_id"))
            conn.execute(text(f"CREATE INDEX ON {name} (hpx29)"))
            conn.execute(text(f"ALTER TABLE {name} ADD PRIMARY KEY (source_id{', hpx29' if name == 'src_hpx' else ''}"
                              f"{', field_id' if name == 'src_field' else ''})"))
            conn.execute(text(f"VACUUM ANALYZE {name}"))
            t[name] = time.perf_counter() - t1
        t["all"] = time.perf_counter() - t0
        t["partitions"] = {"src_hpx": len(pixels), "src_field": len(fields)}
    return t


def drop_partition_copies(engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in ("src_plain", "src_hpx", "src_field"):
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


def field_pruner(engine, src):
    """(ra, dec, r) -> the fields whose sources can lie in the cone: centre within r + the field's extent.

    What a field-partitioned deployment has to do before it can prune: look the cone up in the
    `field` table (centres, and extents measured here as the farthest source from the centre).
    """
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT field_id, ra, dec FROM field ORDER BY field_id")).all()
    fid = np.array([r[0] for r in rows], dtype=np.int64)
    fra, fdec = (np.array([r[k] for r in rows], dtype=np.float64) for k in (1, 2))
    idx = np.searchsorted(fid, src["field_id"])
    extent = np.zeros(len(fid))
    np.maximum.at(extent, idx, healpix.angular_distance_arcsec(fra[idx], fdec[idx], src["ra"], src["dec"]))

    def prune(ra, dec, r):
        near = healpix.angular_distance_arcsec(ra, dec, fra, fdec) <= r + extent + 1e-6
        return "{" + ",".join(str(f) for f in fid[near].tolist()) + "}"
    return prune


def range_methods(engine, tables: dict[str, tuple]):
    """Timed methods: the same explicit range-scan SQL on each table, prepared per number of ranges.

    `tables`: {label: (table, plan_cache_mode[, field pruner])}. A generic plan of a partitioned
    table keeps every partition in the plan (each execution locks and initialises them before
    run-time pruning); custom plans prune at planning, from the ranges (HEALPix partitions) or from
    the field list (field partitions), but are planned at every call.
    """
    methods = {}
    keep = []
    for label, (table, mode, *pruner) in tables.items():
        raw, cur = cone.raw_cursor(engine, f"SET plan_cache_mode = {mode}")
        keep.append(raw)
        prepared = set()
        prune = pruner[0] if pruner else None

        def method(ra, dec, r, cur=cur, table=table, prepared=prepared, prune=prune):
            flat = healpix.disc_ranges_flat(ra, dec, r)
            n = len(flat) // 2
            name = f"rng_{table}_{n}{'_f' if prune else ''}"
            if name not in prepared:
                template, first = (FIELD_BRANCH, 5) if prune else (RANGE_BRANCH, 4)
                branches = " UNION ALL ".join(template.format(table=table, lo=first + 2 * i, hi=first + 1 + 2 * i)
                                              for i in range(n))
                cur.execute(f"PREPARE {name} AS " + RANGE_SQL.format(branches=branches))
                prepared.add(name)
            params = [ra, dec, r, *([prune(ra, dec, r)] if prune else []), *flat]
            cur.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(params))})", params)
            return cur.fetchall()

        methods[label] = method
    return methods, keep


# --- report ----------------------------------------------------------------------------------

def p(values, q=50) -> float:
    return cone.pct(values, q)


def print_report(args, scales, built, cones, fields, vacuums, part, baseline) -> None:
    """Sizes, cones, per-field figures and extrapolations (the partitioning check: print_partition_report)."""
    print("\n## Scaling: the database at each scale\n")
    print(f"{args.sources:,} sources per field, {len(args.filters)} HST filters; measurement rows cloned for "
          f"{args.aperture_fields} fields at every scale; server {built['server']}\n")
    print("| scale | fields | sources | aperture_flux rows | source heap + idx GB | aperture_flux heap + idx GB "
          "| all measurement tables GB | build s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in scales:
        z = built[s]["sizes"]
        total = sum(v["heap_gb"] + v["index_gb"] for v in z.values())
        print(f"| {s:g}x | {built[s]['fields']} | {z['source']['rows']:,} | {z['aperture_flux']['rows']:,} | "
              f"{z['source']['heap_gb']:.2f} + {z['source']['index_gb']:.2f} | "
              f"{z['aperture_flux']['heap_gb']:.2f} + {z['aperture_flux']['index_gb']:.2f} | {total:.2f} | "
              f"{built[s]['build_s']:.0f} |")

    print("\n## Cone search (p50 / p95 ms, client side; cones centred on random sources)\n")
    names = list(next(iter(cones[scales[0]].values()))["times"])
    print("| scale | radius | rows | " + " | ".join(names) + " | SQL fn / PK lookup |")
    print("|---:|---:|---:|" + "---:|" * (len(names) + 1))
    for s in scales:
        for radius, res in cones[s].items():
            cells = [f"{p(res['times'][n]):.2f} / {p(res['times'][n], 95):.2f}" for n in names]
            ratio = p(res["times"]["alcsdb SQL function"]) / p(res["times"]["PK lookup"])
            print(f"| {s:g}x | {radius:g}\" | {res['rows']:.1f} | " + " | ".join(cells) + f" | {ratio:.1f} |")
    bad = sum(v for s in scales for res in cones[s].values() for v in res["problems"].values())
    print(f"\nrows check: {'every method returned the brute-force rows' if not bad else f'{bad} MISMATCHES'}")

    print("\n## Per field (one new field of the release's size ingested as a new run, then versioned and exported)\n")
    print("| database | ingest s | rows | rows/s | version create s | export FITS s | export HATS s | "
          "DELETE one field's aperture_flux s | VACUUM aperture_flux s | aperture_flux index GB at VACUUM |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [("one field (empty schema; = a field partition)", baseline["field"], baseline["vacuum"])]
    rows += [(f"{s:g}x", fields[s], vacuums[s]) for s in scales]
    for label, f, v in rows:
        print(f"| {label} | {f['ingest_s']:.1f} | {f['rows']:,} | {f['rows_per_s']:,.0f} | "
              f"{f.get('version_s', float('nan')):.1f} | {f.get('fits_s', float('nan')):.1f} | "
              f"{f.get('hats_s', float('nan')):.1f} | {v['delete_s']:.1f} | {v['vacuum_s']:.1f} | {v['index_gb']:.2f} |")

    top = scales[-1]
    per_row = {t: (built[top]["sizes"][t]["heap_gb"] + built[top]["sizes"][t]["index_gb"]) * 1e9
               / max(built[top]["sizes"][t]["rows"], 1) for t in ("aperture_flux", "source")}
    n10 = {s: round(RELEASE_FIELDS * s) for s in scales}
    # one field's rows as ingested (the table also holds the per-field runs ingested at each scale)
    ap_per_field = sum(r.rows.get("aperture_flux", 0) for r in baseline["field"]["results"])
    print("\n## Extrapolated (not measured)\n")
    pts = [(baseline["vacuum"]["index_gb"], baseline["vacuum"]["vacuum_s"])] + [
        (vacuums[s]["index_gb"], vacuums[s]["vacuum_s"]) for s in scales]
    xs, ys = np.array([a for a, _ in pts]), np.array([b for _, b in pts])
    slope, icpt = np.polyfit(xs, ys, 1) if len(set(xs.tolist())) > 1 else (ys.mean() / max(xs.mean(), 1e-9), 0.0)
    for s in scales:
        full_rows = ap_per_field * n10[s]
        idx_gb = built[top]["sizes"]["aperture_flux"]["index_gb"] / max(built[top]["sizes"]["aperture_flux"]["rows"], 1) \
            * full_rows
        print(f"- {s:g}x with every field's aperture fluxes: {full_rows / 1e6:,.0f}M aperture_flux rows, "
              f"{full_rows * per_row['aperture_flux'] / 1e9:,.1f} GB with indexes ({idx_gb:,.1f} GB of indexes; "
              f"{per_row['aperture_flux']:.0f} bytes/row measured); VACUUM after deleting one field's run "
              f"~{icpt + slope * idx_gb:,.0f} s (linear fit of the measured VACUUM time on index size: "
              f"{slope:.1f} s/GB + {icpt:.1f} s)")



def print_partition_report(top: float, part) -> None:
    if part:
        print(f"\n## Partitioning check at {top:g}x: the same range-scan SQL on three copies of `source` "
              f"(p50 / p95 ms; {part['build']['partitions']['src_hpx']} order-{PARTITION_ORDER} HEALPix partitions, "
              f"{part['build']['partitions']['src_field']} field partitions)\n")
        names = list(next(iter(part["cones"].values()))["times"])
        print("| radius | rows | " + " | ".join(names) + " | hpx-partitioned / plain | field-partitioned / plain |")
        print("|---:|---:|" + "---:|" * (len(names) + 2))
        for radius, res in part["cones"].items():
            cells = [f"{p(res['times'][n]):.2f} / {p(res['times'][n], 95):.2f}" for n in names]
            plain = p(res["times"]["plain copy"])
            print(f"| {radius:g}\" | {res['rows']:.1f} | " + " | ".join(cells) +
                  f" | {p(res['times']['HEALPix-partitioned']) / plain:.2f} | "
                  f"{p(res['times']['field-partitioned']) / plain:.2f} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--scale", type=float, nargs="+", default=[1.0, 10.0], help="scales (x the release's 33 fields)")
    ap.add_argument("--quick", action="store_true",
                    help="3,000 sources per field, 4 filters, 3 fields with aperture fluxes, 30 cones per radius")
    ap.add_argument("--sources", type=int, default=None, help="sources per field (default 30,000)")
    ap.add_argument("--nfilters", type=int, default=None, help="HST filters (default 12)")
    ap.add_argument("--aperture-fields", type=int, default=None,
                    help="fields whose measurement rows are cloned (default 33, the release)")
    ap.add_argument("--radii", type=float, nargs="+", default=[1, 5, 30, 120], help="cone radii, arcsec")
    ap.add_argument("--queries", type=int, default=None, help="timed cones per radius and method (default 200)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--partition-queries", type=int, default=None,
                    help="timed cones per radius and method in the partitioning check (default 40; a generic "
                         "plan or an unpruned field-partitioned query takes ~1 s each)")
    ap.add_argument("--no-partition-check", action="store_true", help="skip the partitioned copies of source")
    ap.add_argument("--db", help="server URL (default: the embedded server); a private schema is used and dropped")
    ap.add_argument("--seed", type=int, default=9)
    args = ap.parse_args(argv)
    args.sources = args.sources or (3000 if args.quick else 30000)
    args.filters = FILTERS[: args.nfilters or (4 if args.quick else 12)]
    args.aperture_fields = args.aperture_fields if args.aperture_fields is not None else (3 if args.quick else 33)
    args.queries = args.queries or (30 if args.quick else 200)
    args.partition_queries = args.partition_queries or (10 if args.quick else 40)
    scales = sorted(set(args.scale))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="alcsdb-bench-scaling-"))
    base = db.resolve_url(args.db)
    say(f"scales {scales}, {args.sources} sources per field, {len(args.filters)} filters, work {work}")
    try:
        with db.scratch_schema(base, "bench_scaling") as url:
            engine = db.make_engine(url)
            with engine.connect() as conn:
                release = [tuple(r) for r in conn.execute(text("SELECT name, ra, dec FROM field ORDER BY field_id"))]
                server = conn.execute(text("SHOW server_version")).scalar()
                shared = conn.execute(text("SHOW shared_buffers")).scalar()
            built = {"server": f"PostgreSQL {server}, shared_buffers {shared}"}
            name, ra, dec = release[0]
            say(f"template field {name}: ingest into the empty schema")
            baseline = {"field": per_field(engine, work, name, ra, dec, args.sources, args.filters, 1, "template")}
            tpl = Template(engine, name, baseline["field"]["results"])
            sky = Sky(engine, tpl, name, rng)
            sky.grow(2, 2)
            baseline["vacuum"] = delete_and_vacuum(engine, sky, sky.fields[1][0])
            cones, fields, vacuums = {}, {}, {}
            for k, s in enumerate(scales):
                n_fields = max(2, round(RELEASE_FIELDS * s))
                say(f"{s:g}x: growing to {n_fields} fields ({min(args.aperture_fields, n_fields)} with measurements)")
                build_s = sky.grow(n_fields, args.aperture_fields)
                built[s] = {"fields": n_fields, "build_s": build_s, "sizes": sizes(engine)}
                say(f"{s:g}x: built in {build_s:.0f} s: {built[s]['sizes']}")
                src = source_arrays(engine)
                cones[s] = cone_figures(engine, src, args.radii, args.queries, args.warmup, rng)
                say(f"{s:g}x: cones done")
                fname, fra, fdec = release[(k + 1) % len(release)]
                fields[s] = per_field(engine, work, fname, fra, fdec, args.sources, args.filters, 100 + k, f"{s:g}x")
                say(f"{s:g}x: per-field done: {fields[s]['ingest_s']:.0f} s ingest")
                victim = sky.fields[min(args.aperture_fields, n_fields) - 1][0]
                vacuums[s] = delete_and_vacuum(engine, sky, victim)
                say(f"{s:g}x: delete + vacuum done: {vacuums[s]}")
            print_report(args, scales, built, cones, fields, vacuums, None, baseline)  # before the long check
            sys.stdout.flush()
            part = None
            if not args.no_partition_check:
                say("partitioning check: copies of source")
                part = {"build": build_partition_copies(engine)}
                methods, keep = range_methods(engine, {
                    "plain copy": ("src_plain", "auto"),
                    "HEALPix-partitioned, generic plan": ("src_hpx", "force_generic_plan"),
                    "HEALPix-partitioned": ("src_hpx", "force_custom_plan"),
                    "field-partitioned, all fields": ("src_field", "force_custom_plan"),
                    "field-partitioned": ("src_field", "force_custom_plan", field_pruner(engine, src))})
                brute = cone.BruteForce(src)
                part["cones"] = {}
                for radius in args.radii:
                    pick = rng.integers(0, len(src["ra"]), args.partition_queries + min(args.warmup, 3))
                    centres = list(zip(src["ra"][pick].tolist(), src["dec"][pick].tolist()))
                    part["cones"][radius] = cone.time_server(methods, centres, radius, brute, min(args.warmup, 3))
                    say(f"partitioning check: {radius:g}\" done")
                for raw in keep:
                    raw.close()
                drop_partition_copies(engine)
            engine.dispose()
            print_partition_report(scales[-1], part)
            say("done; dropping the scratch schema")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
