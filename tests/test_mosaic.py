"""Mosaic stage: release grids, drizzle (flux, weights, masks), visits, headers, backgrounds,
and the stage driver on a small synthetic field with known pointing errors.

The synthetic FLT / BCD files are made here with numpy + astropy (pixel-integrated Gaussian
sources rendered through the TRUE WCS, headers carrying a WRONG one), independently of the
pipeline code, so that the tests are fast and the truth is exact.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import sep
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS
from scipy.special import erf

from pipeline.align import bright_sources, catalog_radec, project_refcat
from pipeline.background import BackgroundParams, irac_master_background, smooth_background
from pipeline.mosaic import (
    Exposure,
    ExposureInfo,
    MosaicParams,
    build_mosaics,
    drizzle,
    exposure_info,
    group_visits,
    mosaic_header,
    read_bcd,
    read_flt,
    release_grid,
)
from pipeline.photometry import error_and_mask

RA0, DEC0 = 3.5875, -30.3972

warnings.filterwarnings("ignore", module="astropy.wcs")


# --------------------------------------------------------------------------- synthetic data
def tan_wcs(ra: float, dec: float, scale: float, shape: tuple[int, int], pa_deg: float = 0.0) -> WCS:
    """TAN WCS, +y axis ``pa_deg`` East of North, East left, centred on (ra, dec)."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    t = np.radians(pa_deg)
    w.wcs.cd = scale / 3600 * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.set()
    w.pixel_shape = (nx, ny)
    return w


def offset_wcs(wcs: WCS, dx: float, dy: float, rot_deg: float) -> WCS:
    """``wcs`` moved by (dx East, dy North) arcsec at CRVAL and rotated about CRPIX."""
    w = wcs.deepcopy()
    c = SkyCoord(*w.wcs.crval, unit="deg").spherical_offsets_by(dx * u.arcsec, dy * u.arcsec)
    w.wcs.crval = [c.ra.deg, c.dec.deg]
    t = np.radians(rot_deg)
    w.wcs.cd = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) @ w.wcs.cd
    w.wcs.set()
    w.pixel_shape = wcs.pixel_shape
    return w


def render(wcs: WCS, shape: tuple[int, int], ra, dec, flux, sigma_pix) -> np.ndarray:
    """Pixel-integrated circular Gaussians (total ``flux`` each, summed over pixels)."""
    img = np.zeros(shape)
    x, y = wcs.all_world2pix(np.atleast_1d(ra), np.atleast_1d(dec), 0)
    ny, nx = shape
    for xi, yi, f, s in zip(x, y, np.atleast_1d(flux), np.broadcast_to(sigma_pix, np.shape(x))):
        r = int(np.ceil(6 * s)) + 1
        x0, x1 = max(int(xi) - r, 0), min(int(xi) + r + 1, nx)
        y0, y1 = max(int(yi) - r, 0), min(int(yi) + r + 1, ny)
        if x1 <= x0 or y1 <= y0:
            continue
        gx = np.diff(0.5 * erf((np.arange(x0, x1 + 1) - 0.5 - xi) / (np.sqrt(2) * s)))
        gy = np.diff(0.5 * erf((np.arange(y0, y1 + 1) - 0.5 - yi) / (np.sqrt(2) * s)))
        img[y0:y1, x0:x1] += f * np.outer(gy, gx)
    return img


def offset_point(dx: float, dy: float) -> SkyCoord:
    return SkyCoord(RA0, DEC0, unit="deg").spherical_offsets_by(dx * u.arcsec, dy * u.arcsec)


def sources_at(sources: Table, mjd: float) -> tuple[np.ndarray, np.ndarray]:
    """Source positions at an epoch (astropy space motion; GAIA epoch 2015.5)."""
    c = SkyCoord(
        ra=np.asarray(sources["ra"]) * u.deg, dec=np.asarray(sources["dec"]) * u.deg,
        pm_ra_cosdec=np.asarray(sources["pmra"]) * u.mas / u.yr,
        pm_dec=np.asarray(sources["pmdec"]) * u.mas / u.yr,
        distance=1 * u.kpc, obstime=Time(2015.5, format="jyear"),
    )
    moved = c.apply_space_motion(new_obstime=Time(mjd, format="mjd"))
    return moved.ra.deg, moved.dec.deg


