"""Tests of pipeline.photometry against independent computations and real headers."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy.special import erf

from alcsdb.config import ConfigError, shared_path
from pipeline.photometry import (
    APERTURE_DIAMETERS_ARCSEC,
    Background,
    aperture_photometry,
    corrected_fluxes,
    total_correction,
    ujy_per_count,
)

PIXSCALE = 0.06


def shared(*parts: str):
    try:
        return shared_path(*parts)
    except ConfigError as exc:
        pytest.skip(str(exc))


def gaussian_image(shape, x0, y0, sigma, flux):
    """A circular Gaussian of total ``flux`` integrated exactly over each pixel."""
    def edges(n, c):
        lo = (np.arange(n) - 0.5 - c) / (np.sqrt(2) * sigma)
        return 0.5 * (erf(lo + 1 / (np.sqrt(2) * sigma)) - erf(lo))

    return flux * np.outer(edges(shape[0], y0), edges(shape[1], x0))


def circle_fraction_left_of(edge_offset, radius):
    """Fraction of a circle's area beyond a chord at distance ``edge_offset`` from the
    centre (the segment on the far side of the line); ``edge_offset`` may be negative."""
    h = np.clip(edge_offset, -radius, radius)
    segment = radius**2 * np.arccos(h / radius) - h * np.sqrt(radius**2 - h**2)
    return segment / (np.pi * radius**2)


def test_ujy_per_count_photfnu_and_photflam_agree_on_a_real_header():
    header = fits.getheader(shared("hff-cutouts", "abell_2744_cd_galaxy_f105w.fits.gz"))
    from_fnu = ujy_per_count(photfnu=header["PHOTFNU"])
    from_flam = ujy_per_count(photflam=header["PHOTFLAM"], photplam=header["PHOTPLAM"])
    assert from_fnu == pytest.approx(from_flam, rel=2e-4)
    # PHOTFNU is Jy per (e-/s): 1e6 uJy per Jy (the 8.90 zeropoint rounds 3631 Jy)
    assert from_fnu == pytest.approx(header["PHOTFNU"] * 1e6, rel=2e-4)
    with pytest.raises(ValueError):
        ujy_per_count(photflam=header["PHOTFLAM"])


def test_apertures_of_a_gaussian_match_its_enclosed_flux():
    shape, x0, y0, sigma, flux = (121, 131), 64.3, 59.7, 3.0, 500.0
    counts_to_ujy = 0.25
    sci = gaussian_image(shape, x0, y0, sigma, flux / counts_to_ujy)
    wht = np.full(shape, 4.0)  # err = 0.5 counts per pixel
    out = aperture_photometry(sci, wht, [x0], [y0], pixscale=PIXSCALE, ujy_per_count=counts_to_ujy)
    radii = 0.5 * np.array(APERTURE_DIAMETERS_ARCSEC) / PIXSCALE
    enclosed = flux * (1 - np.exp(-0.5 * (radii / sigma) ** 2))
    np.testing.assert_allclose(out["flux"][0], enclosed, rtol=0.01)
    assert out["flux"][0, 6] > 0.99 * flux
    np.testing.assert_allclose(out["fluxerr"][0], 0.5 * counts_to_ujy * np.sqrt(np.pi) * radii, rtol=0.01)
    np.testing.assert_array_equal(out["mask"][0], 0.0)
    np.testing.assert_array_equal(out["bkg"][0], 0.0)


def test_background_is_subtracted_and_reported_and_rescales_errors():
    shape, x0, y0 = (101, 101), 50.0, 50.0
    pedestal = 0.3
    sci = gaussian_image(shape, x0, y0, 2.0, 100.0) + pedestal
    background = Background(level=np.full(shape, pedestal, dtype=np.float32), err_scale=2.0)
    plain = aperture_photometry(sci, np.ones(shape), [x0], [y0], pixscale=PIXSCALE, ujy_per_count=1.0)
    out = aperture_photometry(
        sci, np.ones(shape), [x0], [y0], pixscale=PIXSCALE, ujy_per_count=1.0, background=background
    )
    area = np.pi * (0.5 * np.array(APERTURE_DIAMETERS_ARCSEC) / PIXSCALE) ** 2
    # subpixel sampling (5x5) of a 3-pixel-radius circle is good to ~1%
    np.testing.assert_allclose(out["bkg"][0], pedestal * area, rtol=0.02)
    np.testing.assert_allclose(out["flux"][0] + out["bkg"][0], plain["flux"][0], rtol=1e-5)
    np.testing.assert_allclose(out["fluxerr"][0], 2.0 * plain["fluxerr"][0], rtol=1e-5)


def test_apertures_more_than_20_percent_masked_are_nan():
    shape, x0, y0 = (120, 120), 60.0, 60.0
    sci = np.ones(shape)
    wht = np.ones(shape)
    wht[:, :55] = 0.0  # columns 0..54 masked: the mask edge is at x = 54.5
    out = aperture_photometry(sci, wht, [x0], [y0], pixscale=PIXSCALE, ujy_per_count=1.0)
    radii = 0.5 * np.array(APERTURE_DIAMETERS_ARCSEC) / PIXSCALE
    fraction = circle_fraction_left_of(x0 - 54.5, radii)  # 0 0 0 0.08 0.17 0.23 0.39
    np.testing.assert_allclose(out["mask"][0], fraction * np.pi * radii**2, atol=1e-3)
    assert (fraction > 0.2).any() and (fraction <= 0.2).any()
    np.testing.assert_array_equal(np.isnan(out["flux"][0]), fraction > 0.2)
    np.testing.assert_array_equal(np.isnan(out["fluxerr"][0]), fraction > 0.2)
    # sep scales the unmasked sum by total / unmasked area: a flat image gives its full area
    kept = fraction <= 0.2
    np.testing.assert_allclose(out["flux"][0, kept], np.pi * radii[kept] ** 2, rtol=0.02)


def test_sources_off_the_image_or_uncovered_are_nan():
    shape = (80, 80)
    sci = np.ones(shape)
    wht = np.ones(shape)
    wht[:, 60:] = np.nan  # a filter that stops at column 60
    out = aperture_photometry(sci, wht, [-40.0, 75.0, 30.0], [40.0, 40.0, 40.0],
                              pixscale=PIXSCALE, ujy_per_count=1.0)
    assert np.isnan(out["flux"][:2]).all()
    assert np.isfinite(out["flux"][2, :5]).all()


def test_segmentation_masks_neighbours_pixels():
    shape = (120, 160)
    sci = gaussian_image(shape, 60.0, 60.0, 2.0, 100.0) + gaussian_image(shape, 75.0, 60.0, 2.0, 300.0)
    yy, xx = np.indices(shape)
    seg = np.where(np.hypot(xx - 60, yy - 60) < 7, 1, 0) + np.where(np.hypot(xx - 75, yy - 60) < 7, 2, 0)
    kwargs = dict(pixscale=PIXSCALE, ujy_per_count=1.0)
    unmasked = aperture_photometry(sci, np.ones(shape), [60.0], [60.0], **kwargs)
    masked = aperture_photometry(sci, np.ones(shape), [60.0], [60.0], seg=seg, seg_id=[1], **kwargs)
    assert unmasked["flux"][0, 6] == pytest.approx(400.0, rel=0.01)
    # the 3" aperture (r = 25 px) holds all of segment 2; its pixels are excluded and the
    # rest scaled by aperture area / unmasked area (sep's masked-area correction)
    inside = np.hypot(xx - 60, yy - 60) < 25
    area = np.pi * 25**2
    expected = sci[inside & (seg != 2)].sum() * area / (area - (seg == 2).sum())
    assert masked["flux"][0, 6] == pytest.approx(expected, rel=0.003)
    assert masked["flux"][0, 6] < 0.3 * unmasked["flux"][0, 6]
    with pytest.raises(ValueError):
        aperture_photometry(sci, np.ones(shape), [60.0], [60.0], seg=seg, **kwargs)


def test_total_correction_follows_the_encircled_energy_table():
    path = shared("psf", "hst_encircled_energy.fits")
    table = Table.read(path)
    radius = np.asarray(table["radius"])
    curve = np.asarray(table["wfc3,ir,f160w"])
    radii = np.array([0.0, 0.35, 0.4, 0.9, 2.0, 3.5, 5.0, 8.0])
    corr = total_correction("F160W", radii, ee_path=path)
    # clip at 0.35": the value between the 0.3" and 0.4" rows
    i = np.searchsorted(radius, 0.35)
    ee_035 = curve[i - 1] + (curve[i] - curve[i - 1]) * (0.35 - radius[i - 1]) / (radius[i] - radius[i - 1])
    assert corr[0] == corr[1] == pytest.approx(1 / ee_035)
    assert corr[2] == pytest.approx(1 / curve[radius == 0.4][0])
    assert corr[4] == pytest.approx(1 / curve[-1])
    # between 2" and 5" the curve rises linearly to 1 (grizli's appended point)
    assert corr[5] == pytest.approx(1 / (curve[-1] + (1 - curve[-1]) * 0.5))
    assert corr[6] == corr[7] == 1.0
    assert (np.diff(corr) <= 0).all()
    assert (corr >= 1).all()


def test_total_correction_per_filter_columns():
    path = shared("psf", "hst_encircled_energy.fits")
    table = Table.read(path)
    r = np.array([0.5])
    assert total_correction("f814w", r, ee_path=path)[0] == pytest.approx(1 / table["acs,wfc1,f814w"][6])
    assert total_correction("f275w", r, ee_path=path)[0] == pytest.approx(1 / table["wfc3,uvis2,f275w"][6])
    assert total_correction("ch1", r, ee_path=path)[0] == 1.0
    assert table["radius"][6] == 0.5


def test_corrected_fluxes_of_the_detection_band_are_its_total_flux():
    rng = np.random.default_rng(1)
    flux_aper = rng.uniform(1, 10, size=(5, 7)).cumsum(axis=1)
    fluxerr = rng.uniform(0.1, 1, size=(5, 7))
    flux_auto = flux_aper[:, 5] * 1.1
    tot_corr = rng.uniform(1.0, 1.3, size=5)
    flux_aper[0, 2] = np.nan
    out = corrected_fluxes(flux_aper, fluxerr, flux_auto, flux_aper, tot_corr)
    finite = np.isfinite(flux_aper)
    # the band measured in the detection image gives back flux_auto in every aperture
    np.testing.assert_allclose(out["corr"][finite], np.broadcast_to(flux_auto[:, None], (5, 7))[finite])
    np.testing.assert_allclose(out["tot"], out["corr"] * tot_corr[:, None])
    np.testing.assert_allclose(out["ecorr"] / out["corr"], fluxerr / flux_aper)
    np.testing.assert_allclose(out["etot"], out["ecorr"] * tot_corr[:, None])
    assert np.isnan(out["tot"][0, 2]) and np.isnan(out["etot"][0, 2])


def test_corrected_flux_errors_carry_the_noise_of_the_aperture_correction():
    """Monte Carlo of a faint source: the detection image's circle holds B, its Kron aperture the
    circle plus an independent ring C; a filter's aperture flux F has its own noise. The scatter of
    corr = F (B + C) / B is the propagated ecorr, and the weight-map error alone falls short."""
    rng = np.random.default_rng(3)
    n = 20000
    b0, c0, f0 = 50.0, 10.0, 20.0
    sb, sc, sf = 4.0, 5.0, 2.0
    b = b0 + sb * rng.standard_normal(n)
    auto = b + c0 + sc * rng.standard_normal(n)
    f = f0 + sf * rng.standard_normal(n)
    err_auto = np.full(n, np.hypot(sb, sc))
    plain = corrected_fluxes(f[:, None], np.full((n, 1), sf), auto, b[:, None], np.ones(n))
    full = corrected_fluxes(f[:, None], np.full((n, 1), sf), auto, b[:, None], np.ones(n),
                            fluxerr_auto=err_auto, fluxerr_aper_det=np.full((n, 1), sb))
    scatter = np.std(plain["corr"])
    assert np.median(full["ecorr"]) == pytest.approx(scatter, rel=0.1)
    assert np.median(plain["ecorr"]) < 0.8 * scatter
    np.testing.assert_array_equal(full["corr"], plain["corr"])
    np.testing.assert_allclose(full["etot"], full["ecorr"])
