"""`alcsdb demo`: the main job end to end on the embedded database.

1. migrate the database and load the 33 fields;
2. ingest a generated release (catalogs, photo-z, AOR logs, mosaics) of two fields;
3. simulate the raw HST and IRAC exposures of a third field and run every pipeline stage
   on it (mosaic, detect, photometry, irac, photoz);
4. cone searches across all clusters, joined with fluxes and photo-z;
5. freeze a catalog version and export it (twice, to show the files are identical).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy import Engine, text

from . import config, db

log = logging.getLogger("alcsdb.demo")

RELEASE_FIELDS = [("j041620m2406", "hff-j041620m2406", 64.037083, -24.074639),
                  ("j114936p2222", "j114936p2222", 177.40125, 22.399472)]
MOCK_FIELD = "j001408m3023"


def run_demo(engine: Engine, workdir: Path, *, size_arcmin: float = 1.0, n_sources: int = 3000,
             say=print) -> dict:
    from ingest import fixtures
    from ingest.load import ingest_path
    from pipeline.mock import simulate_field
    from pipeline.runner import STAGES, get_field, run_stage

    from .export import export_version
    from .query import cone_search
    from .versions import create_version

    t0 = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"[1/5] database {db.describe(engine)}")
    db.upgrade(engine)

    say(f"[2/5] ingesting a generated release of {len(RELEASE_FIELDS)} fields ({n_sources} sources each)")
    release = workdir / "release"
    if not release.exists():
        fixtures.write_release(release, RELEASE_FIELDS, n_sources=n_sources, seed=2024)
    results = ingest_path(engine, release)
    say(f"      {sum(r.status == 'ingested' for r in results)} files ingested, "
        f"{sum(r.status == 'already' for r in results)} already in the database")

    say(f"[3/5] simulating {MOCK_FIELD} ({size_arcmin}' x {size_arcmin}') and running the pipeline")
    raw = workdir / f"mock-{MOCK_FIELD}"
    with engine.connect() as conn:
        field = get_field(conn, MOCK_FIELD)
    if not (raw / "mock.json").exists():
        simulate_field(raw, field=field.name, ra=field.ra, dec=field.dec, z_cluster=field.z_cluster,
                       size_arcmin=size_arcmin, seed=1, progress=lambda m: say(f"      mock: {m}"))
    for stage in STAGES:
        res = run_stage(engine, stage, MOCK_FIELD, input_dir=raw if stage == "mosaic" else None,
                        progress=lambda m: say(f"      {m}"))
        state = f"skipped, run {res.run_id} unchanged" if res.skipped else f"run {res.run_id}, {res.seconds:.1f} s"
        say(f"      {stage}: {state}")

    say("[4/5] cone searches over all clusters")
    for name in (MOCK_FIELD, RELEASE_FIELDS[0][0]):
        with engine.connect() as conn:
            f = get_field(conn, name)
        table = cone_search(engine, f.ra, f.dec, 30.0)
        say(f"      {len(table)} sources within 30\" of {name}")
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.source_id, c.field, round(c.distance_arcsec::numeric, 2) AS d, "
            "round(a.tot::numeric, 3) AS f160w_tot_2, round(z.z_phot::numeric, 3) AS z_phot "
            "FROM alcs_cone_search(:ra, :dec, 20) c "
            "JOIN aperture_flux a ON a.source_id = c.source_id AND a.aperture = 2 "
            "JOIN filter fl ON fl.filter_id = a.filter_id AND fl.name = 'f160w' "
            "LEFT JOIN zout z ON z.source_id = c.source_id ORDER BY c.distance_arcsec LIMIT 5"),
            {"ra": field.ra, "dec": field.dec}).mappings().all()
    for r in rows:
        say(f"      {dict(r)}")

    say("[5/5] catalog version and export")
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM catalog_version WHERE name LIKE 'demo-%'")).scalar()
    name = f"demo-{n + 1}"
    version = create_version(engine, name, note="alcsdb demo")
    out = workdir / "export" / name
    first = export_version(engine, name, out)
    second = export_version(engine, name, workdir / "export" / f"{name}-again")
    same = all(a.sha256 == b.sha256 for a, b in zip(first, second))
    for f in first:
        say(f"      {f.path} ({f.rows} rows, sha256 {f.sha256[:16]})")
    say(f"      version {name}: content hash {version['content_hash'][:16]}; second export identical: {same}")
    say(f"done in {time.perf_counter() - t0:.0f} s")
    return {"version": name, "files": [str(f.path) for f in first], "identical": same}


def default_workdir() -> Path:
    return config.home() / "demo"

