"""The field simulator: determinism, headers, fluxes, injected pointing errors, IRAC units."""
from __future__ import annotations

import csv
import filecmp
import json
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

import alcsdb
import alcsdb.config
from pipeline import mock
from pipeline.sim_bands import BANDS, HST_BANDS, IRAC_BANDS
from pipeline.sim_observe import apply_offset, plan_hst, plan_irac
from pipeline.sim_psf import effective_psf, psf_encircled_energy
from pipeline.sim_sources import REF_EPOCH_MJD, make_sources

from .conftest import MOCK_SEED as SEED
from .conftest import MOCK_SIZE_ARCMIN as SIZE_ARCMIN
from .conftest import simulate_core


@pytest.fixture(scope="module")
def field(mock_core) -> mock.MockInfo:
    return mock_core


@pytest.fixture(scope="module")
def truth(field) -> Table:
    return Table.read(field.truth, hdu="SOURCES")


@pytest.fixture(scope="module")
def offsets(field) -> Table:
    return Table.read(field.truth, hdu="OFFSETS")


def _row(offsets: Table, path: Path, field: mock.MockInfo):
    rel = str(path.relative_to(field.outdir))
    return offsets[list(offsets["file"]).index(rel)]


def _sky(row, shape) -> np.ndarray:
    """The documented sky model: sky * (1 + gx (x - xc) / nx + gy (y - yc) / ny)."""
    ny, nx = shape
    y, x = np.indices(shape, dtype=float)
    return row["sky"] * (1 + row["sky_gx"] * (x - (nx - 1) / 2) / nx
                         + row["sky_gy"] * (y - (ny - 1) / 2) / ny)


def _star_at_epoch(star, mjd: float) -> SkyCoord:
    dt = (mjd - REF_EPOCH_MJD) / 365.25
    dec = star["dec"] + star["pmdec"] * dt / 3.6e6
    ra = star["ra"] + star["pmra"] * dt / 3.6e6 / np.cos(np.radians(star["dec"]))
    return SkyCoord(ra, dec, unit="deg")


def _bright_star(truth: Table, wcs: WCS, shape, margin_pix: float, band: str):
    """The brightest star at least ``margin_pix`` inside the image with no neighbour within
    1.5" brighter than 1% of it."""
    coords = SkyCoord(truth["ra"], truth["dec"], unit="deg")
    flux = np.asarray(truth[f"flux_{band}"])
    for i in np.argsort(-flux):
        if truth["kind"][i] != "star":
            continue
        x, y = wcs.all_world2pix(truth["ra"][i], truth["dec"][i], 0)
        near = (coords.separation(coords[i]).arcsec < 1.5) & (flux > 0.01 * flux[i])
        if near.sum() == 1 and margin_pix < x < shape[1] - margin_pix and \
                margin_pix < y < shape[0] - margin_pix:
            return truth[i]
    pytest.fail("no bright isolated star inside the image")


def _annulus_mean(data: np.ndarray, x: float, y: float, r_in: float, r_out: float) -> float:
    yy, xx = np.indices(data.shape)
    r = np.hypot(xx - x, yy - y)
    return float(np.mean(data[(r >= r_in) & (r < r_out)]))


def _hst_files(field, band):
    return [p for p in field.hst_files if fits.getval(p, "FILTER") == band.upper()]


def test_band_table_matches_release_filter_list():
    rows = {r["name"]: r for r in csv.DictReader(
        line for line in (Path(alcsdb.__file__).parent / "data" / "filters.csv").open()
        if not line.startswith("#"))}
    for name, band in BANDS.items():
        assert int(rows[name]["eazy_id"]) == band.eazy_id
        assert band.photplam == pytest.approx(float(rows[name]["pivot_angstrom"]), rel=1e-3)
        if band.is_hst:
            zp_fnu = -2.5 * np.log10(band.photfnu) + 8.90
            zp_flam = -2.5 * np.log10(band.photflam) - 21.10 - 5 * np.log10(band.photplam) + 18.6921
            assert zp_fnu == pytest.approx(zp_flam, abs=1e-6)


