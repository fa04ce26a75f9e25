"""`alcsdb audit`: a clean database passes; tampered files, forged rows and crashed runs are each caught."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from alcsdb import versions
from alcsdb.audit import audit
from alcsdb.export import export_version
from alcsdb.provenance import insert_run, stage_run
from ingest import fixtures
from ingest.load import ingest_path

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)
M1149 = ("j114936p2222", "j114936p2222", 177.40125, 22.399472)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    for k, (name, root, ra, dec) in enumerate((A2744, M1149)):
        cat = fixtures.write_phot_apcorr(out / root / f"{name}_irac_phot_apcorr.fits", name, ra, dec, 30,
                                         ["f814w", "f160w"], seed=k)
        fixtures.write_zout(out / root / f"{name}_irac.eazypy.zout.fits", cat["id"], cat["ra"], cat["dec"], seed=k)
    return out


@pytest.fixture
def loaded(engine, release, tmp_path):
    ingest_path(engine, release)
    versions.create_version(engine, "v1")
    return engine, export_version(engine, "v1", tmp_path / "export")


def field_id(conn, name: str) -> int:
    return conn.execute(text("SELECT field_id FROM field WHERE name = :n"), {"n": name}).scalar_one()


def test_clean_database_passes(loaded, invoke):
    res = invoke("audit")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("audit passed: 8 product files checked")  # 4 release files + 4 exported
    assert "1 version hashes" in res.stdout


def test_each_violation_is_caught(loaded, invoke):
    engine, files = loaded
    by_name = {f.path.name: f.path for f in files}
    phot = by_name[f"{A2744[0]}_irac_phot_apcorr.fits"]
    zout = by_name[f"{A2744[0]}_irac.eazypy.zout.fits"]
    other = by_name[f"{M1149[0]}_irac_phot_apcorr.fits"]
    # an exported file changed in place (same size), another deleted, another truncated
    data = bytearray(phot.read_bytes())
    data[-100] ^= 0xFF
    phot.write_bytes(bytes(data))
    zout.unlink()
    other_size = other.stat().st_size
    other.write_bytes(other.read_bytes()[:2880])
    with engine.begin() as conn:
        fid_a, fid_m = field_id(conn, A2744[0]), field_id(conn, M1149[0])
        pinned = versions.version_runs(conn, "v1")[1][0].runs  # A2744's runs
        f105w = conn.execute(text("SELECT filter_id FROM filter WHERE name = 'f105w'")).scalar()
        source = conn.execute(text("SELECT min(source_id) FROM source WHERE run_id = :r"),
                              {"r": pinned["detect"]}).scalar()
        # forged: an extra row in a pinned run (the triggers refuse UPDATE/DELETE, not INSERT)
        conn.execute(text("INSERT INTO aperture_flux (source_id, filter_id, aperture, run_id, flux) "
                          "VALUES (:s, :f, 0, :r, 1.0)"), {"s": source, "f": f105w, "r": pinned["photometry"]})
        crashed = insert_run(conn, "photoz", field_id=fid_a)  # committed 'running', no lock holder
    with pytest.raises(RuntimeError):
        with stage_run(engine, "photoz", field_id=fid_a) as failed:
            raise RuntimeError("eazy diverged")
    with stage_run(engine, "detect", field_id=fid_m) as wrong:
        pass
    with engine.begin() as conn:
        # forged: rows of a failed run, and a zout row written by a detection run of another field
        for run_id in (failed.run_id, wrong.run_id):
            conn.execute(text("INSERT INTO zout (source_id, run_id, z_phot) VALUES (:s, :r, 1.0)"),
                         {"s": source, "r": run_id})
    report = audit(engine)
    found = {(v.check, v.subject.split(" (")[0]): v.message for v in report.violations}
    expected = {
        ("files", f"product {_pid(engine, phot)}"),
        ("files", f"product {_pid(engine, zout)}"),
        ("files", f"product {_pid(engine, other)}"),
        ("version_hash", "version v1"),
        ("abandoned", f"run {crashed}"),
        ("run_status", f"run {failed.run_id}"),
        ("orphans", f"run {wrong.run_id}"),
    }
    assert set(found) == expected, "\n".join(map(str, report.violations))
    assert found[("files", f"product {_pid(engine, zout)}")] == "file missing"
    assert found[("files", f"product {_pid(engine, phot)}")].startswith("sha256 ")
    assert found[("files", f"product {_pid(engine, other)}")] == f"size 2880 bytes, registered {other_size}"
    assert "1 zout row(s)" in found[("run_status", f"run {failed.run_id}")]
    wrong_msgs = [v.message for v in report.violations if v.subject.startswith(f"run {wrong.run_id} ")]
    assert any("only photoz or ingest runs write zout" in m for m in wrong_msgs)
    assert any(f"sources of field {A2744[0]}" in m for m in wrong_msgs)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM run WHERE run_id = :r"), {"r": crashed}).scalar() == "abandoned"
    # the CLI lists every violation and fails; the crashed run was reported once and is now marked
    res = invoke("audit")
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines[-1].startswith(f"audit FAILED: {len(report.violations) - 1} violation(s)")
    assert not any(line.startswith("abandoned:") for line in lines)
    assert sum(line.startswith("files: ") for line in lines) == 3
    # one field: M1149's truncated export is not A2744's business, the wrong-field zout row is
    res = invoke("audit", "--field", A2744[0], "--quick")
    assert res.exit_code == 1
    assert f"product {_pid(engine, other)}" not in res.stdout and f"product {_pid(engine, zout)}" in res.stdout
    assert "version_hash" not in res.stdout and f"run {failed.run_id}" in res.stdout
    assert f"run {wrong.run_id} (detect, {M1149[0]}): 1 zout row(s) of sources of field {A2744[0]}" in res.stdout


def _pid(engine, path) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT max(product_id) FROM product WHERE path = :p"), {"p": str(path)}).scalar()
