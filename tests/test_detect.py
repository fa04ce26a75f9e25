"""Tests of pipeline.detect: SExtractor reference, real HFF cutouts, synthetic sources."""
from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.wcs import WCS, FITSFixedWarning
from scipy import ndimage

from pipeline.detect import DetectParams, detect, detection_image, gaussian_kernel, highpass_level, psf_kernel
from pipeline.photometry import APERTURE_DIAMETERS_ARCSEC, total_correction, ujy_per_count
from tests.test_photometry import gaussian_image, shared

PIXSCALE = 0.06
HFF_CUTOUTS = ("cd_galaxy", "dwarf_galaxy", "group_of_galaxies", "spiral_galaxy")


def tan_wcs(shape, pixscale=PIXSCALE, ra=3.58, dec=-30.39):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    wcs.wcs.cd = np.diag([-pixscale / 3600, pixscale / 3600])
    return wcs


def release_detection_columns() -> list[str]:
    """Detection-image columns of phot_apcorr_columns.md, in order, apertures expanded."""
    text = shared("alcs-docs", "phot_apcorr_columns.md").read_text()
    block = text.split("Columns derived from the IR detection image")[1]
    block = block.split("Aperture measurements in each HST filter")[0]
    names = re.findall(r"^\|\s*``([^`]+)``", block, flags=re.M)
    plain = [n for n in names if "{ap}" not in n]
    templates = [n for n in names if "{ap}" in n]
    return plain + [t.format(ap=i) for i in range(len(APERTURE_DIAMETERS_ARCSEC)) for t in templates]


# --- SExtractor reference ------------------------------------------------------------

def read_sextractor_catalog(path):
    names = re.findall(r"^#\s+\d+\s+(\S+)", path.read_text(), flags=re.M)
    data = np.loadtxt(path)
    # FLUX_RADIUS(3) spans three columns: pad the names to the data width
    names = names[:-1] + [f"{names[-2]}_{i}" for i in (1, 2)] + names[-1:]
    return {name: data[:, i] for i, name in enumerate(names)}


