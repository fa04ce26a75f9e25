"""Models of the extended light of a field's bright sources, subtracted before the sky is estimated.

In a cluster core the wings of the bright members and the PSF halos of bright stars cover the
whole field at a fraction of the pixel noise, beyond any source mask, and a 32" sky mesh takes
them for sky: the mock's WFC3/IR mosaics came out 0.15-0.19 of the pixel noise too low in empty
sky. Subtracting a perfect model of only the sources brighter than F160W = 22 before the
per-visit sky brings that to 0.01-0.02 (`benchmarks/hst_sky.py`, the truth-subtracted rows), so
the model need only describe those sources' outer light. Careful cluster-field catalogs do the
same with GALFIT models of the bright cluster galaxies (Merlin et al. 2016, Shipley et al. 2018).

Here, on a filter's stacked mosaic: the bright sources are found with sep (their isophotal flux
gives a magnitude), then each, brightest first, is fitted with one elliptical Sersic profile
convolved with the band's PSF plus a constant, over a stamp with the other sources' segments
masked and the already fitted neighbours subtracted; the fits weight each pixel by its noise
with a fractional floor, so that bright cores do not decide the wings alone. The models are
used only to estimate the sky: the mosaics keep every source's light.

Pure functions: arrays in, arrays out, in the mosaic's units per pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from astropy.modeling.models import Sersic2D
from scipy import signal
from scipy.optimize import least_squares

from pipeline.photometry import error_and_mask


MIN_PIXELS = 100
"""A source whose stamp has fewer usable pixels than this gets no model."""


@dataclass(frozen=True)
class BrightFit:
    """One fitted source: centre (pixels), effective radius (pixels), index, axis ratio, angle
    (radians, counter-clockwise from +x), amplitude (at r_eff, per pixel) and the constant."""

    x: float
    y: float
    r_eff: float
    n: float
    q: float
    theta: float
    amplitude: float
    constant: float


def sersic_image(fit: BrightFit, shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The (unconvolved) Sersic of ``fit`` on an array of ``shape`` whose pixel [0, 0] is image
    pixel ``origin`` (row, column)."""
    yy, xx = np.indices(shape, dtype=float)
    return Sersic2D.evaluate(xx + origin[1], yy + origin[0], fit.amplitude, fit.r_eff, fit.n, fit.x, fit.y,
                             1.0 - fit.q, fit.theta)


