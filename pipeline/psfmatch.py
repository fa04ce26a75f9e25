"""PSF matching of HST mosaics to one common PSF before aperture photometry.

The release measured every filter in the same 0.7" apertures without PSF matching and applied one
aperture correction (from the detection image) to all of them. A galaxy then loses more of its
light in the aperture under the broad WFC3/IR PSF than under ACS's, and its ACS/F160W colours come
out too blue by an amount that grows with its size (1.04-1.12 on a 2' mock; the main cause of the
mock's photo-z scatter, README). Deep multi-band catalogs (3D-HST, Skelton et al. 2014; CANDELS)
convolve each image to the broadest PSF, F160W, first; ``photometry --param psf_match=f160w`` does
that here. Then every filter's aperture holds the same fraction of a source's light, colours are
aperture colours of one PSF, and the point-source correction to total is the target's
(``{f}_tot_corr`` from the F160W curve of growth for every matched filter).

Pure functions, arrays in and out. PSFs are the effective PSFs of ``pipeline.sim_psf`` (the models
fitted to the real encircled-energy curves, native pixel included) convolved with the mosaic's
output pixel, as the drizzled mosaics record them.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

from .irac_kernel import matching_kernel

PSF_SCALE_ARCSEC = 0.01
"""Sampling of the model PSFs the kernels are built from."""

KERNEL_SIZE_ARCSEC = 6.0
"""Side of the matching kernels (the PSF halos differ out to a few arcsec; the 0.7" apertures
and the Kron apertures of faint sources lie well inside)."""

MASK_TOLERANCE = 0.01
"""A pixel of a convolved image is masked where masked input pixels carry more than this share
of the kernel's weight."""


def has_psf_model(band: str) -> bool:
    """True when ``pipeline.sim_psf`` has an effective PSF of HST ``band``."""
    from .sim_bands import BANDS

    b = BANDS.get(band.lower())
    return b is not None and b.is_hst


@lru_cache(maxsize=32)
def mosaic_psf(band: str, pixscale: float, size_arcsec: float = KERNEL_SIZE_ARCSEC + 2.0) -> np.ndarray:
    """Effective PSF of HST ``band`` as a mosaic with ``pixscale`` arcsec pixels records it,
    sampled at ``PSF_SCALE_ARCSEC`` (unit sum, odd size, read-only)."""
    from .sim_psf import effective_psf, pixel_box

    psf = signal.fftconvolve(effective_psf(band.lower(), scale=PSF_SCALE_ARCSEC, size_arcsec=size_arcsec),
                             pixel_box(pixscale, PSF_SCALE_ARCSEC), mode="same")
    psf = psf / psf.sum()
    psf.setflags(write=False)
    return psf


@lru_cache(maxsize=32)
def psf_matching_kernel(band: str, target: str, pixscale: float, target_pixscale: float, *,
                        size_arcsec: float = KERNEL_SIZE_ARCSEC) -> np.ndarray:
    """Kernel on ``band``'s mosaic grid (``pixscale``) that turns its PSF into ``target``'s PSF as
    the ``target`` mosaic (``target_pixscale``) records it: ``ifft(OTF_target / OTF_band)``
    (``irac_kernel.matching_kernel``), odd-sized, unit sum, read-only."""
    size = int(round(size_arcsec / pixscale)) | 1
    kernel = matching_kernel(mosaic_psf(band, pixscale), PSF_SCALE_ARCSEC,
                             mosaic_psf(target, target_pixscale), PSF_SCALE_ARCSEC,
                             out_scale=pixscale, recenter_radius_arcsec=None, size=size)
    kernel.setflags(write=False)
    return kernel


def convolve_masked(sci: np.ndarray, bad: np.ndarray, kernel: np.ndarray, *,
                    tolerance: float = MASK_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Convolve an image with ``kernel`` (overlap-add: memory of the image, not of its FFT).

    Masked pixels (``bad``) count as zero; a convolved pixel is masked where they carry more than
    ``tolerance`` of the kernel's absolute weight. Returns ``(image float32, mask bool)``.
    """
    bad = np.asarray(bad, dtype=bool)
    data = np.where(bad, 0.0, np.asarray(sci, dtype=np.float32)).astype(np.float32)
    out = signal.oaconvolve(data, kernel.astype(np.float32), mode="same").astype(np.float32)
    weight = np.abs(kernel).astype(np.float32)
    lost = signal.oaconvolve(bad.astype(np.float32), weight / weight.sum(), mode="same")
    return out, bad | (lost > tolerance)