def test_sep_detection_reproduces_sextractor():
    """default.sex settings: 64 px background mesh, 3x3 mesh filter, default.conv, threshold
    1.5 x global rms, minarea 5, deblending off (DEBLEND_MINCONT 1), clean 1.0, Kron factor
    2.5 with no minimum radius, sums at pixel centres (sep subpix=1), no segmentation or
    weight masking (MASK_TYPE NONE, no weight map)."""
    folder = shared("sextractor-ref")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = fits.getheader(folder / "image.fits")
        image = fits.getdata(folder / "image.fits").astype(np.float32)
        wcs = WCS(header)
    ref = read_sextractor_catalog(folder / "image.cat")
    conv = np.loadtxt(folder / "default.conv", comments="#", skiprows=1)
    # SExtractor thresholds at 1.5 x the global background rms; sep measures the same
    # background (checked against SExtractor's BACKGROUND and BACKGROUND_RMS check images).
    # A flat weight of 1/rms^2 without grizli's rms rescaling gives that absolute threshold.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sx_back = fits.getdata(folder / "back.fits")
        sx_rms = fits.getdata(folder / "rms.fits")
    background = sep.Background(image, bw=64, bh=64, fw=3, fh=3)
    np.testing.assert_allclose(background.back(), sx_back, rtol=1e-5)
    np.testing.assert_allclose(background.rms(), sx_rms, rtol=1e-4)
    params = DetectParams(
        back_box_arcsec=64, back_filter_size=3, pixscale=1.0, filter_kernel=conv,
        threshold=1.5, minarea=5, deblend_cont=1.0, clean=True, clean_param=1.0,
        rescale_weight=False, kron_min_radius_arcsec=0.0, segmask=False, subpix=1,
    )
    weight = np.full(image.shape, background.globalrms**-2)
    catalog, seg = detect(image, weight, wcs, params=params)

    # match each sep source to its SExtractor counterpart (zero- vs one-indexed)
    sx_x, sx_y = ref["X_IMAGE"] - 1, ref["Y_IMAGE"] - 1
    distance = np.hypot(catalog["x"][:, None] - sx_x, catalog["y"][:, None] - sx_y)
    match = distance.argmin(axis=1)
    assert len(set(match)) == len(catalog)
    # The one SExtractor source without a counterpart is NUMBER 10, which SExtractor gives
    # KRON_RADIUS = 0 and FLUX_AUTO = 0. sep measures 2.5 kr = 0.22 for it (a known
    # difference between SExtractor 2.8.6, which made image.cat, and sep; sep's own test
    # excludes it too), whose ellipse holds no pixel centre: flux_auto = 0, and detect()
    # drops sources with flux_auto <= 0 as grizli does. No other source is excluded.
    missing = sorted(set(range(len(sx_x))) - set(match))
    assert [int(ref["NUMBER"][i]) for i in missing] == [10]
    assert ref["KRON_RADIUS"][missing[0]] == 0 and ref["FLUX_AUTO"][missing[0]] == 0

    dx = np.abs(catalog["x"] - sx_x[match]).max()
    dy = np.abs(catalog["y"] - sx_y[match]).max()
    rel_flux = np.abs(catalog["flux_auto"] / ref["FLUX_AUTO"][match] - 1).max()
    print(f"SExtractor: max|dx|={dx:.2e} px max|dy|={dy:.2e} px max|dFLUX_AUTO|/FLUX_AUTO={rel_flux:.2e}")
    assert dx < 1e-3 and dy < 1e-3
    assert rel_flux < 1e-3
    np.testing.assert_allclose(catalog["x_image"], ref["X_IMAGE"][match], atol=1e-3)
    # KRON_RADIUS is printed to 0.01
    np.testing.assert_allclose(catalog["kron_radius"], ref["KRON_RADIUS"][match], atol=0.01)
    assert (seg[seg > 0][:, None] == np.asarray(catalog["id"])[None, :]).any(axis=1).mean() > 0.95


# --- synthetic sources ---------------------------------------------------------------

