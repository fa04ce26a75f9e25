"""A committed run leaves the planner statistics for its rows (provenance._analyze; docs/scaling.md)."""
from __future__ import annotations

import json

from sqlalchemy import text

from ingest import fixtures
from ingest.load import ingest_path

FIELD = ("j001408m3023", 3.588333, -30.39725)


def _estimate(conn, run_id: int) -> tuple[float, int]:
    plan = conn.execute(text("EXPLAIN (FORMAT JSON) SELECT * FROM aperture_flux WHERE run_id = :r"),
                        {"r": run_id}).scalar()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    actual = conn.execute(text("SELECT count(*) FROM aperture_flux WHERE run_id = :r"), {"r": run_id}).scalar()
    return plan[0]["Plan"]["Plan Rows"], actual


def test_a_new_run_is_estimated_from_statistics(engine, tmp_path):
    """Without ANALYZE after the write, the second run of a field is estimated at 1 row (every older run
    is in the most-common-values list), and the joins that read a field's rows go by nested loop."""
    runs = []
    for seed in (1, 2):
        d = tmp_path / str(seed)
        fixtures.write_phot_apcorr(d / f"{FIELD[0]}_irac_phot_apcorr.fits", FIELD[0], FIELD[1], FIELD[2], 300,
                                   ["f606w", "f814w", "f160w"], seed=seed)
        runs += [r.run_id for r in ingest_path(engine, d)]
    with engine.connect() as conn:
        for run in runs:
            estimate, actual = _estimate(conn, run)
            assert actual == 300 * 4 * 7
            assert actual / 3 <= estimate <= actual * 3, (run, estimate, actual)
        analyzed = conn.execute(text("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                                     "WHERE relid = 'aperture_flux'::regclass")).scalar()
    assert analyzed