def test_psf_model_follows_real_encircled_energy():
    ee = Table.read(alcsdb.config.shared_path("psf", "hst_encircled_energy.fits"))
    radii = np.asarray(ee["radius"])
    use = radii >= 0.2
    for band in HST_BANDS:
        col = [c for c in ee.colnames if c.endswith("," + band) and ("acs" in c or ",ir," in c)][0]
        model = psf_encircled_energy(band, radii[use], scale=0.02)
        assert np.max(np.abs(model - np.asarray(ee[col])[use])) < 0.02, band
        assert psf_encircled_energy(band, [5.0], scale=0.02)[0] == pytest.approx(1.0, abs=2e-3)


def test_same_seed_gives_identical_files_and_other_seed_differs(field, tmp_path):
    again = simulate_core(tmp_path / "b")
    ours = [field.truth, field.refcat, field.json] + field.hst_files + field.irac_files
    theirs = [again.truth, again.refcat, again.json] + again.hst_files + again.irac_files
    assert [p.relative_to(field.outdir) for p in ours] == [p.relative_to(again.outdir) for p in theirs]
    assert all(filecmp.cmp(a, b, shallow=False) for a, b in zip(ours, theirs))

    def draw(seed):
        rng = mock._rng(seed, 0)
        return make_sources(rng, 3.5875, -30.3972, 0.308, 30.0)

    other = draw(SEED + 1)
    assert len(other) != len(draw(SEED)) or not np.allclose(other["ra"], draw(SEED)["ra"])
    assert [e.name for e in plan_hst(mock._rng(SEED + 1, 1), 0, 0, 30, True)] != \
        [e.name for e in plan_hst(mock._rng(SEED, 1), 0, 0, 30, True)]


def test_hst_headers(field):
    rootnames = set()
    for path in field.hst_files:
        with fits.open(path) as hdul:
            h0, sci = hdul[0].header, hdul["SCI"].header
            band = BANDS[h0["FILTER"].lower()]
            assert h0["TELESCOP"] == "HST"
            assert (h0["INSTRUME"], h0["DETECTOR"]) == (band.instrument, band.detector)
            if band.instrument == "ACS":
                assert (h0["FILTER1"], h0["FILTER2"]) == ("CLEAR1L", h0["FILTER"])
            assert re.fullmatch(r"[ij][a-z0-9]{3}[a-z0-9]{2}[a-z0-9]{2}q", h0["ROOTNAME"])
            assert path.name == f"{h0['ROOTNAME']}_flt.fits"
            assert h0["VISIT"] == h0["ROOTNAME"][4:6]
            assert h0["EXPEND"] == pytest.approx(h0["EXPSTART"] + h0["EXPTIME"] / 86400)
            assert 56600 < h0["EXPSTART"] < 57400  # 2013-2015
            for key in ("PA_V3", "TARGNAME", "RA_TARG", "DEC_TARG"):
                assert key in h0
            assert sci["BUNIT"] == "ELECTRONS/S" and hdul["ERR"].header["BUNIT"] == "ELECTRONS/S"
            assert sci["PHOTFNU"] == pytest.approx(band.photfnu)
            assert sci["PHOTPLAM"] == pytest.approx(band.photplam)
            assert hdul["DQ"].data.dtype.newbyteorder("=") == np.int16 and (hdul["DQ"].data == 0).mean() > 0.99
            assert np.all(hdul["ERR"].data > 0)
            wcs = WCS(sci)
            assert wcs.wcs.ctype[0] == "RA---TAN"
            assert abs(np.sqrt(abs(np.linalg.det(wcs.wcs.cd))) * 3600 - band.pixscale) < 1e-6
            rootnames.add(h0["ROOTNAME"])
    assert len(rootnames) == len(field.hst_files)
    for band in HST_BANDS:
        files = _hst_files(field, band)
        visits = {fits.getval(p, "ROOTNAME")[:6] for p in files}
        assert 2 <= len(visits) <= 3 and 2 * len(visits) <= len(files) <= 4 * len(visits)
        rolls = {round(fits.getval(p, "ORIENTAT", "SCI"), 6) for p in files}
        assert len(rolls) == len(visits) and max(rolls) - min(rolls) < 3.0


