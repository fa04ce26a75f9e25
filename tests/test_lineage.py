"""Lineage: Python trees, the SQL function and views, PROV-JSON, and the `provenance` commands."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from alcsdb import lineage, versions
from alcsdb.errors import InputError
from alcsdb.export import export_version
from alcsdb.provenance import package_versions, stage_run
from ingest import fixtures
from ingest.load import ingest_path

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    fixtures.write_release(out, [A2744], n_sources=40, seed=3, filters=["f814w", "f160w"], n_aors=1, n_bcd=3,
                           mosaic_shape=(16, 16))
    return out / A2744[1]


@pytest.fixture
def loaded(engine, release, tmp_path):
    """Release ingested, version v1, and v1 exported; returns (engine, exported files)."""
    ingest_path(engine, release)
    versions.create_version(engine, "v1")
    return engine, export_version(engine, "v1", tmp_path / "export")


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ingest_run(conn, name: str) -> int:
    """The ingest run of release file `name` (looked up by its parameters, not through lineage)."""
    return conn.execute(text("SELECT run_id FROM run WHERE stage = 'ingest' AND params->>'file' LIKE :n"),
                        {"n": f"%/{name}"}).scalar_one()


def test_source_and_version_lineage(loaded, release):
    engine, _ = loaded
    cat, zout = release / f"{A2744[0]}_irac_phot_apcorr.fits", release / f"{A2744[0]}_irac.eazypy.zout.fits"
    with engine.connect() as conn:
        cat_run, zout_run = ingest_run(conn, cat.name), ingest_run(conn, zout.name)
        sid = lineage.resolve_source(conn, 7, field=A2744[0])
        assert sid == lineage.resolve_source(conn, 7, field=A2744[0], version="v1")
        assert conn.execute(text("SELECT id FROM source WHERE source_id = :s"), {"s": sid}).scalar() == 7
        lin = lineage.source_lineage(conn, sid)
        parts = {(p.table, p.run_id): p.n_rows for p in lin.subject.parts}
        n_ap = conn.execute(text("SELECT count(*) FROM aperture_flux WHERE source_id = :s"), {"s": sid}).scalar()
        assert parts == {("source", cat_run): 1, ("aperture_flux", cat_run): n_ap, ("total_correction", cat_run): 2,
                         ("irac_flux", cat_run): 2, ("zout", zout_run): 1}
        assert set(lin.runs) == {cat_run, zout_run}
        # the zout ingest read its file and the catalog it matched ids against
        roles = {(lin.products[p]["path"], role) for p, role in lin.inputs[zout_run]}
        assert roles == {(str(zout), "release_file"), (str(cat), "sources")}
        raw = {lin.products[p]["path"]: lin.products[p]["sha256"] for p in lin.raw_inputs()}
        assert raw == {str(cat): sha(cat), str(zout): sha(zout)}
        tree = lineage.render_tree(lin)
        for expected in (sha(cat), sha(zout), "raw input: registered by this run (release file)",
                         f"run {zout_run} ingest succeeded", f"numpy {package_versions()['numpy']}",
                         "reads sources: product", f"run {cat_run} ingest succeeded field {A2744[0]} (shown above)"):
            assert expected in tree
        with pytest.raises(InputError, match="no source with id 99999"):
            lineage.resolve_source(conn, 99999, field=A2744[0])

        vlin = lineage.version_lineage(conn, "v1")
        pinned = {(p.label.split()[1], p.run_id) for p in vlin.subject.parts}
        assert pinned == {("detect", cat_run), ("photometry", cat_run), ("irac", cat_run), ("photoz", zout_run)}
        assert {vlin.products[p]["path"] for p in vlin.raw_inputs()} == {str(cat), str(zout)}


def test_product_lineage_matches_sql_view(loaded, release):
    engine, files = loaded
    exported = files[0].path
    with engine.connect() as conn:
        by_path = lineage.product_lineage(conn, str(exported))
        pid = int(by_path.subject.key.split("/")[1])
        assert by_path.products[pid]["sha256"] == sha(exported)
        assert lineage.product_lineage(conn, str(pid)).runs.keys() == by_path.runs.keys()
        export_run = by_path.made_by(pid)
        assert by_path.runs[export_run]["stage"] == "export"
        # the view gives the same ancestors, one row per reading: the catalog file at depth 1 (the
        # export read it), at depth 2 by its own ingest run and by the zout ingest (ids matched to it)
        view = conn.execute(text("SELECT ancestor_product_id, role, depth FROM product_lineage WHERE product_id = :p"),
                            {"p": pid}).all()
        assert {a for a, _, _ in view} == set(by_path.products) - {pid}
        paths = {a: by_path.products[a]["path"] for a, _, _ in view}
        cat = str(release / f"{A2744[0]}_irac_phot_apcorr.fits")
        assert {(paths[a], role, d) for a, role, d in view if paths[a] == cat} == {(cat, "version_rows", 1),
                                                                                (cat, "release_file", 2),
                                                                                (cat, "sources", 2)}
        # every ingested release file of the version is a raw input of the export
        assert {by_path.products[p]["path"] for p in by_path.raw_inputs()} == {
            r for (r,) in conn.execute(text("SELECT p.path FROM product p JOIN catalog_version_run c USING (run_id) "
                                            "WHERE p.ingested"))}
        with pytest.raises(InputError, match="no product has this path"):
            lineage.product_lineage(conn, str(exported.parent / "nothing.fits"))


def test_exports_to_one_path_resolve_to_the_file_now_there(loaded, tmp_path):
    engine, files = loaded
    again = export_version(engine, "v1", tmp_path / "export")  # same path, identical bytes
    with engine.connect() as conn:
        pid, note = lineage.resolve_product(conn, str(again[0].path))
        assert note.startswith("2 products have this path; product ") and "matches the file's sha256" in note
        newest = conn.execute(text("SELECT max(product_id) FROM product WHERE path = :p"),
                              {"p": str(again[0].path)}).scalar()
        assert pid == newest
        again[0].path.write_bytes(b"changed")
        pid2, note2 = lineage.resolve_product(conn, str(again[0].path))
        assert pid2 == newest and "none matches the file now" in note2


def _product(run, tmp_path: Path, name: str, kind: str) -> int:
    path = tmp_path / name
    path.write_text(name)
    return run.register_product(path, kind)


def test_pipeline_chain_to_exposures_and_cycle_guard(engine, tmp_path):
    """FLTs -> mosaic run -> detection run -> photometry run: a source's lineage reaches the exposures."""
    with engine.connect() as conn:
        fid = conn.execute(text("SELECT field_id FROM field WHERE name = :n"), {"n": A2744[0]}).scalar()
        f160w = conn.execute(text("SELECT filter_id FROM filter WHERE name = 'f160w'")).scalar()
    flts = []
    with stage_run(engine, "mosaic", field_id=fid, params={"pixfrac": 0.8}) as mosaic:
        for root in ("ibqa01aaq", "ibqa01abq"):
            flt = _product(mosaic, tmp_path, f"{root}_flt.fits", "hst_flt")
            flts.append(flt)
            mosaic.add_input(flt, "exposure")
            mosaic.conn.execute(text("INSERT INTO exposure (run_id, field_id, filter_id, product_id, rootname, "
                                     "instrument, exptime) VALUES (:r, :f, :fl, :p, :root, 'WFC3', 1202.9)"),
                                {"r": mosaic.run_id, "f": fid, "fl": f160w, "p": flt, "root": root})
        sci = _product(mosaic, tmp_path, "f160w_drz_sci.fits", "hst_sci")
    with stage_run(engine, "detect", field_id=fid, params={"thresh": 1.5}) as detect:
        detect.add_input(sci, "detection_image")
        seg = _product(detect, tmp_path, "seg.fits", "seg")
        sid = detect.conn.execute(text("INSERT INTO source (run_id, field_id, id, ra, dec, hpx29) VALUES "
                                       "(:r, :f, 1, 3.59, -30.4, 0) RETURNING source_id"),
                                  {"r": detect.run_id, "f": fid}).scalar()
    with stage_run(engine, "photometry", field_id=fid, params={}) as phot:
        phot.add_input(sci, "image")
        phot.add_input(seg, "segmentation")
        phot.conn.execute(text("INSERT INTO aperture_flux (source_id, filter_id, aperture, run_id, flux) "
                               "VALUES (:s, :f, 0, :r, 1.5)"), {"s": sid, "f": f160w, "r": phot.run_id})
    with engine.connect() as conn:
        lin = lineage.source_lineage(conn, sid)
        assert set(lin.runs) == {mosaic.run_id, detect.run_id, phot.run_id}
        assert [lin.products[p]["path"] for p in lin.raw_inputs()] == [
            str(tmp_path / "ibqa01aaq_flt.fits"), str(tmp_path / "ibqa01abq_flt.fits")]
        tree = lineage.render_tree(lin)
        assert "raw input: exposure ibqa01aaq (WFC3 f160w, 1202.9 s)" in tree
        assert 'params {"pixfrac":0.8}' in tree
        edges = set(conn.execute(text("SELECT input_product_id, reader_run_id, depth FROM run_lineage "
                                      "WHERE run_id = :r"), {"r": phot.run_id}).all())
        assert edges == {(sci, phot.run_id, 1), (seg, phot.run_id, 1), (sci, detect.run_id, 2),
                         (flts[0], mosaic.run_id, 2), (flts[1], mosaic.run_id, 2)}
        # a forged cycle (the mosaic run "reads" the segmentation map made downstream) still terminates
        conn.execute(text("INSERT INTO run_input (run_id, product_id, role) VALUES (:r, :p, 'forged')"),
                     {"r": mosaic.run_id, "p": seg})
        assert conn.execute(text("SELECT max(depth) FROM alcs_lineage(ARRAY[CAST(:r AS bigint)])"),
                            {"r": phot.run_id}).scalar() <= 64


