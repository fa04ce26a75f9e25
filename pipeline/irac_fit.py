"""IRAC model photometry of one patch: golfir's two passes, shift fit and Sersic refinement.

``fit_patch(PatchInput, IracParams) -> PatchResult`` is pure and self-contained (cutouts in,
arrays out) so that patches can run in separate processes (``irac_field.fit_field``) or on dask.

The passes, as golfir's ALCS call (``ImageModeler.run_full_patch``):

1. models of sources brighter than ``mag_limit[0]`` (AB 24) plus the background; pixels where the
   summed HST-flux model of bright sources (AB < ``any_limit``, or AB < ``point_limit`` and
   point-like) exceeds ``bright_sn`` times the pixel noise are masked (those sources stay in the
   model); weighted least squares; then the HST-to-IRAC shift that minimises the residual of the
   moved source models, fitted jointly with the normalisations (golfir's ``patch_align``,
   shift only), and with it the width of a Gaussian blur of the models (``fit_blur``): the
   reference IRAC PSF is sharper than a mosaic's own PSF, which AOR alignment errors and
   drizzling widen (golfir's PSFs were drizzled from the field's own AORs, so carry that width;
   on the 2' mock, sigma 0.14-0.25" in ch1, whose third AOR the mosaic misaligns by 0.23", and
   0.05-0.14" in ch2; unblurred models left stars' fluxes 5% low);
2. models of every source brighter than ``mag_limit[1]`` (AB 27), moved by that shift, refit:
   these normalisations are the fluxes (uJy) and ``sqrt(diag(inv(A^T W A)))`` their errors;
3. sources brighter than ``galfit_flux_limit`` uJy (not bright-masked) get a single-Sersic model
   (``irac_sersic``) when it lowers the chi-square by ``chi2_threshold``; normalisations refit;
4. the error model (``error_model``): the pixel errors are rescaled to the residuals of pixels
   with faint models (as golfir rescales its BCD uncertainties to their NMAD,
   ``rescale_uncertainties``) and the fit is repeated with those variances. With
   ``residual_errors`` each flux error is then multiplied by the rms normalised residual of the
   pixels that carry its flux information (``residual_error_factors``, at least 1), so that
   model mismatch, which golfir's statistical errors ignore, widens the errors it affects. Optionally
   (``model_error``, off by default: golfir has no such term, and it would hide model mismatch
   in the errors rather than fix it) a model error proportional to the source models, the
   fraction fitted to the residuals of pixels with bright models, is added in quadrature.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from .irac_models import (BinnedKernel, IracGeometry, SampledKernels, SourceModels, background_terms,
                          binned_kernel, convolve_bin_many, kernel_gradient, moved_kernel,
                          place_block, sampled_kernels, segment_boxes, source_models)
from .irac_patches import PatchBox
from .irac_sersic import SersicFit, fit_sersic
from .irac_solve import IracFlag, Solution, solve


@dataclass(frozen=True)
class IracParams:
    """Parameters of the IRAC model photometry; defaults are golfir's ALCS call.

    Sizes: ``patch_arcmin`` is a half-width (patches are 2' x 2'), ``patch_overlap`` in arcmin,
    ``border_arcsec`` the unfit edge of a patch, ``point_flux_radius``, ``sersic_stamp``,
    ``max_shift_arcsec`` and ``shift_max_error`` in arcsec, ``shift_tolerance`` in IRAC pixels;
    ``fit_blur`` adds a Gaussian blur of the models (sigma at most ``max_blur_arcsec``, its formal
    error at most ``blur_max_error`` arcsec) to the shift fit;
    ``bkg_order_npix``: one background polynomial order per that many IRAC pixels;
    ``galfit_flux_limit`` None skips the Sersic step; ``rescale_errors`` and ``model_error`` turn
    the two parts of the error model on (``error_model``), which fits the model error on pixels
    whose source model exceeds ``model_error_sn`` times the noise and needs at least
    ``error_model_min_pixels`` pixels for each estimate.
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
    fit_blur: bool = True
    max_blur_arcsec: float = 0.6
    blur_max_error: float = 0.1
    rescale_errors: bool = True
    model_error: bool = False
    model_error_sn: float = 5.0
    error_model_min_pixels: int = 50
    residual_errors: bool = False