def test_irac_headers_and_layout(field):
    aors = {}
    for path in field.irac_files:
        m = re.fullmatch(r"SPITZER_I(\d)_(\d+)_(\d{4})_0000_1_bcd\.fits", path.name)
        assert m and path.parent == field.outdir / "irac" / f"r{m[2]}" / f"ch{m[1]}" / "bcd"
        hdr = fits.getheader(path)
        assert (hdr["CHNLNUM"], hdr["AORKEY"], hdr["EXPID"]) == (int(m[1]), int(m[2]), int(m[3]))
        assert hdr["BUNIT"] == "MJy/sr"
        for key in ("EXPTIME", "FRAMTIME", "MJD_OBS", "PA", "FLUXCONV", "GAIN", "PXSCAL1", "PXSCAL2"):
            assert key in hdr
        assert hdr["CTYPE1"] == "RA---TAN-SIP" and "A_2_0" in hdr
        assert path.with_name(path.name.replace("_bcd", "_cbunc")) in field.irac_unc_files
        aors.setdefault(int(m[1]), {})[hdr["AORKEY"]] = (hdr["PA"], hdr["MJD_OBS"])
    for ch in (1, 2):
        assert 3 <= len(aors[ch]) <= 4
        pas = [pa for pa, _ in aors[ch].values()]
        assert len(set(np.round(pas, 3))) == len(pas)
        assert all(55000 < mjd < 57800 for _, mjd in aors[ch].values())


def test_truth_refcat_and_json(field, truth):
    for col in ["id", "kind", "ra", "dec", "z", "template", "sersic_n", "r_half_arcsec", "q",
                "pa_deg", "mag_f160w", "is_isolated"] + [f"flux_{b}" for b in BANDS]:
        assert col in truth.colnames
    assert set(truth["kind"]) == {"cluster", "background", "star"}
    assert truth["z"].max() > 3
    assert np.allclose(truth["mag_f160w"], 23.9 - 2.5 * np.log10(truth["flux_f160w"]))
    bcg = truth[(truth["kind"] == "cluster") & (truth["r_half_arcsec"] >= 2)]
    assert len(bcg) >= 1 and np.all(bcg["sersic_n"] == 4)
    ref = Table.read(field.refcat)
    assert len(ref) >= 3 and np.all(ref["ref_epoch"] == 2015.5)
    assert np.all(np.abs(ref["pmra"]) < 30) and np.std(np.concatenate([ref["pmra"], ref["pmdec"]])) > 0.5
    doc = json.loads(field.json.read_text())
    assert doc["parameters"]["seed"] == SEED and doc["version"] == mock.MOCK_VERSION
    assert doc["bands"]["f160w"]["photfnu"] == pytest.approx(BANDS["f160w"].photfnu)
    assert len(doc["files"]["hst"]) == len(field.hst_files)


def test_star_total_flux_in_f160w_matches_truth(field, truth, offsets):
    """Aperture flux of a bright star (r = 2", local background from a 2.5-3.5" annulus,
    which holds 1% of the star's light) against its truth flux x encircled energy."""
    path = _hst_files(field, "f160w")[0]
    with fits.open(path) as hdul:
        sci, hdr = hdul["SCI"].data.astype(float), hdul["SCI"].header
    row = _row(offsets, path, field)
    wcs = apply_offset(WCS(hdr), row["dx"], row["dy"], row["rot"])
    scale = BANDS["f160w"].pixscale
    star = _bright_star(truth, wcs, sci.shape, 4.0 / scale, "f160w")
    x, y = wcs.all_world2pix(star["ra"], star["dec"], 0)
    r_ap, r_in, r_out = 2.0, 2.5, 3.5
    data = sci - _annulus_mean(sci, x, y, r_in / scale, r_out / scale)
    yy, xx = np.indices(sci.shape)
    measured = np.sum(data[np.hypot(xx - x, yy - y) < r_ap / scale]) * hdr["PHOTFNU"] * 1e6
    ee = psf_encircled_energy("f160w", [r_ap, r_in, r_out])
    expected = star["flux_f160w"] * (ee[0] - (ee[2] - ee[1]) * r_ap ** 2 / (r_out ** 2 - r_in ** 2))
    assert measured == pytest.approx(expected, rel=0.02)