def test_prov_json_document(loaded, release):
    from prov.model import ProvDocument

    engine, _ = loaded
    with engine.connect() as conn:
        lin = lineage.source_lineage(conn, lineage.resolve_source(conn, 3, field=A2744[0]))
        payload = lineage.prov_json(lin)
    doc = json.loads(payload)
    ProvDocument.deserialize(content=payload, format="json")  # valid PROV-JSON for the reference parser
    runs = {f"alcs:run/{r}" for r in lin.runs}
    assert set(doc["activity"]) == runs
    for rid in lin.runs:
        activity = doc["activity"][f"alcs:run/{rid}"]
        assert activity["alcs:stage"] == "ingest" and "prov:startTime" in activity and "prov:endTime" in activity
        assert json.loads(activity["alcs:package_versions"]) == lin.runs[rid]["package_versions"]
    cat = release / f"{A2744[0]}_irac_phot_apcorr.fits"
    entities = {e.get("prov:location"): e for e in doc["entity"].values() if "prov:location" in e}
    assert entities[str(cat)]["alcs:sha256"] == sha(cat)
    used = {(u["prov:activity"], u["prov:role"]) for u in doc["used"].values()}
    assert {role for _, role in used} == {"release_file", "sources"}
    assert {a["prov:activity"] for a in doc["wasAssociatedWith"].values()} == runs
    assert len(doc["agent"]) == 1
    derived = {(d["prov:generatedEntity"], d["prov:usedEntity"]) for d in doc["wasDerivedFrom"].values()}
    subject = f"alcs:{lin.subject.key}"
    assert {g for g, _ in derived if g == subject} == {subject}
    assert len([1 for g, _ in derived if g == subject]) == len(lin.subject.parts)


def test_provenance_commands(loaded, invoke, tmp_path):
    _, files = loaded
    res = invoke("provenance", "source", "5", "--field", A2744[0])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("source ") and "reads release_file" in res.stdout
    out = tmp_path / "prov.json"
    res = invoke("provenance", "product", files[0].path, "--format", "prov-json", "--out", out)
    assert res.exit_code == 0, res.output
    assert set(json.loads(out.read_text())) >= {"entity", "activity", "agent", "used", "wasGeneratedBy"}
    res = invoke("provenance", "version", "v1", "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["subject"]["key"] == "version/v1"
    res = invoke("provenance", "version", "nope")
    assert res.exit_code == 1 and "unknown catalog version 'nope'" in res.output
