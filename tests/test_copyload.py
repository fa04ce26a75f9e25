"""Binary COPY: values round-trip exactly, NaN/masked become NULL, arrays and text work."""
import numpy as np
from sqlalchemy import text

from alcsdb.copyload import copy_columns, next_ids
from alcsdb.provenance import stage_run


def test_copy_roundtrip_exact(engine):
    rng = np.random.default_rng(3)
    n = 500
    flux = rng.normal(size=n) * 10 ** rng.uniform(-5, 5, n)
    flux[::7] = np.nan
    flag = rng.integers(0, 40000, n)
    with stage_run(engine, "ingest", params={"test": "copy"}) as run:
        fid = run.conn.execute(text("SELECT field_id FROM field WHERE name = 'j001408m3023'")).scalar()
        sid = next_ids(run.conn, "source", "source_id", n)
        ra = rng.uniform(3.5, 3.6, n)
        dec = rng.uniform(-30.5, -30.3, n)
        x = np.ma.masked_array(rng.uniform(0, 100, n), mask=np.arange(n) % 5 == 0)
        copy_columns(run.conn, "source", {"source_id": sid, "run_id": np.full(n, run.run_id), "field_id":
                                          np.full(n, fid), "id": np.arange(1, n + 1), "ra": ra, "dec": dec,
                                          "hpx29": np.arange(n) * 1000, "x": x, "flag": flag})
        copy_columns(run.conn, "aperture_flux", {
            "source_id": sid, "filter_id": np.full(n, 1), "aperture": np.full(n, 2), "run_id": np.full(n, run.run_id),
            "flux": flux})
        copy_columns(run.conn, "zout", {"source_id": sid, "run_id": np.full(n, run.run_id),
                                        "massp": rng.normal(size=(n, 5)), "pz": rng.random((n, 40)).astype("f4")})
        copy_columns(run.conn, "bcd", {})  # nothing to write is fine
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT s.ra, s.dec, s.x, s.x_image, s.flag, a.flux FROM source s JOIN aperture_flux a "
                                 "USING (source_id) ORDER BY s.id")).all()
        got = np.array([[r[0], r[1], np.nan if r[2] is None else r[2], r[4]] for r in rows])
        assert np.array_equal(got[:, 0], ra) and np.array_equal(got[:, 1], dec)
        assert np.array_equal(got[:, 3], flag)
        assert [r[2] is None for r in rows] == list(np.arange(n) % 5 == 0)
        assert all(r[3] == r[2] + 1 for r in rows if r[2] is not None)  # x_image generated
        fl = np.array([np.nan if r[5] is None else r[5] for r in rows])
        assert np.array_equal(fl, flux, equal_nan=True)
        assert sum(r[5] is None for r in rows) == np.isnan(flux).sum()
        massp, pz = conn.execute(text("SELECT massp, pz FROM zout ORDER BY source_id LIMIT 1")).one()
        assert len(massp) == 5 and len(pz) == 40


def test_failed_stage_writes_nothing(engine):
    import pytest

    with pytest.raises(RuntimeError, match="boom"):
        with stage_run(engine, "ingest") as run:
            fid = run.conn.execute(text("SELECT min(field_id) FROM field")).scalar()
            copy_columns(run.conn, "source", {"run_id": [run.run_id], "field_id": [fid], "id": [1], "ra": [1.0],
                                              "dec": [2.0], "hpx29": [5]})
            raise RuntimeError("boom")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM source")).scalar() == 0
        status, msg = conn.execute(text("SELECT status, message FROM run")).one()
        assert status == "failed" and "boom" in msg
