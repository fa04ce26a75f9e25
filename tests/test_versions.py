"""Catalog versions: content hash, immutability, reproducible export, ingest round trip."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from alcsdb import versions
from alcsdb.errors import InputError
from alcsdb.export import export_version
from ingest import fixtures
from ingest.load import ingest_path

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)
M1149 = ("j114936p2222", "j114936p2222", 177.40125, 22.399472)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    fixtures.write_release(out, [A2744, M1149], n_sources=150, seed=11, filters=["f606w", "f814w", "f160w"])
    return out


@pytest.fixture
def loaded(engine, release):
    ingest_path(engine, release)
    return engine


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_is_byte_reproducible_and_round_trips(loaded, tmp_path):
    info = versions.create_version(loaded, "v1.0", note="first")
    assert set(info["fields"]) == {A2744[0], M1149[0]}
    assert set(info["fields"][A2744[0]]) == {"detect", "photometry", "irac", "photoz"}
    first = export_version(loaded, "v1.0", tmp_path / "a")
    second = export_version(loaded, "v1.0", tmp_path / "b")
    assert [f.path.name for f in first] == [f.path.name for f in second]
    assert len(first) == 4
    for a, b in zip(first, second):
        assert sha(a.path) == sha(b.path) == a.sha256
    with loaded.connect() as conn:
        products = conn.execute(text("SELECT count(*) FROM product WHERE kind LIKE 'export_%'")).scalar()
        assert products == 8
        runs = conn.execute(text("SELECT count(*) FROM run WHERE stage = 'export' AND status = 'succeeded'")).scalar()
        assert runs == 2
    # ingesting the export gives new runs whose rows hash to the same content
    ingest_path(loaded, tmp_path / "a")
    again = versions.create_version(loaded, "v1.0-reingested")
    assert again["fields"][A2744[0]]["detect"] != info["fields"][A2744[0]]["detect"]
    assert again["content_hash"] == info["content_hash"]


def test_header_metadata(loaded, tmp_path):
    from astropy.io import fits

    versions.create_version(loaded, "v0.1", fields=[A2744[0]])
    files = export_version(loaded, "v0.1", tmp_path)
    with fits.open(files[0].path, checksum=True) as hdul:
        h = hdul[1].header
        assert h["CLUSTER"] == "Abell 2744" and h["VERSION"] == "v0.1" and h["Z_CLUS"] == pytest.approx(0.308)
        assert len(h["CONTHASH"]) == 64 and "CHECKSUM" in h and "DATASUM" in h
        assert hdul[1].columns.names[:3] == ["thresh", "npix", "tnpix"]


def test_versions_are_immutable(loaded):
    versions.create_version(loaded, "v1")
    with pytest.raises(InputError, match="already exists"):
        versions.create_version(loaded, "v1")
    for sql in ("UPDATE catalog_version SET note = 'x'", "DELETE FROM catalog_version",
                "DELETE FROM catalog_version_run", "DELETE FROM source", "UPDATE aperture_flux SET flux = 0",
                "DELETE FROM run", "TRUNCATE zout CASCADE"):
        with pytest.raises(DBAPIError):
            with loaded.begin() as conn:
                conn.execute(text(sql))
    with loaded.connect() as conn:
        stored, now = versions.verify_hash(conn, "v1")
    assert stored == now


def test_hash_changes_with_content(loaded, tmp_path):
    a = versions.create_version(loaded, "a", fields=[A2744[0]])
    path = tmp_path / f"{A2744[0]}_irac_phot_apcorr.fits"
    fixtures.write_phot_apcorr(path, A2744[0], A2744[2], A2744[3], 150, ["f606w", "f814w", "f160w"], seed=99)
    ingest_path(loaded, path)
    b = versions.create_version(loaded, "b", fields=[A2744[0]])
    assert a["content_hash"] != b["content_hash"]
    assert "photoz" not in b["fields"][A2744[0]]  # the old zout belongs to the old sources


@pytest.mark.parametrize("name", ["", "a b", "x;DROP TABLE run", "v\x00", "é" * 70])
def test_bad_version_names(loaded, name):
    with pytest.raises(InputError, match="invalid version name"):
        versions.create_version(loaded, name)


def test_export_with_zspec_from_external_catalog(loaded, tmp_path):
    """`--zspec NAME`: the nearest external z_spec within the radius fills z_spec, recorded in provenance."""
    import json

    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    from alcsdb.external import load_catalog

    versions.create_version(loaded, "vz", fields=[A2744[0]])
    with loaded.connect() as conn:
        rows = conn.execute(text("SELECT s.id, s.ra, s.dec FROM source s JOIN catalog_version_run c ON "
                                 "c.run_id = s.run_id JOIN catalog_version v USING (version_id) "
                                 "WHERE v.name = 'vz' AND c.stage = 'detect' ORDER BY s.id LIMIT 20")).all()
    ids = np.array([r[0] for r in rows])
    ra = np.array([r[1] for r in rows]) + 0.2 / 3600 / np.cos(np.radians(A2744[3]))  # 0.2" east
    spec = Table({"ra": ra, "dec": [r[2] for r in rows], "z": np.linspace(0.5, 3.0, len(rows))})
    spec.write(tmp_path / "specz.fits")
    load_catalog(loaded, tmp_path / "specz.fits", "specz", z_spec="z")
    files = export_version(loaded, "vz", tmp_path / "out", zspec="specz", zspec_radius=0.5)
    cat = fits.getdata(files[0].path)
    got = dict(zip(cat["id"], cat["z_spec"]))
    assert np.allclose([got[i] for i in ids], spec["z"])
    assert sum(v > 0 for v in cat["z_spec"]) == len(ids)  # the fixture catalog had z_spec = -1 (grizli)
    with loaded.connect() as conn:
        params = conn.execute(text("SELECT params FROM run WHERE stage = 'export' ORDER BY run_id DESC LIMIT 1")
                              ).scalar()
    assert params["zspec"]["catalog"] == "specz" and params["zspec"]["radius_arcsec"] == 0.5
    assert len(params["zspec"]["sha256"]) == 64
    assert json.dumps(params)
