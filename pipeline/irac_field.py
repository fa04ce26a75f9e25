"""IRAC model photometry of a whole field: cut patches, fit them (in parallel), merge.

Inputs are what the ``alcsdb run irac`` stage reads from the database and files: the HST
detection-band mosaic in uJy per pixel and its segmentation map, the source table, the IRAC
mosaic (uJy per 0.5" pixel, drizzled onto the HST grid) with its inverse-variance weight, the
geometry tying the two grids (``IracGeometry.from_wcs``), the matching kernel and the IRAC PSF on
the HST grid (arrays, or callables of the IRAC pixel position for position-dependent PSFs) and
``IracParams``. Every source is measured by exactly one patch (``irac_patches``). With
``sampling`` (``AorSampling``: kernels and PSFs under each AOR's PSF, the mosaic's
``SamplingMaps``) the models follow how the drizzle sampled each pixel (``pipeline.sampling``).
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from typing import Callable, Iterator, Union

import numpy as np

from .irac_fit import IracParams, PatchInput, PatchResult, fit_patch
from .irac_models import IracGeometry, segment_boxes
from .irac_patches import PatchBox, PatchGrid, assign_sources, patch_grid
from .irac_solve import IracFlag
from .sampling import SamplingMaps

KernelSource = Union[np.ndarray, Callable[[float, float], np.ndarray]]


@dataclass(frozen=True)
class AorSampling:
    """Per AOR of one channel (in the order of ``maps``): the HST-to-IRAC matching kernel and the
    IRAC PSF (HST grid) under that AOR's PSF alone, and the mosaic's sampling maps."""

    kernels: list[np.ndarray]
    psfs: list[np.ndarray]
    maps: SamplingMaps


@dataclass(frozen=True)
class SourceTable:
    """Catalogue columns: ``id`` (segmentation ids), ``x``, ``y`` zero-indexed HST pixel
    positions, ``mag`` AB (NaN = unknown, never modelled) and ``flux_radius`` in arcsec for
    golfir's point-source bright limit (None or NaN = not point-like)."""

    id: np.ndarray
    x: np.ndarray
    y: np.ndarray
    mag: np.ndarray
    flux_radius: np.ndarray | None = None


@dataclass
class FieldResult:
    """Per-source results in the order of the input table (flux, err uJy with NaN = missing, -99
    on export; ``flag`` ``IracFlag`` bits; ``patch`` the measuring patch), the mosaic-sized model,
    residual and background images (each pixel from the patch that owns it) and the patches with
    their fitted HST-to-IRAC ``shifts`` (dx, dy IRAC pixels; blur variance, IRAC pixels squared) and ``error_model`` (err_scale, model_error) rows."""

    id: np.ndarray
    flux: np.ndarray
    err: np.ndarray
    flag: np.ndarray
    patch: np.ndarray
    model_image: np.ndarray
    residual_image: np.ndarray
    background_image: np.ndarray
    grid: PatchGrid
    shifts: np.ndarray
    error_model: np.ndarray | None = None
    err_factor: np.ndarray | None = None


def _cut(image: np.ndarray, y0: int, x0: int, ny: int, nx: int) -> np.ndarray:
    """``image[y0:y0+ny, x0:x0+nx]`` with zeros where the window leaves the array."""
    out = np.zeros((ny, nx), dtype=image.dtype)
    ylo, yhi = max(y0, 0), min(y0 + ny, image.shape[0])
    xlo, xhi = max(x0, 0), min(x0 + nx, image.shape[1])
    if ylo < yhi and xlo < xhi:
        out[ylo - y0:yhi - y0, xlo - x0:xhi - x0] = image[ylo:yhi, xlo:xhi]
    return out


def _at(source: KernelSource | None, box: PatchBox) -> np.ndarray | None:
    return source(*box.centre) if callable(source) else source