def hst_info(k: int, layer: str = "ir", instrument: str = "WFC3", detector: str = "IR") -> ExposureInfo:
    return ExposureInfo(f"x{k}", "HST", instrument, detector, "f160w", 100.0, 57000.0, 57000.0,
                        57000.01, 0.0, "v", None, layer)


@dataclass
class SyntheticField:
    path: Path
    sources: Table
    refcat: Table
    true_wcs: dict[str, WCS]
    header_wcs: dict[str, WCS]
    epochs: dict[str, float]  # visit / AOR key -> MJD


HST_VISITS = (
    # rootname prefix, instrument, detector, filter, scale, shape, FWHM", epoch, PA, visit error, dithers (")
    ("ibxx01", "WFC3", "IR", "F160W", 0.128, (256, 256), 0.15, 2014.0, 30.0, (0.3, -0.2, 0.015),
     [(0.0, 0.0), (0.4, 0.3), (-0.3, 0.5)]),
    ("jbxx02", "ACS", "WFC", "F814W", 0.05, (600, 600), 0.10, 2019.5, 120.0, (-0.4, 0.25, -0.01),
     [(0.0, 0.0), (0.2, -0.15)]),
)
IRAC_AORS = ((11111, 2012.3, 80.0, (0.3, -0.25)), (22222, 2016.8, 250.0, (-0.2, 0.3)))


def make_synthetic_field(path: Path, *, seed: int = 1, irac: bool = True) -> SyntheticField:
    """Write a small HST + IRAC field (40 sources in 32", 15 of them reference stars with
    proper motions), with per-visit shifts + rotations and per-exposure shifts (HST) and
    per-AOR shifts (IRAC) in the headers; sky gradients and DQ-flagged hot pixels."""
    rng = np.random.default_rng(seed)
    n_star, n_gal = 15, 25
    n = n_star + n_gal
    pos = offset_point(*rng.uniform(-16, 16, (2, n)))
    star = np.arange(n) < n_star
    sources = Table({
        "ra": pos.ra.deg, "dec": pos.dec.deg, "star": star,
        "pmra": np.where(star, rng.uniform(-30, 30, n), 0.0),
        "pmdec": np.where(star, rng.uniform(-30, 30, n), 0.0),
        "flux": 10 ** rng.uniform(0.7, 1.7, n),
    })
    refcat = Table({
        "ra": sources["ra"][star], "dec": sources["dec"][star], "pmra": sources["pmra"][star],
        "pmdec": sources["pmdec"][star], "ref_epoch": np.full(n_star, 2015.5),
        "phot_g_mean_mag": np.full(n_star, 19.0),
    })
    (path / "hst").mkdir(parents=True, exist_ok=True)
    refcat.write(path / "refcat.fits", overwrite=True)
    true_wcs, header_wcs, epochs = {}, {}, {}
    for root, inst, det, filt, scale, shape, fwhm, epoch, pa, verr, dithers in HST_VISITS:
        mjd = Time(epoch, format="jyear").mjd
        epochs[root] = mjd
        ra, dec = sources_at(sources, mjd)
        sigma = np.where(star, 1.0, 2.5) * fwhm / 2.3548 / scale
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        for k, (ddx, ddy) in enumerate(dithers):
            c = offset_point(ddx, ddy)
            true = tan_wcs(c.ra.deg, c.dec.deg, scale, shape, pa)
            noise = 0.05
            sci = render(true, shape, ra, dec, sources["flux"], sigma) + 0.2 + 0.05 * xx / shape[1]
            sci += rng.normal(0, noise, shape)
            dq = np.zeros(shape, np.int16)
            hot = rng.integers(0, shape[0], 30), rng.integers(0, shape[1], 30)
            dq[hot] = 16
            sci[hot] = 1e4
            header = offset_wcs(true, verr[0] + rng.normal(0, 0.05), verr[1] + rng.normal(0, 0.05), verr[2])
            name = f"{root}{k:02d}q"
            t0 = mjd + 0.03 * k
            primary = fits.PrimaryHDU()
            primary.header.update({
                "TELESCOP": "HST", "INSTRUME": inst, "DETECTOR": det, "FILTER": filt, "EXPTIME": 1000.0,
                "EXPSTART": t0, "EXPEND": t0 + 0.0116, "PA_V3": pa, "ROOTNAME": name.upper(),
                "VISIT": root[-2:], "RA_TARG": RA0, "DEC_TARG": DEC0,
            })
            sci_hdr = header.to_header()
            sci_hdr.update({"EXTNAME": "SCI", "EXTVER": 1, "BUNIT": "ELECTRONS/S", "PHOTFNU": 1.5e-7,
                            "PHOTFLAM": 1.9e-20, "PHOTPLAM": 15369.0})
            fits.HDUList([
                primary,
                fits.ImageHDU(sci.astype(np.float32), sci_hdr),
                fits.ImageHDU(np.full(shape, noise, np.float32), fits.Header({"EXTNAME": "ERR", "EXTVER": 1})),
                fits.ImageHDU(dq, fits.Header({"EXTNAME": "DQ", "EXTVER": 1})),
            ]).writeto(path / "hst" / f"{name}_flt.fits")
            true_wcs[name], header_wcs[name] = true, header
    if irac:
        scale, shape = 1.22, (64, 64)
        omega = (scale / 3600 * np.pi / 180) ** 2
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        pattern = 0.05 + 0.01 * xx / shape[1] + 0.005 * np.sin(yy / 10)  # detector-fixed, MJy/sr
        for aor, epoch, pa, shift in IRAC_AORS:
            mjd = Time(epoch, format="jyear").mjd
            epochs[f"r{aor}"] = mjd
            ra, dec = sources_at(sources, mjd)
            d = path / "irac" / f"r{aor}" / "ch1" / "bcd"
            d.mkdir(parents=True)
            for k in range(9):
                c = offset_point(*rng.uniform(-4, 4, 2))
                true = tan_wcs(c.ra.deg, c.dec.deg, scale, shape, pa)
                noise = 0.002
                img = render(true, shape, ra, dec, 2.0 * sources["flux"], 1.8 / 2.3548 / scale) / (1e12 * omega)
                sci = img + pattern + rng.normal(0, noise, shape)
                header = offset_wcs(true, shift[0], shift[1], 0.0)
                hdr = header.to_header()
                hdr.update({"TELESCOP": "Spitzer", "INSTRUME": "IRAC", "CHNLNUM": 1, "AORKEY": aor,
                             "EXPTIME": 100.0, "MJD_OBS": mjd + 0.001 * k, "PA": pa, "FLUXCONV": 0.1257,
                             "BUNIT": "MJy/sr", "EXPID": k})
                stem = f"SPITZER_I1_{aor}_{k:04d}_0000_1"
                fits.PrimaryHDU(sci.astype(np.float32), hdr).writeto(d / f"{stem}_bcd.fits")
                fits.PrimaryHDU(np.full(shape, noise, np.float32)).writeto(d / f"{stem}_cbunc.fits")
                true_wcs[stem], header_wcs[stem] = true, header
    return SyntheticField(path, sources, refcat, true_wcs, header_wcs, epochs)


