"""HATS export (`alcsdb export --format hats`): lsdb opens it and its cone searches match alcs_cone_search."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sqlalchemy import text

from alcsdb import hats, versions
from alcsdb.errors import InputError
from alcsdb.export import export_version
from ingest import fixtures
from ingest.load import ingest_path

A2744 = ("j001408m3023", 3.588333, -30.39725)
# a second field centred 3' east of Abell 2744 (the fixture draws sources within 2' of the centre it is
# given), so that one cone spans both fields
NEIGHBOUR = ("j114936p2222", A2744[1] + 3.0 / 60 / np.cos(np.radians(A2744[2])), A2744[2])
FILTERS = ["f606w", "f814w", "f160w"]
MIDPOINT = ((A2744[1] + NEIGHBOUR[1]) / 2, A2744[2])
CONES = [
    (A2744[1], A2744[2], 20.0),  # a cluster core
    (*MIDPOINT, 75.0),  # spans both fields
    (A2744[1] - 50 / 3600, A2744[2] + 40 / 3600, 4.0),  # a few rows
    (180.0, 60.0, 30.0),  # nothing there
]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    for k, (name, ra, dec) in enumerate([A2744, NEIGHBOUR]):
        cat = fixtures.write_phot_apcorr(out / f"{name}_irac_phot_apcorr.fits", name, ra, dec, 400,
                                         FILTERS[: 3 - k], seed=20 + k)
        fixtures.write_zout(out / f"{name}_irac.eazypy.zout.fits", cat["id"], cat["ra"], cat["dec"], seed=20 + k)
    return out


@pytest.fixture
def version(engine, release):
    ingest_path(engine, release)
    versions.create_version(engine, "v1")
    return engine


def _files(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _sql_cone(engine, ra, dec, radius):
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT source_id, field, ra, dec FROM alcs_cone_search(:ra, :dec, :r)"),
                            {"ra": float(ra), "dec": float(dec), "r": float(radius)}).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _lsdb_cone(catalog, ra, dec, radius):
    got = catalog.cone_search(ra, dec, radius).compute()
    return {int(s): (f, float(a), float(d)) for s, f, a, d in zip(got["source_id"], got["field"], got["ra"],
                                                                  got["dec"])}


def _check_catalog(engine, out, writer):
    import lsdb
    from hats.catalog import TableProperties

    catalog = lsdb.open_catalog(out)
    whole = catalog.compute()
    with engine.connect() as conn:
        src = conn.execute(text(
            "SELECT s.source_id, s.hpx29, s.id, f.name FROM source s JOIN field f USING (field_id) JOIN "
            "catalog_version_run c ON c.run_id = s.run_id AND c.stage = 'detect' JOIN catalog_version v "
            "USING (version_id) WHERE v.name = 'v1'")).all()
        stored_hash = conn.execute(text("SELECT content_hash FROM catalog_version WHERE name = 'v1'")).scalar()
        pinned = conn.execute(text("SELECT f.name, c.stage, c.run_id FROM catalog_version_run c JOIN field f "
                                   "USING (field_id)")).all()
        products = dict(conn.execute(text(
            "SELECT meta->>'relpath', sha256 FROM product p JOIN run r USING (run_id) WHERE p.kind = 'export_hats' "
            "AND r.status = 'succeeded' AND p.path LIKE :root"), {"root": f"{out}/%"}).all())
    # every source of the version, once, with our hpx29 as HATS's spatial index
    assert len(whole) == len(src) == 800
    by_id = {r[0]: r for r in src}
    assert whole.index.name == "_healpix_29"
    assert [by_id[int(s)][1] for s in whole["source_id"]] == [int(h) for h in whole.index]
    assert {(by_id[int(s)][3], by_id[int(s)][2]) for s in whole["source_id"]} == set(zip(whole["field"], whole["id"]))
    assert {"flux_auto", "f160w_tot_1", "irac_ch1_flux", "z_phot", "zout_z_spec", "massp_4"} <= set(whole.columns)
    # the field without f160w has -99 there, as the FITS export writes missing values
    assert (whole.loc[whole["field"] == NEIGHBOUR[0], "f160w_flux_aper_0"] == -99).all()
    assert (whole.loc[whole["field"] == A2744[0], "f160w_flux_aper_0"] != -99).any()
    for ra, dec, radius in CONES:
        ours, theirs = _sql_cone(engine, ra, dec, radius), _lsdb_cone(catalog, ra, dec, radius)
        assert theirs.keys() == ours.keys(), (ra, dec, radius)
        for sid, (field, sra, sdec) in ours.items():
            assert theirs[sid] == (field, sra, sdec)
    assert len(_sql_cone(engine, *CONES[1])) > 0 and {v[0] for v in _sql_cone(engine, *CONES[1]).values()} == \
        {A2744[0], NEIGHBOUR[0]}
    assert _sql_cone(engine, *CONES[3]) == {}
    props = TableProperties.read_from_dir(out)
    extra = props.extra_dict()
    assert props.catalog_name == "v1" and props.healpix_column == "_healpix_29" and props.healpix_order == 29
    assert extra["alcsdb_version"] == "v1" and extra["alcsdb_content_hash"] == stored_hash
    assert set(extra["alcsdb_runs"].split()) == {f"{f}/{role}/{run}" for f, role, run in pinned}
    # every file is a product of the export run, with its sha256
    assert products == _files(out)
    assert any(rel.startswith("dataset/Norder=") for rel in products)
    return _files(out)


@pytest.mark.slow
def test_hats_export_opens_in_lsdb_with_the_same_cones(version, tmp_path, invoke, db_url):
    out = tmp_path / "hats"
    files = export_version(version, "v1", out, fmt="hats")
    assert {f.path.relative_to(out).as_posix() for f in files} == set(_files(out))
    assert sum(f.rows for f in files) == 800
    first = _check_catalog(version, out, "lsdb")
    # the CLI: a second export, byte-identical to the first
    result = invoke("export", "--version", "v1", "--format", "hats", "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "again") == first
    # a non-empty folder is refused before any run starts: the database is unchanged
    with version.connect() as conn:
        runs = conn.execute(text("SELECT count(*) FROM run")).scalar()
    with pytest.raises(InputError, match="absent or empty"):
        export_version(version, "v1", out, fmt="hats")
    result = invoke("export", "--version", "v1", "--format", "hats", "--out", out)
    assert result.exit_code != 0 and "absent or empty" in result.output
    with version.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == runs


@pytest.mark.slow
def test_hats_import_writer_gives_the_same_rows(version, tmp_path, monkeypatch):
    """Beyond the size limit the catalog goes through hats-import (dask LocalCluster) with use_healpix_29."""
    import lsdb
    import pandas as pd

    export_version(version, "v1", tmp_path / "small", fmt="hats")
    monkeypatch.setattr(hats, "SMALL_MAX_ROWS", 10)
    export_version(version, "v1", tmp_path / "big", fmt="hats")
    with version.connect() as conn:
        writers = set(conn.execute(text("SELECT DISTINCT meta->>'writer' FROM product WHERE kind = 'export_hats'"))
                      .scalars())
    assert writers == {"lsdb", "import"}
    _check_catalog(version, tmp_path / "big", "import")
    a = lsdb.open_catalog(tmp_path / "small").compute().sort_values("source_id")
    b = lsdb.open_catalog(tmp_path / "big").compute().sort_values("source_id")
    pd.testing.assert_frame_equal(a, b[a.columns], check_dtype=False)
