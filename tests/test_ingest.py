"""Ingest of release-format files: counts, idempotence, provenance, bad input, concurrency."""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import text

from alcsdb.errors import InputError
from alcsdb.schema import Base
from ingest import fixtures
from ingest.load import ingest_path

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)
M1149 = ("j114936p2222", "j114936p2222", 177.40125, 22.399472)
FILTERS = ["f435w", "f606w", "f814w", "f105w", "f125w", "f160w"]


def snapshot(engine) -> dict[str, int]:
    """Row counts of every table plus the run sequence: 'the database exactly as it was'."""
    with engine.connect() as conn:
        counts = {t.name: conn.execute(text(f'SELECT count(*) FROM "{t.name}"')).scalar()
                  for t in Base.metadata.sorted_tables}
        counts["max_run"] = conn.execute(text("SELECT coalesce(max(run_id), 0) FROM run")).scalar()
    return counts


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release")
    fixtures.write_release(out, [A2744, M1149], n_sources=300, seed=7, filters=FILTERS)
    return out


def test_ingest_release_counts_and_provenance(engine, release):
    results = ingest_path(engine, release)
    by_status = {}
    for r in results:
        by_status.setdefault(r.status, []).append(r)
    assert not by_status.get("error")
    ingested = by_status["ingested"]
    assert {r.kind for r in ingested} >= {"phot_apcorr", "zout", "aor_log", "hst_sci", "det_sci", "seg", "irac_sci"}
    with engine.connect() as conn:
        q = lambda sql: conn.execute(text(sql)).scalar()  # noqa: E731
        assert q("SELECT count(*) FROM source") == 600
        assert q("SELECT count(DISTINCT field_id) FROM source") == 2
        assert q("SELECT count(*) FROM zout") == 600
        # every source has its detection apertures and the 6 filters' tot corrections
        assert q("SELECT count(*) FROM aperture_flux a JOIN filter f USING (filter_id) WHERE f.name = 'det'") == 600 * 7
        assert q("SELECT count(*) FROM total_correction") == 600 * len(FILTERS)
        assert q("SELECT count(*) FROM aor") == 2 * 3 * 2  # fields x AORs x (ch1, ch2); ch3/ch4 skipped
        assert q("SELECT count(*) FROM run WHERE stage = 'ingest' AND status = 'succeeded'") == len(ingested)
        # every row traces to a run whose input is the file, with its sha256
        lineage = conn.execute(text(
            "SELECT DISTINCT p.kind, p.sha256 FROM source s JOIN run_input ri ON ri.run_id = s.run_id "
            "JOIN product p ON p.product_id = ri.product_id")).all()
        assert {k for k, _ in lineage} == {"phot_apcorr"} and all(len(sha) == 64 for _, sha in lineage)
        # -99 became NULL, real values survive exactly
        cat = fits.getdata(release / A2744[1] / f"{A2744[0]}_irac_phot_apcorr.fits")
        row = cat[0]
        got = conn.execute(text(
            "SELECT a.tot, a.flux FROM aperture_flux a JOIN source s USING (source_id) JOIN filter f USING (filter_id) "
            "JOIN field fl ON fl.field_id = s.field_id WHERE fl.name = :f AND s.id = :id AND f.name = 'f160w' "
            "AND a.aperture = 2"), {"f": A2744[0], "id": int(row["id"])}).one()
        expect_tot = None if row["f160w_tot_2"] == -99 else float(row["f160w_tot_2"])
        assert got == (expect_tot, float(row["f160w_flux_aper_2"]))


def test_reingest_is_a_noop(engine, release):
    ingest_path(engine, release)
    before = snapshot(engine)
    again = ingest_path(engine, release)
    assert {r.status for r in again} <= {"already", "skipped"}
    assert snapshot(engine) == before


def test_changed_file_is_a_new_run_and_old_rows_stay(engine, tmp_path):
    path = tmp_path / f"{A2744[0]}_irac_phot_apcorr.fits"
    fixtures.write_phot_apcorr(path, A2744[0], A2744[2], A2744[3], 50, FILTERS, seed=1)
    first = ingest_path(engine, path)[0]
    fixtures.write_phot_apcorr(path, A2744[0], A2744[2], A2744[3], 60, FILTERS, seed=2)
    second = ingest_path(engine, path)[0]
    assert first.status == second.status == "ingested" and second.run_id != first.run_id
    with engine.connect() as conn:
        counts = dict(conn.execute(text("SELECT run_id, count(*) FROM source GROUP BY run_id")).all())
    assert counts == {first.run_id: 50, second.run_id: 60}


def test_dry_run_writes_nothing(engine, release):
    before = snapshot(engine)
    results = ingest_path(engine, release, dry_run=True)
    assert any(r.status == "would-ingest" and r.rows.get("source") == 300 for r in results)
    assert snapshot(engine) == before