def bright_sources(data: np.ndarray, err: np.ndarray, nocov: np.ndarray, *, to_ujy: float, mag_limit: float,
                   max_sources: int, thresh: float = 3.0, minarea: int = 20
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sep objects brighter than ``mag_limit`` (AB, isophotal flux times ``to_ujy``), brightest
    first, at most ``max_sources``; the segmentation of all detected objects; the selected
    objects' segmentation labels."""
    data = np.ascontiguousarray(np.where(nocov, 0.0, data), dtype=np.float32)
    # a coarse sky (meshes of a quarter of the image) so that a pedestal is not taken for sources
    box = max(32, min(data.shape) // 4)
    data = data - sep.Background(data, mask=nocov, bw=box, bh=box, fw=3, fh=3).back()
    data[nocov] = 0.0
    pixstack = sep.get_extract_pixstack()
    sep.set_extract_pixstack(max(pixstack, data.size))
    try:
        objects, seg = sep.extract(data, thresh, err=np.ascontiguousarray(np.where(nocov, 0.0, err), np.float32),
                                   mask=nocov, minarea=minarea, deblend_nthresh=32, deblend_cont=0.005,
                                   segmentation_map=True)
    finally:
        sep.set_extract_pixstack(pixstack)
    flux = np.bincount(seg.ravel(), weights=data.ravel(), minlength=len(objects) + 1)[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = 23.9 - 2.5 * np.log10(flux * to_ujy)
    keep = np.flatnonzero(np.isfinite(mag) & (mag < mag_limit))
    keep = keep[np.argsort(mag[keep])][:max_sources]
    return objects[keep], seg, keep + 1


def fit_bright(data: np.ndarray, err: np.ndarray, good: np.ndarray, psf: np.ndarray, x0: float, y0: float,
               r0: float, origin: tuple[int, int], floor: float, max_nfev: int = 80) -> BrightFit:
    """Fit one PSF-convolved Sersic plus a constant to the stamp ``data`` over ``good`` pixels
    (image pixel [0, 0] of the stamp at ``origin``); noise ``sqrt(err**2 + (floor * data)**2)``."""
    sigma = np.sqrt(err ** 2 + (floor * np.clip(data, 0.0, None)) ** 2)
    w = np.where(good & (sigma > 0), 1.0 / np.where(sigma > 0, sigma, 1.0), 0.0)
    d = data[good]
    sw = w[good]
    yy, xx = np.indices(data.shape, dtype=float)
    xx += origin[1]
    yy += origin[0]
    design = np.ones((d.size, 2))
    state = {}

    def residual(p: np.ndarray) -> np.ndarray:
        x, y, log_r, n, q, theta = p
        prof = Sersic2D.evaluate(xx, yy, 1.0, 10 ** log_r, n, x, y, 1.0 - q, theta)
        conv = signal.fftconvolve(prof, psf, mode="same")
        design[:, 0] = conv[good]
        coeffs = np.linalg.lstsq(design * sw[:, None], d * sw, rcond=None)[0]
        state["coeffs"] = coeffs
        return sw * (d - design @ coeffs)

    start = np.array([x0, y0, np.log10(max(r0, 1.0)), 2.0, 0.8, 0.0])
    lower = [x0 - 3, y0 - 3, -1.0, 0.3, 0.1, -np.pi]
    upper = [x0 + 3, y0 + 3, np.log10(max(data.shape)), 8.0, 1.0, np.pi]
    res = least_squares(residual, start, bounds=(lower, upper), x_scale=[0.3, 0.3, 0.1, 0.3, 0.1, 0.3],
                        max_nfev=max_nfev)
    residual(res.x)
    amp, const = state["coeffs"]
    x, y, log_r, n, q, theta = res.x
    return BrightFit(float(x), float(y), float(10 ** log_r), float(n), float(q), float(theta), float(amp), float(const))


def bright_light_model(sci: np.ndarray, wht: np.ndarray, psf: np.ndarray, *, pixscale: float, to_ujy: float,
                       mag_limit: float = 22.0, max_sources: int = 60, stamp_arcsec: float = 16.0,
                       render_arcsec: float | None = None, floor: float = 0.05
                       ) -> tuple[np.ndarray, list[BrightFit]]:
    """The PSF-convolved Sersic models of the sources brighter than ``mag_limit`` on a stacked
    mosaic (module docstring), summed into one image of ``sci``'s shape and units, and the fits.

    ``psf``: the mosaic's PSF at ``pixscale`` (odd, centred, unit sum); ``to_ujy``: uJy per unit
    of ``sci``. Each fit uses a stamp of ``stamp_arcsec`` (at least 6 times the source's sep
    radius). Each model is rendered over that stamp only, where the data constrained it
    (``render_arcsec`` renders it over a box of that side instead: a Sersic extrapolated beyond
    its stamp over-subtracted the mock's sky, +0.12 of the noise in F160W, whose profiles end at
    5-8 effective radii).
    """
    err, nocov = error_and_mask(sci, wht)
    data = np.where(nocov, 0.0, sci).astype(np.float64)
    objects, seg, labels = bright_sources(data, err, nocov, to_ujy=to_ujy, mag_limit=mag_limit,
                                          max_sources=max_sources)
    model = np.zeros(data.shape)
    fits_: list[BrightFit] = []
    ny, nx = data.shape
    for obj, label in zip(objects, labels):
        size = max(np.sqrt(obj["a"] * obj["b"]), 1.0)
        half = int(np.clip(max(stamp_arcsec / 2 / pixscale, 6 * size), 10, max(ny, nx)))
        cx, cy = int(round(obj["x"])), int(round(obj["y"]))
        y0, y1, x0, x1 = max(cy - half, 0), min(cy + half + 1, ny), max(cx - half, 0), min(cx + half + 1, nx)
        if y1 - y0 < 10 or x1 - x0 < 10:
            continue
        stamp = (data - model)[y0:y1, x0:x1]
        s_seg = seg[y0:y1, x0:x1]
        good = ~nocov[y0:y1, x0:x1] & ((s_seg == 0) | (s_seg == label))
        if good.sum() < MIN_PIXELS:
            continue
        try:
            fit = fit_bright(stamp, err[y0:y1, x0:x1], good, psf, float(obj["x"]), float(obj["y"]), size,
                             (y0, x0), floor)
        except (ValueError, np.linalg.LinAlgError):
            continue  # a stamp the fit cannot use (e.g. non-finite values): no model, as for a faint source
        if not (np.isfinite(fit.amplitude) and fit.amplitude > 0):
            continue
        fits_.append(fit)
        if render_arcsec is not None:
            r = int(round(render_arcsec / 2 / pixscale))
            y0, y1, x0, x1 = max(cy - r, 0), min(cy + r + 1, ny), max(cx - r, 0), min(cx + r + 1, nx)
        prof = sersic_image(fit, (y1 - y0, x1 - x0), (y0, x0))
        model[y0:y1, x0:x1] += signal.fftconvolve(prof, psf, mode="same")
    return np.where(nocov, 0.0, model).astype(np.float32), fits_
