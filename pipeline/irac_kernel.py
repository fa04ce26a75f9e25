"""PSFs and PSF-matching kernels for IRAC model photometry (golfir's method).

Conventions: every PSF and kernel here is a 2D array normalised to unit sum whose centre is the
pixel ``(ny // 2, nx // 2)`` (the FFT convention, valid for odd and even sizes). Angles are in
degrees, counter-clockwise on the array (x right, y up). Pixel scales are in arcsec per pixel.

The source's position in an empirical PSF is its reference pixel, which need not be the light
centroid: golfir's IRAC PSFs are stacks of GAIA stars placed at ``CRPIX`` (0-indexed pixel 149 of
300), while their asymmetric cores peak ~0.2" away. Such a PSF is turned about its reference
pixel (golfir's ``warp_image`` centre ``shape / 2 - 1``) and moved so that the reference pixel is
the centre (``to_centre``); recentring it on its core centroid instead would move every source's
model by that offset, turned differently for each AOR.

The matching kernel is the ratio of Fourier transforms ``ifft(OTF_irac / OTF_hst)`` as in
photutils' ``create_matching_kernel`` (which photutils 3 deprecates and which refuses even-sized
PSFs, while the golfir IRAC PSFs are 300 x 300): a few lines, written out here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import fft, ndimage


@dataclass(frozen=True)
class FourierWindow:
    """Radial taper applied to the OTF ratio, as photutils' windows.

    ``rho`` is the spatial frequency in units of the Nyquist frequency (0 at DC, 1 at Nyquist
    along an axis). ``split_cosine_bell``: 1 for rho < beta, a cosine taper of width alpha, then 0;
    ``cosine_bell`` is beta = 0, ``hanning`` alpha = 1 and beta = 0, ``tukey`` beta = 1 - alpha,
    ``tophat`` 1 for rho <= beta and 0 beyond.
    """

    kind: Literal["tophat", "cosine_bell", "split_cosine_bell", "hanning", "tukey"]
    alpha: float = 0.0
    beta: float = 0.0

    def __call__(self, shape: tuple[int, int]) -> np.ndarray:
        fy = fft.fftfreq(shape[0])[:, None]
        fx = fft.fftfreq(shape[1])[None, :]
        rho = np.hypot(fx, fy) / 0.5
        alpha, beta = {
            "tophat": (0.0, self.beta),
            "cosine_bell": (self.alpha, 0.0),
            "split_cosine_bell": (self.alpha, self.beta),
            "hanning": (1.0, 0.0),
            "tukey": (self.alpha, 1.0 - self.alpha),
        }[self.kind]
        if alpha <= 0:
            return (rho <= beta).astype(float)
        taper = 0.5 * (1.0 + np.cos(np.pi * np.clip((rho - beta) / alpha, 0.0, 1.0)))
        return np.where(rho < beta, 1.0, taper)


def pad_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pad with zeros or crop ``image`` to ``shape`` keeping pixel (n//2, n//2) at (m//2, m//2)."""
    out = np.zeros(shape, dtype=float)
    src, dst = [], []
    for n, m in zip(image.shape, shape):
        off = m // 2 - n // 2  # index in out of image index 0
        lo, hi = max(0, off), min(m, off + n)
        dst.append(slice(lo, hi))
        src.append(slice(lo - off, hi - off))
    out[tuple(dst)] = image[tuple(src)]
    return out


