"""IRAC master background (pipeline/background.py): frame pedestals and the second pass with the
sources of the mosaic masked in every frame (golfir's ``get_median`` and ``two_pass``).

The scene is independent of the code under test: pixel-integrated Gaussians (erf), a crowded
compact field dithered less than its own size (so its sources sit on the same detector pixels
in every frame, as in the mock fields), and a sky level that changes from frame to frame.
"""
from __future__ import annotations

import numpy as np
from astropy.wcs import WCS
from scipy.special import erf

from pipeline.background import BackgroundParams, blot_mask, irac_master_background, mosaic_source_mask

SCALE, SHAPE, SIGMA = 1.22, (96, 96), 0.002


def tan_wcs(dx_arcsec: float, dy_arcsec: float, scale: float, shape: tuple[int, int], pa_deg: float) -> WCS:
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [10.0 + dx_arcsec / 3600 / np.cos(np.radians(-20.0)), -20.0 + dy_arcsec / 3600]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    t = np.radians(pa_deg)
    w.wcs.cd = scale / 3600 * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.set()
    w.pixel_shape = (nx, ny)
    return w


def gaussians(wcs: WCS, shape, ra, dec, flux, sigma_pix) -> np.ndarray:
    img = np.zeros(shape)
    x, y = wcs.all_world2pix(ra, dec, 0)
    ey, ex = np.arange(shape[0] + 1) - 0.5, np.arange(shape[1] + 1) - 0.5
    for xi, yi, f in zip(x, y, flux):
        gx = np.diff(0.5 * erf((ex - xi) / (np.sqrt(2) * sigma_pix)))
        gy = np.diff(0.5 * erf((ey - yi) / (np.sqrt(2) * sigma_pix)))
        img += f * np.outer(gy, gx)
    return img


def crowded_aor(seed: int = 3, n_frames: int = 8):
    """Frames of one AOR: 120 sources within 40" of the centre (wide 2.5-pixel Gaussians, many
    below the single-frame detection limit), dithers of +-6", a sky level of 0.1 +- 20% per frame."""
    rng = np.random.default_rng(seed)
    r, phi = 40 * np.sqrt(rng.uniform(0, 1, 120)), rng.uniform(0, 2 * np.pi, 120)
    centre = tan_wcs(0, 0, SCALE, SHAPE, 30.0)
    ra, dec = centre.all_pix2world(SHAPE[1] / 2 + r * np.cos(phi) / SCALE, SHAPE[0] / 2 + r * np.sin(phi) / SCALE, 0)
    flux = 10 ** rng.uniform(-2.0, 0.0, 120)
    frames, wcss, levels = [], [], 0.1 * rng.uniform(0.8, 1.2, n_frames)
    for k in range(n_frames):
        w = tan_wcs(*rng.uniform(-6, 6, 2), SCALE, SHAPE, 30.0)
        wcss.append(w)
        frames.append(levels[k] + gaussians(w, SHAPE, ra, dec, flux, 2.5) + rng.normal(0, SIGMA, SHAPE))
    return frames, wcss, levels, (ra, dec, flux)


def test_pedestals_follow_each_frames_sky_level():
    frames, _, levels, _ = crowded_aor()
    bg = irac_master_background(frames, [np.full(SHAPE, SIGMA)] * len(frames), [np.zeros(SHAPE, bool)] * len(frames),
                                pixscale=SCALE)
    corner = (slice(0, 12), slice(0, 12))  # sky far from the sources
    for k, level in enumerate(levels):
        assert abs(np.mean(bg.frame(k)[corner]) - level) < 0.25 * SIGMA
    # one master for all frames could not follow levels that differ by ~20 sigma
    assert np.ptp(levels) > 10 * SIGMA


def test_mosaic_mask_removes_the_field_light_from_the_master():
    frames, wcss, levels, (ra, dec, flux) = crowded_aor()
    n = len(frames)
    errs, bad = [np.full(SHAPE, SIGMA)] * n, [np.zeros(SHAPE, bool)] * n
    single = irac_master_background(frames, errs, bad, pixscale=SCALE)
    # the deep image: the noiseless scene on a 0.5" grid with the noise of the n-frame stack
    deep_wcs = tan_wcs(0, 0, 0.5, (240, 240), 0.0)
    rng = np.random.default_rng(9)
    deep_sigma = SIGMA * (0.5 / SCALE) ** 2 / np.sqrt(n)
    deep = gaussians(deep_wcs, (240, 240), ra, dec, flux * (0.5 / SCALE) ** 2, 2.5 * SCALE / 0.5)
    deep += rng.normal(0, deep_sigma, deep.shape)
    mask = mosaic_source_mask(deep, np.full(deep.shape, deep_sigma ** -2), pixscale=0.5)
    grow = BackgroundParams().irac_mosaic_dilate_arcsec / SCALE   # the wings below the mask's threshold
    known = [blot_mask(mask, deep_wcs, w, SHAPE, dilate_pix=grow) for w in wcss]
    two = irac_master_background(frames, errs, bad, pixscale=SCALE, source_masks=known)
    truth = [levels[k] * np.ones(SHAPE) for k in range(n)]
    centre = (slice(30, 66), slice(30, 66))
    err_single = np.mean([np.mean(single.frame(k)[centre] - truth[k][centre]) for k in range(n)])
    err_two = np.mean([np.mean(two.frame(k)[centre] - truth[k][centre]) for k in range(n)])
    # single-frame masks leave the faint light of the field in the median, the mosaic mask does not
    assert err_single > 1.0 * SIGMA
    assert abs(err_two) < 0.2 * SIGMA


