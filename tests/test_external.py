"""External catalogs: FITS / CSV / VOTable loads with exact values, units, provenance and clear errors."""
from __future__ import annotations

import json

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import Angle
from astropy.table import Table
from click.testing import CliRunner
from sqlalchemy import text

from alcsdb import external
from alcsdb.errors import InputError
from alcsdb.healpix import hpx29
from alcsdb.provenance import file_sha256


def spec_table(n: int = 300, seed: int = 1) -> Table:
    """A spectroscopic-like catalog: ids, positions across RA = 0, z (-99 = none), a flux and a flag text."""
    rng = np.random.default_rng(seed)
    z = np.round(rng.uniform(0.05, 6.0, n), 4)
    z[::5] = -99.0
    t = Table({
        "ID": np.array([f"obj-{i:04d}" for i in range(n)]),
        "RAJ2000": rng.uniform(-0.01, 0.01, n),  # negative RA wraps to 360 - x
        "DEJ2000": rng.uniform(-0.01, 0.01, n),
        "zspec": z,
        "F160W": rng.lognormal(0, 2, n) * 1e3,
        "QUALITY": np.array(["A", "B, maybe", 'C "quoted"'] * (n // 3) + ["A"] * (n % 3)),
        "NQ": rng.integers(0, 5, n),
    })
    t["F160W"].unit = u.nJy
    t["RAJ2000"].unit = u.deg
    t["DEJ2000"].unit = u.deg
    t["F160W"][3] = np.nan
    return t


def stored(engine, name: str) -> list:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT e.ext_id, e.ra, e.dec, e.hpx29, e.z_spec, e.data, e.run_id FROM external_source e "
            "JOIN external_catalog c USING (catalog_id) WHERE c.name = :n ORDER BY e.ext_id"), {"n": name}).all()


def test_fits_load_exact_with_provenance(engine, tmp_path):
    t = spec_table()
    path = tmp_path / "specz.fits"
    t.write(path)
    info = external.load_catalog(engine, path, "specz")
    assert info.n_rows == len(t) and info.sha256 == file_sha256(path)
    assert info.columns["ra"] == "RAJ2000" and info.columns["id"] == "ID" and info.columns["z_spec"] == "zspec"
    assert info.columns["data"]["F160W"]["unit"] == "nJy" and set(info.columns["data"]) == {"F160W", "QUALITY", "NQ"}
    rows = stored(engine, "specz")
    order = np.argsort(t["ID"])
    ra_in = np.mod(np.asarray(t["RAJ2000"])[order], 360.0)
    dec_in = np.asarray(t["DEJ2000"])[order]
    assert [r[0] for r in rows] == list(np.asarray(t["ID"])[order])
    assert np.array_equal([r[1] for r in rows], ra_in) and np.array_equal([r[2] for r in rows], dec_in)
    assert np.array_equal([r[3] for r in rows], hpx29(ra_in, dec_in))
    z_in = np.asarray(t["zspec"])[order]
    assert [r[4] for r in rows] == [None if z < 0 else z for z in z_in]
    flux = np.asarray(t["F160W"])[order]
    got_flux = np.array([np.nan if r[5]["F160W"] is None else r[5]["F160W"] for r in rows])
    assert np.array_equal(got_flux, flux, equal_nan=True)  # bit-exact through JSON
    assert [r[5]["QUALITY"] for r in rows] == list(np.asarray(t["QUALITY"])[order])
    assert [r[5]["NQ"] for r in rows] == list(np.asarray(t["NQ"])[order])
    with engine.connect() as conn:
        run = conn.execute(text("SELECT stage, status, params, n_rows FROM run WHERE run_id = :r"),
                           {"r": info.run_id}).mappings().one()
        assert run["stage"] == "external" and run["status"] == "succeeded"
        assert run["params"]["sha256"] == info.sha256 and run["n_rows"]["external_source"] == len(t)
        role, sha = conn.execute(text("SELECT i.role, p.sha256 FROM run_input i JOIN product p USING (product_id) "
                                      "WHERE i.run_id = :r"), {"r": info.run_id}).one()
        assert role == "catalog" and sha == info.sha256
        # the SQL reading documented in the module gives the exact floats
        sql_flux = conn.execute(text("SELECT (data->>'F160W')::float8 FROM external_source ORDER BY ext_id")).scalars()
        assert np.array_equal(np.array([np.nan if v is None else v for v in sql_flux]), flux, equal_nan=True)


