"""Cross-match in the database: exact against brute force (RA = 0, poles, face corners), run
selection by version and field, z_spec for export, and the comparison report on a perturbed truth."""
from __future__ import annotations

import json

import astropy.units as u
import numpy as np
import pytest
from astropy.table import Table
from click.testing import CliRunner
from sqlalchemy import text

from alcsdb import crossmatch as xm
from alcsdb import external, healpix
from alcsdb.compare import compare, mutual_nearest, parse_map
from alcsdb.copyload import copy_columns
from alcsdb.errors import InputError
from alcsdb.fields import resolve_field
from alcsdb.healpix import angular_distance_arcsec, hpx29
from alcsdb.measurements import write_apertures, write_sources
from alcsdb.provenance import stage_run
from alcsdb.versions import create_version

# cone centres where HEALPix is awkward: RA = 0 (wrap), both poles, face corners
AWKWARD = [(0.0, 0.0), (0.0, 89.9996), (123.0, -89.9997), (45.0, 0.0), (0.0, 41.8103149), (90.0, -41.8103149)]


def scatter(rng, centres, n: int, radius_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """n points per centre, uniform in a disc (gnomonic offsets: exact enough for a test layout)."""
    ra, dec = [], []
    for ra0, dec0 in centres:
        r = np.radians(radius_arcsec / 3600) * np.sqrt(rng.uniform(0, 1, n))
        th = rng.uniform(0, 2 * np.pi, n)
        # offset on the sphere: rotate the pole to (ra0, dec0)
        x, y, z = np.sin(r) * np.cos(th), np.sin(r) * np.sin(th), np.cos(r)
        d0 = np.radians(dec0)
        xe = z * np.cos(d0) - x * np.sin(d0)
        ze = z * np.sin(d0) + x * np.cos(d0)
        ra.append(np.mod(np.degrees(np.arctan2(y, xe)) + ra0, 360.0))
        dec.append(np.degrees(np.arcsin(np.clip(ze, -1, 1))))
    ra_all = np.concatenate(ra)
    ra_all[ra_all >= 360.0] = 0.0
    return ra_all, np.concatenate(dec)


def add_sources(engine, field: str, ra, dec) -> tuple[int, np.ndarray]:
    """One ingest run of `source` rows (ids 1..n) in a field; returns (run_id, source_ids)."""
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    with engine.connect() as conn:
        fid, _ = resolve_field(conn, field)
    with stage_run(engine, "ingest", field_id=fid, params={"test": "sources"}) as run:
        ids = write_sources(run, fid, {"id": np.arange(1, len(ra) + 1), "ra": ra, "dec": dec,
                                       "hpx29": hpx29(ra, dec)})
    return run.run_id, ids


def load_external(engine, tmp_path, name: str, ra, dec, **cols) -> external.CatalogInfo:
    path = tmp_path / f"{name}.fits"
    Table({"id": np.arange(len(ra)), "ra": ra, "dec": dec, **cols}).write(path, overwrite=True)
    return external.load_catalog(engine, path, name)


def brute_pairs(ra1, dec1, ra2, dec2, radius) -> dict[tuple[int, int], float]:
    d = angular_distance_arcsec(ra1[:, None], dec1[:, None], ra2[None, :], dec2[None, :])
    i, j = np.nonzero(d <= radius)
    return {(int(a), int(b)): float(d[a, b]) for a, b in zip(i, j)}


def test_disc_cells_cover_every_neighbour():
    """Every point within r of a centre lies in one of the centre's cells (r from 0.05" to 1 deg)."""
    rng = np.random.default_rng(7)
    for radius in (0.05, 0.7, 2.0, 30.0, 3600.0):
        ra, dec = scatter(rng, AWKWARD + [(rng.uniform(0, 360), rng.uniform(-90, 90)) for _ in range(4)], 60,
                          2.2 * radius)
        hp = hpx29(ra, dec)
        order = xm.match_order(radius)
        row, cell = xm.disc_cells(ra, dec, hp, radius, order)
        assert len(set(zip(row.tolist(), cell.tolist()))) == len(row)  # cells distinct per object
        assert np.bincount(row, minlength=len(ra)).max() <= 200
        have = set(zip(row.tolist(), cell.tolist()))
        shift = 2 * (29 - order)
        pairs = brute_pairs(ra, dec, ra, dec, radius)
        missing = [(i, j) for i, j in pairs if (i, int(hp[j]) >> shift) not in have]
        assert not missing, (radius, missing[:5])
    assert xm.match_order(1.0) == 16 and xm.match_order(0.0) == 27


def test_face_stretch_bounds_the_equatorial_zone():
    """|d(face x, y)| <= face_stretch * arc for pairs of points in one face of the equatorial zone."""
    rng = np.random.default_rng(5)
    worst = 0.0
    for _ in range(4000):
        dec0 = rng.uniform(-41.0, 41.0)
        r = 10 ** rng.uniform(-3, 0) * 3600  # arcsec, up to 1 deg
        ra1, dec1 = scatter(rng, [(rng.uniform(0, 360), dec0)], 2, r)
        f1, x1, y1 = healpix.face_xy(ra1[0], dec1[0])
        f2, x2, y2 = healpix.face_xy(ra1[1], dec1[1])
        sep = angular_distance_arcsec(ra1[0], dec1[0], ra1[1], dec1[1])
        if f1 != f2 or sep == 0:
            continue
        bound = xm.face_stretch(np.array([dec0]), r)[0]
        if bound < healpix.LF:
            worst = max(worst, np.hypot(x2 - x1, y2 - y1) / (sep / healpix.ARCSEC_PER_RAD) / bound)
    assert 0.9 < worst <= 1.0  # the bound is tight (the worst case found comes within 10%) and never exceeded
    assert xm.face_stretch(np.array([0.0, 45.0, -89.0]), 1.0).tolist() == pytest.approx(
        [1 / np.sqrt(8 / 9) + 1e-6, healpix.LF, healpix.LF])


@pytest.mark.parametrize("n_src,n_ext", [(40, 70), (70, 40)])  # covers the external, then the source side
def test_crossmatch_exact_against_brute_force(engine, tmp_path, n_src, n_ext):
    rng = np.random.default_rng(n_src)
    radius = 1.5
    s_ra, s_dec = scatter(rng, AWKWARD, n_src, 6.0)
    e_ra, e_dec = scatter(rng, AWKWARD, n_ext, 6.0)
    run_id, sids = add_sources(engine, "j001408m3023", s_ra, s_dec)
    info = load_external(engine, tmp_path, "near", e_ra, e_dec)
    res = xm.crossmatch(engine, "near", radius)
    assert res.stats.covered == ("external" if n_ext < n_src else "source")
    assert res.source_runs == (run_id,)
    with engine.connect() as conn:
        got = conn.execute(text(
            "SELECT x.source_id, e.ext_id, x.separation_arcsec, x.is_nearest FROM crossmatch x "
            "JOIN external_source e USING (ext_source_id) WHERE x.run_id = :r"), {"r": res.run_id}).all()
    index = {int(s): k for k, s in enumerate(sids)}
    found = {(index[s], int(e)): (sep, near) for s, e, sep, near in got}
    expect = brute_pairs(s_ra, s_dec, e_ra, e_dec, radius)
    assert len(expect) > 200 and set(found) == set(expect)
    assert max(abs(found[k][0] - expect[k]) for k in expect) < 1e-9
    for i in {i for i, _ in expect}:  # is_nearest: exactly the brute-force nearest of each source
        mine = [j for (a, j) in expect if a == i]
        best = min(mine, key=lambda j: (expect[(i, j)], j))
        assert [j for j in mine if found[(i, j)][1]] == [best]
    assert res.stats.n_pairs == len(expect)
    assert res.n_sources_matched == len({i for i, _ in expect}) and info.n_rows == len(e_ra)
    with engine.connect() as conn:
        run = conn.execute(text("SELECT status, params, n_rows FROM run WHERE run_id = :r"), {"r": res.run_id}).one()
        inputs = conn.execute(text("SELECT product_id, role FROM run_input WHERE run_id = :r"), {"r": res.run_id}).all()
    assert run[0] == "succeeded" and run[1]["source_runs"] == [run_id] and run[1]["radius_arcsec"] == radius
    assert run[2]["crossmatch"] == len(expect) and inputs == [(info.product_id, "external_catalog")]


def test_sources_follow_version_and_field(engine, tmp_path):
    rng = np.random.default_rng(3)
    a_ra, a_dec = scatter(rng, [(3.5883, -30.3972)], 30, 20.0)
    b_ra, b_dec = scatter(rng, [(342.185, -44.530139)], 30, 20.0)
    old, _ = add_sources(engine, "j001408m3023", a_ra, a_dec)
    create_version(engine, "v1", fields=["j001408m3023"])
    new, _ = add_sources(engine, "j001408m3023", a_ra, a_dec)  # a newer detection of field A
    other, _ = add_sources(engine, "j224900m4432", b_ra, b_dec)
    load_external(engine, tmp_path, "both", np.concatenate([a_ra, b_ra]), np.concatenate([a_dec, b_dec]))
    assert xm.crossmatch(engine, "both", 0.5, version="v1").source_runs == (old,)
    assert xm.crossmatch(engine, "both", 0.5).source_runs == (new, other)
    res = xm.crossmatch(engine, "both", 0.5, field="j224900m4432")
    assert res.source_runs == (other,) and res.n_sources_matched == 30 and res.n_external_matched == 30
    with engine.connect() as conn:
        assert conn.execute(text("SELECT field_id FROM run WHERE run_id = :r"), {"r": res.run_id}).scalar() == \
            resolve_field(conn, "j224900m4432")[0]
        assert xm.find_crossmatch(conn, external.catalog_info(conn, "both").catalog_id, 0.5, [other]) == res.run_id
    with pytest.raises(InputError, match="catalog version v1 has no field j224900m4432"):
        xm.crossmatch(engine, "both", 0.5, version="v1", field="j224900m4432")
    with pytest.raises(InputError, match="unknown external catalog 'nope'"):
        xm.crossmatch(engine, "nope", 0.5)
    with pytest.raises(InputError, match="match radius"):
        xm.crossmatch(engine, "both", -1.0)


def test_zspec_for_sources_nearest_with_a_redshift(engine, tmp_path):
    ra0, dec0 = 3.5883, -30.3972
    step = 10.0 / 3600
    s_ra = ra0 + np.arange(4) * step / np.cos(np.radians(dec0))
    s_dec = np.full(4, dec0)
    _, sids = add_sources(engine, "j001408m3023", s_ra, s_dec)
    off = 1.0 / 3600
    # source 0: nearest (0.3") has no z, next (0.6") has z = 1.5; source 1: z = 0.7 at 0.2" and 2.1 at 0.9";
    # source 2: z = 3.0 at 1.5" (outside 1"); source 3: nothing
    e_ra = np.array([s_ra[0], s_ra[0], s_ra[1], s_ra[1], s_ra[2]])
    e_dec = np.array([dec0 + 0.3 * off, dec0 - 0.6 * off, dec0 + 0.2 * off, dec0 - 0.9 * off, dec0 + 1.5 * off])
    load_external(engine, tmp_path, "spec", e_ra, e_dec, z_spec=np.array([-1.0, 1.5, 0.7, 2.1, 3.0]))
    ask = np.array([sids[3], sids[1], sids[0], sids[2], sids[1]])
    with engine.begin() as conn:
        z = xm.zspec_for_sources(conn, "spec", ask, 1.0)
        again = xm.zspec_for_sources(conn, "spec", ask[:2], 2.0)  # twice in one transaction
        prov = xm.catalog_provenance(conn, "spec")
    assert np.array_equal(z, [np.nan, 0.7, 1.5, np.nan, 0.7], equal_nan=True)
    assert np.array_equal(again, [np.nan, 0.7], equal_nan=True)
    assert prov["catalog"] == "spec" and len(prov["sha256"]) == 64 and prov["n_rows"] == 5
    load_external(engine, tmp_path, "noz", e_ra, e_dec, z_spec=np.full(5, -99.0))
    with engine.begin() as conn:  # a catalog without any redshift: nothing to cover, all NaN
        assert np.isnan(xm.zspec_for_sources(conn, "noz", ask, 1.0)).all()
    with engine.connect() as conn:  # nothing stored
        assert conn.execute(text("SELECT count(*) FROM crossmatch")).scalar() == 0


# --- the comparison report on a perturbed truth ------------------------------------------

def truth_field(rng, n: int):
    """A jittered 4" grid of n objects around Abell 2744 (no two within 3"), fluxes and redshifts."""
    side = int(np.ceil(np.sqrt(n)))
    gx, gy = np.meshgrid(np.arange(side), np.arange(side))
    gx, gy = gx.ravel()[:n] * 4.0, gy.ravel()[:n] * 4.0
    ra0, dec0 = 3.5883, -30.3972
    dec = dec0 + (gy + rng.uniform(-0.5, 0.5, n)) / 3600
    ra = ra0 + (gx + rng.uniform(-0.5, 0.5, n)) / 3600 / np.cos(np.radians(dec0))
    mag = rng.uniform(20, 28, n)
    f160 = 10 ** (-0.4 * (mag - 23.9))
    f814 = f160 * 10 ** (-0.4 * rng.normal(0.5, 0.3, n))
    z = rng.uniform(0.1, 5.0, n)
    return ra, dec, f160, f814, z


def test_compare_recovers_perturbations(engine, tmp_path, db_url):
    rng = np.random.default_rng(11)
    n = 900
    ra, dec, f160, f814, z = truth_field(rng, n)
    # ours: the truth, with photo-z noise and 5% catastrophic outliers
    z_phot = z + 0.03 * (1 + z) * rng.standard_normal(n)
    bad = rng.random(n) < 0.05
    z_phot[bad] = rng.uniform(0.1, 6, bad.sum())
    with engine.connect() as conn:
        fid, _ = resolve_field(conn, "j001408m3023")
    with stage_run(engine, "ingest", field_id=fid, params={"test": "truth"}) as run:
        sids = write_sources(run, fid, {"id": np.arange(1, n + 1), "ra": ra, "dec": dec, "hpx29": hpx29(ra, dec)})
        tot = {f: np.full((n, 7), np.nan) for f in ("f160w", "f814w")}
        tot["f160w"][:, 1], tot["f814w"][:, 1] = f160, f814
        write_apertures(run, sids, {f: {"tot": tot[f], "flux": tot[f]} for f in tot})
        copy_columns(run.conn, "zout", {"source_id": sids, "run_id": np.full(n, run.run_id), "z_phot": z_phot})
    create_version(engine, "v1", fields=["j001408m3023"])
    # theirs: shifted by (+0.15", -0.08") with 0.02" noise, F160W x 1.10 (in nJy), F814W x 0.95 as AB mag,
    # 10% of the objects missing, z_spec for a third, plus 40 objects of theirs that we do not have
    keep = rng.random(n) > 0.10
    dra, ddec = 0.15 + 0.02 * rng.standard_normal(n), -0.08 + 0.02 * rng.standard_normal(n)
    t_dec = dec + ddec / 3600
    t_ra = ra + dra / 3600 / np.cos(np.radians(dec))
    t160 = f160 * 1.10 * (1 + 0.02 * rng.standard_normal(n)) * 1e3  # nJy
    t814 = 23.9 - 2.5 * np.log10(f814 * 0.95 * (1 + 0.02 * rng.standard_normal(n)))  # AB mag
    has_z = rng.random(n) < 0.33
    zs = np.where(has_z, z, -99.0)
    extra_ra, extra_dec = ra[:40] + 2.0 / 3600 / np.cos(np.radians(dec[:40])), dec[:40] + 2.0 / 3600
    cat = Table({"ID": np.arange(keep.sum() + 40), "RA": np.concatenate([t_ra[keep], extra_ra]),
                 "DEC": np.concatenate([t_dec[keep], extra_dec]),
                 "F160W": np.concatenate([t160[keep], np.full(40, 1e3)]),
                 "F814W": np.concatenate([t814[keep], np.full(40, 25.0)]),
                 "ZSPEC": np.concatenate([zs[keep], np.full(40, -99.0)])})
    cat["F160W"].unit = u.nJy
    cat["F814W"].unit = u.mag
    cat.write(tmp_path / "theirs.fits")
    external.load_catalog(engine, tmp_path / "theirs.fits", "theirs")

    out = tmp_path / "report"
    rep = compare(engine, "theirs", version="v1", field="j001408m3023", out_dir=out, radius_arcsec=0.6,
                  mapping=parse_map("f160w_tot_1=F160W,f814w_tot_1=F814W,z_phot=z_spec"))
    assert rep["n_ours"] == n and rep["n_pairs"] == keep.sum()
    assert rep["matched_fraction"]["ours"]["fraction"] == pytest.approx(keep.mean(), abs=1e-12)
    assert rep["matched_fraction"]["theirs"]["n"] == keep.sum() + 40
    assert rep["matched_fraction"]["theirs"]["n_matched"] == keep.sum()
    off = rep["offsets_arcsec"]
    assert off["dra_cosdec_median"] == pytest.approx(0.15, abs=0.004)
    assert off["ddec_median"] == pytest.approx(-0.08, abs=0.004)
    assert off["ddec_sigma"] == pytest.approx(0.02, rel=0.15)
    r160 = rep["flux_ratio"]["f160w_tot_1/F160W"]
    r814 = rep["flux_ratio"]["f814w_tot_1/F814W"]
    assert r160["median"] == pytest.approx(1 / 1.10, rel=0.003) and r160["sigma"] == pytest.approx(0.02 / 1.1, rel=0.15)
    assert r814["median"] == pytest.approx(1 / 0.95, rel=0.003)
    assert all(abs(b["median"] * 1.10 - 1) < 0.02 for b in r160["bins"]) and len(r160["bins"]) >= 10
    assert sum(b["n"] for b in r160["bins"]) == keep.sum()
    # photo-z numbers, computed here from the truth arrays independently of the database
    sel = keep & has_z
    dz = z_phot[sel] - z[sel]
    nmad = 1.48 * np.median(np.abs(dz - np.median(dz)) / (1 + z[sel]))
    zrep = rep["redshift"]["z_phot-z_spec"]
    assert zrep["N"] == sel.sum() and zrep["sigma_nmad"] == pytest.approx(nmad, rel=1e-9)
    assert zrep["outlier_frac"] == pytest.approx(np.mean(np.abs(dz) / (1 + z[sel]) > 0.15), rel=1e-9)
    # the files: strict JSON with the same numbers, an HTML page showing every PNG
    saved = json.loads((out / "report.json").read_text())
    assert saved["flux_ratio"]["f160w_tot_1/F160W"]["median"] == r160["median"]
    page = (out / "index.html").read_text()
    for name in rep["figures"].values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f'src="{name}"' in page
    assert len(rep["figures"]) == 5
    # a second report reuses the stored crossmatch; the CLI gives the same numbers
    from alcsdb.cli import cli
    from alcsdb.cli_external import compare_cmd, crossmatch_cmd

    cli.add_command(crossmatch_cmd)
    cli.add_command(compare_cmd)
    res = CliRunner().invoke(cli, ["--db", db_url, "compare", "theirs", "--version", "v1", "--radius", "0.6",
                                   "--map", "f160w_tot_1=F160W", "--out", str(tmp_path / "r2")])
    assert res.exit_code == 0, res.output
    assert f"crossmatch run {rep['crossmatch_run']}" in res.output
    assert f"median {r160['median']:.4f}" in res.output
    res = CliRunner().invoke(cli, ["--db", db_url, "crossmatch", "theirs", "--radius", "0.6"])
    assert res.exit_code == 0 and f"{keep.sum()} pairs" in res.output
    res = CliRunner().invoke(cli, ["--db", db_url, "compare", "theirs", "--map", "nope=F160W", "--out",
                                   str(tmp_path / "r3")])
    assert res.exit_code == 1 and "'nope' is not a column of the release's catalogs" in res.output


def test_mutual_nearest_and_parse_map():
    # source 1 is nearest to ext 10 and 11; ext 10's nearest is source 2
    src = np.array([1, 1, 2, 3])
    ext = np.array([10, 11, 10, 12])
    sep = np.array([0.5, 0.6, 0.2, 0.3])
    assert mutual_nearest(src, ext, sep).tolist() == [2, 3]
    assert parse_map(["a=b,c = d", "e=f"]) == {"a": "b", "c": "d", "e": "f"}
    with pytest.raises(InputError, match="not ours=theirs"):
        parse_map("a")