def test_blot_mask_follows_the_sky():
    mosaic_wcs = tan_wcs(0, 0, 0.5, (100, 100), 0.0)
    mask = np.zeros((100, 100), bool)
    mask[60:64, 30:34] = True                                  # a 2" square on the sky
    frame = tan_wcs(3.0, -2.0, SCALE, (40, 40), 70.0)
    out = blot_mask(mask, mosaic_wcs, frame, (40, 40))
    yy, xx = np.indices((40, 40))
    ra, dec = frame.all_pix2world(xx.ravel(), yy.ravel(), 0)
    mx, my = mosaic_wcs.all_world2pix(ra, dec, 0)
    expected = ((np.round(mx) >= 30) & (np.round(mx) < 34) & (np.round(my) >= 60) & (np.round(my) < 64)).reshape(40, 40)
    np.testing.assert_array_equal(out, expected)
    assert out.sum() >= 1
    grown = blot_mask(mask, mosaic_wcs, frame, (40, 40), dilate_pix=1.0)
    assert grown.sum() > out.sum() and np.all(grown[out])


def test_pixel_unmasked_in_one_frame_does_not_copy_that_frame_into_the_master():
    """A star on a detector region that the mosaic mask covers in every other frame (it lies off
    the mosaic, so its own frame's mask misses it): the master there must not be that frame."""
    rng = np.random.default_rng(5)
    n, level = 6, 0.1
    frames = [level + rng.normal(0, SIGMA, SHAPE) for _ in range(n)]
    yy, xx = np.indices(SHAPE)
    frames[0] = frames[0] + 400 * SIGMA * np.exp(-((xx - 55.0) ** 2 + (yy - 52.0) ** 2) / (2 * 1.5 ** 2))
    known = [np.zeros(SHAPE, bool)] + [np.zeros(SHAPE, bool) for _ in range(n - 1)]
    for k in range(1, n):
        known[k][40:68, 40:68] = True      # the mosaic's sources, seen by the other frames
    errs, bad = [np.full(SHAPE, SIGMA)] * n, [np.zeros(SHAPE, bool)] * n
    region = (slice(40, 68), slice(40, 68))

    def worst_hole(params):
        bg = irac_master_background(frames, errs, bad, pixscale=SCALE, source_masks=known, params=params)
        return min(float(np.min((frames[k] - bg.frame(k))[region])) for k in range(1, n)) / SIGMA

    # a median over the one unmasked frame puts the star into every frame's background
    assert worst_hole(BackgroundParams(irac_min_frames=1)) < -100
    # with at least 3 frames per master pixel, the region takes the smooth fill: noise only
    assert worst_hole(BackgroundParams()) > -6


def test_one_frame_aor_keeps_its_sources_and_noise():
    """A one-frame AOR has no median to take: its background is the pedestal alone, so the
    frame minus its background keeps the source and the pixel noise (a per-pixel 'master'
    would be the frame itself and subtract both)."""
    rng = np.random.default_rng(2)
    yy, xx = np.indices(SHAPE)
    frame = 0.1 + rng.normal(0, SIGMA, SHAPE) + 50 * SIGMA * np.exp(-((xx - 30.0) ** 2 + (yy - 60.0) ** 2) / 8.0)
    bg = irac_master_background([frame], [np.full(SHAPE, SIGMA)], [np.zeros(SHAPE, bool)], pixscale=SCALE)
    rest = frame - bg.frame(0)
    assert np.ptp(bg.frame(0)) == 0                                # a constant: the pedestal
    assert abs(np.median(rest)) < 0.1 * SIGMA
    assert 0.9 * SIGMA < np.std(rest[:, 50:]) < 1.1 * SIGMA         # the noise is still there
    assert rest[60, 30] > 40 * SIGMA                               # and so is the source
