"""Version snapshots: the stored release tables equal the rows', export reads them, nobody changes them."""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from alcsdb import snapshot, versions
from alcsdb.audit import audit
from alcsdb.export import _header_cards, export_version, version_tables
from alcsdb.fitswriter import Column
from ingest import fixtures
from ingest.load import ingest_path
from tests.test_fitswriter import astropy_bytes

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    fixtures.write_release(out, [A2744], n_sources=80, seed=5, filters=["f435w", "f814w", "f160w"])
    return out


@pytest.fixture
def loaded(engine, release):
    ingest_path(engine, release)
    return engine


def test_export_reads_the_snapshot_and_writes_what_astropy_wrote_from_the_rows(loaded, tmp_path):
    info = versions.create_version(loaded, "snap")
    versions.create_version(loaded, "rows", snapshot=False)
    with loaded.connect() as conn:
        version, (fr,) = versions.version_runs(conn, "snap")
        rows_version = versions.version_runs(conn, "rows")[0]
        stored, units = snapshot.load(conn, version["version_id"], fr.field_id)
        assert snapshot.load(conn, rows_version["version_id"], fr.field_id) is None
        built = snapshot.build(conn, fr)
        n_columns = conn.execute(text("SELECT count(*) FROM catalog_version_column WHERE version_id = :v"),
                                 {"v": version["version_id"]}).scalar()
        assert n_columns == len(built["phot"]) + len(built["zout"])
        assert info["snapshot_bytes"] > sum(a.nbytes for t in built.values() for a in t.values())
        for kind in ("phot", "zout"):
            assert list(stored[kind]) == list(built[kind])
            for name, values in built[kind].items():
                assert stored[kind][name].dtype == values.dtype.newbyteorder(">")
                assert np.array_equal(stored[kind][name], values), name
        assert units["phot"]["ra"] == "deg" and units["phot"]["flux_aper_0"] == "uJy"
        assert stored["zout"]["massp"].shape == (80, 5)
        assert any((stored["phot"][f"{f}_tot_0"] == -99).any() for f in ("f435w", "f814w", "f160w"))  # missing
        cards = {name: _header_cards(conn, v, fr) for name, v in (("snap", version), ("rows", rows_version))}
        assert version_tables(conn, rows_version, fr)[0]["phot"].keys() == built["phot"].keys()
    for name in ("snap", "rows"):
        files = export_version(loaded, name, tmp_path / name)
        for f in files:
            table = built[f.kind]
            columns = [Column(n, a, units[f.kind][n]) for n, a in table.items()]
            when = dict((k, v) for k, v, _ in cards[name])["DATE"]
            reference = astropy_bytes(tmp_path / f"ref_{name}_{f.kind}.fits", columns, cards[name], when)
            assert f.path.read_bytes() == reference, (name, f.kind)


def test_snapshot_rows_are_immutable(loaded):
    versions.create_version(loaded, "v1")
    for sql in ("UPDATE catalog_version_column SET unit = 'mag'", "UPDATE catalog_version_column SET data = ''",
                "DELETE FROM catalog_version_column", "TRUNCATE catalog_version_column"):
        with pytest.raises(DBAPIError, match="immutable"):
            with loaded.begin() as conn:
                conn.execute(text(sql))


def test_audit_checks_the_snapshot_against_the_rows(loaded):
    versions.create_version(loaded, "v1")
    versions.create_version(loaded, "v0", snapshot=False)
    report = audit(loaded)
    assert report.ok, report.violations
    assert report.checked["snapshots"] == 1 and report.checked["versions"] == 2
    with loaded.begin() as conn:  # an owner bypasses the trigger and changes one value of one column
        conn.execute(text("ALTER TABLE catalog_version_column DISABLE TRIGGER catalog_version_column_immutable"))
        conn.execute(text("UPDATE catalog_version_column SET data = overlay(data placing '\\x4000'::bytea from 9) "
                          "WHERE name = 'f814w_tot_3'"))
        conn.execute(text("ALTER TABLE catalog_version_column ENABLE TRIGGER catalog_version_column_immutable"))
    report = audit(loaded)
    assert [(v.check, v.subject) for v in report.violations] == [("version_snapshot", "version v1")]
    assert "phot: 1 column(s) differ from the rows (f814w_tot_3)" in report.violations[0].message
    assert audit(loaded, quick=True).ok  # --quick reads no version's rows


def test_csv_export_is_the_same_from_the_snapshot_and_from_the_rows(loaded, tmp_path):
    from astropy.table import Table

    versions.create_version(loaded, "snap")
    versions.create_version(loaded, "rows", snapshot=False)
    snap = export_version(loaded, "snap", tmp_path / "snap", fmt="csv")
    rows = export_version(loaded, "rows", tmp_path / "rows", fmt="csv")
    assert [f.path.name for f in snap] == [f.path.name for f in rows] == [
        f"{A2744[0]}_irac_phot_apcorr.csv", f"{A2744[0]}_irac.eazypy.zout.csv"]
    for a, b in zip(snap, rows):
        assert a.path.read_bytes() == b.path.read_bytes() and a.sha256 == b.sha256
    zout = Table.read(snap[1].path, format="ascii.csv")
    assert len(zout) == 80 and "massp_4" in zout.colnames
