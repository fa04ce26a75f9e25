"""The HST half of the pipeline (mosaic -> detect -> photometry) on a simulated field, scored against
the mock's truth (issue 5 item 6), and the fixes that scoring needed:

- drizzle weights from each exposure's background noise, not the pixel errors that include the
  sources' own Poisson noise (which biased undersampled stars 8-20% low);
- the photometry's aperture errors scaled per aperture size to the scatter of empty apertures
  (confusion, correlated noise, background residuals), not sep's mesh rms (3.9x the pixel noise
  in a cluster core);
- the sources' Poisson noise in the filter aperture errors;
- sources whose Kron radius sep cannot measure keep the minimum circle instead of being dropped;
- the mock's Sersic stamps hold each pixel's flux (point-sampled cusps made bulges look like stars),
  and the mock has faint stars (noise-limited point sources).

Expected values are computed independently of the code under test: GalSim's own pixel
convolution, exact aperture sums of noiseless images, the noise of pure-noise block sums.
"""
from __future__ import annotations

import galsim
import numpy as np
import pytest
import sep
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy import text

from benchmarks import hst_accuracy as score
from pipeline import detect as det
from pipeline.mosaic import Exposure, ExposureInfo, drizzle, release_grid
from pipeline.photometry import aperture_photometry, estimate_background, noise_scale
from pipeline.runner import run_stage
from pipeline.sim_bands import BANDS
from pipeline.sim_observe import make_wcs
from pipeline.sim_render import StampMapping, add_stamp, intrinsic_stamp, psf_stamp, stamp_scale
from pipeline.sim_sources import FAINT_STAR_G, make_sources

from .conftest import MOCK_FIELD, MOCK_SEED, MOCK_SIZE_ARCMIN

RA0, DEC0 = 3.588333, -30.39725


# ----------------------------------------------------------------------------- mock rendering
@pytest.mark.parametrize("n,r_half,scale", [(4.2, 0.81, 0.0853), (3.9, 0.14, 0.0427), (4.0, 2.96, 0.128),
                                            (1.0, 0.3, 0.0853)])
def test_sersic_stamps_hold_each_pixels_flux(n, r_half, scale):
    trunc = (8.0 if n >= 2 else 5.0) * r_half
    stamp = intrinsic_stamp("background", n, r_half, trunc, 0.7, 30.0, scale).data
    prof = galsim.Sersic(n, half_light_radius=r_half, trunc=trunc).shear(q=0.7, beta=120.0 * galsim.degrees)
    size = stamp.shape[0]
    exact = prof.drawImage(nx=size, ny=size, scale=scale).array  # GalSim's pixel convolution
    exact = exact / exact.sum()
    c = size // 2
    assert np.abs(stamp - exact).max() < 0.03 * exact.max()
    assert stamp[c, c] == pytest.approx(exact[c, c], rel=0.05)
    if n >= 3:  # a point-sampled cusp puts several times the flux in the central pixel
        sampled = prof.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
        assert sampled[c, c] / sampled.sum() > 2.5 * exact[c, c]


@pytest.mark.parametrize("band", ["f105w", "f160w", "f814w"])
def test_rendered_stars_keep_their_flux_wherever_they_fall_in_a_pixel(band):
    """The mock integrates over each detector pixel: a star's pixel sum and its 0.35" aperture do
    not depend on its position within the pixel. Sampling the undersampled WFC3/IR PSF at pixel
    centres (the earlier rendering) made F105W stars 8% fainter or 12% brighter by position."""
    b = BANDS[band]
    stamp = intrinsic_stamp("star", 0, 0, 0, 1, 0, stamp_scale(b.pixscale, 0.0))
    conv = psf_stamp(stamp, band)
    mapping = StampMapping.from_cd(make_wcs((RA0, DEC0), (1, 1), b.pixscale, 17.0).wcs.cd, stamp.scale)
    rng = np.random.default_rng(0)
    yy, xx = np.indices((61, 61))
    totals, apertures, sampled = [], [], []
    for _ in range(60):
        x, y = 30 + rng.uniform(-0.5, 0.5, 2)
        img, point = np.zeros((61, 61)), np.zeros((61, 61))
        add_stamp(img, conv, mapping, x, y, 1.0)
        add_stamp(point, conv, mapping, x, y, 1.0, subsample=1)
        totals.append(img.sum())
        apertures.append(img[np.hypot(xx - x, yy - y) * b.pixscale < 0.35].sum())
        sampled.append(point.sum())
    assert np.ptp(totals) < 0.005 and np.mean(totals) == pytest.approx(1.0, abs=0.002)
    assert np.std(apertures) < 0.005
    if band == "f105w":
        assert np.ptp(sampled) > 0.1


