"""Single-Sersic models of bright IRAC sources, standing in for golfir's GALFIT step.

golfir refits every source brighter than ``galfit_flux_limit`` (20 uJy in ALCS) with GALFIT: one
Sersic profile convolved with the IRAC PSF plus a sky, fit to the image cleaned of all other
model components, over the pixels of the source's own segment and of no segment, with a flat
weight (the median inverse variance). When the chi-square improves by more than
``chi2_threshold`` the source's design-matrix column is replaced by the normalised Sersic model
and the normalisations are refit (the Sersic magnitude itself is not used).

GALFIT cannot be installed here, so the profile is astropy's ``Sersic2D`` evaluated on the fine
(HST) grid, convolved with the IRAC PSF on that grid and sum-binned to IRAC pixels with the same
phase-kernel machinery as the HST models; amplitude and sky are solved linearly inside a
``scipy.optimize.least_squares`` fit of centre, radius, index, axis ratio and angle.
Positions and radii are in IRAC pixels (global mosaic indices), angles in radians.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.modeling.models import Sersic2D
from scipy.optimize import least_squares

from .irac_models import BinnedKernel, SampledKernels, convolve_bin_many, place_block


@dataclass(frozen=True)
class SersicFit:
    """Fitted profile and the chi-square of the previous model and of the Sersic model (plus
    sky) over the same pixels with the same flat weight."""

    x: float
    y: float
    r_eff: float
    n: float
    q: float
    theta: float
    chi2_before: float
    chi2_after: float

    def render(self, psf: BinnedKernel | SampledKernels, half: int) -> tuple[np.ndarray, int, int]:
        return render_sersic(self.x, self.y, self.r_eff, self.n, self.q, self.theta, psf, half)


def render_sersic(x: float, y: float, r_eff: float, n: float, q: float, theta: float,
                  psf: BinnedKernel | SampledKernels, half: int) -> tuple[np.ndarray, int, int]:
    """IRAC image of a Sersic profile centred at IRAC pixel (x, y), normalised by the profile's
    total: the profile on the fine grid within ``half`` IRAC pixels of the centre, convolved with
    ``psf`` (the IRAC PSF on the fine grid, or per AOR with the mosaic's sampling maps, as the
    HST models) and binned. Returns the block and the IRAC (row, column) of its pixel [0, 0]."""
    r = psf.ratio
    cx, cy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    fine = (np.arange(r * (2 * half + 1)) + 0.5) / r - 0.5 - half
    xx, yy = np.meshgrid(cx + fine, cy + fine)
    profile = Sersic2D.evaluate(xx, yy, 1.0, r_eff, n, x, y, 1.0 - q, theta)
    sampled = isinstance(psf, SampledKernels)
    blocks, jy, jx = convolve_bin_many(profile, r * (cy - half), r * (cx - half), psf.flat() if sampled else [psf])
    block = psf.combine(blocks, jy, jx) if sampled else blocks[0]
    return block / blocks[0].sum(), jy, jx


def fit_sersic(data: np.ndarray, previous_model: np.ndarray, mask: np.ndarray, weight: float,
               origin: tuple[int, int], x0: float, y0: float, psf: BinnedKernel | SampledKernels,
               max_offset: float = 2.0, max_nfev: int = 200) -> SersicFit:
    """Fit one Sersic profile plus a constant sky to the stamp ``data`` (an image cleaned of all
    other sources) over ``mask`` with the flat inverse variance ``weight``.

    ``origin`` is the IRAC (row, column) of ``data[0, 0]``; (x0, y0) the starting centre, allowed
    to move by ``max_offset`` pixels. ``previous_model`` (same stamp) gives ``chi2_before``.
    """
    half = max(data.shape) // 2 + 4
    sw = np.sqrt(weight)
    d = data[mask]
    design = np.ones((d.size, 2))

    def residual(p: np.ndarray) -> np.ndarray:
        x, y, log_r, n, q, theta = p
        block, jy, jx = render_sersic(x, y, 10 ** log_r, n, q, theta, psf, half)
        design[:, 0] = place_block(block, jy, jx, origin, data.shape)[mask]
        coeffs = np.linalg.lstsq(design, d, rcond=None)[0]
        return sw * (d - design @ coeffs)

    start = np.array([x0, y0, 0.0, 1.0, 0.8, 0.0])
    lower = [x0 - max_offset, y0 - max_offset, -1.0, 0.3, 0.1, -np.pi]
    upper = [x0 + max_offset, y0 + max_offset, 1.3, 6.0, 1.0, np.pi]
    fit = least_squares(residual, start, bounds=(lower, upper),
                        x_scale=[0.1, 0.1, 0.1, 0.3, 0.1, 0.3], max_nfev=max_nfev)
    x, y, log_r, n, q, theta = fit.x
    chi2_before = float(np.sum(weight * (data - previous_model)[mask] ** 2))
    return SersicFit(float(x), float(y), float(10 ** log_r), float(n), float(q), float(theta),
                     chi2_before, float(np.sum(fit.fun ** 2)))
