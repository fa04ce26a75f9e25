"""IRAC model photometry (golfir's method, after Labbe et al. 2015 / T-PHOT): the public API.

IRAC's 1.7" PSF blends neighbours, so every HST source is modelled at IRAC resolution and all
normalisations are fitted together, patch by patch. The computation is split by topic:

- ``irac_kernel``: PSF resampling, recentring, rotation to AOR angles and averaging, and the
  HST-to-IRAC matching kernel ``ifft(OTF_irac / OTF_hst)`` with an optional Fourier window;
- ``irac_segmentation``: golfir's watershed-dilated segmentation map (input preparation);
- ``irac_patches``: the overlapping 2' x 2' patch grid, border zones and source ownership;
- ``irac_models``: HST-to-IRAC grid geometry, model columns (cutout convolution + binning) and
  Hermite background terms;
- ``irac_solve``: exact weighted least squares (sparse normal equations + Cholesky) and flags;
- ``irac_sersic``: single-Sersic refinement of bright sources (golfir's GALFIT step);
- ``irac_fit``: one patch, two passes plus shift fit (``fit_patch``, ``IracParams``);
- ``irac_field``: a whole field in parallel processes (``fit_field``);
- ``irac_synthetic``: synthetic scenes with known fluxes for tests and benchmarks.

Units: fluxes in uJy, images in uJy per pixel, weights are inverse variances, positions are
zero-indexed pixel centres; missing values are NaN here (-99 on export).
"""
from .irac_field import AorSampling, FieldResult, SourceTable, fit_field
from .irac_fit import IracParams, PatchInput, PatchResult, fit_patch
from .irac_kernel import FourierWindow, matching_kernel, position_psf, rotate_psf
from .irac_models import IracGeometry, background_terms, binned_kernel, source_models
from .irac_patches import PatchBox, PatchGrid, assign_sources, patch_grid
from .irac_segmentation import watershed_segmentation
from .irac_solve import IracFlag, Solution, solve

__all__ = [
    "AorSampling", "FieldResult", "FourierWindow", "IracFlag", "IracGeometry", "IracParams", "PatchBox",
    "PatchGrid", "PatchInput", "PatchResult", "Solution", "SourceTable", "assign_sources",
    "background_terms", "binned_kernel", "fit_field", "fit_patch", "matching_kernel",
    "patch_grid", "position_psf", "rotate_psf", "solve", "source_models",
    "watershed_segmentation",
]
