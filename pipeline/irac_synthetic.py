"""Synthetic HST + IRAC scenes with known IRAC fluxes, for tests, benchmarks and demos.

The HST image holds exponential-profile sources (uJy per HST pixel) with a segmentation map (each
pixel above ``seg_threshold`` goes to the source brightest there). The IRAC image is rendered
independently of ``irac_models``: every source's segment is given its true IRAC/HST flux ratio,
the whole recoloured HST image is convolved once with the kernel on the fine grid (FFT), moved by
``shift`` and sum-binned into IRAC pixels; then a smooth background and Gaussian noise are added.
The model of the fit is therefore exact and any bias or excess scatter is the method's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from .irac_kernel import pad_to, shift_image
from .irac_models import IracGeometry


@dataclass
class SyntheticScene:
    """Arrays of a synthetic field; x, y are zero-indexed HST pixel positions."""

    hst_ujy: np.ndarray
    seg: np.ndarray
    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    mag: np.ndarray          # HST AB magnitude of the segment flux
    irac_true: np.ndarray    # true IRAC flux density of each source, uJy
    irac: np.ndarray         # IRAC image, uJy per IRAC pixel (with background and noise)
    irac_weight: np.ndarray  # inverse variance
    geometry: IracGeometry
    noise: float             # IRAC noise per pixel, uJy


def gaussian_psf(fwhm_pix: float, size: int) -> np.ndarray:
    """Unit-sum circular Gaussian centred on pixel (size//2, size//2)."""
    yy, xx = np.indices((size, size)) - size // 2
    psf = np.exp(-0.5 * (xx ** 2 + yy ** 2) / (fwhm_pix / 2.3548) ** 2)
    return psf / psf.sum()


def render_irac(image_fine: np.ndarray, kernel: np.ndarray, ratio: int,
                shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Whole-image reference rendering: fine-grid FFT convolution with ``kernel`` (centre pixel
    (n//2, n//2)) moved by ``shift`` IRAC pixels, then sum-binned by ``ratio`` (the fine image's
    shape must be a multiple of ``ratio``, with pixel 0 on an IRAC pixel edge)."""
    margin = int(np.ceil(max(abs(shift[0]), abs(shift[1])) * ratio)) + 4
    k = pad_to(kernel, (kernel.shape[0] + 2 * margin, kernel.shape[1] + 2 * margin))
    if shift != (0.0, 0.0):
        k = shift_image(k, shift[0] * ratio, shift[1] * ratio)
    full = signal.fftconvolve(image_fine, k, mode="full")
    cy, cx = k.shape[0] // 2, k.shape[1] // 2
    conv = full[cy:cy + image_fine.shape[0], cx:cx + image_fine.shape[1]]
    ny, nx = image_fine.shape[0] // ratio, image_fine.shape[1] // ratio
    return conv.reshape(ny, ratio, nx, ratio).sum(axis=(1, 3))


def synthetic_scene(irac_shape: tuple[int, int], n_sources: int, kernel: np.ndarray, *,
                    ratio: int = 5, seed: int = 0, mag_range: tuple[float, float] = (18.0, 27.0),
                    noise: float = 0.02, shift: tuple[float, float] = (0.0, 0.0),
                    pairs: int = 0, pair_sep_pix: tuple[float, float] = (6.0, 20.0),
                    seg_threshold: float = 1e-3,
                    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
                    edge_pix: int = 0) -> SyntheticScene:
    """A scene of ``n_sources`` sources (plus ``pairs`` extra neighbours placed ``pair_sep_pix``
    HST pixels from random sources) on an HST grid ``ratio`` times finer than ``irac_shape``.

    Magnitudes follow counts rising as 10^(0.3 m) in ``mag_range``; half-light radii 0.8-5 HST
    pixels; IRAC/HST flux ratios log-normal (0.3 dex). ``background = (b0, bx, by)``: IRAC sky
    ``b0 + bx*u + by*v`` with u, v in [-1, 1] across the image. ``edge_pix`` keeps centres that
    many HST pixels from the edges. ``shift`` (IRAC pixels) moves the IRAC image with respect to
    the HST positions.
    """
    rng = np.random.default_rng(seed)
    ny, nx = irac_shape[0] * ratio, irac_shape[1] * ratio
    lo, hi = 10 ** (0.3 * mag_range[0]), 10 ** (0.3 * mag_range[1])
    mag = np.log10(rng.uniform(lo, hi, n_sources)) / 0.3
    x = rng.uniform(edge_pix, nx - 1 - edge_pix, n_sources)
    y = rng.uniform(edge_pix, ny - 1 - edge_pix, n_sources)
    if pairs:
        host = rng.choice(n_sources, pairs, replace=False)
        sep = rng.uniform(*pair_sep_pix, pairs)
        angle = rng.uniform(0, 2 * np.pi, pairs)
        x = np.concatenate([x, np.clip(x[host] + sep * np.cos(angle), 0, nx - 1)])
        y = np.concatenate([y, np.clip(y[host] + sep * np.sin(angle), 0, ny - 1)])
        mag = np.concatenate([mag, np.log10(rng.uniform(lo, hi, pairs)) / 0.3])
    n = len(x)
    r_half = rng.uniform(0.8, 5.0, n)
    flux = 10 ** (-0.4 * (mag - 23.9))
    hst = np.zeros((ny, nx))
    best = np.zeros((ny, nx))
    seg = np.zeros((ny, nx), dtype=np.int32)
    for i in range(n):
        scale = r_half[i] / 1.678
        half = int(np.ceil(8 * scale)) + 2
        x0, y0 = int(x[i]), int(y[i])
        sl = (slice(max(0, y0 - half), min(ny, y0 + half + 1)),
              slice(max(0, x0 - half), min(nx, x0 + half + 1)))
        yy, xx = np.mgrid[sl]
        profile = np.exp(-np.hypot(xx - x[i], yy - y[i]) / scale)
        profile *= flux[i] / (2 * np.pi * scale ** 2)
        hst[sl] += profile
        own = (profile > seg_threshold) & (profile > best[sl])
        best[sl] = np.where(own, profile, best[sl])
        seg[sl] = np.where(own, i + 1, seg[sl])
    ids = np.arange(1, n + 1, dtype=np.int32)
    seg_flux = np.bincount(seg.ravel(), weights=hst.ravel(), minlength=n + 1)[1:]
    keep = seg_flux > 0
    colour = 10 ** rng.normal(0.0, 0.3, n)
    irac_true = np.where(keep, seg_flux * colour, 0.0)
    ratio_map = np.concatenate([[0.0], np.where(keep, colour, 0.0)])[seg]
    irac = render_irac(hst * ratio_map, kernel, ratio, shift)
    v, u = np.meshgrid(np.linspace(-1, 1, irac_shape[0]), np.linspace(-1, 1, irac_shape[1]),
                       indexing="ij")
    irac += background[0] + background[1] * u + background[2] * v
    irac += rng.normal(0.0, noise, irac.shape)
    with np.errstate(divide="ignore"):
        mag_seg = np.where(keep, 23.9 - 2.5 * np.log10(np.where(keep, seg_flux, 1.0)), np.nan)
    return SyntheticScene(hst, seg, ids, x, y, mag_seg, irac_true, irac,
                          np.full(irac.shape, 1.0 / noise ** 2), IracGeometry(ratio, 0, 0), noise)