def test_csv_in_chunks_and_votable_sexagesimal_match_fits(engine, tmp_path):
    t = spec_table(n=2500, seed=4)
    t.write(tmp_path / "a.fits")
    t.write(tmp_path / "a.csv", format="ascii.csv")
    sexa = t.copy()
    ra_deg, dec_deg = np.mod(np.asarray(t["RAJ2000"]), 360) * u.deg, np.asarray(t["DEJ2000"]) * u.deg
    sexa["RAJ2000"] = Angle(ra_deg).to_string(unit=u.hourangle, sep=":", precision=9)
    sexa["DEJ2000"] = Angle(dec_deg).to_string(unit=u.deg, sep=":", precision=8, alwayssign=True)
    sexa.write(tmp_path / "a.vot", format="votable")
    external.load_catalog(engine, tmp_path / "a.fits", "fits")
    assert [len(c) for c in external.read_chunks(tmp_path / "a.csv", "ascii.csv", 1000)][0] < len(t)  # streamed
    external.load_catalog(engine, tmp_path / "a.csv", "csv", chunk_rows=1000)
    external.load_catalog(engine, tmp_path / "a.vot", "vot")
    fits_rows, csv_rows, vot_rows = (stored(engine, n) for n in ("fits", "csv", "vot"))
    assert len(csv_rows) == len(t)
    # CSV text keeps the shortest exact repr: identical rows (the unit of F160W is lost in CSV, not the value)
    assert [r[:5] for r in csv_rows] == [r[:5] for r in fits_rows]
    assert [r[5] for r in csv_rows] == [r[5] for r in fits_rows]
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT params->>'name', n_rows FROM run WHERE stage = 'external'")).all()
    assert {name for name, _ in runs} == {"fits", "csv", "vot"}
    # sexagesimal text at 1e-9 h / 1e-8 deg precision: positions agree to 0.1 mas
    sep = np.hypot((np.array([r[1] for r in vot_rows]) - [r[1] for r in fits_rows] + 180) % 360 - 180,
                   np.array([r[2] for r in vot_rows]) - [r[2] for r in fits_rows]) * 3600
    assert sep.max() < 1e-4


def test_plan_columns_and_errors(engine, tmp_path):
    t = spec_table(n=20)
    path = tmp_path / "c.fits"
    plan = external.plan_columns(path, t, columns=["F160W"])
    assert plan.data == ("F160W",)
    with pytest.raises(InputError, match=r"c\.fits: no column 'RA_X' for RA"):
        external.plan_columns(path, t, ra="RA_X")
    with pytest.raises(InputError, match="--columns names missing from the file: NOPE"):
        external.plan_columns(path, t, columns=["NOPE"])
    both = t.copy()
    both["ra"] = both["RAJ2000"]
    with pytest.raises(InputError, match=r"several columns could be RA \(RAJ2000, ra\)"):
        external.plan_columns(path, both)
    noz = t.copy()
    noz.remove_columns(["RAJ2000"])
    with pytest.raises(InputError, match="no RA column found"):
        external.plan_columns(path, noz)
    bad = t.copy()
    bad["DEJ2000"][4] = 91.0
    bad.write(tmp_path / "bad.fits")
    with pytest.raises(InputError, match=r"bad\.fits: DEJ2000 must lie within \[-90, 90\]"):
        external.load_catalog(engine, tmp_path / "bad.fits", "bad")
    nan = t.copy()
    nan["RAJ2000"][2] = np.nan
    nan.write(tmp_path / "nan.fits")
    with pytest.raises(InputError, match="1 rows have no valid position"):
        external.load_catalog(engine, tmp_path / "nan.fits", "nan")
    t.write(path)
    external.load_catalog(engine, path, "ok")
    with pytest.raises(InputError, match="external catalog 'ok' already exists"):
        external.load_catalog(engine, path, "ok")
    (tmp_path / "x.txt").write_text("a b\n1 2\n")
    with pytest.raises(InputError, match=r"x\.txt: unknown catalog format"):
        external.load_catalog(engine, tmp_path / "x.txt", "x")
    radians = t.copy()
    radians["RAJ2000"] = np.radians(np.mod(t["RAJ2000"], 360))
    radians["RAJ2000"].unit = u.rad
    radians.write(tmp_path / "rad.fits")
    external.load_catalog(engine, tmp_path / "rad.fits", "rad")
    assert np.allclose([r[1] for r in stored(engine, "rad")], [r[1] for r in stored(engine, "ok")], rtol=0, atol=1e-12)
    with engine.connect() as conn:
        # bad and nan failed inside their runs (nothing stored); the duplicate and the .txt never started one
        failed = conn.execute(text("SELECT count(*) FROM run WHERE stage = 'external' AND status = 'failed'")).scalar()
        assert failed == 2
        assert conn.execute(text("SELECT count(*) FROM external_catalog")).scalar() == 2
        assert conn.execute(text("SELECT count(*) FROM external_source")).scalar() == 2 * len(t)


def test_cli_load_and_list(engine, db_url, tmp_path):
    from alcsdb.cli import cli
    from alcsdb.cli_external import external_group

    cli.add_command(external_group)
    spec_table(n=50).write(tmp_path / "s.csv", format="ascii.csv")
    runner = CliRunner()
    res = runner.invoke(cli, ["--db", db_url, "external", "load", str(tmp_path / "s.csv"), "--name", "s",
                              "--columns", "QUALITY"])
    assert res.exit_code == 0, res.output
    assert "external catalog s: 50 rows" in res.output and "z_spec=zspec" in res.output
    res = runner.invoke(cli, ["--db", db_url, "external", "list"])
    assert res.exit_code == 0 and "s.csv" in res.output
    res = runner.invoke(cli, ["--db", db_url, "external", "load", str(tmp_path / "s.csv"), "--name", "t",
                              "--ra", "nope"])
    assert res.exit_code == 1 and "error: " in res.output and "no column 'nope' for RA" in res.output
    with engine.connect() as conn:
        data = conn.execute(text("SELECT data FROM external_source LIMIT 1")).scalar()
    assert set(data) == {"QUALITY"} and json.dumps(data)