def _centroid(data: np.ndarray, x: float, y: float, radius: float) -> tuple[float, float]:
    for _ in range(5):
        yy, xx = np.indices(data.shape)
        w = np.where(np.hypot(xx - x, yy - y) < radius, data, 0.0)
        x, y = np.sum(w * xx) / w.sum(), np.sum(w * yy) / w.sum()
    return x, y


@pytest.mark.parametrize("band", ["f814w", "f160w"])
def test_header_wcs_is_off_by_the_recorded_offset(field, truth, offsets, band):
    checked = 0
    for path in _hst_files(field, band):
        with fits.open(path) as hdul:
            sci, hdr, h0 = hdul["SCI"].data.astype(float), hdul["SCI"].header, hdul[0].header
        row = _row(offsets, path, field)
        header_wcs = WCS(hdr)
        true_wcs = apply_offset(header_wcs, row["dx"], row["dy"], row["rot"])
        star = _bright_star(truth, true_wcs, sci.shape, 1.2 / BANDS[band].pixscale, band)
        mjd = (h0["EXPSTART"] + h0["EXPEND"]) / 2
        true_pos = _star_at_epoch(star, mjd)
        x, y = true_wcs.all_world2pix(true_pos.ra.deg, true_pos.dec.deg, 0)
        scale = BANDS[band].pixscale
        local = sci - _annulus_mean(sci, x, y, 0.6 / scale, 1.0 / scale)
        xc, yc = _centroid(local, float(x), float(y), 0.35 / scale)
        seen = SkyCoord(*header_wcs.all_pix2world(xc, yc, 0), unit="deg")
        d_ra, d_dec = true_pos.spherical_offsets_to(seen)
        shift = np.hypot(row["dx"], row["dy"])
        # seen through the header, the star is displaced by -(dx, dy) (+ rotation about CRPIX)
        lever = np.hypot(x - hdr["CRPIX1"] + 1, y - hdr["CRPIX2"] + 1) * BANDS[band].pixscale
        tol = 0.012 + abs(np.radians(row["rot"])) * lever
        assert d_ra.arcsec == pytest.approx(-row["dx"], abs=tol)
        assert d_dec.arcsec == pytest.approx(-row["dy"], abs=tol)
        # and through the corrected WCS it is where the truth says (proper motion included)
        fixed = SkyCoord(*true_wcs.all_pix2world(xc, yc, 0), unit="deg")
        assert fixed.separation(true_pos).arcsec < 0.012
        checked += shift > 0.05
    assert checked >= 1


def test_irac_frames_are_mjy_per_sr_consistent_with_truth(field, truth, offsets):
    """Every source's light falls inside each BCD: sum(BCD - true sky) x pixel solid angle
    (1 MJy/sr x 1 arcsec^2 = 23.5045 uJy) must equal the summed truth fluxes, to the few %
    of the real PSF's pixel-phase effect per frame and better on average."""
    for band in IRAC_BANDS:
        total = np.sum(truth[f"flux_{band}"])
        ratios = []
        for path in [p for p in field.irac_files if f"_I{band[-1]}_" in p.name]:
            with fits.open(path) as hdul:
                data, hdr = hdul[0].data.astype(float), hdul[0].header
            row = _row(offsets, path, field)
            pix_area = abs(hdr["PXSCAL1"] * hdr["PXSCAL2"])  # arcsec^2
            ratios.append(np.sum(data - _sky(row, data.shape)) * pix_area * 23.5045 / total)
        assert np.all(np.abs(np.array(ratios) - 1) < 0.04), ratios
        assert np.mean(ratios) == pytest.approx(1.0, abs=0.01)


