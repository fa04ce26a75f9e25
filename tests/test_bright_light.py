"""Models of bright sources' extended light (`pipeline.bright_light`), subtracted before the sky.

A 40" field: a flat sky, noise, a bright n = 4 galaxy whose wings cover the field at a fraction
of the noise, a bright star and faint galaxies. A 32" sky mesh with the sources masked takes the
wings for sky; with the bright models subtracted first it must find the true sky.
"""
from __future__ import annotations

import numpy as np
import pytest
from astropy.modeling.models import Sersic2D
from scipy import signal

from pipeline.background import BackgroundParams, smooth_background
from pipeline.bright_light import bright_light_model, bright_sources
from pipeline.photometry import error_and_mask

SCALE = 0.1
GALAXIES = [(190.0, 210.0, 0.5, 20.0, 0.3, 0.6), (90.0, 300.0, 0.3, 25.0, 0.2, -0.4), (300.0, 150.0, 0.4, 15.0, 0.4, 1.2)]
SKY = 0.3
NOISE = 0.05


def gaussian_psf(fwhm_arcsec: float = 0.18, half: int = 15) -> np.ndarray:
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    s = fwhm_arcsec / 2.3548 / SCALE
    p = np.exp(-0.5 * (x ** 2 + y ** 2) / s ** 2)
    return p / p.sum()


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(4)
    n = 400
    yy, xx = np.indices((n, n), dtype=float)
    light = np.zeros((n, n))
    for x, y, amp, re, ell, th in GALAXIES:  # each ends at 6 r_eff
        light += Sersic2D.evaluate(xx, yy, amp, re, 4.0, x, y, ell, th) * (np.hypot(xx - x, yy - y) < 6 * re)
    star = np.zeros((n, n))
    star[80, 320] = 400.0
    light = light + star
    for x, y in rng.uniform(30, 370, (12, 2)):
        light += Sersic2D.evaluate(xx, yy, 0.3, 3.0, 1.0, x, y, 0.2, 0.0)
    psf = gaussian_psf()
    light = signal.fftconvolve(light, psf, mode="same")
    image = (SKY + light + rng.normal(0, NOISE, (n, n))).astype(np.float32)
    weight = np.full((n, n), 1 / NOISE ** 2, np.float32)
    return dict(image=image, weight=weight, light=light, psf=psf)


def test_bright_sources_are_selected_by_magnitude(scene):
    err, nocov = error_and_mask(scene["image"], scene["weight"])
    objs, seg, labels = bright_sources(scene["image"] - SKY, err, nocov, to_ujy=1.0, mag_limit=23.9 - 2.5 * np.log10(300),
                                       max_sources=10)
    # the galaxies (~500-1000) and the star (400) are brighter than 300 units; the faint ones are not
    assert len(objs) == 4
    assert np.hypot(objs["x"][0] - 190, objs["y"][0] - 210) < 3
    assert np.all(seg[np.asarray(objs["y"]).round().astype(int), np.asarray(objs["x"]).round().astype(int)] == labels)


def test_bright_models_take_the_wings_out_of_the_sky(scene):
    params = BackgroundParams(back_size_arcsec=32.0)
    model, fits_ = bright_light_model(scene["image"], scene["weight"], scene["psf"], pixscale=SCALE, to_ujy=1.0,
                                      mag_limit=23.9 - 2.5 * np.log10(300), stamp_arcsec=30.0)
    assert len(fits_) == 4
    galaxy = min(fits_, key=lambda f: np.hypot(f.x - 190, f.y - 210))
    assert abs(galaxy.x - 190) < 1 and abs(galaxy.y - 210) < 1
    assert 2.5 < galaxy.n < 6 and 10 < galaxy.r_eff < 35
    # the wings 3-10" from the galaxy: a fraction of the noise per pixel, which the model holds
    yy, xx = np.indices(model.shape)
    r = np.hypot(xx - 190, yy - 210) * SCALE
    ring = (r > 3) & (r < 10)
    wings = scene["light"][ring].mean()
    assert 0.1 * NOISE < wings < 1.0 * NOISE
    assert abs((scene["light"] - model)[ring].mean()) < 0.25 * wings
    plain = smooth_background(scene["image"], scene["weight"], pixscale=SCALE, params=params)
    modelled = smooth_background(scene["image"] - model, scene["weight"], pixscale=SCALE, params=params)
    bias_plain = plain.mean() - SKY
    bias_modelled = modelled.mean() - SKY
    # the plain estimate takes wing light for sky; with the models it is within a tenth of the noise
    assert bias_plain > 0.1 * NOISE
    assert abs(bias_modelled) < 0.5 * bias_plain and abs(bias_modelled) < 0.1 * NOISE