@dataclass
class PatchInput:
    """Everything one patch needs. IRAC indices are global mosaic pixels; ``hst_ujy``/``seg``
    are HST cutouts holding the whole segment of every listed source, seen through ``geometry``.
    Sources: HST ids, IRAC pixel positions, AB magnitudes, ``point`` = compact (for
    ``point_limit``). ``kernel``: HST-to-IRAC matching kernel on the HST grid; ``irac_psf``: the
    IRAC PSF on the HST grid (needed for the Sersic step), both centred on pixel (n//2, n//2).
    ``aor_kernels``, ``aor_psfs`` and ``sampling``: the matching kernel and the IRAC PSF (HST grid)
    under each AOR's PSF, and the mosaic's sampling maps over the patch box, (n_aor, 3, ny, nx)
    (``pipeline.sampling``); when given, the models and the Sersic profiles follow the drizzle's
    sampling (``irac_models.SampledKernels``)."""

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
    aor_kernels: list[np.ndarray] | None = None
    sampling: np.ndarray | None = None
    aor_psfs: list[np.ndarray] | None = None

    def model_kernel(self, shift: tuple[float, float] = (0.0, 0.0), blur: float = 0.0
                     ) -> BinnedKernel | SampledKernels:
        """The kernel of the models at ``shift`` and ``blur`` (``source_models``)."""
        if self.sampling is not None:
            return sampled_kernels(self.aor_kernels, self.sampling, (self.box.y0, self.box.x0),
                                   self.geometry.ratio, shift, blur)
        return binned_kernel(self.kernel, self.geometry.ratio, shift, blur)

    def model_psf(self, blur: float = 0.0) -> BinnedKernel | SampledKernels:
        """The IRAC PSF of the Sersic step, blurred by ``blur`` (per AOR with the sampling maps)."""
        if self.sampling is not None and self.aor_psfs is not None:
            return sampled_kernels(self.aor_psfs, self.sampling, (self.box.y0, self.box.x0),
                                   self.geometry.ratio, (0.0, 0.0), blur)
        return binned_kernel(self.irac_psf, self.geometry.ratio, (0.0, 0.0), blur)


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
    err_scale: float = 1.0
    model_error: float = 0.0
    blur: float = 0.0
    err_factor: np.ndarray | None = None


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
                   shift: tuple[float, float], blur: float | None = None) -> np.ndarray:
    """(npix, 2): derivatives of the source model image ``sum_k flux_k A_k`` with respect to the
    HST-to-IRAC shift (dx, dy) in IRAC pixels (and, when ``blur`` is not None, a third column:
    with respect to the variance of the models' Gaussian blur, IRAC pixels squared, at ``blur``).
    The model is one convolution of the HST cutout recoloured by flux/norm per segment, so its
    derivatives are that image convolved with the kernel's Fourier derivatives."""
    lut = np.zeros(int(inp.seg.max()) + 1)
    lut[models.ids] = np.nan_to_num(flux) / models.norm
    image = inp.hst_ujy * lut[inp.seg]
    b = inp.box
    r = inp.geometry.ratio
    kernels = [inp.kernel] if inp.sampling is None else inp.aor_kernels
    total = None
    for a, k in enumerate(kernels):
        bks = kernel_gradient(*moved_kernel(k, r, shift, blur or 0.0), r, blur is not None)
        blocks, jy, jx = convolve_bin_many(image, -inp.geometry.y0, -inp.geometry.x0, bks)
        # with sampling maps: each AOR's derivative weighted by its share of the pixel (the
        # offsets' own terms are second order)
        share = 1.0 if inp.sampling is None else inp.sampling[a, 0]
        cols = np.array([(share * place_block(block, jy, jx, (b.y0, b.x0), (b.ny, b.nx))).ravel()
                         for block in blocks])
        total = cols if total is None else total + cols
    return total.T


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
                  irac_scale: float, blur: float = 0.0) -> tuple[SourceModels, dict[int, SersicFit]]:
    """Sersic refinement (module docstring, step 3), the PSF blurred as the models (``blur``,
    IRAC pixels squared). Returns the models with replaced columns."""
    b = inp.box
    shape = (b.ny, b.nx)
    psf = inp.model_psf(blur)
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


CHI2_1_MEDIAN = 0.454936  # median of a chi-square variable with one degree of freedom