def test_detection_image_is_the_inverse_variance_mean_in_ujy():
    rng = np.random.default_rng(3)
    shape = (40, 50)
    truth = rng.uniform(0, 5, shape)  # uJy
    photfnu = (1.1e-7, 7.0e-8)
    scale = [ujy_per_count(photfnu=p) for p in photfnu]
    whts = [rng.uniform(1, 10, shape), rng.uniform(1, 10, shape)]
    whts[1][:, :10] = 0.0  # second filter does not cover these columns
    noise = [rng.normal(0, 0.1, shape), rng.normal(0, 0.1, shape)]
    scis = [(truth + noise[i]) / scale[i] for i in range(2)]
    image, weight = detection_image(scis, whts, photfnu)
    w_ujy = [whts[i] / scale[i] ** 2 for i in range(2)]
    expected = (w_ujy[0] * (truth + noise[0]) + w_ujy[1] * (truth + noise[1])) / (w_ujy[0] + w_ujy[1])
    np.testing.assert_allclose(image, expected, rtol=1e-5)
    np.testing.assert_allclose(weight, w_ujy[0] + w_ujy[1], rtol=1e-5)
    np.testing.assert_allclose(image[:, :10], (truth + noise[0])[:, :10], rtol=1e-5)
    # noise-free mosaics of one scene combine to that scene whatever the weights
    exact, _ = detection_image([truth / scale[0], truth / scale[1]], whts, photfnu)
    np.testing.assert_allclose(exact, truth, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def point_source():
    """A Gaussian point source (uJy) with a faint neighbour on a noisy flat sky."""
    rng = np.random.default_rng(11)
    shape = (160, 180)
    x0, y0, flux, sigma = 87.3, 71.6, 40.0, 1.2
    image = gaussian_image(shape, x0, y0, sigma, flux) + gaussian_image(shape, 130.0, 120.0, 1.5, 5.0)
    image += rng.normal(0.0, 0.002, shape)
    weight = np.full(shape, 0.002**-2)
    wcs = tan_wcs(shape)
    params = DetectParams(filter_kernel=gaussian_kernel(2.355 * sigma * PIXSCALE, PIXSCALE))
    catalog, seg = detect(image, weight, wcs, params=params)
    return catalog, seg, wcs, (x0, y0, flux)


def test_point_source_position_and_sky_conventions(point_source):
    catalog, seg, wcs, (x0, y0, flux) = point_source
    assert len(catalog) == 2
    src = catalog[np.argmax(catalog["flux_auto"])]
    assert abs(src["x"] - x0) < 0.02 and abs(src["y"] - y0) < 0.02
    assert src["x_image"] == src["x"] + 1 and src["y_image"] == src["y"] + 1
    ra0, dec0 = wcs.all_pix2world(x0, y0, 0)
    assert abs(src["ra"] - ra0) * np.cos(np.radians(dec0)) * 3600 < 0.02 * PIXSCALE
    assert abs(src["dec"] - dec0) * 3600 < 0.02 * PIXSCALE
    assert src["x_world"] == src["ra"] and src["y_world"] == src["dec"]
    assert seg[int(round(y0)), int(round(x0))] == src["id"]
    assert sorted(catalog["id"]) == [1, 2]
    for row in catalog:
        assert (seg == row["id"]).sum() == row["npix"] == row["area_iso"]


def test_point_source_fluxes(point_source):
    catalog, _, _, (x0, y0, flux) = point_source
    src = catalog[np.argmax(catalog["flux_auto"])]
    assert src["flux_aper_6"] > 0.99 * flux
    radii = 0.5 * np.array(APERTURE_DIAMETERS_ARCSEC) / PIXSCALE
    enclosed = flux * (1 - np.exp(-0.5 * (radii / 1.2) ** 2))
    np.testing.assert_allclose([src[f"flux_aper_{i}"] for i in range(7)], enclosed, rtol=0.02)
    assert src["flux_auto"] == pytest.approx(flux, rel=0.02)
    assert src["flux_iso"] == pytest.approx(flux, rel=0.05)
    assert src["kron_rcirc"] == pytest.approx(src["kron_radius"] * np.sqrt(src["a_image"] * src["b_image"]))
    expected_corr = total_correction("f160w", np.array([src["kron_rcirc"] * PIXSCALE]))[0]
    assert src["tot_corr"] == pytest.approx(expected_corr)
    assert src["mag_auto"] == pytest.approx(23.9 - 2.5 * np.log10(src["flux_auto"] * src["tot_corr"]))
    assert src["flux_radius_20"] < src["flux_radius"] < src["flux_radius_90"]
    # a Gaussian's half-light radius is sigma sqrt(2 ln 2)
    assert src["flux_radius"] == pytest.approx(1.2 * np.sqrt(2 * np.log(2)), rel=0.1)


def test_small_kron_apertures_use_the_minimum_circle():
    rng = np.random.default_rng(5)
    shape = (80, 80)
    image = gaussian_image(shape, 40.2, 39.7, 0.8, 10.0) + rng.normal(0, 0.002, shape)
    weight = np.full(shape, 0.002**-2)
    params = DetectParams(filter_kernel=gaussian_kernel(0.12, PIXSCALE))
    catalog, _ = detect(image, weight, tan_wcs(shape), params=params)
    src = catalog[0]
    min_radius = 0.35 / PIXSCALE
    assert src["kron_rcirc"] < min_radius
    assert src["area_auto"] == pytest.approx(np.pi * min_radius**2)
    # the D = 0.7" aperture is the same circle
    assert src["flux_auto"] == pytest.approx(src["flux_aper_2"], rel=1e-6)
    assert src["tot_corr"] == pytest.approx(total_correction("f160w", np.array([0.35]))[0])


def test_catalog_has_the_release_columns_in_order(point_source):
    catalog = point_source[0]
    assert catalog.colnames == release_detection_columns()


def test_params_are_hashable_and_keep_the_kernel():
    kernel = gaussian_kernel(0.15, PIXSCALE)
    params = DetectParams(filter_kernel=kernel)
    assert hash(params) == hash(DetectParams(filter_kernel=kernel.copy()))
    np.testing.assert_array_equal(np.asarray(params.filter_kernel), kernel)
    assert DetectParams().filter_kernel is None


def test_psf_kernel_same_scale_is_the_flipped_central_cut():
    psf = fits.getdata(shared("hff-cutouts", "f105w_psf.fits.gz")).astype(np.float64)
    cy, cx = np.unravel_index(np.argmax(psf), psf.shape)
    kernel = psf_kernel(psf, psf_pixscale=PIXSCALE, pixscale=PIXSCALE)
    cut = psf[cy - 5:cy + 6, cx - 5:cx + 6][::-1, ::-1]
    np.testing.assert_allclose(kernel, cut / cut.sum(), rtol=1e-6, atol=1e-12)


def test_psf_kernel_resampled_to_coarser_pixels():
    shape = (61, 61)
    sigma = 3.0
    psf = gaussian_image(shape, 30.0, 30.0, sigma, 1.0)
    kernel = psf_kernel(psf, psf_pixscale=0.03, pixscale=0.06)
    assert kernel.shape == (11, 11)
    assert kernel.sum() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(kernel), kernel.shape) == (5, 5)
    r = np.arange(11) - 5
    # in 0.06" pixels the Gaussian has sigma 1.5 (plus the pixel's 1/12 variance)
    variance = (kernel.sum(axis=0) * r**2).sum()
    assert variance == pytest.approx(1.5**2 + 1 / 12, rel=0.05)


