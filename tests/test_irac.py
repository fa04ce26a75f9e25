"""IRAC model photometry (pipeline/irac*.py): kernels, grids, models, exact solve, patches, field.

Synthetic scenes (``pipeline.irac_synthetic``) render the IRAC image by one whole-image fine-grid
FFT convolution, independently of the cutout/phase-kernel code under test, so recovered fluxes,
errors and shifts are checked against known truth.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from astropy.wcs import WCS
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from pipeline.irac import (FourierWindow, IracFlag, IracGeometry, IracParams, PatchInput,
                           SourceTable, assign_sources, background_terms, binned_kernel,
                           fit_field, fit_patch, matching_kernel, patch_grid, position_psf,
                           rotate_psf, solve, source_models)
from pipeline.irac_kernel import centroid, pad_to, resample_psf, shift_image
from pipeline.irac_models import convolve_bin, segment_boxes
from pipeline.irac_patches import PatchBox
from pipeline.irac_segmentation import watershed_segmentation
from pipeline.irac_synthetic import gaussian_psf, render_irac, synthetic_scene

HST_FWHM, IRAC_FWHM = 1.8, 17.0   # HST pixels of 0.1": 0.18" and 1.7"
NOISE = 0.02


def gaussian(shape, sx, sy=None, theta=0.0, centre=None):
    sy = sx if sy is None else sy
    cy, cx = centre if centre is not None else (shape[0] // 2, shape[1] // 2)
    yy, xx = np.indices(shape)
    c, s = np.cos(theta), np.sin(theta)
    u = c * (xx - cx) + s * (yy - cy)
    v = -s * (xx - cx) + c * (yy - cy)
    g = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return g / g.sum()


@pytest.fixture(scope="module")
def kernel():
    return matching_kernel(gaussian_psf(HST_FWHM, 41), 0.1, gaussian_psf(IRAC_FWHM, 100), 0.1,
                           out_scale=0.1)


@pytest.fixture(scope="module")
def irac_psf():
    return gaussian_psf(IRAC_FWHM, 100)


def whole_patch_input(scene, kernel, irac_psf=None, point=None):
    ny, nx = scene.irac.shape
    box = PatchBox(0, 0, 0, nx, ny, (-10 ** 9, 10 ** 9, -10 ** 9, 10 ** 9), 5)
    xi, yi = scene.geometry.hst_to_irac(scene.x, scene.y)
    point = np.zeros(len(scene.ids), bool) if point is None else point
    return PatchInput(box, scene.irac, scene.irac_weight, scene.hst_ujy, scene.seg,
                      scene.geometry, scene.ids, xi, yi, scene.mag, point, kernel, irac_psf)


@pytest.fixture(scope="module")
def crowded(kernel):
    """80 x 80 IRAC pixels (40"), 160 sources plus 60 neighbours within 0.6-2", a sloped sky."""
    return synthetic_scene((80, 80), 160, kernel, seed=11, pairs=60, noise=0.01,
                           background=(0.03, 0.01, -0.02), mag_range=(19.0, 26.0))


@pytest.fixture(scope="module")
def crowded_result(crowded, kernel):
    return fit_patch(whole_patch_input(crowded, kernel), IracParams(galfit_flux_limit=None))


# ---------------------------------------------------------------- kernels and PSFs

def test_matching_kernel_of_gaussians_is_the_difference_gaussian():
    hst, irac = gaussian_psf(HST_FWHM, 41), gaussian_psf(IRAC_FWHM, 100)   # even-sized IRAC PSF
    k = matching_kernel(hst, 0.1, irac, 0.1, out_scale=0.1)
    sigma = np.sqrt((IRAC_FWHM ** 2 - HST_FWHM ** 2)) / 2.3548
    expected = gaussian(k.shape, sigma)
    assert k.shape == (100, 100) and k.sum() == pytest.approx(1.0)
    assert np.abs(k - expected).max() < 1e-3 * expected.max()
    conv = signal.fftconvolve(pad_to(hst, k.shape), k)[50:150, 50:150]   # centre pixel 50
    assert np.abs(conv - irac).max() < 1e-3 * irac.max()


def test_matching_kernel_resamples_and_recentres_the_hst_psf():
    irac = gaussian_psf(IRAC_FWHM, 100)
    reference = matching_kernel(gaussian_psf(HST_FWHM, 41), 0.1, irac, 0.1, out_scale=0.1)
    # the same 0.18" PSF sampled at 0.06", off-centre by (1.5, -2) pixels
    fine = gaussian((50, 50), HST_FWHM / 0.6 / 2.3548, centre=(25 - 2, 25 + 1.5))
    k = matching_kernel(fine, 0.06, irac, 0.1, out_scale=0.1)
    assert np.abs(k - reference).max() < 0.02 * reference.max()
    cx, cy = centroid(k, 15)
    assert abs(cx - 50) < 0.05 and abs(cy - 50) < 0.05


def test_fourier_windows():
    shape = (64, 64)
    top = FourierWindow("tophat", beta=0.5)(shape)
    assert top[0, 0] == 1 and top[0, 16] == 1 and top[0, 17] == 0
    hann = FourierWindow("hanning")(shape)
    assert hann[0, 0] == 1 and hann[0, 32] == pytest.approx(0.0) and 0 < hann[0, 16] < 1
    irac = gaussian_psf(IRAC_FWHM, 100)
    plain = matching_kernel(gaussian_psf(HST_FWHM, 41), 0.1, irac, 0.1, out_scale=0.1)
    tapered = matching_kernel(gaussian_psf(HST_FWHM, 41), 0.1, irac, 0.1, out_scale=0.1,
                              window=FourierWindow("cosine_bell", alpha=0.3))
    assert tapered.max() < plain.max() and tapered.sum() == pytest.approx(1.0)


def test_resample_psf_conserves_shape():
    psf = gaussian((61, 61), 5.0)
    out = resample_psf(psf, 0.06, 0.1)
    assert out.sum() == pytest.approx(1.0)
    expected = gaussian(out.shape, 3.0)
    assert np.abs(out - expected).max() < 0.01 * expected.max()


def test_rotate_and_average_psf():
    elongated = gaussian((61, 61), 6.0, 2.0)
    turned = rotate_psf(elongated, 90.0)
    assert np.abs(turned - gaussian((61, 61), 2.0, 6.0)).max() < 1e-3 * elongated.max()
    tilted = gaussian((61, 61), 6.0, 2.0, np.deg2rad(30))
    assert np.abs(rotate_psf(elongated, 30.0) - tilted).max() < 0.01 * elongated.max()
    mean = position_psf(elongated, [0.0, 90.0], [3.0, 1.0])
    a, b = rotate_psf(elongated, 0.0), turned            # each AOR counts where it is non-zero
    expected = (3 * a + b) / np.maximum(3 * (a != 0) + (b != 0), 1)
    assert np.abs(mean - expected / expected.sum()).max() < 1e-9 * elongated.max()


# ---------------------------------------------------------------- geometry and models

def test_geometry_from_wcs_round_trip():
    hst = WCS(naxis=2)
    hst.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    hst.wcs.crval = [3.58, -30.4]
    hst.wcs.crpix = [1001.0, 1001.0]
    hst.wcs.cd = np.array([[-0.1, 0.0], [0.0, 0.1]]) / 3600
    irac = WCS(naxis=2)
    irac.wcs.ctype = hst.wcs.ctype
    irac.wcs.crval = hst.wcs.crval
    irac.wcs.cd = hst.wcs.cd * 5
    # IRAC pixel 0 covers HST pixels 35..39 in x and -10..-6 in y
    irac.wcs.crpix = [(1000 - 35 + 0.5) / 5 + 0.5, (1000 + 10 + 0.5) / 5 + 0.5]
    g = IracGeometry.from_wcs(hst, irac)
    assert g == IracGeometry(5, 35, -10)
    xh, yh = np.array([3.0, 1234.5]), np.array([17.25, 800.0])
    xi, yi = g.hst_to_irac(xh, yh)
    xw, yw = irac.all_world2pix(*hst.all_pix2world(xh, yh, 0), 0)
    assert np.allclose(xi, xw, atol=1e-6) and np.allclose(yi, yw, atol=1e-6)
    assert np.allclose(g.irac_to_hst(xi, yi), (xh, yh))
    irac.wcs.crpix = irac.wcs.crpix + 0.3
    with pytest.raises(ValueError):
        IracGeometry.from_wcs(hst, irac)


@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.4, -0.26), (1.3, 0.7)])
def test_convolve_bin_equals_fine_grid_convolution_then_binning(kernel, shift):
    rng = np.random.default_rng(5)
    cutout = rng.random((23, 14))
    fy, fx = 12, -7                                     # fine offset of cutout[0, 0]
    block, jy, jx = convolve_bin(cutout, fy, fx, binned_kernel(kernel, 5, shift))
    canvas = np.zeros((500, 500))
    canvas[250 + fy:250 + fy + 23, 250 + fx:250 + fx + 14] = cutout
    reference = render_irac(canvas, kernel, 5, shift)
    ref = reference[50 + jy:50 + jy + block.shape[0], 50 + jx:50 + jx + block.shape[1]]
    assert np.abs(ref - block).max() < 1e-9 * ref.max()
    assert block.sum() == pytest.approx(cutout.sum(), rel=1e-9)


def test_source_models_are_unit_sum_columns_of_segment_flux(crowded, kernel):
    ids = crowded.ids[np.isfinite(crowded.mag)]
    models = source_models(crowded.hst_ujy, crowded.seg, ids, binned_kernel(kernel, 5),
                           crowded.geometry, (-40, -40, 160, 160))   # box holding all supports
    seg_flux = np.bincount(crowded.seg.ravel(), weights=crowded.hst_ujy.ravel())[models.ids]
    assert np.allclose(models.norm, seg_flux, rtol=1e-10)
    assert np.allclose(np.asarray(models.matrix.sum(axis=0)).ravel(), 1.0, rtol=1e-10)
    assert set(models.ids) == set(ids)


def test_background_terms_follow_golfir_order():
    assert background_terms((240, 240)).shape == (240 * 240, 16)      # round(240/64) = 4
    assert background_terms((60, 60)).shape == (3600, 9)              # clipped to order 3
    assert background_terms((60, 60), order_npix=4).shape[1] == 121    # clipped to order 11


# ---------------------------------------------------------------- patches

@settings(max_examples=60, deadline=None)
@given(ny=st.integers(20, 1500), nx=st.integers(20, 1500), half=st.floats(0.3, 1.5),
       overlap=st.floats(0.1, 0.4), data=st.data())
def test_every_source_is_measured_by_exactly_one_patch(ny, nx, half, overlap, data):
    # border <= overlap / 2 in whole pixels, as patch_grid rounds them (0.5" pixels)
    border = data.draw(st.floats(0.0, (int(round(overlap * 60 / 0.5)) // 2) * 0.5 - 0.25))
    grid = patch_grid((ny, nx), 0.5, patch_arcmin=half, overlap_arcmin=overlap,
                      border_arcsec=border)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 31)))
    x = rng.uniform(-0.5, nx - 0.5, 200)
    y = rng.uniform(-0.5, ny - 0.5, 200)
    owner = assign_sources(x, y, grid)
    boxes = grid.boxes
    owns = np.array([b.owns(x, y) for b in boxes])
    assert np.array_equal(owns.sum(axis=0), np.ones(200))
    assert np.array_equal(np.argmax(owns, axis=0), owner)
    for b in boxes:                                   # owned sources lie in the fitted area
        sel = owner == b.index
        jx = np.floor(x[sel] + 0.5).astype(int) - b.x0
        jy = np.floor(y[sel] + 0.5).astype(int) - b.y0
        assert b.fit_mask()[jy, jx].all()
    assert min(b.x0 for b in boxes) <= 0 and max(b.x0 + b.nx for b in boxes) >= nx


def test_patch_grid_is_golfirs_two_arcmin_patches():
    grid = patch_grid((1000, 700), 0.5)
    assert grid.size == 240 and grid.overlap == 24 and grid.border == 5
    assert np.diff(grid.x_starts).tolist() == [216] * (len(grid.x_starts) - 1)
    with pytest.raises(ValueError):
        patch_grid((100, 100), 0.5, overlap_arcmin=0.05)          # border wider than overlap/2


# ---------------------------------------------------------------- exact solve

def test_solve_equals_dense_lstsq_and_dense_inverse(crowded, kernel):
    ids = crowded.ids[crowded.mag < 27]
    models = source_models(crowded.hst_ujy, crowded.seg, ids, binned_kernel(kernel, 5),
                           crowded.geometry, (0, 0, 80, 80))
    bg = background_terms((80, 80), 32)
    weight = crowded.irac_weight.ravel().copy()
    weight[:400] = 0.0
    sol = solve(models.matrix, crowded.irac.ravel(), weight, background=bg)
    fitted = (sol.flag & IracFlag.UNCONSTRAINED) == 0
    a = np.hstack([bg, models.matrix.toarray()[:, fitted]])[weight > 0]
    a *= np.sqrt(weight[weight > 0])[:, None]
    y = (crowded.irac.ravel() * np.sqrt(weight))[weight > 0]
    coeffs = np.linalg.lstsq(a, y, rcond=None)[0]
    err = np.sqrt(np.diag(np.linalg.inv(a.T @ a)))
    nb = bg.shape[1]
    ok = np.isfinite(sol.err[fitted])
    assert np.allclose(sol.err[fitted][ok], err[nb:][ok], rtol=1e-8, atol=0)
    assert np.abs(sol.flux[fitted][ok] - coeffs[nb:][ok]).max() < 1e-6 * err[nb:].min()
    assert np.allclose(sol.background, coeffs[:nb], rtol=1e-6,
                       atol=1e-9 * np.abs(coeffs[:nb]).max())


def test_solve_flags_unconstrained_negative_and_degenerate():
    rng = np.random.default_rng(2)
    npix = 400
    cols = np.zeros((npix, 4))
    cols[:100, 0] = rng.random(100)                   # well constrained
    cols[100:104, 1] = 1.0                            # 4 positive pixels: unconstrained
    cols[200:300, 2] = rng.random(100)                # will come out negative
    cols[300:, 3] = rng.random(100)
    truth = np.array([50.0, 10.0, -30.0, 20.0])
    data = cols @ truth + rng.normal(0, 1.0, npix)
    sol = solve(sp.csc_matrix(cols), data, np.ones(npix))
    assert sol.flag.tolist() == [0, IracFlag.UNCONSTRAINED, IracFlag.NEGATIVE, 0]
    assert np.isnan(sol.flux[[1, 2]]).all() and np.isfinite(sol.flux[[0, 3]]).all()
    twin = sp.csc_matrix(np.hstack([cols[:, [0]], cols[:, [0]]]))
    dup = solve(twin, cols[:, 0] * 8.0, np.ones(npix))
    assert (dup.flag & IracFlag.DEGENERATE).all()
    assert dup.flux.sum() == pytest.approx(8.0)


# ---------------------------------------------------------------- one patch

def test_fluxes_unbiased_with_gaussian_pulls_including_close_pairs(crowded, crowded_result):
    res = crowded_result
    true = crowded.irac_true[res.ids - 1]
    ok = np.isfinite(res.flux)
    assert ok.sum() > 150
    pull = (res.flux - true)[ok] / res.err[ok]
    high_sn = true[ok] / res.err[ok] > 10
    assert high_sn.sum() > 40
    assert abs(np.median((res.flux[ok] - true[ok])[high_sn] / true[ok][high_sn])) < 0.03
    assert 0.8 < np.std(pull) < 1.3
    xy = np.array([crowded.x, crowded.y]).T[res.ids - 1]
    dist = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(dist, np.inf)
    close = dist.min(axis=1)[ok] < 20                  # a neighbour within 2"
    assert close.sum() > 40
    assert 0.8 < np.std(pull[close]) < 1.3


def test_residual_errors_widen_only_errors_the_model_mismatch_makes_wrong(crowded, kernel):
    """``residual_errors``: where the models match the data (the crowded scene) the factors stay
    near 1 and the pulls as they were; where the data's PSF is wider than the models' (blur fit
    off) the statistical errors are far too small, and the factors widen them (never narrow
    them), bringing the pull scatter down by more than half while the fluxes stay the same."""
    from scipy import ndimage

    from pipeline.irac_fit import residual_error_factors

    params = IracParams(galfit_flux_limit=None)
    plain = fit_patch(whole_patch_input(crowded, kernel), params)
    wide = fit_patch(whole_patch_input(crowded, kernel), IracParams(galfit_flux_limit=None, residual_errors=True))
    ok = np.isfinite(wide.flux)
    assert np.nanmedian(wide.err_factor) == pytest.approx(1.0, abs=0.05)
    np.testing.assert_array_equal(wide.flux[ok], plain.flux[ok])
    pull = (wide.flux[ok] - crowded.irac_true[wide.ids[ok] - 1]) / wide.err[ok]
    assert 0.8 < np.std(pull) < 1.3

    wider = ndimage.gaussian_filter(kernel, 3.0, mode="constant")
    scene = synthetic_scene((80, 80), 160, wider / wider.sum(), seed=4, noise=NOISE, mag_range=(18.0, 25.0))
    inp = whole_patch_input(scene, kernel)
    stat = fit_patch(inp, IracParams(galfit_flux_limit=None, fit_blur=False))
    resid = fit_patch(inp, IracParams(galfit_flux_limit=None, fit_blur=False, residual_errors=True))
    ok = np.isfinite(stat.flux) & np.isfinite(resid.flux)
    np.testing.assert_array_equal(resid.flux[ok], stat.flux[ok])
    assert np.all(resid.err[ok] >= stat.err[ok]) and np.nanmax(resid.err_factor) > 2
    true = scene.irac_true[stat.ids[ok] - 1]
    std_stat = np.std((stat.flux[ok] - true) / stat.err[ok])
    std_resid = np.std((resid.flux[ok] - true) / resid.err[ok])
    assert std_stat > 3 and std_resid < 0.6 * std_stat
    # the factor is the information-weighted rms of the normalised residual: 1 for pure noise
    rng = np.random.default_rng(0)
    a = sp.csc_matrix(rng.uniform(size=(400, 3)) * (rng.uniform(size=(400, 3)) < 0.3))
    sol = solve(a, np.zeros(400), np.ones(400))
    data = sol.model + rng.standard_normal(400)
    f = residual_error_factors(a, data, np.ones(400), sol)
    assert np.all(np.abs(f - 1) < 0.25)


def test_residual_is_noise(crowded, crowded_result):
    inner = crowded_result.residual_image[5:-5, 5:-5]
    assert np.std(inner) < 1.2 * crowded.noise
    assert np.abs(crowded_result.shift).max() < 0.05


def test_shift_fit_recovers_injected_shift(kernel):
    scene = synthetic_scene((80, 80), 160, kernel, seed=4, noise=NOISE, shift=(0.4, -0.1),
                            mag_range=(19.0, 25.0))    # 0.2" and -0.05"
    res = fit_patch(whole_patch_input(scene, kernel), IracParams(galfit_flux_limit=None))
    assert res.shift == pytest.approx((0.4, -0.1), abs=0.04)
    assert np.std(res.residual_image[5:-5, 5:-5]) < 1.2 * NOISE


def test_blur_fit_recovers_a_wider_mosaic_psf(kernel):
    """IRAC data made with a PSF wider than the fit's (Gaussian sigma 0.35 IRAC pixels = 0.175"
    added, as AOR misalignment does): the fitted blur recovers it and the fluxes of bright
    sources are unbiased, while the unblurred models put them several percent low."""
    from scipy import ndimage

    sigma = 0.35
    wider = ndimage.gaussian_filter(kernel, sigma * 5, mode="constant")
    scene = synthetic_scene((80, 80), 160, wider / wider.sum(), seed=4, noise=NOISE, mag_range=(19.0, 25.0))
    inp = whole_patch_input(scene, kernel)
    res = fit_patch(inp, IracParams(galfit_flux_limit=None))
    assert np.sqrt(res.blur) == pytest.approx(sigma, abs=0.05)
    plain = fit_patch(inp, IracParams(galfit_flux_limit=None, fit_blur=False))
    assert plain.blur == 0.0
    true = scene.irac_true[res.ids - 1]
    bright = np.isfinite(res.flux) & (true / res.err > 30)
    assert bright.sum() >= 10
    assert abs(np.median(res.flux[bright] / true[bright] - 1)) < 0.01
    assert np.median(plain.flux[bright] / true[bright] - 1) < -0.02
    assert np.std(res.residual_image[5:-5, 5:-5]) < np.std(plain.residual_image[5:-5, 5:-5])


def test_bright_sources_are_masked_but_modelled(kernel):
    scene = synthetic_scene((60, 60), 60, kernel, seed=8, noise=NOISE, mag_range=(20.0, 26.0))
    star = scene.ids[np.nanargmin(scene.mag)]
    scene.mag[star - 1] = 14.0                        # call it brighter than any_limit = 15
    res = fit_patch(whole_patch_input(scene, kernel), IracParams(galfit_flux_limit=None))
    i = np.flatnonzero(res.ids == star)[0]
    assert res.bright[i] and res.flag[i] & IracFlag.BRIGHT
    assert res.bright.sum() == 1
    others = np.isfinite(res.flux) & ~res.bright
    pull = (res.flux[others] - scene.irac_true[res.ids[others] - 1]) / res.err[others]
    assert np.std(pull) < 1.5
    # golfir's point-source limit: compact sources brighter than point_limit are bright too
    point = scene.mag < 22
    inp = whole_patch_input(scene, kernel, point=point)
    res = fit_patch(inp, IracParams(galfit_flux_limit=None, point_limit=22.5))
    assert set(res.ids[res.bright]) == set(scene.ids[point | (scene.ids == star)])


def test_sersic_refinement_replaces_a_mismatched_bright_model(kernel, irac_psf):
    scene = synthetic_scene((60, 60), 40, kernel, seed=21, noise=NOISE, mag_range=(22.0, 26.0))
    # one bright source whose IRAC light is much more extended than its HST image
    x0, y0, flux = 150.0, 150.0, 60.0
    yy, xx = np.indices(scene.hst_ujy.shape)
    compact = np.exp(-np.hypot(xx - x0, yy - y0) / 1.5)
    core = compact > 1e-3 * compact.max()
    sid = scene.ids.max() + 1
    scene.seg[core & (scene.seg == 0)] = sid
    scene.hst_ujy += compact * 30.0 / compact.sum()
    extended = np.exp(-np.hypot(xx - x0, (yy - y0) / 0.6) / 12.0)
    scene.irac += render_irac(extended * flux / extended.sum(), irac_psf, 5)
    scene.ids = np.append(scene.ids, sid)
    scene.x, scene.y = np.append(scene.x, x0), np.append(scene.y, y0)
    scene.mag = np.append(scene.mag, 23.9 - 2.5 * np.log10(30.0))
    scene.irac_true = np.append(scene.irac_true, flux)
    inp = whole_patch_input(scene, kernel, irac_psf)
    plain = fit_patch(inp, IracParams(galfit_flux_limit=None))
    refined = fit_patch(inp, IracParams(galfit_flux_limit=20.0))
    i = np.flatnonzero(refined.ids == sid)[0]
    assert refined.flag[i] & IracFlag.SERSIC and int(sid) in refined.sersic
    fit = refined.sersic[int(sid)]
    assert fit.chi2_after < fit.chi2_before - 10
    assert abs(refined.flux[i] - flux) < 0.5 * abs(plain.flux[i] - flux)
    assert np.std(refined.residual_image[5:-5, 5:-5]) < np.std(plain.residual_image[5:-5, 5:-5])


# ---------------------------------------------------------------- whole field

def test_fit_field_measures_each_source_once_in_parallel(kernel):
    scene = synthetic_scene((90, 90), 200, kernel, seed=17, noise=NOISE, pairs=20,
                            mag_range=(19.0, 26.0), background=(0.02, 0.0, 0.01))
    table = SourceTable(scene.ids, scene.x, scene.y, scene.mag)
    params = IracParams(patch_arcmin=0.25, patch_overlap=0.1, galfit_flux_limit=None)
    serial = fit_field(scene.hst_ujy, scene.seg, table, scene.irac, scene.irac_weight,
                       scene.geometry, kernel, None, params)
    assert len(serial.grid.boxes) == 4
    xi, yi = scene.geometry.hst_to_irac(scene.x, scene.y)
    assert np.array_equal(serial.patch, assign_sources(xi, yi, serial.grid))
    measured = np.isfinite(serial.flux)
    assert np.array_equal(~measured, serial.flag != 0)
    assert set(np.unique(serial.patch[measured])) == {0, 1, 2, 3}
    pull = (serial.flux - scene.irac_true)[measured] / serial.err[measured]
    assert 0.75 < np.std(pull) < 1.35
    assert np.std(serial.residual_image[5:-5, 5:-5]) < 1.2 * NOISE
    parallel = fit_field(scene.hst_ujy, scene.seg, table, scene.irac, scene.irac_weight,
                         scene.geometry, lambda x, y: kernel, None, params, n_proc=2)
    assert np.allclose(parallel.flux, serial.flux, equal_nan=True, rtol=1e-12)
    assert np.array_equal(parallel.flag, serial.flag)


def test_segment_boxes_absent_ids_are_none():
    seg = np.zeros((10, 10), dtype=np.int32)
    seg[2:4, 5:9] = 3
    assert segment_boxes(seg, np.array([3, 1, 7])) == [(slice(2, 4), slice(5, 9)), None, None]


def test_shift_image_moves_a_band_limited_image():
    g = gaussian((64, 64), 4.0)
    moved = shift_image(g, 2.5, -1.25)
    assert np.abs(moved - gaussian((64, 64), 4.0, centre=(32 - 1.25, 32 + 2.5))).max() < 1e-6


def test_patch_without_data_or_sources_flags_everything(kernel):
    scene = synthetic_scene((40, 40), 20, kernel, seed=3, noise=NOISE, mag_range=(20.0, 24.0))
    inp = whole_patch_input(scene, kernel)
    inp.weight = np.zeros_like(inp.weight)                       # off the IRAC mosaic
    res = fit_patch(inp, IracParams(galfit_flux_limit=None))
    assert np.isnan(res.flux).all() and (res.flag != 0).all() and res.shift == (0.0, 0.0)
    inp = whole_patch_input(scene, kernel)
    inp.mag = np.full(len(inp.mag), 30.0)                          # nothing bright enough
    res = fit_patch(inp, IracParams(galfit_flux_limit=None))
    assert (res.flag == IracFlag.NOT_MODELLED).all()
    assert np.allclose(res.model_image, res.background_image)


def test_watershed_segmentation_grows_segments_to_the_faint_light():
    rng = np.random.default_rng(9)
    yy, xx = np.indices((120, 160))
    blobs = [(40.0, 60.0, 50.0), (95.0, 62.0, 30.0)]             # x, y, peak
    truth = sum(a * np.exp(-np.hypot(xx - x, yy - y) / 6.0) for x, y, a in blobs)
    sci = truth + rng.normal(0, 1.0, truth.shape)
    wht = np.ones_like(sci)
    seg = np.zeros(sci.shape, dtype=np.int32)
    for sid, (x, y, _) in enumerate(blobs, start=1):
        seg[np.hypot(xx - x, yy - y) < 5] = sid                  # detection cores only
    grown = watershed_segmentation(sci, wht, seg, np.array([1, 2]), np.array([40, 95]),
                                   np.array([60, 62]))
    assert np.array_equal(grown[seg > 0], seg[seg > 0])
    for sid in (1, 2):
        assert (grown == sid).sum() > 5 * (seg == sid).sum()
        assert truth[grown == sid].sum() > 1.5 * truth[seg == sid].sum()
    assert (grown[:, :5] == 0).all() and (grown[:, -5:] == 0).all()    # sky stays unassigned
    assert grown[60, 55] == 1 and grown[62, 80] == 2              # either side of the divide