def test_render_truth_puts_each_source_on_any_grid_with_its_flux():
    from astropy.table import Table

    from pipeline.mock import render_truth
    from pipeline.sim_bands import ujy_to_counts

    truth = Table({"kind": ["star", "background"], "ra": [RA0, RA0 + 2.0 / 3600], "dec": [DEC0, DEC0],
                   "pmra": [0.0, 0.0], "pmdec": [0.0, 0.0], "sersic_n": [0.0, 1.0], "r_half_arcsec": [0.0, 0.3],
                   "trunc_arcsec": [0.0, 1.5], "q": [1.0, 0.6], "pa_deg": [0.0, 30.0], "flux_f160w": [10.0, 5.0]})
    wcs = _tan_wcs(RA0, DEC0, 0.1, (200, 200), 0.0)
    wcs.wcs.set()
    image = render_truth(truth, "f160w", wcs, (200, 200), 57000.0)
    counts = ujy_to_counts(np.array([10.0, 5.0]), BANDS["f160w"])
    # everything but the PSF halo beyond the 20" grid (< 1%)
    assert image.sum() == pytest.approx(counts.sum(), rel=0.01)
    x, y = wcs.all_world2pix(RA0, DEC0, 0)
    py, px = np.unravel_index(np.argmax(image), image.shape)
    assert abs(px - x) <= 0.5 and abs(py - y) <= 0.5
    east = image[:, : int(x) - 10].sum()  # the galaxy 2" east of the star: left of it on a north-up grid
    assert east == pytest.approx(counts[1], rel=0.05)


def test_faint_stars_are_added_without_changing_the_other_sources(monkeypatch):
    from pipeline import sim_sources

    def draw():
        return make_sources(np.random.default_rng(5), RA0, DEC0, 0.3, 60.0)

    with_faint = draw()
    monkeypatch.setattr(sim_sources, "FAINT_STAR_DENSITY", 0.0)
    without = draw()
    g = np.asarray(with_faint["phot_g_mean_mag"])
    faint = (np.asarray(with_faint["kind"]).astype(str) == "star") & (g >= FAINT_STAR_G[0])
    assert faint.sum() >= 5 and len(with_faint) - len(without) == faint.sum()
    key = ("ra", "dec", "flux_f160w")
    kept = {tuple(round(float(r[k]), 10) for k in key) for r in with_faint[~faint]}
    assert kept == {tuple(round(float(r[k]), 10) for k in key) for r in without}