# --- real HST cutouts ----------------------------------------------------------------

def load_cutout(name):
    folder = shared("hff-cutouts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        path = folder / f"abell_2744_{name}_f105w.fits.gz"
        sci = fits.getdata(path).astype(np.float32)
        wcs = WCS(fits.getheader(path))
    rms_path = folder / f"abell_2744_{name}_f105w_rms.fits.gz"
    if rms_path.exists():
        wht = fits.getdata(rms_path).astype(np.float32) ** -2
    else:
        # no weight map: a flat weight from the clipped pixel rms
        _, _, std = sigma_clipped_stats(sci, sigma=3.0, maxiters=10)
        wht = np.full(sci.shape, std**-2, dtype=np.float32)
    # the F105W calibration (the spiral cutout's header lacks it)
    photfnu = fits.getheader(folder / "abell_2744_cd_galaxy_f105w.fits.gz")["PHOTFNU"]
    return sci, wht, wcs, photfnu


@pytest.fixture(scope="module")
def f105w_kernel():
    psf = fits.getdata(shared("hff-cutouts", "f105w_psf.fits.gz"))
    return psf_kernel(psf, psf_pixscale=PIXSCALE, pixscale=PIXSCALE)


@pytest.mark.parametrize("highpass", [None, 2.0], ids=["release", "highpass"])
@pytest.mark.parametrize("name", HFF_CUTOUTS)
def test_real_cutouts_give_sensible_sources(name, highpass, f105w_kernel):
    sci, wht, wcs, photfnu = load_cutout(name)
    image, weight = detection_image([sci], [wht], [photfnu])
    params = DetectParams(filter_kernel=f105w_kernel, tot_corr_filter="f105w", highpass_arcsec=highpass)
    catalog, seg = detect(image, weight, wcs, params=params)
    assert len(catalog) >= 3
    assert catalog.meta["PIXSCALE"] == pytest.approx(PIXSCALE, rel=1e-4)

    # the brightest source sits on the brightest peak of the smoothed image
    smooth = ndimage.gaussian_filter(sci, 2.0)
    py, px = np.unravel_index(np.argmax(smooth), smooth.shape)
    brightest = catalog[np.argmax(catalog["flux_auto"])]
    assert np.hypot(brightest["x"] - px, brightest["y"] - py) < 3
    assert seg[py, px] == brightest["id"]

    # bright sources have positive fluxes, finite magnitudes and errors
    bright = catalog[catalog["flux_auto"] / catalog["fluxerr_auto"] > 20]
    assert len(bright) >= 1
    for col in ("flux_auto", "flux_iso", "flux_aper_2", "fluxerr_auto", "fluxerr_aper_2"):
        assert (bright[col] > 0).all(), col
    assert np.isfinite(bright["mag_auto"]).all()
    assert ((bright["tot_corr"] >= 1) & (bright["tot_corr"] < 1.3)).all()

    # Kron total and 3" aperture magnitudes agree for bright sources whose Kron ellipse
    # lies inside the 3" aperture, away from the edges and from other sources. The same
    # point-source EE corrects both; extended galaxies keep light beyond the Kron ellipse
    # and cluster light leaves background residuals, hence a 0.6 mag bound.
    ny, nx = sci.shape
    r3 = 1.5 / PIXSCALE
    xy = np.c_[catalog["x"], catalog["y"]]
    nearest = np.sort(np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)), axis=1)[:, 1]
    usable = (
        (catalog["flux_auto"] / catalog["fluxerr_auto"] > 20)
        & (catalog["kron_radius"] * catalog["a_image"] < r3)
        & (nearest * PIXSCALE > 1.5)
        & (catalog["x"] > r3) & (catalog["x"] < nx - 1 - r3)
        & (catalog["y"] > r3) & (catalog["y"] < ny - 1 - r3)
    )
    ee_3 = total_correction("f105w", np.array([1.5]))[0]
    with np.errstate(invalid="ignore"):
        mag_3 = 23.9 - 2.5 * np.log10(catalog["flux_aper_6"] * ee_3)
    if highpass:
        # the release's usable sources only: the high-pass also finds sources on the envelopes of
        # bright galaxies (cd_galaxy), whose 3" apertures hold that envelope's light
        release, _ = detect(image, weight, wcs, params=dataclasses.replace(params, highpass_arcsec=None))
        d = np.hypot(catalog["x"][:, None] - release["x"][None, :], catalog["y"][:, None] - release["y"][None, :])
        usable &= d.min(axis=1) < 2
        # every source of the release's extraction is kept: the catalog is a superset (a clump of
        # a spiral can be the brightest piece found in its segment, 0.8" from the galaxy's centroid)
        assert len(catalog) >= len(release)
        assert (d.min(axis=0) < 1.0 / PIXSCALE).all()
    assert usable.any() or name == "spiral_galaxy"
    assert (np.abs(catalog["mag_auto"] - mag_3)[usable] < 0.6).all()


