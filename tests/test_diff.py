"""`alcsdb version diff`: matching by id and by position, changed fluxes and redshifts, output."""
from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from alcsdb import versions
from alcsdb.diff import Tolerances, compare_values, diff_versions, match_positions
from alcsdb.errors import InputError
from ingest import fixtures
from ingest.load import ingest_path

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)
M1149 = ("j114936p2222", "j114936p2222", 177.40125, 22.399472)
N = 60
DROPPED, ADDED, FLUX_CHANGED, Z_CHANGED = 5, 4, 3, 2


def test_match_positions_takes_mutual_nearest_within_radius():
    dec0 = -30.0
    ra_a = np.array([10.0, 10.01, 10.02, 10.03])
    dec_a = np.full(4, dec0)
    arcsec_ra = 1 / 3600 / np.cos(np.radians(dec0))
    # b0 0.05" from a0; b1 and b2 0.04" and 0.08" from a1 (b1 wins); b3 0.15" from a2 (too far)
    ra_b = np.array([10.0 + 0.05 * arcsec_ra, 10.01 + 0.04 * arcsec_ra, 10.01 - 0.08 * arcsec_ra,
                     10.02 + 0.15 * arcsec_ra])
    ia, ib = match_positions(ra_a, dec_a, ra_b, np.full(4, dec0), 0.1)
    assert list(zip(ia, ib)) == [(0, 0), (1, 1)]
    ia, ib = match_positions(ra_a, dec_a, ra_b, np.full(4, dec0), 0.2)
    assert list(zip(ia, ib)) == [(0, 0), (1, 1), (2, 3)]
    assert [len(x) for x in match_positions(ra_a, dec_a, ra_b[:0], dec_a[:0], 0.1)] == [0, 0]