def _catalog(tmp_path: Path, name: str | None = None, **kw) -> Path:
    path = tmp_path / (name or f"{A2744[0]}_irac_phot_apcorr.fits")
    fixtures.write_phot_apcorr(path, A2744[0], A2744[2], A2744[3], 40, FILTERS, seed=3, **kw)
    return path


def _edit_table(path: Path, fn) -> Path:
    with fits.open(path) as hdul:
        data = hdul[1].data.copy()
        header = hdul[1].header
    fn(data)
    fits.BinTableHDU(data=data, header=header).writeto(path, overwrite=True)
    return path


BAD_INPUTS = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable FITS"),
    "not fits": (lambda p: p.write_text("id,ra,dec\n1,2,3\n"), "not a readable FITS"),
    "missing id": (lambda p: _catalog(p.parent, drop_columns=["id"]), "missing required column"),
    "renamed ra": (lambda p: _catalog(p.parent, rename_columns={"ra": "RA_DEG"}), "missing required column"),
    "nan coordinates": (lambda p: _edit_table(p, lambda d: d["dec"].__setitem__(3, np.nan)), "coordinates"),
    "dec out of range": (lambda p: _edit_table(p, lambda d: d["dec"].__setitem__(0, 95.0)), "coordinates"),
    "duplicate ids": (lambda p: _edit_table(p, lambda d: d["id"].__setitem__(1, d["id"][0])), "duplicate id"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_catalog_leaves_database_unchanged(engine, tmp_path, case):
    path = _catalog(tmp_path)
    mutate, message = BAD_INPUTS[case]
    mutate(path)
    before = snapshot(engine)
    with pytest.raises(InputError) as err:
        ingest_path(engine, path)
    text_ = str(err.value)
    assert message in text_ and path.name in text_ and "\n" not in text_
    assert snapshot(engine) == before


def test_wrong_flux_units(engine, tmp_path):
    path = _catalog(tmp_path)
    with fits.open(path, mode="update") as hdul:
        idx = hdul[1].columns.names.index("f160w_flux_aper_2") + 1
        hdul[1].header[f"TUNIT{idx}"] = "nJy"
    before = snapshot(engine)
    with pytest.raises(InputError, match="microJansky"):
        ingest_path(engine, path)
    assert snapshot(engine) == before


def test_inconsistent_flux_shape(engine, tmp_path):
    path = _catalog(tmp_path)
    data = fits.getdata(path)
    cols = [c if c.name != "f160w_flux_aper_2" else
            fits.Column(name=c.name, format="2D", array=np.column_stack([data[c.name]] * 2)) for c in data.columns]
    fits.BinTableHDU.from_columns(cols).writeto(path, overwrite=True)
    with pytest.raises(InputError, match="inconsistent shape"):
        ingest_path(engine, path)


def test_unknown_field_and_orphan_zout(engine, tmp_path):
    before = snapshot(engine)
    unknown = _catalog(tmp_path, name="j999999p9999_irac_phot_apcorr.fits")
    with pytest.raises(InputError, match="unknown field"):
        ingest_path(engine, unknown)
    zout = tmp_path / f"{A2744[0]}_irac.eazypy.zout.fits"
    fixtures.write_zout(zout, np.arange(1, 11), np.full(10, A2744[2]), np.full(10, A2744[3]), seed=1)
    with pytest.raises(InputError, match="no catalog"):
        ingest_path(engine, zout)
    ingest_path(engine, _catalog(tmp_path))  # 40 sources, ids from the fixture
    fixtures.write_zout(zout, np.arange(100001, 100011), np.full(10, A2744[2]), np.full(10, A2744[3]), seed=2)
    mid = snapshot(engine)
    with pytest.raises(InputError, match="match"):
        ingest_path(engine, zout)
    assert snapshot(engine) == mid
    assert mid["source"] == before["source"] + 40


def _ingest_in_process(url: str, path: str, queue) -> None:
    from alcsdb import db

    try:
        results = ingest_path(db.make_engine(url), Path(path))
        queue.put([r.status for r in results])
    except Exception as exc:  # reported to the parent
        queue.put([f"error: {exc}"])


def test_concurrent_ingest_of_one_file_gives_one_copy(engine, db_url, tmp_path):
    path = _catalog(tmp_path)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ingest_in_process, args=(db_url, str(path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    statuses = sorted(queue.get(timeout=120)[0] for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert statuses == ["already", "ingested"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM source")).scalar() == 40
        assert conn.execute(text("SELECT count(*) FROM product WHERE ingested")).scalar() == 1


def test_cli_ingest_and_error_line(run_cli, release, tmp_path):
    out = run_cli("ingest", release / A2744[1])
    assert "ingested" in out.stdout and "phot_apcorr" in out.stdout
    bad = tmp_path / f"{A2744[0]}_irac_phot_apcorr.fits"
    bad.write_text("garbage")
    proc = run_cli("ingest", bad, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