def _nmad(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def error_model(data: np.ndarray, weight: np.ndarray, sol: Solution, params: IracParams
                ) -> tuple[float, float]:
    """(err_scale, model_error) of a fit: the pixel variance is ``err_scale**2 / weight +
    (model_error * S)**2`` with ``S`` the pixel's source model (background excluded).

    ``err_scale`` is the NMAD of ``residual * sqrt(weight)`` over fitted pixels whose source model
    is below the noise (golfir's ``compute_err_scale``); ``model_error`` the fraction that makes
    the median normalised squared residual of pixels with ``S > model_error_sn`` times the noise
    that of a chi-square with one degree of freedom (0 when the noise alone explains them). Each
    estimate needs ``error_model_min_pixels`` pixels (else 1 and 0).
    """
    fit = (weight > 0) & np.isfinite(data)
    sw = np.sqrt(np.where(fit, weight, 0.0))
    z = (data - sol.model) * sw
    sn = (sol.model - sol.background_model) * sw
    scale = 1.0
    faint = fit & (np.abs(sn) < 1.0)
    if params.rescale_errors and faint.sum() >= params.error_model_min_pixels:
        scale = max(_nmad(z[faint]), 1e-3)
    bright = fit & (sn > params.model_error_sn)
    if not params.model_error or bright.sum() < params.error_model_min_pixels:
        return scale, 0.0
    zb, sb = z[bright] ** 2, sn[bright] ** 2

    def excess(f: float) -> float:
        return float(np.median(zb / (scale ** 2 + f ** 2 * sb))) - CHI2_1_MEDIAN

    if excess(0.0) <= 0:
        return scale, 0.0
    lo, hi = 0.0, 1.0
    if excess(hi) > 0:
        return scale, hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
    return scale, 0.5 * (lo + hi)


def residual_error_factors(matrix: sp.spmatrix, data: np.ndarray, weight: np.ndarray, sol: Solution
                           ) -> np.ndarray:
    """Per source column: ``sqrt(sum_k a_k z_k**2 / sum_k a_k)`` over fitted pixels, with ``z`` the
    normalised residual ``(data - model) * sqrt(weight)`` and ``a_k = A_k**2 * weight_k`` the
    share of pixel k in the information on the source's flux (the least-squares weight of its
    model column). 1 in expectation when the residual around the source is noise (slightly less:
    the fit absorbs its own degrees of freedom); above 1 where model mismatch (the source's or
    its neighbours') leaves structure in the pixels that determine its flux. NaN for a column
    without fitted pixels."""
    fit = (weight > 0) & np.isfinite(data)
    w = np.where(fit, weight, 0.0)
    z2 = np.where(fit, (np.nan_to_num(data) - sol.model) ** 2, 0.0) * w
    a = sp.csc_matrix(matrix).multiply(sp.csc_matrix(matrix)).T.tocsr()
    den = a @ w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt((a @ (w * z2)) / den)


def model_weight(weight: np.ndarray, sol: Solution, err_scale: float, model_error: float) -> np.ndarray:
    """Inverse variances ``1 / (err_scale**2 / weight + (model_error * S)**2)`` (0 where ``weight``
    is 0), ``S`` the source model of ``sol``."""
    source = sol.model - sol.background_model
    var = np.where(weight > 0, err_scale ** 2 / np.where(weight > 0, weight, 1.0), np.inf) \
        + (model_error * source) ** 2
    return np.where(weight > 0, 1.0 / var, 0.0)


def fit_shift(inp: PatchInput, params: IracParams, one_pass, data: np.ndarray,
              background: np.ndarray, irac_scale: float) -> tuple[float, float, float]:
    """Pass 1 and the HST-to-IRAC shift: Gauss-Newton iterations of a joint fit of the
    normalisations, the background and the shift (the two shift-derivative images as extra
    columns), models regenerated at each new shift, until the step is below
    ``shift_tolerance`` pixels (golfir instead moves the fixed pass-1 model image, which lets
    sources cut by the patch border pull the shift towards zero). A shift whose formal error
    exceeds ``shift_max_error`` arcsec (a patch with too few bright sources) is not applied.

    With ``fit_blur`` the variance ``s`` (IRAC pixels squared) of a Gaussian blur of the models is
    fitted in the same iterations (its derivative column is ``laplacian(model) / 2``): the IRAC
    mosaic's PSF is the reference PSF convolved with whatever the mosaic adds (AOR alignment
    errors, drizzling), as golfir's PSFs, drizzled from the field's own AORs, include. ``s`` stays
    in [0, ``max_blur_arcsec``**2]; a blur whose formal sigma error exceeds ``blur_max_error``
    arcsec is not applied (the shift then is fitted alone). Returns (dx, dy, s)."""
    limit = params.max_shift_arcsec / irac_scale
    blur_limit = (params.max_blur_arcsec / irac_scale) ** 2
    for with_blur in ((True, False) if params.fit_blur else (False,)):
        state = np.zeros(3)
        models, w, sol = one_pass(params.mag_limit[0], (0.0, 0.0, 0.0))
        failed = False
        for iteration in range(params.shift_iterations):
            grad = shift_gradient(inp, models, sol.flux, tuple(state[:2]), state[2] if with_blur else None)
            joint = solve(models.matrix, data, w, background=np.hstack([background, grad]),
                          min_pixels=params.min_pixels, negative_sigma=params.negative_sigma)
            k = grad.shape[1]
            step, step_err = joint.background[-k:], joint.background_err[-k:]
            if not np.all(step_err[:2] < params.shift_max_error / irac_scale):
                return 0.0, 0.0, 0.0
            if with_blur:
                # sigma error from the variance error: d(sigma) = ds / (2 sigma), sigma >= its error
                sigma = np.sqrt(max(state[2] + step[2], 0.0))
                if step_err[2] / (2 * max(sigma, params.blur_max_error / irac_scale)) > \
                        params.blur_max_error / irac_scale:
                    failed = True
                    break
            state[:2] = np.clip(state[:2] + step[:2], -limit, limit)
            if with_blur:
                state[2] = np.clip(state[2] + step[2], 0.0, blur_limit)
            converged = np.abs(step[:2]).max() < params.shift_tolerance and (
                not with_blur or abs(step[2]) < 2 * params.shift_tolerance)
            if converged or iteration == params.shift_iterations - 1:
                break
            models, w, sol = one_pass(params.mag_limit[0], tuple(state))
        if not failed:
            return float(state[0]), float(state[1]), float(state[2])
    return 0.0, 0.0, 0.0


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

    def one_pass(mag_limit: float, shift: tuple[float, float, float]
                 ) -> tuple[SourceModels, np.ndarray, Solution]:
        sel = np.flatnonzero(inp.mag < mag_limit)
        kernel = inp.model_kernel(shift[:2], shift[2])
        models = source_models(inp.hst_ujy, inp.seg, inp.ids[sel], kernel, inp.geometry, box,
                               [boxes[i] for i in sel])
        w = bright_weight(models, bright, weight, params.bright_sn)
        return models, w, solve(models.matrix, data, w, background=background,
                                min_pixels=params.min_pixels,
                                negative_sigma=params.negative_sigma)

    state = (0.0, 0.0, 0.0)
    if params.fit_shift:
        state = fit_shift(inp, params, one_pass, data, background, irac_scale)
    shift, blur = state[:2], state[2]
    models, w, sol = one_pass(params.mag_limit[-1], state)
    sersic: dict[int, SersicFit] = {}
    if params.galfit_flux_limit is not None and inp.irac_psf is not None:
        models, sersic = refine_bright(inp, models, sol, w, bright, shift, params, irac_scale, blur)
        if sersic:
            sol = solve(models.matrix, data, w, background=background,
                        min_pixels=params.min_pixels, negative_sigma=params.negative_sigma)
    err_scale, model_error = error_model(data, w, sol, params)
    if err_scale != 1.0 or model_error > 0:
        sol = solve(models.matrix, data, model_weight(w, sol, err_scale, model_error), background=background,
                    min_pixels=params.min_pixels, negative_sigma=params.negative_sigma)
    factor = np.ones(len(models.ids))
    if params.residual_errors:
        # the error of each flux widened by the local residual it leaves (never narrowed): the
        # statistical error alone ignores model mismatch, which dominates bright sources
        final_w = model_weight(w, sol, err_scale, model_error)
        factor = np.fmax(residual_error_factors(models.matrix, data, final_w, sol), 1.0)
        sol.err = sol.err * factor
    owned = b.owns(inp.x, inp.y)
    ids = inp.ids[owned]
    col = {sid: i for i, sid in enumerate(models.ids)}
    idx = np.array([col.get(sid, -1) for sid in ids], dtype=int)
    found = idx >= 0
    flux, err = np.full(len(ids), np.nan), np.full(len(ids), np.nan)
    err_factor = np.full(len(ids), np.nan)
    flag = np.full(len(ids), int(IracFlag.NOT_MODELLED))
    flux[found], err[found], flag[found] = (sol.flux[idx[found]], sol.err[idx[found]],
                                            sol.flag[idx[found]])
    err_factor[found] = factor[idx[found]]
    is_bright_owned = np.isin(ids, bright) & found
    flag[is_bright_owned] |= int(IracFlag.BRIGHT)
    flag[np.isin(ids, list(sersic))] |= int(IracFlag.SERSIC)
    model_image = sol.model.reshape(inp.irac.shape)
    return PatchResult(b, ids, flux, err, flag, is_bright_owned, model_image,
                       inp.irac - model_image, sol.background_model.reshape(inp.irac.shape),
                       shift, sersic, err_scale, model_error, blur, err_factor)