def max_corner_error(a: WCS, b: WCS) -> float:
    """Largest sky separation (arcsec) between two WCSs over the image corners and centre."""
    nx, ny = a.pixel_shape
    xs = np.array([0, nx - 1, 0, nx - 1, (nx - 1) / 2])
    ys = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2])
    pa = SkyCoord(*a.all_pix2world(xs, ys, 0), unit="deg")
    pb = SkyCoord(*b.all_pix2world(xs, ys, 0), unit="deg")
    return float(pa.separation(pb).arcsec.max())


def star_offsets(sci: np.ndarray, wht: np.ndarray, wcs: WCS, refcat: Table, mjd: float,
                 radius: float = 0.3) -> np.ndarray:
    """Separations (arcsec) of the mosaic's sources matched (< ``radius``) to the reference
    stars projected to ``mjd``."""
    err, mask = error_and_mask(sci, wht)
    found = catalog_radec(bright_sources(sci, err, mask, pixscale=0.1 if wcs.pixel_shape[0] < 500 else 0.05), wcs)
    stars = project_refcat(refcat, mjd)
    c = SkyCoord(found["RA"], found["DEC"], unit="deg")
    _, d2d, _ = c.match_to_catalog_sky(SkyCoord(stars["RA"], stars["DEC"], unit="deg"))
    return d2d.arcsec[d2d.arcsec < radius]


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> SyntheticField:
    return make_synthetic_field(tmp_path_factory.mktemp("synthetic_field"))


@pytest.fixture(scope="module")
def built(field):
    grid = release_grid(RA0, DEC0, 0.7)
    result = build_mosaics(field.path, grid, MosaicParams(), output_dir=field.path / "out", root="syn")
    return grid, result