def test_stage_builds_the_f160w_matched_filter():
    from pipeline.sim_psf import effective_psf
    from pipeline.stages.detect import DEFAULTS, detect_params

    assert DEFAULTS["filter_kernel"] == "f160w_psf"
    kernel = np.asarray(detect_params(DEFAULTS, 0.1).filter_kernel)
    assert kernel.shape == (11, 11) and kernel.sum() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(kernel), kernel.shape) == (5, 5)
    expected = psf_kernel(effective_psf("f160w", scale=0.02, size_arcsec=3.0), psf_pixscale=0.02, pixscale=0.1)
    np.testing.assert_allclose(kernel, expected)
    # wider than the F105W kernel on the same grid, narrower than a 0.3" Gaussian
    assert kernel.max() < psf_kernel(effective_psf("f105w", scale=0.02, size_arcsec=3.0), psf_pixscale=0.02,
                                     pixscale=0.1).max()
    assert kernel.max() > gaussian_kernel(0.3, 0.1).max()
    assert detect_params({**DEFAULTS, "filter_kernel": None}, 0.1).filter_kernel is None


# --- extraction after removing the light on large scales (BCG, intracluster light) ---------

def _bcg_scene(seed: int = 0):
    """A de Vaucouleurs galaxy (r_e = 5", 2000 uJy) with three compact galaxies of 0.5 uJy
    (1/4000 of it, S/N ~ 80) 3-6" from its centre, on a 0.1" grid with white noise."""
    n = 401
    yy, xx = np.indices((n, n)).astype(float)
    c = (n - 1) / 2
    r = np.hypot(xx - c, (yy - c) / 0.8) * 0.1
    image = np.exp(-7.669 * ((r / 5.0) ** 0.25 - 1))
    image *= 2000.0 / image.sum()
    faint = [(c + 30, c + 5), (c - 20, c + 45), (c + 10, c - 60)]
    for x, y in faint:
        image += 0.5 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.2**2) / (2 * np.pi * 1.2**2)
    sigma = 0.0015
    image += np.random.default_rng(seed).normal(0, sigma, image.shape)
    return image.astype(np.float32), np.full(image.shape, sigma**-2, np.float32), faint


