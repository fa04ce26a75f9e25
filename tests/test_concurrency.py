"""Concurrency: racing version creations, and cone searches under concurrent writes (load test)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from alcsdb import versions
from benchmarks.load import run_load
from ingest import fixtures
from ingest.load import ingest_path

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)


def test_concurrent_version_create_one_wins(engine, db_url, tmp_path):
    """Both commands pass the name check, then race to insert: one version, one clean error."""
    path = tmp_path / f"{A2744[0]}_irac_phot_apcorr.fits"
    fixtures.write_phot_apcorr(path, A2744[0], A2744[2], A2744[3], 50, ["f160w"], seed=2)
    ingest_path(engine, path)
    lock = engine.connect()
    lock.execute(text("LOCK TABLE catalog_version IN SHARE MODE"))  # holds both at their INSERT
    procs = [subprocess.Popen([sys.executable, "-m", "alcsdb", "--db", db_url, "version", "create", "race", "--note",
                               f"by {i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=os.environ.copy()) for i in range(2)]
    try:
        deadline = time.monotonic() + 120
        with engine.connect() as conn:
            while conn.execute(text("SELECT count(*) FROM pg_locks WHERE relation = 'catalog_version'::regclass "
                                    "AND NOT granted")).scalar() < 2:
                assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no race"
                time.sleep(0.05)
                conn.commit()
    finally:
        lock.rollback()
        lock.close()
    outcomes = sorted((p.wait(timeout=120), *p.communicate()) for p in procs)
    (ok, out, _), (failed, _, err) = outcomes
    assert ok == 0 and "version race created" in out
    assert failed == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert "already exists" in err and "Traceback" not in err
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT version_id, note FROM catalog_version WHERE name = 'race'")).all()
        assert len(rows) == 1
        pins = conn.execute(text("SELECT version_id, stage FROM catalog_version_run")).all()
        assert {v for v, _ in pins} == {rows[0][0]} and len(pins) == len({s for _, s in pins})
        stored, now = versions.verify_hash(conn, "race")
    assert stored == now


@pytest.mark.slow
def test_cone_searches_under_concurrent_writes(db_url):
    report = run_load(db_url, readers=4, seconds=6.0, n_sources=3000, n_fields=2, mosaic_shape=(300, 300))
    idle, load = report.idle, report.load
    print(f"\ncone search p50/p99 ms: idle {idle.percentile(50):.2f}/{idle.percentile(99):.2f}, "
          f"load {load.percentile(50):.2f}/{load.percentile(99):.2f}; {len(load.writes)} writes")
    assert len(idle.latencies) > 20 and len(load.latencies) > 20
    kinds = {kind for kind, _, _ in load.writes}
    assert {"ingest", "detect"} <= kinds, load.writes
    assert all(status == "ingested" or status == "succeeded" for _, status, _ in load.writes)
    # the monitor saw readers at work, and none of them ever waiting for a lock held by a writer
    assert load.monitor["active"] > 0
    assert load.monitor["lock_waits"] == 0
    assert report.deadlocks == 0
    assert report.integrity == {k: 0 for k in report.integrity}