def test_offsets_false_gives_exact_headers_and_offsets_are_bounded():
    for plan in (plan_hst, plan_irac):
        exact = plan(mock._rng(1, 1), 3.5, -30.4, 60.0, False)
        assert all(e.dx == e.dy == e.rot_visit == 0 for e in exact)
    hst = plan_hst(mock._rng(1, 1), 3.5, -30.4, 60.0, True)
    assert max(abs(e.dx_visit) for e in hst) <= 0.5 and max(abs(e.rot_visit) for e in hst) <= 0.02
    assert max(abs(e.dx_exp) for e in hst) <= 0.05 and any(e.dx_visit != 0 for e in hst)
    irac = plan_irac(mock._rng(1, 1), 3.5, -30.4, 60.0, True)
    assert max(abs(e.dx) for e in irac) <= 0.3 and any(e.dx != 0 for e in irac)


def test_command_line_uses_the_field_table(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(mock, "simulate_field", lambda outdir, **kw: seen.update(kw) or
                        mock.MockInfo(outdir, kw["field"], 0, 0, 0, 0, 0, True, {}, [], [], [],
                                      outdir, outdir, outdir))
    assert mock.main([str(tmp_path), "--field", "j224900m4432", "--depth", "f160w=28.5,ch1=25",
                      "--size-arcmin", "1"]) == 0
    assert seen["ra"] == pytest.approx(342.185) and seen["z_cluster"] == pytest.approx(0.348)
    assert seen["depth"] == {"f160w": 28.5, "ch1": 25.0} and seen["size_arcmin"] == 1


def test_unknown_depth_band_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown band"):
        mock.simulate_field(tmp_path, depth={"f999w": 27.0})


@pytest.mark.parametrize("band", ["f814w", "f160w"])
def test_galaxy_orientation_and_shape_follow_truth(band):
    """A lone large disk (PA 30 deg east of north, q = 0.4) rendered into a rotated exposure:
    its second moments, turned to the sky with the exposure's CD matrix, give PA and q."""
    exp = [e for e in plan_hst(mock._rng(5, 1), 150.0, 2.0, 20.0, True) if e.band == band][0]
    cd = exp.true_wcs.wcs.cd * 3600.0
    ra, dec = exp.true_wcs.all_pix2world(exp.shape[1] / 2 + 0.3, exp.shape[0] / 2 - 0.2, 0)
    lone = Table({"kind": ["background"], "ra": [float(ra)], "dec": [float(dec)], "pmra": [0.0],
                  "pmdec": [0.0], "sersic_n": [1.0], "r_half_arcsec": [1.0], "trunc_arcsec": [5.0],
                  "q": [0.4], "pa_deg": [30.0], f"flux_{band}": [100.0]})
    image = mock._render_hst_band(band, [exp], lone, mock._StampCache(lone, BANDS[band].pixscale))[0]
    assert image.sum() * BANDS[band].photfnu * 1e6 == pytest.approx(100.0, rel=0.01)
    yy, xx = np.indices(image.shape)
    w = np.clip(image, 0, None) / image.sum()  # FFT round-off is ~1e-17 either side of 0
    mx, my = np.sum(w * xx), np.sum(w * yy)
    cov_pix = np.cov(np.vstack([(xx - mx).ravel(), (yy - my).ravel()]), aweights=w.ravel())
    # unweighted second moments add under convolution: remove the (round) PSF's
    psf = effective_psf(band, scale=0.02)
    py, px = np.indices(psf.shape)
    var_psf = np.sum(psf * (px - (psf.shape[1] - 1) / 2) ** 2) * 0.02 ** 2 / psf.sum()
    cov_sky = cd @ cov_pix @ cd.T - var_psf * np.eye(2)  # (xi east, eta north) arcsec^2
    evals, evecs = np.linalg.eigh(cov_sky)
    major = evecs[:, 1]
    pa = np.degrees(np.arctan2(major[0], major[1])) % 180.0
    assert pa == pytest.approx(30.0, abs=1.0)
    assert np.sqrt(evals[0] / evals[1]) == pytest.approx(0.4, abs=0.03)
