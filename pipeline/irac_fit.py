"""IRAC model photometry of one patch: golfir's two passes, shift fit and Sersic refinement.

``fit_patch(PatchInput, IracParams) -> PatchResult`` is pure and self-contained (cutouts in,
arrays out) so that patches can run in separate processes (``irac_field.fit_field``) or on dask.

The passes, as golfir's ALCS call (``ImageModeler.run_full_patch``):

1. models of sources brighter than ``mag_limit[0]`` (AB 24) plus the background; pixels where the
   summed HST-flux model of bright sources (AB < ``any_limit``, or AB < ``point_limit`` and
   point-like) exceeds ``bright_sn`` times the pixel noise are masked (those sources stay in the
   model); weighted least squares; then the HST-to-IRAC shift that minimises the residual of the
   moved source models, fitted jointly with the normalisations (golfir's ``patch_align``,
   shift only);
2. models of every source brighter than ``mag_limit[1]`` (AB 27), moved by that shift, refit:
   these normalisations are the fluxes (uJy) and ``sqrt(diag(inv(A^T W A)))`` their errors;
3. sources brighter than ``galfit_flux_limit`` uJy (not bright-masked) get a single-Sersic model
   (``irac_sersic``) when it lowers the chi-square by ``chi2_threshold``; normalisations refit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from .irac_models import (IracGeometry, SourceModels, background_terms, binned_kernel,
                          convolve_bin, kernel_gradient, moved_kernel, place_block,
                          segment_boxes, source_models)
from .irac_patches import PatchBox
from .irac_sersic import SersicFit, fit_sersic
from .irac_solve import IracFlag, Solution, solve


@dataclass(frozen=True)
class IracParams:
    """Parameters of the IRAC model photometry; defaults are golfir's ALCS call.

    Sizes: ``patch_arcmin`` is a half-width (patches are 2' x 2'), ``patch_overlap`` in arcmin,
    ``border_arcsec`` the unfit edge of a patch, ``point_flux_radius``, ``sersic_stamp``,
    ``max_shift_arcsec`` and ``shift_max_error`` in arcsec, ``shift_tolerance`` in IRAC pixels;
    ``bkg_order_npix``: one background polynomial order per that many IRAC pixels;
    ``galfit_flux_limit`` None skips the Sersic step.
    """

    patch_arcmin: float = 1.0
    patch_overlap: float = 0.2
    border_arcsec: float = 2.5
    mag_limit: tuple[float, float] = (24.0, 27.0)
    any_limit: float = 15.0
    point_limit: float = 15.0
    point_flux_radius: float = 0.35
    bright_sn: float = 30.0
    galfit_flux_limit: float | None = 20.0
    chi2_threshold: float = 10.0
    sersic_stamp: float = 10.0
    bkg_order_npix: float = 64.0
    bkg_order_clip: tuple[int, int] = (3, 11)
    min_pixels: int = 5
    negative_sigma: float = 2.0
    fit_shift: bool = True
    max_shift_arcsec: float = 1.0
    shift_iterations: int = 5
    shift_tolerance: float = 0.002
    shift_max_error: float = 0.03


@dataclass
class PatchInput:
    """Everything one patch needs. IRAC indices are global mosaic pixels; ``hst_ujy``/``seg``
    are HST cutouts holding the whole segment of every listed source, seen through ``geometry``.
    Sources: HST ids, IRAC pixel positions, AB magnitudes, ``point`` = compact (for
    ``point_limit``). ``kernel``: HST-to-IRAC matching kernel on the HST grid; ``irac_psf``: the
    IRAC PSF on the HST grid (needed for the Sersic step), both centred on pixel (n//2, n//2)."""

    box: PatchBox
    irac: np.ndarray
    weight: np.ndarray
    hst_ujy: np.ndarray
    seg: np.ndarray
    geometry: IracGeometry
    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    mag: np.ndarray
    point: np.ndarray
    kernel: np.ndarray
    irac_psf: np.ndarray | None = None


@dataclass
class PatchResult:
    """Measurements of the sources the patch owns (flux, err in uJy, NaN when missing; ``flag``
    ``IracFlag`` bits; ``bright`` = bright-masked) and the patch's (ny, nx) images. ``shift``:
    fitted (dx, dy) IRAC pixels moving HST-based models onto the IRAC image."""

    box: PatchBox
    ids: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    flag: np.ndarray
    bright: np.ndarray
    model_image: np.ndarray
    residual_image: np.ndarray
    background_image: np.ndarray
    shift: tuple[float, float]
    sersic: dict[int, SersicFit] = field(default_factory=dict)


def bright_weight(models: SourceModels, bright: np.ndarray, weight: np.ndarray,
                  bright_sn: float) -> np.ndarray:
    """``weight`` set to 0 where the HST-flux model of the ``bright`` ids exceeds ``bright_sn``
    times the pixel noise (golfir's ``model_bright * sivar < bright_sn``)."""
    sel = np.isin(models.ids, bright)
    if not sel.any():
        return weight
    image = models.matrix[:, sel] @ models.norm[sel]
    return np.where(image * np.sqrt(weight) < bright_sn, weight, 0.0)


def shift_gradient(inp: PatchInput, models: SourceModels, flux: np.ndarray,
                   shift: tuple[float, float]) -> np.ndarray:
    """(npix, 2): derivatives of the source model image ``sum_k flux_k A_k`` with respect to the
    HST-to-IRAC shift (dx, dy) in IRAC pixels. The model is one convolution of the HST cutout
    recoloured by flux/norm per segment, so its derivatives are that image convolved with the
    kernel's Fourier derivatives."""
    lut = np.zeros(int(inp.seg.max()) + 1)
    lut[models.ids] = np.nan_to_num(flux) / models.norm
    image = inp.hst_ujy * lut[inp.seg]
    b = inp.box
    columns = []
    for bk in kernel_gradient(*moved_kernel(inp.kernel, inp.geometry.ratio, shift),
                              inp.geometry.ratio):
        block, jy, jx = convolve_bin(image, -inp.geometry.y0, -inp.geometry.x0, bk)
        columns.append(place_block(block, jy, jx, (b.y0, b.x0), (b.ny, b.nx)).ravel())
    return np.array(columns).T


def replace_columns(matrix: sp.csc_matrix, columns: dict[int, tuple[np.ndarray, np.ndarray]]
                    ) -> sp.csc_matrix:
    """Copy of a CSC ``matrix`` with columns ``i`` replaced by (row indices, values)."""
    data, indices, indptr = [], [], [0]
    for i in range(matrix.shape[1]):
        if i in columns:
            rows, values = columns[i]
        else:
            lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
            rows, values = matrix.indices[lo:hi], matrix.data[lo:hi]
        indices.append(rows)
        data.append(values)
        indptr.append(indptr[-1] + len(rows))
    return sp.csc_matrix((np.concatenate(data), np.concatenate(indices), np.array(indptr)),
                         shape=matrix.shape)


def irac_segmentation(inp: PatchInput) -> np.ndarray:
    """The segmentation map sampled at the centres of the patch's IRAC pixels (golfir's
    ``patch_seg[pf//2::pf, pf//2::pf]``); 0 outside the HST cutout."""
    g, b = inp.geometry, inp.box
    fy = g.y0 + g.ratio * np.arange(b.y0, b.y0 + b.ny) + g.ratio // 2
    fx = g.x0 + g.ratio * np.arange(b.x0, b.x0 + b.nx) + g.ratio // 2
    oky = (fy >= 0) & (fy < inp.seg.shape[0])
    okx = (fx >= 0) & (fx < inp.seg.shape[1])
    out = inp.seg[np.clip(fy, 0, inp.seg.shape[0] - 1)][:, np.clip(fx, 0, inp.seg.shape[1] - 1)]
    return np.where(oky[:, None] & okx[None, :], out, 0)


def refine_bright(inp: PatchInput, models: SourceModels, sol: Solution, weight: np.ndarray,
                  bright: np.ndarray, shift: tuple[float, float], params: IracParams,
                  irac_scale: float) -> tuple[SourceModels, dict[int, SersicFit]]:
    """Sersic refinement (module docstring, step 3). Returns the models with replaced columns."""
    b = inp.box
    shape = (b.ny, b.nx)
    psf = binned_kernel(inp.irac_psf, inp.geometry.ratio)
    seg_irac = irac_segmentation(inp)
    w2d = weight.reshape(shape)
    model2d = sol.model.reshape(shape)
    data2d = inp.irac
    pos = {sid: (x, y) for sid, x, y in zip(inp.ids, inp.x, inp.y)}
    half = int(round(params.sersic_stamp / 2 / irac_scale))
    flux = np.nan_to_num(sol.flux)
    order = np.argsort(-flux)
    fits: dict[int, SersicFit] = {}
    columns = {}
    for i in order:
        sid = models.ids[i]
        x, y = pos[sid]
        jx, jy = int(np.floor(x + 0.5)) - b.x0, int(np.floor(y + 0.5)) - b.y0
        if (flux[i] <= params.galfit_flux_limit or sid in bright or not (0 <= jx < b.nx)
                or not (0 <= jy < b.ny) or w2d[jy, jx] <= 0):
            continue
        sl = (slice(max(0, jy - half), jy + half + 1), slice(max(0, jx - half), jx + half + 1))
        column = models.matrix[:, i].toarray().reshape(shape)[sl] * flux[i]
        cleaned = (data2d - model2d)[sl] + column
        mask = (w2d[sl] > 0) & ((seg_irac[sl] == 0) | (seg_irac[sl] == sid))
        if mask.sum() <= 10:
            continue
        fit = fit_sersic(cleaned, column, mask, float(np.median(w2d[sl][mask])),
                         (b.y0 + sl[0].start, b.x0 + sl[1].start), x + shift[0], y + shift[1], psf)
        if fit.chi2_before - fit.chi2_after <= params.chi2_threshold:
            continue
        block, by, bx = fit.render(psf, 3 * half)
        ylo, yhi = max(by, b.y0), min(by + block.shape[0], b.y0 + b.ny)
        xlo, xhi = max(bx, b.x0), min(bx + block.shape[1], b.x0 + b.nx)
        rows = (np.arange(ylo, yhi) - b.y0)[:, None] * b.nx + (np.arange(xlo, xhi) - b.x0)[None, :]
        columns[i] = (rows.ravel(), block[ylo - by:yhi - by, xlo - bx:xhi - bx].ravel())
        fits[int(sid)] = fit
    if not columns:
        return models, fits
    return SourceModels(models.ids, replace_columns(models.matrix, columns), models.norm), fits


def fit_shift(inp: PatchInput, params: IracParams, one_pass, data: np.ndarray,
              background: np.ndarray, irac_scale: float) -> tuple[float, float]:
    """Pass 1 and the HST-to-IRAC shift: Gauss-Newton iterations of a joint fit of the
    normalisations, the background and the shift (the two shift-derivative images as extra
    columns), models regenerated at each new shift, until the step is below
    ``shift_tolerance`` pixels (golfir instead moves the fixed pass-1 model image, which lets
    sources cut by the patch border pull the shift towards zero). A shift whose formal error
    exceeds ``shift_max_error`` arcsec (a patch with too few bright sources) is not applied."""
    limit = params.max_shift_arcsec / irac_scale
    shift = np.zeros(2)
    models, w, sol = one_pass(params.mag_limit[0], (0.0, 0.0))
    for iteration in range(params.shift_iterations):
        grad = shift_gradient(inp, models, sol.flux, tuple(shift))
        joint = solve(models.matrix, data, w, background=np.hstack([background, grad]),
                      min_pixels=params.min_pixels, negative_sigma=params.negative_sigma)
        step = joint.background[-2:]
        if not np.all(joint.background_err[-2:] < params.shift_max_error / irac_scale):
            return 0.0, 0.0
        shift = np.clip(shift + step, -limit, limit)
        if np.abs(step).max() < params.shift_tolerance or iteration == params.shift_iterations - 1:
            break
        models, w, sol = one_pass(params.mag_limit[0], tuple(shift))
    return float(shift[0]), float(shift[1])


def fit_patch(inp: PatchInput, params: IracParams, irac_scale: float = 0.5) -> PatchResult:
    """Measure the sources owned by one patch (module docstring). ``irac_scale`` arcsec/pixel."""
    b = inp.box
    box = (b.x0, b.y0, b.nx, b.ny)
    data = inp.irac.ravel()
    weight = np.where(b.fit_mask(), inp.weight, 0.0).ravel()
    background = background_terms((b.ny, b.nx), params.bkg_order_npix, params.bkg_order_clip)
    boxes = segment_boxes(inp.seg, inp.ids)
    is_bright = (inp.mag < params.any_limit) | ((inp.mag < params.point_limit) & inp.point)
    bright = inp.ids[is_bright]

    def one_pass(mag_limit: float, shift: tuple[float, float]
                 ) -> tuple[SourceModels, np.ndarray, Solution]:
        sel = np.flatnonzero(inp.mag < mag_limit)
        kernel = binned_kernel(inp.kernel, inp.geometry.ratio, shift)
        models = source_models(inp.hst_ujy, inp.seg, inp.ids[sel], kernel, inp.geometry, box,
                               [boxes[i] for i in sel])
        w = bright_weight(models, bright, weight, params.bright_sn)
        return models, w, solve(models.matrix, data, w, background=background,
                                min_pixels=params.min_pixels,
                                negative_sigma=params.negative_sigma)

    shift = (0.0, 0.0)
    if params.fit_shift:
        shift = fit_shift(inp, params, one_pass, data, background, irac_scale)
    models, w, sol = one_pass(params.mag_limit[-1], shift)
    sersic: dict[int, SersicFit] = {}
    if params.galfit_flux_limit is not None and inp.irac_psf is not None:
        models, sersic = refine_bright(inp, models, sol, w, bright, shift, params, irac_scale)
        if sersic:
            sol = solve(models.matrix, data, w, background=background,
                        min_pixels=params.min_pixels, negative_sigma=params.negative_sigma)
    owned = b.owns(inp.x, inp.y)
    ids = inp.ids[owned]
    col = {sid: i for i, sid in enumerate(models.ids)}
    idx = np.array([col.get(sid, -1) for sid in ids], dtype=int)
    found = idx >= 0
    flux, err = np.full(len(ids), np.nan), np.full(len(ids), np.nan)
    flag = np.full(len(ids), int(IracFlag.NOT_MODELLED))
    flux[found], err[found], flag[found] = (sol.flux[idx[found]], sol.err[idx[found]],
                                            sol.flag[idx[found]])
    is_bright_owned = np.isin(ids, bright) & found
    flag[is_bright_owned] |= int(IracFlag.BRIGHT)
    flag[np.isin(ids, list(sersic))] |= int(IracFlag.SERSIC)
    model_image = sol.model.reshape(inp.irac.shape)
    return PatchResult(b, ids, flux, err, flag, is_bright_owned, model_image,
                       inp.irac - model_image, sol.background_model.reshape(inp.irac.shape),
                       shift, sersic)
