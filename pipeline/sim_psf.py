"""PSF models of the simulated bands.

HST: the effective PSF (pixel response included) of ``pipeline.sim_bands`` is split in two
parts so rendering stays cheap: a compact ``core`` kernel (drawn with GalSim, sampled on the
fine grid of each source stamp) and a broad ``halo`` kernel applied once per exposure by
convolving the whole core-rendered image: ``psf = (1 - f) core + f (core (x) halo)``.

IRAC: the real empirical PSFs (0.1"/pixel, detector frame, pixel response included),
resampled into any frame with :func:`psf_in_frame`.
"""
from __future__ import annotations

import os
from functools import lru_cache

import galsim
import numpy as np
import scipy.fft
from astropy.io import fits
from scipy import ndimage, signal

from alcsdb.config import shared_path
from pipeline.sim_bands import (
    BANDS, CORE_TRUNC_ARCSEC, HALO_TRUNC_ARCSEC, HST_DIAMETER_M, HST_OBSCURATION,
)


def _radius_grid(n: int, scale: float) -> np.ndarray:
    c = (n - 1) / 2.0
    y, x = np.indices((n, n))
    return np.hypot(x - c, y - c) * scale


@lru_cache(maxsize=64)
def core_kernel(band: str, scale: float) -> np.ndarray:
    """Core of the effective PSF of HST ``band`` sampled at ``scale`` arcsec/pixel.

    Odd-sized square, centred on the middle pixel, truncated at CORE_TRUNC_ARCSEC and
    normalised to unit sum (read-only array, cached).
    """
    b = BANDS[band]
    n = 2 * int(np.ceil(CORE_TRUNC_ARCSEC / scale)) + 1
    prof = galsim.Airy(lam=b.photplam / 10.0, diam=HST_DIAMETER_M, obscuration=HST_OBSCURATION,
                       scale_unit=galsim.arcsec)
    if b.core_sigma > 0:
        prof = galsim.Convolve(prof, galsim.Gaussian(sigma=b.core_sigma))
    k = prof.drawImage(nx=n, ny=n, scale=scale, method="no_pixel").array.astype(float)
    k[_radius_grid(n, scale) > CORE_TRUNC_ARCSEC] = 0.0
    k /= k.sum()
    k.setflags(write=False)
    return k


@lru_cache(maxsize=16)
def halo_kernel(band: str, scale: float) -> np.ndarray:
    """Halo kernel of HST ``band`` at ``scale`` arcsec/pixel (unit sum, odd size, cached)."""
    b = BANDS[band]
    n = 2 * int(np.ceil(HALO_TRUNC_ARCSEC / scale)) + 1
    prof = galsim.Moffat(beta=b.halo_beta, fwhm=b.halo_fwhm, trunc=HALO_TRUNC_ARCSEC)
    k = prof.drawImage(nx=n, ny=n, scale=scale, method="no_pixel").array.astype(float)
    k /= k.sum()
    k.setflags(write=False)
    return k


def add_halo(core_image: np.ndarray, band: str, scale: float) -> np.ndarray:
    """Turn an image rendered with the core PSF into one with the full effective PSF."""
    f = BANDS[band].halo_frac
    with scipy.fft.set_workers(os.cpu_count() or 1):
        halo = signal.fftconvolve(core_image, halo_kernel(band, scale), mode="same")
    return (1.0 - f) * core_image + f * halo


def pixel_box(pixscale: float, scale: float) -> np.ndarray:
    """A square detector pixel of side ``pixscale`` (arcsec) on a ``scale`` grid: odd-sized,
    unit sum, edge cells weighted by the fraction of them the pixel covers."""
    h = pixscale / scale / 2.0
    n = int(np.ceil(h - 0.5))
    c = np.arange(-n, n + 1, dtype=float)
    w = np.clip(np.minimum(c + 0.5, h) - np.maximum(c - 0.5, -h), 0.0, None)
    box = np.outer(w, w)
    return box / box.sum()


def effective_psf(band: str, scale: float = 0.01, size_arcsec: float = 11.0) -> np.ndarray:
    """The full effective PSF of HST ``band`` (unit sum) on a ``scale`` grid: the optical PSF
    (core and halo) convolved with the band's native pixel, i.e. what a pixel centred at each
    offset records (the mock integrates its images over pixels, ``sim_render.add_stamp``)."""
    n = 2 * int(np.ceil(size_arcsec / 2 / scale)) + 1
    core = np.zeros((n, n))
    k = signal.fftconvolve(core_kernel(band, scale), pixel_box(BANDS[band].pixscale, scale), mode="full")
    m = (n - k.shape[0]) // 2
    core[m:m + k.shape[0], m:m + k.shape[1]] = k
    return add_halo(core, band, scale)


def mosaic_psf(band: str, pixscale: float) -> np.ndarray:
    """The PSF of a mosaic of HST ``band`` on a ``pixscale`` grid: the band's effective PSF model
    (pixel response included; core + halo, 11" wide) averaged over the output pixel (a drizzled
    or block-summed mosaic's pixel) and sampled at its centres; odd-sized, centred, unit sum."""
    fine = pixscale / 5
    eff = signal.fftconvolve(effective_psf(band, scale=fine, size_arcsec=11.0), pixel_box(pixscale, fine),
                             mode="same")
    c = eff.shape[0] // 2
    out = eff[c % 5::5, c % 5::5]
    return out / out.sum()


def psf_encircled_energy(band: str, radii_arcsec, scale: float = 0.01) -> np.ndarray:
    """Encircled energy of the simulated effective PSF of HST ``band`` at ``radii_arcsec``."""
    psf = effective_psf(band, scale)
    r = _radius_grid(psf.shape[0], scale).ravel()
    order = np.argsort(r)
    return np.interp(radii_arcsec, r[order], np.cumsum(psf.ravel()[order]))


@lru_cache(maxsize=4)
def irac_psf(band: str) -> tuple[np.ndarray, float]:
    """The real IRAC empirical PSF of ``band`` ('ch1'/'ch2'): (unit-sum array, arcsec/pixel)."""
    path = shared_path("psf", f"irac_{band}_warm_psf.fits")
    with fits.open(path) as hdul:
        data = np.asarray(hdul[0].data, dtype=float)
        scale = float(hdul[0].header.get("PIXASEC", 0.1))
    data /= data.sum()
    data.setflags(write=False)
    return data, scale


def psf_in_frame(psf: np.ndarray, psf_cd: np.ndarray, frame_cd: np.ndarray) -> np.ndarray:
    """Resample a PSF image drawn on a grid with CD matrix ``psf_cd`` onto a grid with
    ``frame_cd`` (both 2x2, degrees/pixel, FITS axis order), same centre (pixel (n - 1) // 2).

    Used to rotate the IRAC PSF (detector frame, CD = that of the BCD scaled to the PSF
    pixel) into any other frame. Output has the input's shape and unit sum.
    """
    # frame pixel offset d_f -> sky -> psf pixel offset: d_p = psf_cd^-1 frame_cd d_f (x, y)
    a_xy = np.linalg.solve(psf_cd, frame_cd)
    a_idx = a_xy[::-1, ::-1]  # (row, col) order
    # the PSF's reference pixel (CRPIX - 1 = n // 2 - 1 for the even golfir PSFs) is also the
    # kernel centre fftconvolve(mode="same") uses: rotate about it, not about (n - 1) / 2
    centre = np.array([(n - 1) // 2 for n in psf.shape], dtype=float)
    out = ndimage.affine_transform(psf, a_idx, offset=centre - a_idx @ centre, order=3,
                                   mode="constant", cval=0.0)
    return out / out.sum()