# ----------------------------------------------------------------------------- drizzle weights
def _tan_wcs(ra: float, dec: float, scale: float, shape: tuple[int, int], rot: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    w.wcs.cd = scale / 3600.0 * np.array([[-c, s], [s, c]])
    w.pixel_shape = (shape[1], shape[0])
    return w


def _point(wcs: WCS, shape, ra: float, dec: float, flux: float, sigma_pix: float) -> np.ndarray:
    from scipy.special import erf

    x0, y0 = wcs.all_world2pix(ra, dec, 0)

    def edges(n, c):
        lo = (np.arange(n) - 0.5 - c) / (np.sqrt(2) * sigma_pix)
        return 0.5 * (erf(lo + 1 / (np.sqrt(2) * sigma_pix)) - erf(lo))

    return flux * np.outer(edges(shape[0], y0), edges(shape[1], x0))


def test_drizzle_ignores_the_sources_poisson_noise_in_the_weights():
    """An undersampled star (FWHM 1.2 native pixels) in 4 dithered exposures whose error arrays
    carry the star's Poisson noise: the drizzled flux is conserved (pixfrac 1), and the mosaic is
    the one drizzled with flat errors (the pixel errors do not weigh the mean)."""
    grid = release_grid(RA0, DEC0, 0.3)
    shape, t_exp, sky = (120, 120), 1000.0, 0.6
    rng = np.random.default_rng(4)
    star = SkyCoord(RA0 + 0.3 / 3600 / np.cos(np.radians(DEC0)), DEC0 - 0.2 / 3600, unit="deg")
    poisson, flat = [], []
    for k in range(4):
        wcs = _tan_wcs(RA0 + rng.uniform(-1, 1) / 3600, DEC0 + rng.uniform(-1, 1) / 3600, 0.128, shape,
                       rng.uniform(0, 3))
        img = _point(wcs, shape, star.ra.deg, star.dec.deg, 500.0, 0.65).astype(np.float32)
        info = ExposureInfo(f"x{k}", "HST", "WFC3", "IR", "f160w", t_exp, 57000.0, 57000.0, 57000.01, 0.0,
                            "01", None, "ir")
        err = np.sqrt((img + sky) / t_exp).astype(np.float32)
        mask = np.zeros(shape, bool)
        poisson.append(Exposure(info, img, err, mask, wcs, "electrons/s", "x.fits"))
        flat.append(Exposure(info, img, np.full(shape, np.median(err), np.float32), mask, wcs, "electrons/s",
                             "x.fits"))
    sci, wht = drizzle(poisson, grid, pixfrac=1.0)
    sci_flat, wht_flat = drizzle(flat, grid, pixfrac=1.0)
    np.testing.assert_array_equal(sci, sci_flat)
    np.testing.assert_array_equal(wht, wht_flat)
    x, y = grid.wcs("ir").all_world2pix(star.ra.deg, star.dec.deg, 0)
    assert sep.sum_circle(sci.astype(float), [x], [y], 15.0)[0][0] == pytest.approx(500.0, rel=2e-3)


# ----------------------------------------------------------------------------- noise scale, errors
def _crowded_field(seed: int, sigma: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Bright de Vaucouleurs halos and many faint disks (noiseless), and white noise of ``sigma``."""
    rng = np.random.default_rng(seed)
    n = 240
    img = np.zeros((n, n))
    for _ in range(4):
        gal = galsim.Sersic(4, half_light_radius=rng.uniform(10, 25), trunc=120).withFlux(rng.uniform(1e5, 3e5))
        img += gal.drawImage(nx=n, ny=n, scale=1.0, offset=rng.uniform(-90, 90, 2)).array
    for _ in range(250):
        gal = galsim.Exponential(half_light_radius=rng.uniform(1, 3)).withFlux(rng.uniform(20, 200))
        img += gal.drawImage(nx=n, ny=n, scale=1.0, offset=rng.uniform(-115, 115, 2)).array
    return img, rng.normal(0.0, 1.0, img.shape) * sigma


def test_noise_scale_follows_the_noise_not_halos_and_faint_sources():
    img, noise = _crowded_field(2, 1.0)
    data = (img + noise).astype(np.float32)
    err = np.ones(img.shape, np.float32)
    mask = np.zeros(img.shape, bool)
    background = estimate_background(data, err, mask, pixscale=0.1, err_scale="blocks")
    mesh = estimate_background(data, err, mask, pixscale=0.1)
    assert mesh.err_scale > 1.5  # grizli's scale: halos and faint sources in the mesh rms
    assert background.err_scale == pytest.approx(1.0, abs=0.12)
    np.testing.assert_array_equal(background.level, mesh.level)
    # the weights' normalisation is what it measures
    doubled = estimate_background(data, err / 2, mask, pixscale=0.1, err_scale="blocks").err_scale
    assert doubled == pytest.approx(2 * background.err_scale, rel=0.02)


def test_noise_scale_includes_pixel_to_pixel_correlation():
    """Noise correlated between neighbouring pixels only, as small drizzle drops make it (each
    pixel shares white noise with the next one in x, in y and diagonally): single pixels scatter
    by sigma_pix, 0.4" block sums by more than sqrt(n) sigma_pix; the scale is the block-sum one,
    measured here on the noise alone."""
    rng = np.random.default_rng(7)
    white = rng.normal(0.0, 1.0, (401, 401))
    noise = white[:-1, :-1] + 0.3 * (white[1:, :-1] + white[:-1, 1:] + white[1:, 1:])
    err = np.full(noise.shape, noise.std(), np.float32)
    blocks = noise.reshape(100, 4, 100, 4).sum(axis=(1, 3))
    expected = blocks.std() / (4 * noise.std())
    assert expected > 1.2
    measured = noise_scale(noise.astype(np.float32), err, np.zeros(noise.shape, bool), pixscale=0.1)
    assert measured == pytest.approx(expected, rel=0.08)


def test_empty_aperture_scale_measures_aperture_noise_away_from_sources():
    """White noise of sigma 2 with a weight map claiming 1, plus bright sources covered by their
    segments: every aperture size scales by ~2 (the sources, masked, do not count)."""
    from pipeline.photometry import Background, empty_aperture_scale

    rng = np.random.default_rng(11)
    shape = (500, 500)
    image = rng.normal(0.0, 2.0, shape)
    seg = np.zeros(shape, np.int32)
    yy, xx = np.indices(shape)
    for k, (x0, y0) in enumerate(rng.uniform(30, 470, (25, 2)), start=1):
        r = np.hypot(xx - x0, yy - y0)
        image += 500.0 * np.exp(-0.5 * (r / 3.0) ** 2)
        seg[r < 12] = k
    background = Background(level=np.zeros(shape, np.float32), err_scale=1.0)
    scales = empty_aperture_scale(image, np.ones(shape), seg, pixscale=0.1, background=background)
    np.testing.assert_allclose(scales, 2.0, rtol=0.12)


def test_background_with_the_sources_masked_stays_at_the_sky_under_a_bright_galaxy():
    """The photometry stage masks the detection segments when it estimates the 4" background: a
    galaxy's own light in the mesh otherwise raises the background under it."""
    from scipy import ndimage

    rng = np.random.default_rng(1)
    yy, xx = np.indices((240, 240)).astype(float)
    galaxy = 50.0 * np.exp(-np.hypot(xx - 120, yy - 120) / 10.0)  # exponential, 1" scale length at 0.1"
    sci = (1.0 + galaxy + rng.normal(0, 0.05, galaxy.shape)).astype(np.float32)
    err = np.full(sci.shape, 0.05, np.float32)
    mask = np.zeros(sci.shape, bool)
    seg = (ndimage.gaussian_filter(sci - 1.0, 1.0) > 0.05).astype(np.int32)  # its 1-sigma isophote
    plain = estimate_background(sci, err, mask, pixscale=0.1, err_scale="blocks").level[120, 120]
    masked = estimate_background(sci, err, mask | ndimage.binary_dilation(seg > 0, iterations=2), pixscale=0.1,
                                 err_scale="blocks").level[120, 120]
    assert abs(masked - 1.0) < 0.02
    assert plain - 1.0 > 4 * abs(masked - 1.0)


def test_aperture_errors_add_the_sources_poisson_noise():
    shape, x0, y0 = (81, 81), 40.0, 40.0
    wcs = _tan_wcs(RA0, DEC0, 0.1, shape, 0.0)
    star = _point(wcs, shape, *wcs.all_pix2world(x0, y0, 0), 50.0, 1.2)
    wht = np.full(shape, 1e4)  # background error 0.01 per pixel
    plain = aperture_photometry(star, wht, [x0], [y0], pixscale=0.1, ujy_per_count=0.2)
    gain = 2000.0
    out = aperture_photometry(star, wht, [x0], [y0], pixscale=0.1, ujy_per_count=0.2, gain=gain)
    counts = plain["flux"][0] / 0.2
    expected = 0.2 * np.sqrt((plain["fluxerr"][0] / 0.2) ** 2 + counts / gain)
    np.testing.assert_allclose(out["fluxerr"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(out["flux"][0], plain["flux"][0])


# ----------------------------------------------------------------------------- detection
def test_sources_whose_kron_radius_fails_keep_the_minimum_circle(monkeypatch):
    shape = (160, 160)
    wcs = _tan_wcs(RA0, DEC0, 0.1, shape, 0.0)
    rng = np.random.default_rng(1)
    positions = [(50.3, 60.2), (110.6, 95.1)]
    image = sum(_point(wcs, shape, *wcs.all_pix2world(x, y, 0), 5.0, 1.5) for x, y in positions)
    image = (image + rng.normal(0, 0.01, shape)).astype(np.float32)
    weight = np.full(shape, 1e4, np.float32)
    real = sep.kron_radius

    def failing(data, x, y, *args, **kwargs):  # sep's answer when the first moment is not positive
        kr, flag = real(data, x, y, *args, **kwargs)
        kr[np.argmin(np.hypot(x - 110.6, y - 95.1))] = 0.0
        return kr, flag

    monkeypatch.setattr(det.sep, "kron_radius", failing)
    catalog, _ = det.detect(image, weight, wcs)
    assert len(catalog) == 2
    lost = catalog[np.argmin(np.hypot(catalog["x"] - 110.6, catalog["y"] - 95.1))]
    assert lost["kron_radius"] == 0
    circle = sep.sum_circle(image.astype(np.float64), [lost["x"]], [lost["y"]], 3.5, subpix=5)[0][0]
    assert lost["flux_auto"] == pytest.approx(circle, rel=0.05)


# ----------------------------------------------------------------------------- scoring helpers
def test_detection_scores_count_found_missed_and_spurious():
    true_x = np.array([20.0, 50.0, 80.0, 50.0, 5.0])
    true_y = np.array([20.0, 50.0, 80.0, 20.0, 50.0])
    mag = np.array([24.0, 25.0, 26.0, 29.0, 24.0])  # the last one is too close to the edge
    det_x = np.array([20.5, 50.0, 70.0, 50.1])
    det_y = np.array([20.0, 51.0, 70.0, 20.0])
    s = score.detection_scores(det_x, det_y, true_x, true_y, mag, (100, 100), 28.0, pixscale=0.1,
                               edge_arcsec=1.0, match_arcsec=0.3)
    # bright: the first three (m < 27, inside); found: (20,20) at 0.5 px and (50,50) at 1 px
    assert s.n_bright == 3 and s.completeness == pytest.approx(2 / 3)
    assert s.n_detected == 4 and s.spurious == pytest.approx(1 / 4)  # (70,70) matches nothing
    assert s.median_offset_arcsec == pytest.approx(0.075)
    assert s.missed == [(80.0, 80.0, 26.0)]


def test_completeness_by_segment_area_splits_sources_by_the_segment_under_them():
    seg = np.zeros((100, 100), np.int32)
    seg[10:20, 10:20] = 1  # 1 arcsec2 at 0.1"
    seg[40:90, 40:90] = 2  # 25 arcsec2
    true_x = np.array([15.0, 30.0, 60.0, 70.0])
    true_y = np.array([15.0, 30.0, 60.0, 70.0])
    out = score.completeness_by_segment_area(np.array([15.2, 70.1]), np.array([15.0, 69.9]), true_x, true_y,
                                             np.full(4, 24.0), seg, 28.0, pixscale=0.1)
    # (15,15) on the small segment and (30,30) on no segment: one of two found; (60,60), (70,70)
    # on the large one: one of two
    assert [(lo, n) for lo, _, n, _ in out] == [(0.0, 2), (5.0, 0), (20.0, 2)]
    assert out[0][3] == 0.5 and np.isnan(out[1][3]) and out[2][3] == 0.5


def test_missed_sources_are_classified_as_blended_inside_a_segment_or_below_the_isophote():
    seg = np.zeros((100, 100), np.int32)
    seg[40:90, 40:90] = 7
    true_x = np.array([20.0, 25.0, 60.0, 10.0])
    true_y = np.array([20.0, 20.0, 60.0, 80.0])
    flux = 10 ** (-0.4 * (np.array([22.0, 25.0, 25.0, 26.0]) - 23.9))
    # (25,20) is 0.5" from a brighter source; (60,60) lies in segment 7; (10,80) on no segment
    missed = [(25.0, 20.0, 25.0), (60.0, 60.0, 25.0), (10.0, 80.0, 26.0)]
    out = score.classify_missed(missed, true_x, true_y, flux, seg, 0.1)
    assert list(out.values()) == [1, 1, 1]


# ----------------------------------------------------------------------------- the small mock, end to end
FIELD, SIZE_ARCMIN, SEED = "j001408m3023", 0.5, 3  # the session's mock_core


@pytest.fixture(scope="module")
def small_mock(mock_core):
    assert (FIELD, SIZE_ARCMIN, SEED) == (MOCK_FIELD, MOCK_SIZE_ARCMIN, MOCK_SEED)
    return mock_core.outdir


@pytest.mark.slow
def test_small_mock_meets_the_hst_targets(engine, small_mock):
    """A 0.5' cluster core (the hardest 0.5' of the field): the issue's targets where this field can
    test them, the tightest honest bounds where it cannot (numbers measured with seed 3, see the
    report; the 2' benchmark, benchmarks/hst_accuracy.py, scores the full targets)."""
    for stage in ("mosaic", "detect", "photometry"):
        result = run_stage(engine, stage, FIELD, input_dir=small_mock if stage == "mosaic" else None)
        assert not result.skipped and result.rows
    s = score.evaluate(engine, FIELD, small_mock)
    d = s["detection"]
    # depth: empty apertures of the core hold halo light; the nominal F160W depth is 28.0
    assert 25.5 < s["depth"] < 28.5
    assert d.n_bright >= 15
    # blends with bright cluster members and their halos (DEBLEND_CONT 0.001) cost the core most:
    # 68% here before the high-pass extraction; 91% on the 2' field with it (76.5% without)
    assert d.completeness >= 0.6
    # ... while the few sources on ordinary segments (< 5 arcsec2) are found
    small = s["by_segment_area"][0]
    assert small[2] >= 5 and small[3] >= 0.85
    assert d.spurious <= 0.05
    # 15 matched sources, centroids on cluster halos: 0.030" here (release extraction), 0.013" on
    # the 2' field
    assert d.median_offset_arcsec < 0.04
    # isolated point sources: the core has three. The IR filters (6-12 exposures drizzled with
    # pixfrac 0.33) sample each star's core at a few input-pixel centres, 5-10% off per star; the
    # drizzle-sampling factors (pipeline.drizzle_psf, measured with seed 3: IR medians -0.5 / -0.5
    # / -1.2%, -1.3 / -9.6 / +11.9% without) take that out, and ACS barely needs them
    assert s["n_stars_matched"] >= 2
    for f in ("f435w", "f606w", "f814w", "f105w", "f125w", "f160w"):
        assert abs(s["points"][f].median_rel) < 0.025, f
    with engine.connect() as conn:
        samp = dict(conn.execute(text(
            "SELECT f.name, array_agg(a.samp_corr) FROM aperture_flux a JOIN filter f USING (filter_id) "
            "WHERE a.run_id = :r AND a.aperture = 2 GROUP BY f.name"), {"r": result.run_id}).all())
    samp = {f: np.array(v, float) for f, v in samp.items()}
    assert np.all(np.isnan(samp["det"]))  # the detection image is not a drizzle of exposures
    for f in ("f435w", "f606w", "f814w"):
        assert np.nanmax(np.abs(samp[f] - 1)) < 0.01, f
    for f in ("f105w", "f125w", "f160w"):
        assert np.nanmax(np.abs(samp[f] - 1)) > 0.05, f
    unsampled = run_stage(engine, "photometry", FIELD, overrides={"sampling_correction": False})
    assert not unsampled.skipped
    u = score.evaluate(engine, FIELD, small_mock)
    assert u["photometry_run"] == unsampled.run_id
    assert max(abs(u["points"][f].median_rel) for f in ("f105w", "f125w", "f160w")) > 0.05
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(samp_corr) FROM aperture_flux WHERE run_id = :r"),
                            {"r": unsampled.run_id}).scalar() == 0

    # PSF-matched photometry (psf_match=f160w, pipeline.psfmatch) on the same detections
    matched = run_stage(engine, "photometry", FIELD, overrides={"psf_match": "f160w"})
    assert not matched.skipped and matched.rows["aperture_flux"] == result.rows["aperture_flux"]
    with engine.connect() as conn:
        kernels = conn.execute(text("SELECT path, meta FROM product WHERE run_id = :r AND kind = 'psf_kernels'"),
                               {"r": matched.run_id}).one()
        tot = dict(conn.execute(text(
            "SELECT f.name, array_agg(t.tot_corr ORDER BY t.source_id) FROM total_correction t "
            "JOIN filter f USING (filter_id) WHERE t.run_id = :r GROUP BY f.name"), {"r": matched.run_id}).all())
    assert kernels.meta == {"target": "f160w", "matched": ["f105w", "f125w", "f435w", "f606w", "f814w"]}
    with fits.open(kernels.path) as hdul:
        assert sorted(h.name for h in hdul[1:]) == ["F105W", "F125W", "F435W", "F606W", "F814W"]
        assert all(abs(float(h.data.sum()) - 1) < 1e-4 for h in hdul[1:])
    # every matched filter is corrected to total with the F160W curve of growth
    for f in ("f435w", "f814w", "f105w"):
        np.testing.assert_allclose(tot[f], tot["f160w"])
    m = score.evaluate(engine, FIELD, small_mock)
    assert m["photometry_run"] == matched.run_id
    # point sources keep their total fluxes; F160W itself is measured as before
    for f in ("f435w", "f606w", "f814w"):
        assert abs(m["points"][f].median_rel) < 0.03, f
    assert m["points"]["f160w"].median_rel == pytest.approx(s["points"]["f160w"].median_rel, abs=1e-9)
    # galaxies: unmatched, their ACS/F160W flux ratios come out 10-12% high (the ACS aperture
    # holds more of their light; 1.10-1.12 measured with seed 3); matched, within 2% of true
    for f in ("f435w", "f606w", "f814w"):
        n, before, _ = s["colours"][f]
        n_after, after, _ = m["colours"][f]
        assert n >= 5 and n_after >= 5, (f, n, n_after)
        assert before > 1.05 and abs(after - 1) < 0.04, (f, before, after)