def patch_inputs(hst_ujy: np.ndarray, seg: np.ndarray, sources: SourceTable, irac: np.ndarray,
                 irac_weight: np.ndarray, geometry: IracGeometry, kernel: KernelSource,
                 irac_psf: KernelSource | None, grid: PatchGrid, owner: np.ndarray,
                 point: np.ndarray, sampling: AorSampling | None = None
                 ) -> Iterator[PatchInput]:
    """One ``PatchInput`` per patch: sources whose segment touches the patch plus those it owns;
    an HST cutout holding all their segments; the IRAC cutout (zero weight off the mosaic)."""
    ids = np.asarray(sources.id)
    boxes = segment_boxes(seg, ids)
    present = np.array([s is not None for s in boxes])
    seg_lo = np.array([[s[0].start, s[1].start] if s else [0, 0] for s in boxes])
    seg_hi = np.array([[s[0].stop, s[1].stop] if s else [0, 0] for s in boxes])
    xi, yi = geometry.hst_to_irac(sources.x, sources.y)
    r = geometry.ratio
    for box in grid.boxes:
        hy0, hx0 = geometry.y0 + r * box.y0, geometry.x0 + r * box.x0
        hy1, hx1 = hy0 + r * box.ny, hx0 + r * box.nx
        touch = present & (seg_hi[:, 0] > hy0) & (seg_lo[:, 0] < hy1) & (seg_hi[:, 1] > hx0) \
            & (seg_lo[:, 1] < hx1)
        sel = np.flatnonzero(touch | (owner == box.index))
        with_seg = sel[present[sel]]
        cy0 = min([hy0, *seg_lo[with_seg, 0]])
        cx0 = min([hx0, *seg_lo[with_seg, 1]])
        cy1 = max([hy1, *seg_hi[with_seg, 0]])
        cx1 = max([hx1, *seg_hi[with_seg, 1]])
        cy0, cx0 = max(cy0, 0), max(cx0, 0)
        cy1, cx1 = min(cy1, seg.shape[0]), min(cx1, seg.shape[1])
        yield PatchInput(
            box=box,
            irac=_cut(irac, box.y0, box.x0, box.ny, box.nx).astype(float),
            weight=_cut(irac_weight, box.y0, box.x0, box.ny, box.nx).astype(float),
            hst_ujy=np.asarray(hst_ujy[cy0:cy1, cx0:cx1], dtype=float),
            seg=np.asarray(seg[cy0:cy1, cx0:cx1]),
            geometry=geometry.moved(cx0, cy0),
            ids=ids[sel], x=xi[sel], y=yi[sel], mag=np.asarray(sources.mag, float)[sel],
            point=point[sel], kernel=_at(kernel, box), irac_psf=_at(irac_psf, box),
            aor_kernels=None if sampling is None else sampling.kernels,
            aor_psfs=None if sampling is None else sampling.psfs,
            sampling=None if sampling is None else sampling.maps.cut(box.y0, box.x0, box.ny, box.nx))


def fit_field(hst_ujy: np.ndarray, seg: np.ndarray, sources: SourceTable, irac: np.ndarray,
              irac_weight: np.ndarray, geometry: IracGeometry, kernel: KernelSource,
              irac_psf: KernelSource | None = None, params: IracParams = IracParams(), *,
              irac_scale: float = 0.5, n_proc: int = 1, executor=None,
              sampling: AorSampling | None = None) -> FieldResult:
    """IRAC fluxes of every source of ``sources`` (see the module docstring), patches fitted in
    ``n_proc`` processes (1 = in this process), or by ``executor`` when given: any object with
    ``concurrent.futures.Executor.map`` semantics (e.g. ``pipeline.distributed.patch_executor``,
    the dask cluster a stage runs on)."""
    grid = patch_grid(irac.shape, irac_scale, patch_arcmin=params.patch_arcmin,
                      overlap_arcmin=params.patch_overlap, border_arcsec=params.border_arcsec)
    xi, yi = geometry.hst_to_irac(sources.x, sources.y)
    owner = assign_sources(xi, yi, grid)
    radius = np.full(len(sources.id), np.inf) if sources.flux_radius is None else \
        np.nan_to_num(np.asarray(sources.flux_radius, float), nan=np.inf)
    point = radius < params.point_flux_radius
    inputs = patch_inputs(hst_ujy, seg, sources, irac, irac_weight, geometry, kernel, irac_psf,
                          grid, owner, point, sampling)
    if executor is not None:
        results = list(executor.map(fit_patch, inputs, repeat(params), repeat(irac_scale)))
    elif n_proc > 1:
        with ProcessPoolExecutor(max_workers=n_proc) as pool:
            results = list(pool.map(fit_patch, inputs, repeat(params), repeat(irac_scale)))
    else:
        results = [fit_patch(inp, params, irac_scale) for inp in inputs]
    return merge_patches(results, np.asarray(sources.id), owner, irac, grid)


def merge_patches(results: list[PatchResult], ids: np.ndarray, owner: np.ndarray,
                  irac: np.ndarray, grid: PatchGrid) -> FieldResult:
    """Gather patch results into catalogue order and mosaic images."""
    n = len(ids)
    flux, err = np.full(n, np.nan), np.full(n, np.nan)
    flag = np.full(n, int(IracFlag.NOT_MODELLED))
    err_factor = np.full(n, np.nan)
    row = {sid: i for i, sid in enumerate(ids)}
    model = np.zeros(irac.shape)
    background = np.zeros(irac.shape)
    shifts = np.zeros((len(results), 3))
    error_model = np.zeros((len(results), 2))
    for res in results:
        b = res.box
        rows = np.array([row[sid] for sid in res.ids], dtype=int)
        flux[rows], err[rows], flag[rows] = res.flux, res.err, res.flag
        if res.err_factor is not None:
            err_factor[rows] = res.err_factor
        shifts[b.index] = (*res.shift, res.blur)
        error_model[b.index] = (res.err_scale, res.model_error)
        xlo, xhi, ylo, yhi = b.own
        ys = slice(max(ylo, b.y0, 0), min(yhi, b.y0 + b.ny, irac.shape[0]))
        xs = slice(max(xlo, b.x0, 0), min(xhi, b.x0 + b.nx, irac.shape[1]))
        local = (slice(ys.start - b.y0, ys.stop - b.y0), slice(xs.start - b.x0, xs.stop - b.x0))
        model[ys, xs] = res.model_image[local]
        background[ys, xs] = res.background_image[local]
    return FieldResult(ids, flux, err, flag, owner, model, irac - model, background, grid, shifts, error_model,
                       err_factor)