def test_highpass_finds_faint_galaxies_inside_a_bcg_envelope():
    """The release's extraction joins the envelope and the galaxies on it into one parent, and
    DEBLEND_CONT 0.001 x its flux is above theirs: only the BCG is found. After a 2" running
    median is removed each is found at its position, and the BCG keeps its release shape, so
    its Kron flux does not change."""
    image, weight, faint = _bcg_scene()
    wcs = tan_wcs(image.shape, 0.1)
    kernel = gaussian_kernel(0.15, 0.1)
    release, _ = detect(image, weight, wcs, params=DetectParams(pixscale=0.1, filter_kernel=kernel))
    found, seg = detect(image, weight, wcs, params=DetectParams(pixscale=0.1, filter_kernel=kernel,
                                                                  highpass_arcsec=2.0))
    assert found.meta["HIGHPASS"] == 2.0 and release.meta["HIGHPASS"] == 0.0

    def nearest(cat, x, y):
        return np.min(np.hypot(cat["x"] - x, cat["y"] - y))

    assert all(nearest(release, x, y) > 10 for x, y in faint)
    assert all(nearest(found, x, y) < 0.5 for x, y in faint)
    bcg_release = release[np.argmax(release["flux_auto"])]
    bcg = found[np.argmax(found["flux_auto"])]
    assert np.hypot(bcg["x"] - 200, bcg["y"] - 200) < 0.5
    assert bcg["flux_auto"] == pytest.approx(bcg_release["flux_auto"], rel=0.01)
    assert bcg["a_image"] == pytest.approx(bcg_release["a_image"], rel=1e-6)
    assert len(found) <= len(faint) + 2  # the BCG, the three, at most one noise peak
    for x, y in faint:  # the faint ones keep their own, compact shapes
        assert found[np.argmin(np.hypot(found["x"] - x, found["y"] - y))]["a_image"] < 3


def test_highpass_level_removes_smooth_light_and_keeps_compact_sources():
    """Only detection uses the high-passed image (fluxes are measured on the release's): it must
    remove light that is smooth over the window and keep a compact source."""
    yy, xx = np.indices((200, 200)).astype(float)
    star = 50.0 * np.exp(-0.5 * ((xx - 100.3) ** 2 + (yy - 80.6) ** 2) / 1.5**2) / (2 * np.pi * 1.5**2)
    mask = np.zeros((200, 200), bool)
    gradient = 1.0 + 0.01 * xx - 0.005 * yy
    level = highpass_level((gradient + star).astype(np.float32), mask, 20.0)
    far = (np.hypot(xx - 100.3, yy - 80.6) > 25) & (xx > 20) & (xx < 180) & (yy > 20) & (yy < 180)
    np.testing.assert_allclose(level[far], gradient[far], atol=1e-5)
    flat = highpass_level((1.0 + star).astype(np.float32), mask, 20.0)
    assert (1.0 + star - flat)[70:92, 90:112].sum() == pytest.approx(star.sum(), rel=0.03)
