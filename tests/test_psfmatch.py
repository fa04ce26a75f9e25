"""PSF matching of HST mosaics (pipeline.psfmatch): kernels, masked convolution, and the
photometry stage's ``psf_match`` option on the session mock."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from pipeline import psfmatch
from pipeline.irac_kernel import resample_psf

GRIDS = {"f435w": 0.05, "f606w": 0.05, "f814w": 0.05, "f105w": 0.1, "f125w": 0.1}


def _encircled(image: np.ndarray, radius_pix: float) -> float:
    ny, nx = image.shape
    y, x = np.indices(image.shape)
    return float(image[np.hypot(x - nx // 2, y - ny // 2) <= radius_pix].sum() / image.sum())


@pytest.mark.parametrize("band", sorted(GRIDS))
def test_kernel_turns_each_band_psf_into_the_f160w_psf(band):
    """Convolved with its kernel, a band's PSF on its mosaic grid encloses what the F160W mosaic's
    PSF encloses (0.2% at 0.09-1"), while unmatched it encloses 1.5-10% more at 0.35"."""
    scale = GRIDS[band]
    kernel = psfmatch.psf_matching_kernel(band, "f160w", scale, 0.1)
    assert kernel.shape[0] % 2 == 1 and kernel.sum() == pytest.approx(1.0)
    own = resample_psf(psfmatch.mosaic_psf(band, scale), psfmatch.PSF_SCALE_ARCSEC, scale)
    target = resample_psf(psfmatch.mosaic_psf("f160w", 0.1), psfmatch.PSF_SCALE_ARCSEC, scale)
    matched = signal.fftconvolve(own, kernel, mode="same")
    assert _encircled(own, 0.35 / scale) - _encircled(target, 0.35 / scale) > 0.01
    for radius in (0.09, 0.18, 0.35, 0.5, 1.0):
        assert _encircled(matched, radius / scale) == pytest.approx(_encircled(target, radius / scale), abs=0.003)


def test_convolution_keeps_flux_and_masks_what_bad_pixels_reach():
    rng = np.random.default_rng(1)
    kernel = psfmatch.psf_matching_kernel("f814w", "f160w", 0.05, 0.1)
    image = rng.normal(0.0, 1.0, (300, 300)).astype(np.float32)
    image[100, 100] += 1000.0
    bad = np.zeros(image.shape, bool)
    bad[200:203, 200:203] = True
    image[bad] = 1e6  # masked values must not leak
    out, mask = psfmatch.convolve_masked(image, bad, kernel)
    assert out.dtype == np.float32 and mask.shape == image.shape
    # a point source keeps its flux (the kernel sums to one) and the noise is smoothed
    assert out[60:141, 60:141].sum() == pytest.approx(image[60:141, 60:141].sum(), rel=0.02)
    assert np.std(out[:50, :50]) < 0.8 * np.std(image[:50, :50])
    # the masked block is masked, with the pixels its kernel weight reaches, and nothing leaks
    assert mask[200:203, 200:203].all() and mask[198, 201] and not mask[150, 150]
    assert np.abs(out[~mask]).max() < 1000.0
    assert not mask[:150, :150].any()


def test_psf_match_names_a_filter_the_detect_run_measured():
    from alcsdb.errors import InputError
    from pipeline.stages.photometry import _psf_target

    mosaics = [{"filter": "f814w"}, {"filter": "f160w"}]
    assert _psf_target(None, mosaics) is None
    assert _psf_target("F160W", mosaics) is mosaics[1]
    with pytest.raises(InputError, match="psf_match=f140w: no mosaic of that filter .*f160w, f814w"):
        _psf_target("f140w", mosaics)