def test_compare_values_tolerances():
    tol = Tolerances(flux_rtol=0.05, z_tol=0.02)
    a = np.array([1.0, 1.0, 10.0, np.nan, 2.0, np.nan, 0.0])
    b = np.array([1.04, 1.06, 9.0, 3.0, np.nan, np.nan, 0.0])
    changed, measure = compare_values("f160w_tot_1", a, b, tol)
    assert changed.tolist() == [False, True, True, True, True, False, False]
    np.testing.assert_allclose(measure[[0, 1, 2, 6]], [0.04 / 1.04, 0.06 / 1.06, 0.1, 0.0])
    z_changed, dz = compare_values("z_phot", np.array([1.0, 1.0]), np.array([1.03, 1.05]), tol)
    assert z_changed.tolist() == [False, True]
    np.testing.assert_allclose(dz, [0.015, 0.025])


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Release A (A2744 and M1149) and a re-reduction B of A2744: ids renumbered, positions moved by
    0.03", DROPPED sources gone, ADDED new ones 20" away, FLUX_CHANGED fluxes and Z_CHANGED z_phot changed."""
    out = tmp_path_factory.mktemp("diff")
    for k, (name, root, ra, dec) in enumerate((A2744, M1149)):
        cat = fixtures.write_phot_apcorr(out / "a" / f"{name}_irac_phot_apcorr.fits", name, ra, dec, N,
                                         ["f814w", "f160w"], seed=k)
        fixtures.write_zout(out / "a" / f"{name}_irac.eazypy.zout.fits", cat["id"], cat["ra"], cat["dec"], seed=k)
    name = A2744[0]
    with fits.open(out / "a" / f"{name}_irac_phot_apcorr.fits") as hdul:
        header0, header1, cat = hdul[0].header, hdul[1].header, hdul[1].data.copy()
    with fits.open(out / "a" / f"{name}_irac.eazypy.zout.fits") as hdul:
        zheader0, zheader1, zout = hdul[0].header, hdul[1].header, hdul[1].data.copy()
    assert (zout["id"] == cat["id"]).all()
    keep = np.r_[np.arange(DROPPED, N), np.arange(ADDED)]  # the added rows are copies of the first ones, moved
    cat, zout = cat[keep], zout[keep]
    moved = np.arange(len(keep)) >= N - DROPPED
    cosd = np.cos(np.radians(cat["dec"]))
    cat["ra"] += np.where(moved, 0.0, 0.03 / 3600 / cosd)
    cat["dec"] += np.where(moved, 20 / 3600, 0.0)
    cat["id"] = zout["id"] = 1000 + np.arange(len(keep))
    zout["ra"], zout["dec"] = cat["ra"], cat["dec"]
    usable = np.flatnonzero(~moved & (cat["f160w_tot_1"] > 0) & (cat["f814w_tot_1"] > 0) & (zout["z_phot"] > 0))
    cat["f160w_tot_1"][usable[:FLUX_CHANGED - 1]] *= 1.2
    cat["f814w_tot_1"][usable[FLUX_CHANGED - 1]] = -99.0  # measured in A, missing in B: changed
    zout["z_phot"][usable[:Z_CHANGED]] += 0.5
    (out / "b").mkdir()
    fits.HDUList([fits.PrimaryHDU(header=header0), fits.BinTableHDU(cat, header1)]).writeto(
        out / "b" / f"{name}_irac_phot_apcorr.fits")
    fits.HDUList([fits.PrimaryHDU(header=zheader0), fits.BinTableHDU(zout, zheader1)]).writeto(
        out / "b" / f"{name}_irac.eazypy.zout.fits")
    return out


@pytest.fixture
def two_versions(engine, releases):
    ingest_path(engine, releases / "a")
    versions.create_version(engine, "a", fields=[A2744[0]])
    versions.create_version(engine, "a-all")
    ingest_path(engine, releases / "b")
    versions.create_version(engine, "b")
    return engine


def test_diff_across_detection_runs(two_versions):
    with two_versions.connect() as conn:
        result = diff_versions(conn, "a", "b", top=50)
        same = diff_versions(conn, "a-all", "a-all")
    by_field = {f.field: f for f in result.fields}
    assert set(by_field) == {A2744[0], M1149[0]}
    a2744, m1149 = by_field[A2744[0]], by_field[M1149[0]]
    assert (a2744.match, a2744.n_a, a2744.n_b) == ("position", N, N - DROPPED + ADDED)
    assert (a2744.only_a, a2744.only_b, a2744.matched) == (DROPPED, ADDED, N - DROPPED)
    assert (a2744.flux_changed, a2744.zphot_changed) == (FLUX_CHANGED, Z_CHANGED)
    assert (m1149.match, m1149.only_a, m1149.only_b, m1149.matched) == ("none", 0, N, 0)
    changes = {(c.quantity, c.id_a, c.id_b): c for c in a2744.largest}
    assert len(changes) == FLUX_CHANGED + Z_CHANGED
    assert {q for q, _, _ in changes} == {"f160w_tot_1", "f814w_tot_1", "z_phot"}
    for (quantity, id_a, id_b), c in changes.items():
        assert id_b - 1000 == id_a - 1 - DROPPED  # the source matched is the one that was moved
        if quantity == "f160w_tot_1":
            assert c.b == pytest.approx(1.2 * c.a) and c.change == pytest.approx(0.2 / 1.2)
        elif quantity == "f814w_tot_1":
            assert c.a > 0 and c.b is None and c.change is None
        else:
            assert c.b == pytest.approx(c.a + 0.5)
    assert a2744.largest[0].quantity == "f814w_tot_1"  # a value gone is listed first
    # a version against itself: matched by id, nothing changed (and no measurement read)
    assert all(f.match == "id" and f.matched == f.n_a == f.n_b and f.flux_changed == f.zphot_changed == 0
               and not f.largest for f in same.fields)
    assert result.totals()["matched"] == N - DROPPED


def test_diff_command(two_versions, db_url):
    from alcsdb.cli import cli, version_group
    from alcsdb.cli_audit import register

    register(cli, version_group)
    run = lambda *args: CliRunner().invoke(cli, ["--db", db_url, "version", "diff", *args])  # noqa: E731
    res = run("a", "b", "--field", A2744[0], "--format", "json", "--z-tol", "0.5")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["totals"]["zphot_changed"] == 0  # 0.5 / (1 + z) is below 0.5
    assert payload["totals"]["flux_changed"] == FLUX_CHANGED and payload["tolerances"]["z_tol"] == 0.5
    assert [f["field"] for f in payload["fields"]] == [A2744[0]]
    res = run("a", "b")
    assert res.exit_code == 0, res.output
    assert "largest changes" in res.stdout and "f160w_tot_1" in res.stdout and "missing" in res.stdout
    res = run("a", "nope")
    assert res.exit_code == 1 and "unknown catalog version 'nope'" in res.output
    with two_versions.connect() as conn, pytest.raises(InputError, match="neither a nor b has field"):
        diff_versions(conn, "a", "b", field="j224900m4432")