# --------------------------------------------------------------------------- grids
def test_release_grid_layers_subsample_ir_grid_exactly():
    grid = release_grid(150.1, 2.2, 2.0)
    assert grid.n_ir % 10 == 0 and grid.size_arcmin >= 2.0
    ir, opt, irac = grid.wcs("ir"), grid.wcs("optical"), grid.wcs("irac")
    assert grid.shape("optical")[0] == 2 * grid.n_ir and 5 * grid.shape("irac")[0] == grid.n_ir
    # north up, East left, exact pixel scales
    np.testing.assert_allclose(ir.wcs.cd, np.diag([-0.1, 0.1]) / 3600, rtol=1e-12)
    np.testing.assert_allclose(opt.wcs.cd, np.diag([-0.05, 0.05]) / 3600, rtol=1e-12)
    np.testing.assert_allclose(irac.wcs.cd, np.diag([-0.5, 0.5]) / 3600, rtol=1e-12)
    # every IR pixel corner (edges at i - 0.5) is an optical corner (2x) and every 5th an IRAC corner
    rng = np.random.default_rng(0)
    corners = rng.integers(0, grid.n_ir + 1, (2, 200)) - 0.5
    sky = ir.all_pix2world(corners[0], corners[1], 0)
    ox, oy = opt.all_world2pix(*sky, 0)
    np.testing.assert_allclose(ox, 2 * (corners[0] + 0.5) - 0.5, atol=1e-6)
    np.testing.assert_allclose(oy, 2 * (corners[1] + 0.5) - 0.5, atol=1e-6)
    block = (rng.integers(0, grid.n_ir // 5 + 1, (2, 200)) * 5) - 0.5
    ix, iy = irac.all_world2pix(*ir.all_pix2world(block[0], block[1], 0), 0)
    np.testing.assert_allclose(ix, (block[0] + 0.5) / 5 - 0.5, atol=1e-6)
    np.testing.assert_allclose(iy, (block[1] + 0.5) / 5 - 0.5, atol=1e-6)
    # the field centre is the corner shared by the central pixels
    cx, cy = ir.all_world2pix(150.1, 2.2, 0)
    assert cx == pytest.approx(grid.n_ir / 2 - 0.5) and cy == pytest.approx(grid.n_ir / 2 - 0.5)


# --------------------------------------------------------------------------- drizzle
def _star_exposures(layer, instrument, detector, scale, shape, fwhm, n, units, star, flux, seed):
    rng = np.random.default_rng(seed)
    exposures = []
    for k in range(n):
        c = offset_point(*rng.uniform(-2, 2, 2))
        w = tan_wcs(c.ra.deg, c.dec.deg, scale, shape, 17.0)
        img = render(w, shape, star.ra.deg, star.dec.deg, flux, fwhm / 2.3548 / scale)
        if units == "MJy/sr":
            img = img / (1e12 * (scale / 3600 * np.pi / 180) ** 2)
        info = hst_info(k, layer, instrument, detector)
        exposures.append(Exposure(info, img.astype(np.float32), np.full(shape, 0.1, np.float32),
                                  np.zeros(shape, bool), w, units, "x.fits"))
    return exposures


CASES = {  # layer, instrument, detector, native scale, shape, FWHM, n exposures, units, aperture radius
    "ir": ("ir", "WFC3", "IR", 0.128, (160, 160), 0.15, 4, "electrons/s", 1.0),
    "acs": ("optical", "ACS", "WFC", 0.05, (400, 400), 0.10, 4, "electrons/s", 1.0),
    "irac": ("irac", "IRAC", "IRAC", 1.22, (40, 40), 1.8, 9, "MJy/sr", 6.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_drizzle_conserves_point_source_flux_at_pixfrac_1(case):
    layer, inst, det, scale, shape, fwhm, n, units, radius = CASES[case]
    grid = release_grid(RA0, DEC0, 0.5)
    star = offset_point(1.234, -2.1)
    exposures = _star_exposures(layer, inst, det, scale, shape, fwhm, n, units, star, 100.0, seed=1)
    sci, _ = drizzle(exposures, grid, pixfrac=1.0)
    x, y = grid.wcs(layer).all_world2pix(star.ra.deg, star.dec.deg, 0)
    flux = sep.sum_circle(sci.astype(float), [x], [y], radius / grid.scale(layer))[0][0]
    assert flux == pytest.approx(100.0, rel=1e-4)  # e/s, or uJy for IRAC


@pytest.mark.parametrize("case,fwhm,n,pixfrac", [
    ("ir", 0.5, 4, 0.33), ("acs", 0.5, 4, 0.33), ("irac", 1.8, 64, 0.2),
])
def test_drizzle_conserves_flux_at_release_pixfrac(case, fwhm, n, pixfrac):
    """Small drops sample the inputs: a resolved source (or IRAC with many frames) keeps its
    flux to < 1%; an undersampled IR point source with few dithers does not (a few %)."""
    layer, inst, det, scale, shape, _, _, units, _ = CASES[case]
    grid = release_grid(RA0, DEC0, 0.5)
    star = offset_point(-1.7, 2.4)
    exposures = _star_exposures(layer, inst, det, scale, shape, fwhm, n, units, star, 100.0, seed=2)
    sci, wht = drizzle(exposures, grid, pixfrac=pixfrac)
    x, y = grid.wcs(layer).all_world2pix(star.ra.deg, star.dec.deg, 0)
    radius = (2.0 if layer != "irac" else 6.0) / grid.scale(layer)
    assert sep.sum_circle(sci.astype(float), [x], [y], radius)[0][0] == pytest.approx(100.0, rel=0.01)


def test_drizzle_weight_is_inverse_variance_and_masks_dq():
    """Pure noise: sums over 0.8" boxes have the variance the weight map predicts; a masked
    (DQ) hot pixel leaves the output unchanged."""
    grid = release_grid(RA0, DEC0, 0.4)
    rng = np.random.default_rng(3)
    shape = (200, 200)
    exposures = []
    for k in range(8):
        c = offset_point(*rng.uniform(-0.4, 0.4, 2))
        sigma = rng.uniform(0.05, 0.15)
        exposures.append(Exposure(
            hst_info(k), rng.normal(0, sigma, shape).astype(np.float32), np.full(shape, sigma, np.float32),
            np.zeros(shape, bool), tan_wcs(c.ra.deg, c.dec.deg, 0.128, shape, rng.uniform(0, 5)),
            "electrons/s", "x.fits"))
    sci, wht = drizzle(exposures, grid, pixfrac=0.33)
    box, n = 8, 24
    inner = (slice(20, 20 + box * n),) * 2
    sums = sci[inner].reshape(n, box, n, box).sum(axis=(1, 3))
    var = (1.0 / wht[inner]).reshape(n, box, n, box).sum(axis=(1, 3))
    assert np.std(sums / np.sqrt(var)) == pytest.approx(1.0, abs=0.12)

    hot = exposures[0].sci.copy()
    hot[100, 100] = 1e5
    mask = np.zeros(shape, bool)
    mask[100, 100] = True
    flagged = [Exposure(exposures[0].info, hot, exposures[0].err, mask, exposures[0].wcs, "electrons/s", "x.fits")]
    sci_flagged, wht_flagged = drizzle(flagged + exposures[1:], grid, pixfrac=0.33)
    assert np.max(sci_flagged) < 1.0
    changed = wht_flagged != wht  # only the pixels under the masked pixel's drop
    assert 0 < np.count_nonzero(changed) <= 9
    assert np.array_equal(sci_flagged[~changed], sci[~changed])


# --------------------------------------------------------------------------- visits, headers
def _header(**kw) -> fits.Header:
    h = fits.Header({"TELESCOP": "HST", "INSTRUME": "WFC3", "DETECTOR": "IR", "FILTER": "F160W",
                     "EXPTIME": 500.0, "PA_V3": 40.0, "RA_TARG": RA0, "DEC_TARG": DEC0})
    h.update(kw)
    h.setdefault("EXPEND", h["EXPSTART"] + 0.01)
    return h


def test_group_visits():
    headers = [
        _header(ROOTNAME="IBXX01AAQ", VISIT="01", EXPSTART=57000.00),
        _header(ROOTNAME="IBXX01ABQ", VISIT="01", EXPSTART=57000.05),
        _header(ROOTNAME="IBXX01ACQ", VISIT="01", EXPSTART=57003.00),  # same key, 3 days later
        _header(ROOTNAME="IBXX02AAQ", VISIT="02", EXPSTART=57000.10),  # other visit, same day
        _header(ROOTNAME="IBXX01ADQ", VISIT="01", EXPSTART=57000.06, FILTER="F125W"),
        _header(ROOTNAME="JBXX01AAQ", VISIT="01", EXPSTART=57000.07, INSTRUME="ACS", DETECTOR="WFC",
                FILTER1="F814W", FILTER2="CLEAR2L", FILTER="N/A"),
    ]
    # no visit key (no VISIT, no ROOTNAME): chained by time, pointing and orient
    nokey = [_header(EXPSTART=58000.0), _header(EXPSTART=58000.2), _header(EXPSTART=58000.3, PA_V3=80.0)]
    irac = [fits.Header({"INSTRUME": "IRAC", "CHNLNUM": ch, "AORKEY": aor, "EXPTIME": 100.0,
                         "MJD_OBS": 55000.0 + 0.001 * k, "PA": 10.0})
            for aor in (111, 222) for ch in (1, 2) for k in range(2)]
    visits = group_visits(headers + nokey + irac)
    members = sorted(sorted(v.members) for v in visits)
    assert members == sorted([[0, 1], [2], [3], [4], [5], [6, 7], [8],
                              [9, 10], [11, 12], [13, 14], [15, 16]])
    by_members = {tuple(sorted(v.members)): v for v in visits}
    assert by_members[(0, 1)].filter == "f160w" and by_members[(5,)].filter == "f814w"
    assert by_members[(0, 1)].name.startswith("ibxx01-040.0-f160w")
    assert by_members[(11, 12)].name == "r111-ch2" and by_members[(11, 12)].layer == "irac"
    assert by_members[(5,)].layer == "optical" and by_members[(0, 1)].layer == "ir"
    assert len({v.name for v in visits}) == len(visits)
    assert exposure_info(headers[0]).mjd == pytest.approx(57000.005)


def test_mosaic_header_records_inputs(field):
    chips = [c for p in sorted((field.path / "hst").glob("ibxx*_flt.fits")) for c in read_flt(p)]
    grid = release_grid(RA0, DEC0, 0.7)
    hdr = mosaic_header(grid.wcs("ir"), chips, pixfrac=0.33, kernel="square", bunit="ELECTRONS/S",
                        sci_name="a_sci.fits", wht_name="a_wht.fits")
    assert hdr["NDRIZIM"] == 3 and hdr["NEXPOSUR"] == 3
    assert hdr["EXPTIME"] == pytest.approx(3000.0)
    assert hdr["FILTER"] == "F160W" and hdr["INSTRUME"] == "WFC3" and hdr["DETECTOR"] == "IR"
    assert hdr["D001DATA"] == "ibxx0100q_flt.fits[SCI,1]" and hdr["D003DATA"] == "ibxx0102q_flt.fits[SCI,1]"
    assert hdr["D002EXPT"] == hdr["D002DEXP"] == pytest.approx(1000.0)
    assert hdr["D001PIXF"] == 0.33 and hdr["D001KERN"] == "square" and hdr["D001SCAL"] == pytest.approx(0.1)
    assert hdr["PHOTFNU"] == pytest.approx(1.5e-7) and hdr["PHOTPLAM"] == pytest.approx(15369.0)
    assert WCS(hdr).pixel_scale_matrix == pytest.approx(grid.wcs("ir").pixel_scale_matrix)


# --------------------------------------------------------------------------- backgrounds
def test_smooth_background_removes_gradient_to_a_tenth_of_the_noise():
    rng = np.random.default_rng(4)
    n, pixscale, sigma = 1280, 0.1, 0.01
    yy, xx = np.mgrid[:n, :n] / n
    sky = 0.05 + 0.02 * xx - 0.015 * yy + 0.01 * (xx - 0.5) ** 2
    wcs = tan_wcs(RA0, DEC0, pixscale, (n, n))
    pos = offset_point(*rng.uniform(-60, 60, (2, 300)))
    objects = render(wcs, (n, n), pos.ra.deg, pos.dec.deg, 10 ** rng.uniform(-0.5, 1.5, 300), rng.uniform(1, 6, 300))
    sci = sky + objects + rng.normal(0, sigma, (n, n))
    wht = np.full((n, n), sigma**-2)
    wht[:, :40] = 0  # no coverage
    bkg = smooth_background(sci, wht, pixscale=pixscale, params=BackgroundParams())
    assert np.all(bkg[:, :40] == 0)
    empty = objects < 0.1 * sigma
    resid = (bkg - sky)[:, 40:]
    cells = np.where(empty[:, 40:], resid, np.nan)[:1280, :1216].reshape(40, 32, 38, 32)
    cell_means = np.nanmean(cells, axis=(1, 3))
    assert np.nanmax(np.abs(cell_means)) < 0.1 * sigma
    # without the source mask the sky is biased high by the sources' wings
    plain = smooth_background(sci, wht, pixscale=pixscale, params=BackgroundParams(iterations=0))
    assert np.nanmean(np.where(empty, plain - sky, np.nan)[:, 40:]) > np.nanmean(np.where(empty, bkg - sky, np.nan)[:, 40:])


def test_irac_master_background_recovers_detector_pattern():
    rng = np.random.default_rng(5)
    shape, scale, sigma, n = (64, 64), 1.22, 0.002, 12
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    pattern = 0.05 + 0.01 * xx / 64 + 0.005 * np.sin(yy / 10)
    levels = rng.normal(0, 5 * sigma, n)  # the sky level drifts from frame to frame
    pos = offset_point(*rng.uniform(-60, 60, (2, 150)))
    frames = []
    for k in range(n):
        c = offset_point(*rng.uniform(-5, 5, 2))  # small dithers: sources overlap between frames
        w = tan_wcs(c.ra.deg, c.dec.deg, scale, shape, 45.0)
        frames.append(pattern + levels[k] + render(w, shape, pos.ra.deg, pos.dec.deg, 0.5, 0.65)
                      + rng.normal(0, sigma, shape))
    errs = [np.full(shape, sigma)] * n
    masks = [np.zeros(shape, bool)] * n
    bg = irac_master_background(frames, errs, masks, pixscale=scale)
    def cells(image):  # means over 16 x 16 pixel cells (the median's pixel noise is ~0.4 sigma)
        return image.reshape(4, 16, 4, 16).mean(axis=(1, 3))

    # per 16x16 cell the master's noise (~0.025 sigma) and the pedestal's (~0.025 sigma) add up:
    # the worst of 12 x 16 cells is ~0.1 sigma from noise alone
    error = max(np.max(np.abs(cells(bg.frame(k) - pattern - levels[k]))) for k in range(n))
    assert error < 0.15 * sigma
    shape_error = cells(bg.master - pattern)
    assert np.max(np.abs(shape_error - shape_error.mean())) < 0.1 * sigma
    # a plain median (sources not masked, one level for all frames) is far worse
    plain = np.median(frames, axis=0)
    assert error < 0.5 * max(np.max(np.abs(cells(plain - pattern - levels[k]))) for k in range(n))


# --------------------------------------------------------------------------- the stage on a synthetic field
def test_readers(field):
    chips = read_flt(field.path / "hst" / "jbxx0200q_flt.fits")
    assert len(chips) == 1 and chips[0].units == "electrons/s"
    assert chips[0].info.filter == "f814w" and chips[0].info.layer == "optical"
    assert np.count_nonzero(chips[0].mask) == np.count_nonzero(fits.getdata(chips[0].path, "DQ"))
    bcd = read_bcd(next((field.path / "irac").glob("r11111/ch1/bcd/*_bcd.fits")))
    assert bcd.units == "MJy/sr" and bcd.info.filter == "ch1" and bcd.info.visit_key == "11111"
    assert bcd.photometry == {"FLUXCONV": 0.1257}


def test_build_mosaics_products(field, built):
    grid, result = built
    products = {p.filter: p for p in result.products}
    assert set(products) == {"f160w", "f814w", "ch1"}
    assert products["f814w"].sci_path.name == "syn-f814w_drc_sci.fits"
    assert products["f160w"].sci_path.name == "syn-f160w_drz_sci.fits"
    for p in products.values():
        assert p.sci_path.exists() and p.wht_path.exists()
        assert fits.getdata(p.sci_path).shape == grid.shape(p.layer)
    ch1 = fits.getheader(products["ch1"].sci_path)
    assert ch1["BUNIT"] == "uJy" and ch1["NDRIZIM"] == 18 and ch1["D001PIXF"] == 0.2
    assert fits.getheader(products["f160w"].sci_path)["D001PIXF"] == 0.33
    assert {e.name for e in result.exposures} == set(field.true_wcs)
    assert {a.aorkey for a in result.aors} == {11111, 22222}
    assert set(result.logs) == {v.name for v in result.visits} | {a.name for a in result.aors}
    assert result.params["pixfrac_hst"] == 0.33 and result.params["background"]["back_size_arcsec"] == 32.0


def test_build_mosaics_recovers_injected_pointing(field, built):
    """Per exposure: the alignment applied to the header WCS lands on the true WCS (< 0.02"
    HST, < 0.1" IRAC), while the header WCS itself is off by the injected error."""
    _, result = built
    for e in result.exposures:
        header, true = field.header_wcs[e.name], field.true_wcs[e.name]
        a = e.alignment
        nx, ny = header.pixel_shape
        # the reported correction at the centre vs the true one, plus the rotation at a corner
        cx, cy = (nx - 1) / 2, (ny - 1) / 2
        h = SkyCoord(*header.all_pix2world(cx, cy, 0), unit="deg")
        t = SkyCoord(*true.all_pix2world(cx, cy, 0), unit="deg")
        tdx, tdy = h.spherical_offsets_to(t)
        corner = np.hypot(nx, ny) / 2 * header.proj_plane_pixel_scales()[0].to_value("arcsec")
        true_rot = np.degrees(np.arctan2(true.wcs.cd[0, 1], true.wcs.cd[1, 1]) - np.arctan2(header.wcs.cd[0, 1], header.wcs.cd[1, 1]))
        error = np.hypot(a.dx - tdx.arcsec, a.dy - tdy.arcsec) + abs(np.radians(a.rotation - true_rot)) * corner
        injected = max_corner_error(header, true)
        limit = 0.1 if e.instrument == "IRAC" else 0.02
        assert error < limit, (e.name, error)
        assert injected > 0.15, (e.name, injected)


def test_final_mosaic_absolute_astrometry(field, built):
    """Stars in the final mosaics vs the reference projected to the visit epoch: < 0.05" rms;
    the same exposures drizzled with their header WCS are off by the injected errors."""
    grid, result = built
    for product, root in [("f160w", "ibxx01"), ("f814w", "jbxx02")]:
        p = next(q for q in result.products if q.filter == product)
        sci, wht = fits.getdata(p.sci_path), fits.getdata(p.wht_path)
        seps = star_offsets(sci, wht, grid.wcs(p.layer), field.refcat, field.epochs[root])
        assert len(seps) >= 8
        assert np.sqrt(np.mean(seps**2)) < 0.05
        chips = [c for path in sorted((field.path / "hst").glob(f"{root}*_flt.fits")) for c in read_flt(path)]
        raw_sci, raw_wht = drizzle(chips, grid, pixfrac=0.33)
        raw = star_offsets(raw_sci, raw_wht, grid.wcs(p.layer), field.refcat, field.epochs[root], radius=1.0)
        assert np.median(raw) > 0.2


def test_source_mask_of_a_blob_with_thousands_of_peaks():
    """A mask needs no deblending: a bright envelope holding ~3000 peaks (a cluster core under
    large masks) overflowed sep's deblending tree; the whole envelope is masked."""
    from pipeline.background import source_mask

    yy, xx = np.mgrid[:400, :400]
    data = 50.0 * np.exp(-((xx - 200.0) ** 2 + (yy - 200.0) ** 2) / (2 * 90.0**2))
    dy, dx = (yy % 7) - 3.0, (xx % 7) - 3.0  # a peak (sigma 1.2 pixels) in every 7x7 cell
    data = (data + 30.0 * np.exp(-(dx**2 + dy**2) / (2 * 1.2**2))).astype(np.float32)
    err = np.ones_like(data)
    mask = source_mask(data, err, np.zeros(data.shape, bool), thresh=2.0, minarea=5, dilate_pix=0.0)
    assert mask[data > 2.5].all() and mask.sum() < 1.05 * (data > 2.0).sum()  # (sep smooths first)


def test_background_when_sep_rejects_every_mesh():
    """Source masks covering most of every mesh: sep's sky is all zero, the sky is the median
    of the unmasked pixels (both the local sky of the source finding and the returned sky)."""
    rng = np.random.default_rng(3)
    n, sigma, sky, pixscale = 256, 1.0, 40.0, 0.1
    sci = sky + rng.normal(0, sigma, (n, n))
    yy, xx = np.mgrid[:n, :n]
    blobs = ((xx % 64 - 32) ** 2 + (yy % 64 - 32) ** 2) < 30**2  # 69% of every 6.4" mesh
    sci[blobs] += 50.0
    wht = np.full((n, n), sigma**-2)
    params = BackgroundParams(back_size_arcsec=6.4, mask_back_size_arcsec=6.4, iterations=2)
    bkg = smooth_background(sci, wht, pixscale=pixscale, params=params)
    assert np.all(np.abs(bkg - sky) < 0.1 * sigma)