def shift_image(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Move ``image`` by (dx, dy) pixels with a Fourier phase ramp (exact for band-limited images;
    the array is treated as periodic, so it needs empty margins wider than the shift)."""
    ramp = np.exp(-2j * np.pi * (fft.fftfreq(image.shape[0])[:, None] * dy
                                 + fft.fftfreq(image.shape[1])[None, :] * dx))
    return np.real(fft.ifft2(fft.fft2(image) * ramp))


def centroid(psf: np.ndarray, radius_pix: float) -> tuple[float, float]:
    """First moment (x, y) of ``psf`` within ``radius_pix`` of its peak."""
    yp, xp = np.indices(psf.shape)
    py, px = np.unravel_index(np.argmax(psf), psf.shape)
    inner = np.hypot(xp - px, yp - py) <= radius_pix
    w = psf * inner
    return float((w * xp).sum() / w.sum()), float((w * yp).sum() / w.sum())


def recenter_psf(psf: np.ndarray, radius_pix: float) -> np.ndarray:
    """Shift ``psf`` so that its core centroid (within ``radius_pix`` of the peak) falls on the
    centre pixel (ny//2, nx//2); unit sum."""
    cx, cy = centroid(psf, radius_pix)
    out = shift_image(psf, psf.shape[1] // 2 - cx, psf.shape[0] // 2 - cy)
    return out / out.sum()


def resample_psf(psf: np.ndarray, scale: float, out_scale: float) -> np.ndarray:
    """Resample ``psf`` from ``scale`` to ``out_scale`` arcsec/pixel with a cubic spline about the
    centre pixel, normalised to unit sum. Returns ``psf / psf.sum()`` when the scales agree."""
    psf = np.asarray(psf, dtype=float)
    if np.isclose(scale, out_scale, rtol=1e-6):
        return psf / psf.sum()
    ratio = out_scale / scale
    shape = tuple(int(np.ceil(n / ratio)) | 1 for n in psf.shape)
    centre_in = np.array([n // 2 for n in psf.shape], dtype=float)
    centre_out = np.array([n // 2 for n in shape], dtype=float)
    out = ndimage.affine_transform(psf, np.full(2, ratio), offset=centre_in - ratio * centre_out,
                                   output_shape=shape, order=3, mode="constant")
    return out / out.sum()


def rotate_psf(psf: np.ndarray, angle_deg: float,
               reference: tuple[float, float] | None = None) -> np.ndarray:
    """Rotate ``psf`` counter-clockwise by ``angle_deg`` about its reference pixel ``(x, y)``
    (default the centre pixel) with a cubic spline; negative interpolation ripples are clipped,
    unit sum (an IRAC PSF turned to an AOR's angle)."""
    theta = np.deg2rad(angle_deg)
    c, s = np.cos(theta), np.sin(theta)
    # output (y, x) -> input (y, x): inverse rotation in (row, column) order
    matrix = np.array([[c, -s], [s, c]])
    centre = (np.array([n // 2 for n in psf.shape], dtype=float) if reference is None
              else np.array([reference[1], reference[0]], dtype=float))
    out = ndimage.affine_transform(psf, matrix, offset=centre - matrix @ centre, order=3,
                                   mode="constant")
    out = np.clip(out, 0.0, None)
    return out / out.sum()


def position_psf(psf: np.ndarray, angles_deg: Sequence[float],
                 weights: Sequence[float], reference: tuple[float, float] | None = None) -> np.ndarray:
    """The PSF at one mosaic position: the PSF turned about its ``reference`` pixel (x, y; default
    the centre) to each covering AOR's position angle, averaged with ``weights`` (exposure time of
    that AOR at the position), counting each AOR only where its turned PSF is non-zero (golfir's
    masked average). The reference pixel stays where it was (see ``to_centre``)."""
    num = np.zeros(psf.shape)
    den = np.zeros(psf.shape)
    for angle, w in zip(angles_deg, weights):
        turned = rotate_psf(psf, angle, reference)
        num += w * turned
        den += w * (turned != 0)
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return out / out.sum()


def to_centre(psf: np.ndarray, reference: tuple[float, float]) -> np.ndarray:
    """``psf`` moved so that its reference pixel ``(x, y)`` lands on the centre pixel (n//2,
    n//2): by whole pixels when the offset is integral (no interpolation), else by a Fourier
    phase ramp; unit sum."""
    dx = psf.shape[1] // 2 - reference[0]
    dy = psf.shape[0] // 2 - reference[1]
    if float(dx).is_integer() and float(dy).is_integer():
        iy, ix = int(dy), int(dx)
        ny, nx = psf.shape
        out = np.zeros(psf.shape)
        src = psf[max(0, -iy):ny - max(0, iy), max(0, -ix):nx - max(0, ix)]
        out[max(0, iy):max(0, iy) + src.shape[0], max(0, ix):max(0, ix) + src.shape[1]] = src
    else:
        out = shift_image(psf, dx, dy)
    return out / out.sum()


def matching_kernel(hst_psf: np.ndarray, hst_scale: float, irac_psf: np.ndarray,
                    irac_psf_scale: float, *, out_scale: float,
                    window: FourierWindow | None = None, regularization: float = 1e-4,
                    recenter_radius_arcsec: float | None = 1.0, recenter_target: bool = True,
                    size: int | None = None) -> np.ndarray:
    """Kernel K on the ``out_scale`` grid (the HST mosaic's) with ``hst_psf * K = irac_psf``.

    Both PSFs are resampled to ``out_scale``, recentred on their core centroid (within
    ``recenter_radius_arcsec`` of the peak; None keeps them as given, centred on the array centre;
    ``recenter_target=False`` keeps the IRAC PSF as given, e.g. already on its reference pixel)
    and the HST PSF is zero-padded to the IRAC PSF's shape. ``K = ifft(W * OTF_irac / OTF_hst)``
    where the ratio is set to 0 wherever ``|OTF_hst| <= regularization * max|OTF_hst|`` (as
    photutils 3; golfir used no threshold and no window). ``size`` crops the result (odd sizes keep
    the centre pixel). The kernel is real, centred on (n//2, n//2) and sums to 1.
    """
    irac = resample_psf(irac_psf, irac_psf_scale, out_scale)
    hst = resample_psf(hst_psf, hst_scale, out_scale)
    if recenter_radius_arcsec is not None:
        radius = recenter_radius_arcsec / out_scale
        if recenter_target:
            irac = recenter_psf(irac, radius)
        hst = recenter_psf(pad_to(hst, tuple(max(a, b) for a, b in zip(hst.shape, irac.shape))),
                           radius)
    shape = irac.shape
    hst = pad_to(hst, shape)
    # OTFs with the centre pixel moved to the origin: the ratio then carries no phase ramp
    otf_hst = fft.fft2(fft.ifftshift(hst))
    otf_irac = fft.fft2(fft.ifftshift(irac))
    keep = np.abs(otf_hst) > regularization * np.abs(otf_hst).max()
    ratio = np.zeros_like(otf_irac)
    ratio[keep] = otf_irac[keep] / otf_hst[keep]
    if window is not None:
        ratio *= window(shape)
    kernel = np.real(fft.fftshift(fft.ifft2(ratio)))
    if size is not None:
        kernel = pad_to(kernel, (size, size))
    return kernel / kernel.sum()
