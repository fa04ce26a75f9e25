"""Drizzle sampling of compact sources in HST mosaics (`pipeline.drizzle_psf`).

A synthetic WFC3/IR-like filter: six 0.128" exposures at random sub-pixel phases and small
rolls, each holding pixel-integrated Gaussian stars, drizzled onto 0.1" pixels at pixfrac 0.33
with the mosaic stage's own drizzle. The stars' 0.7" aperture fluxes scatter by several per cent
with their position; the factors computed from the exposures' geometry alone must take that out.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import signal

from pipeline import drizzle_psf as dp
from pipeline.mosaic import Exposure, drizzle
from pipeline.photometry import aperture_photometry
from pipeline.sim_psf import pixel_box
from tests.test_mosaic import DEC0, RA0, hst_info, offset_point, render, tan_wcs

NATIVE = 0.128
SIGMA = 0.06  # arcsec: the stars' Gaussian before the pixel (FWHM 0.14", as WFC3/IR F105W)
RADIUS = 0.18  # arcsec: the 0.36" aperture (EE 0.96 for these stars)


def fine_psf(size_arcsec: float = 5.0) -> np.ndarray:
    """The stars' effective PSF on the fine grid: the Gaussian convolved with the native pixel."""
    n = int(size_arcsec / dp.FINE_SCALE) // 2 * 2 + 1
    r = (np.arange(n) - n // 2) * dp.FINE_SCALE
    g = np.exp(-0.5 * (r / SIGMA) ** 2)
    psf = signal.fftconvolve(np.outer(g, g), pixel_box(NATIVE, dp.FINE_SCALE), mode="same")
    return psf / psf.sum()


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(5)
    out = tan_wcs(RA0, DEC0, 0.1, (140, 140))
    gx, gy = np.meshgrid(np.arange(25, 116, 18.0), np.arange(25, 116, 18.0))  # 1.8" apart
    x = gx.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    y = gy.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    ra, dec = out.all_pix2world(x, y, 0)
    exposures, chips = [], []
    for k in range(6):
        c = offset_point(*rng.uniform(-1.0, 1.0, 2))
        w = tan_wcs(c.ra.deg, c.dec.deg, NATIVE, (130, 130), 30.0 + rng.uniform(-1, 1))
        sci = render(w, (130, 130), ra, dec, np.full(ra.size, 100.0), SIGMA / NATIVE).astype(np.float32)
        err = np.full(sci.shape, 0.05 * (1 + 0.2 * k), np.float32)
        mask = np.zeros(sci.shape, bool)
        mask[rng.integers(0, 130, 40), rng.integers(0, 130, 40)] = True  # a few bad pixels
        exposures.append(Exposure(dataclasses.replace(hst_info(k), name=f"e{k}"), sci, err, mask, w,
                                  "electrons/s", f"e{k}.fits"))
        chips.append(dp.ChipGeometry(f"e{k}", w, float(err[0, 0]), mask))
    sci, wht = drizzle(exposures, out, pixfrac=0.33)
    flux = aperture_photometry(sci, wht, x, y, pixscale=0.1, ujy_per_count=1.0, diameters=(2 * RADIUS,))["flux"][:, 0]
    return out, x, y, chips, flux / 100.0, sci, wht


def continuous_ee(psf: np.ndarray, radius: float) -> float:
    import sep
    c = (psf.shape[0] - 1) / 2
    return float(sep.sum_circle(np.ascontiguousarray(psf), [c], [c], radius / dp.FINE_SCALE, subpix=5)[0][0])


def test_factors_remove_the_sampling_scatter_of_point_sources(scene):
    out, x, y, chips, measured, _, _ = scene
    factors = dp.sampling_factors(chips, out, x, y, [RADIUS / 0.1], psf=fine_psf(), pixfrac=0.33, kernel="square")
    corrected = measured * factors[:, 0]
    ee = continuous_ee(fine_psf(), RADIUS)
    raw_scatter = np.std(measured / ee - 1)
    assert raw_scatter > 0.02  # the problem: several per cent from the sub-pixel phases
    assert np.std(corrected / ee - 1) < 0.15 * raw_scatter
    assert np.std(corrected / ee - 1) < 0.005
    # and the mean: the drizzle and the 0.1" grid broaden these stars' 0.36" aperture by 5%
    assert np.median(measured) / ee - 1 < -0.03
    assert abs(np.median(corrected) / ee - 1) < 0.003
    assert np.all(np.abs(factors - 1) < 0.2)


def test_resolved_sources_lose_the_position_dependence(scene):
    out, x, y, chips, *_ = scene
    radii = [RADIUS / 0.1, 0.35 / 0.1]
    point = dp.sampling_factors(chips, out, x, y, radii, psf=fine_psf(), pixfrac=0.33, kernel="square")
    wide = dp.sampling_factors(chips, out, x, y, radii, psf=fine_psf(), pixfrac=0.33, kernel="square",
                               sigma_arcsec=np.full(x.size, dp.MAX_SIGMA))
    assert np.all(np.std(point, axis=0) > 0.01)
    assert np.all(np.std(wide, axis=0) < 0.3 * np.std(point, axis=0))
    assert np.all(np.std(wide, axis=0) < 0.008)
    # what is left is the grid's broadening: small, and smaller in the larger aperture
    assert 1.0 < np.median(wide[:, 1]) < np.median(wide[:, 0]) < 1.03
    beyond = dp.sampling_factors(chips, out, x[:3], y[:3], radii, psf=fine_psf(), pixfrac=0.33,
                                 kernel="square", sigma_arcsec=np.full(3, 2.0))
    assert np.array_equal(beyond, wide[:3])


def test_uncovered_and_undefined_positions_keep_one(scene):
    out, x, y, chips, *_ = scene
    f = dp.sampling_factors(chips, out, np.array([x[0], np.nan, 5000.0]), np.array([y[0], 10.0, 5000.0]),
                            [RADIUS / 0.1, 0.75 / 0.1], psf=fine_psf(), pixfrac=0.33, kernel="square")
    assert f.shape == (3, 2)
    assert np.all(f[1:] == 1.0) and np.all(f[0] != 1.0)


def test_factors_follow_psf_matching(scene):
    """Convolving the mosaic after the drizzle (PSF matching) does not undo the sampling: the
    information was lost when the drops were placed. The factors computed with the kernel correct
    the convolved mosaic's apertures."""
    from pipeline.psfmatch import convolve_masked

    out, x, y, chips, _, sci, wht = scene
    g = np.exp(-0.5 * (np.arange(-7, 8) / 1.5) ** 2)
    kernel = np.outer(g, g) / np.outer(g, g).sum()
    smooth, bad = convolve_masked(sci, ~(wht > 0), kernel)
    measured = aperture_photometry(np.where(bad, 0.0, smooth), np.where(bad, 0.0, 1.0), x, y, pixscale=0.1,
                                   ujy_per_count=1.0, diameters=(2 * RADIUS,))["flux"][:, 0] / 100.0
    f = dp.sampling_factors(chips, out, x, y, [RADIUS / 0.1], psf=fine_psf(), pixfrac=0.33, kernel="square",
                            match_kernel=kernel)[:, 0]
    raw = np.std(measured / np.median(measured))
    assert raw > 0.01
    assert np.std(measured * f) / np.median(measured * f) < 0.2 * raw


def test_geometry_round_trip(tmp_path, scene):
    out, _, _, chips, *_ = scene
    path = dp.write_geometry(tmp_path / "f105w_wcs.fits", chips, pixfrac=0.33, kernel="square")
    back, pixfrac, kernel = dp.read_geometry(path)
    assert (pixfrac, kernel) == (0.33, "square") and len(back) == len(chips)
    for a, b in zip(chips, back):
        assert b.name == a.name and b.sigma == pytest.approx(a.sigma) and b.shape == a.shape
        assert np.array_equal(b.mask, a.mask)
        xy = np.array([[0.0, 0.0], [129.0, 17.5]])
        assert np.allclose(a.wcs.all_pix2world(xy, 0), b.wcs.all_pix2world(xy, 0), rtol=0, atol=1e-10)


def test_intrinsic_sigma():
    r50 = dp.half_light_radius(fine_psf(), dp.FINE_SCALE)
    assert dp.intrinsic_sigma(np.array([0.5 * r50]), r50)[0] == 0.0
    # a Gaussian of sigma s convolved with the PSF: sizes add in quadrature (approximately for a non-Gaussian PSF)
    s = 0.2
    n = fine_psf().shape[0]
    r = (np.arange(n) - n // 2) * dp.FINE_SCALE
    g = np.exp(-0.5 * (r / s) ** 2)
    wide = signal.fftconvolve(fine_psf(), np.outer(g, g) / np.outer(g, g).sum(), mode="same")
    est = dp.intrinsic_sigma(np.array([dp.half_light_radius(wide, dp.FINE_SCALE)]), r50)[0]
    assert est == pytest.approx(s, rel=0.1)
    assert np.isnan(dp.intrinsic_sigma(np.array([np.nan]), r50)[0])
