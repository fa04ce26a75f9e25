"""Backgrounds of the mosaic stage: smooth per-visit HST sky, IRAC master background per AOR.

Pure functions: numpy arrays in, numpy arrays out; units are those of the input image.
Pixels are zero-indexed as everywhere in the pipeline.

- HST (release README, "Background subtraction"): a smooth background is estimated on each
  visit mosaic with sep, ``BACK_SIZE = 32"`` (converted to pixels for the mosaic's scale)
  and ``BACK_FILTERSIZE = 3``, with the detected sources masked (sep segmentation dilated),
  and subtracted before the visits are combined into the filter mosaic
  (:func:`smooth_background`).
- HST exposures first lose their pedestal sky, as in AstroDrizzle's sky subtraction: the
  sigma-clipped median of the source-masked pixels (:func:`exposure_pedestal`).
- IRAC (README, IRAC step 3): a master background per AOR, the median in detector
  coordinates of the AOR's frames with their sources masked, plus a pedestal per frame (its
  own sky level), subtracted from every frame (:func:`irac_master_background`, golfir's
  ``IracAOR.get_median``). The mosaic stage runs it twice, the second time with the sources
  found on the first IRAC mosaic masked in every frame (:func:`mosaic_source_mask`,
  :func:`blot_mask`; golfir's ``two_pass``): a compact field dithered less than its own size
  keeps its sources on the same detector pixels in every frame, where single-frame masks
  miss the faint wings and the median takes them for background.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import sep
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

from pipeline.photometry import error_and_mask


@dataclass(frozen=True)
class BackgroundParams:
    """Settings of the background estimates (the caller records them as run parameters).

    back_size_arcsec : sep mesh size in arcsec (``BACK_SIZE``; 32" in the release); the
        mesh is ``round(back_size_arcsec / pixscale)`` pixels.
    filter_size : median filter of the mesh (``BACK_FILTERSIZE``, meshes).
    mask_back_size_arcsec : mesh of the local sky subtracted before finding the sources to
        mask (the release's detection BACK_SIZE, 4"), so that sky gradients on scales below
        ``back_size_arcsec`` are not taken for sources.
    detect_thresh : source-mask detection threshold in units of the pixel error.
    minarea : minimum source area (pixels) of the source mask.
    dilate_arcsec : the segmentation is dilated by a disk of this radius.
    iterations : source-mask passes (each estimates the local sky with the previous mask).
    irac_back_size_arcsec : mesh of the per-frame sky used only to find the sources of an
        IRAC frame (and to fill master pixels that are masked in every frame).
    irac_dilate_arcsec : dilation radius of the IRAC source masks (the PSF FWHM is ~1.7").
    irac_mosaic_mask : second IRAC background pass with the sources of the first IRAC mosaic
        masked in every frame (golfir's ``two_pass``).
    irac_mosaic_back_size_arcsec, irac_mosaic_thresh : sep mesh and threshold (x pixel
        error) of that mosaic's source detection (golfir: 16 pixels of 0.5", 1.5 sigma);
    irac_mosaic_dilate_arcsec : the mask is grown by this radius in each frame.
    bright_model_mag : HST sources brighter than this (AB, isophotal, in the filter's own stack)
        get PSF-convolved Sersic models, subtracted from each visit before its smooth sky is
        estimated (``pipeline.bright_light``; the mosaics keep their light); None turns it off.
    bright_model_max, bright_model_stamp_arcsec : at most this many sources, each fitted on a
        stamp of this side; bright_model_layers : grid layers that get them ('ir', 'optical').
    irac_min_frames : a master pixel is the median of the frames where it is unmasked only if
        there are at least this many (at most the AOR's frame count); otherwise it takes the
        smooth fill. A pixel unmasked in a single frame would copy that frame, source and noise
        included, into every frame of the AOR, and that frame would then show nothing there
        to mask: a star off the mosaic, unmasked in one frame while the mosaic mask covers the
        pixel in the others, came back as -500 sigma holes in the mock's IRAC mosaics.
    """

    back_size_arcsec: float = 32.0
    filter_size: int = 3
    mask_back_size_arcsec: float = 4.0
    detect_thresh: float = 2.0
    minarea: int = 5
    dilate_arcsec: float = 0.2
    iterations: int = 2
    irac_back_size_arcsec: float = 38.4
    irac_dilate_arcsec: float = 2.4
    irac_mosaic_mask: bool = True
    irac_mosaic_back_size_arcsec: float = 8.0
    irac_mosaic_thresh: float = 1.5
    irac_mosaic_dilate_arcsec: float = 3.6
    irac_min_frames: int = 3
    bright_model_mag: float | None = 22.0
    bright_model_max: int = 60
    bright_model_stamp_arcsec: float = 16.0
    bright_model_layers: tuple[str, ...] = ("ir",)


def _disk(radius_pix: float) -> np.ndarray:
    r = max(1, int(np.ceil(radius_pix)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return xx**2 + yy**2 <= max(radius_pix, 1.0) ** 2


def _sep_background(data: np.ndarray, mask: np.ndarray, box: int, filter_size: int) -> sep.Background:
    box = int(min(max(box, 1), max(data.shape)))
    return sep.Background(data, mask=mask, bw=box, bh=box, fw=filter_size, fh=filter_size)


def _masked_sky(data: np.ndarray, mask: np.ndarray, box: int, filter_size: int) -> np.ndarray:
    """sep sky of ``data`` with ``mask`` (True = not sky), float32. sep rejects meshes that are
    mostly masked; when it rejects every one (a crowded image a few meshes wide, large source
    masks) its sky is all zero, and the sky is then the median of the unmasked pixels."""
    back = _sep_background(data, mask, box, filter_size).back()
    if not np.any(back) and np.any(~mask):
        back = np.full(data.shape, np.median(data[~mask]), dtype=np.float32)
    return back


def source_mask(
    data: np.ndarray,
    err: np.ndarray,
    mask: np.ndarray,
    *,
    thresh: float,
    minarea: int,
    dilate_pix: float,
) -> np.ndarray:
    """Pixels of detected sources: ``sep.extract`` segmentation (threshold ``thresh * err``,
    ``minarea`` pixels, no deblending) dilated by a disk of radius ``dilate_pix`` pixels.

    ``data`` must be background subtracted; ``mask`` (True = unusable) is ignored by sep.
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    err = np.ascontiguousarray(np.where(mask, 0.0, err), dtype=np.float32)
    pixstack = sep.get_extract_pixstack()
    sep.set_extract_pixstack(max(pixstack, data.size))
    try:
        _, seg = sep.extract(
            data, thresh, err=err, mask=mask, minarea=minarea, deblend_nthresh=1, deblend_cont=1.0,
            clean=False, segmentation_map=True,
        )
    finally:
        sep.set_extract_pixstack(pixstack)
    return ndimage.binary_dilation(seg > 0, structure=_disk(dilate_pix))


def _sources(data: np.ndarray, err: np.ndarray, nocov: np.ndarray, pixscale: float,
             params: BackgroundParams) -> np.ndarray:
    """Source mask of an image: sources found on the image minus a local sep sky
    (``mask_back_size_arcsec`` mesh, recomputed with the sources found so far masked,
    ``iterations`` passes), dilated (:func:`source_mask`). A pass that would mask every
    covered pixel is discarded."""
    local_box = int(round(params.mask_back_size_arcsec / pixscale))
    mask = nocov
    for _ in range(params.iterations):
        local = _masked_sky(data, mask, local_box, params.filter_size)
        sources = source_mask(
            data - local, err, nocov, thresh=params.detect_thresh,
            minarea=params.minarea, dilate_pix=params.dilate_arcsec / pixscale,
        )
        if not np.any(~nocov & ~sources):
            break
        mask = nocov | sources
    return mask & ~nocov


def exposure_pedestal(
    sci: np.ndarray,
    err: np.ndarray,
    mask: np.ndarray,
    *,
    pixscale: float,
    params: BackgroundParams = BackgroundParams(),
) -> float:
    """Constant sky level of one exposure (AstroDrizzle's per-exposure sky): the 3-sigma
    clipped median of the pixels outside the sources (see :func:`smooth_background` for
    the source mask). sci, err in the same units; mask True = unusable; pixscale arcsec."""
    bad = np.asarray(mask, bool) | ~np.isfinite(sci) | ~(np.asarray(err) > 0)
    data = np.ascontiguousarray(np.where(bad, 0.0, sci), dtype=np.float32)
    sources = _sources(data, np.where(bad, 0.0, err), bad, pixscale, params)
    keep = ~bad & ~sources
    if not np.any(keep):
        keep = ~bad
    return float(sigma_clipped_stats(data[keep], sigma=3.0, maxiters=5)[1])


def smooth_background(
    sci: np.ndarray,
    wht: np.ndarray,
    *,
    pixscale: float,
    params: BackgroundParams = BackgroundParams(),
) -> np.ndarray:
    """Smooth sky of a (visit) mosaic with its sources masked.

    sci, wht : mosaic (any flux units per pixel) and its inverse-variance weight; pixels
        with weight <= 0 or non-finite values are outside the coverage.
    pixscale : arcsec per pixel (sets the mesh sizes in pixels).

    Sources are found on the image minus a local sep sky (``mask_back_size_arcsec`` mesh,
    recomputed with the sources found so far masked, ``iterations`` passes) and masked
    (:func:`source_mask`, dilated); the returned sky is the sep background with ``back_size_arcsec``
    meshes and a ``filter_size`` median filter of the unmasked pixels (a mesh larger than
    the image gives one level; if sep rejects every mesh as mostly masked, the median of
    the unmasked pixels). Returns float32 in the units of ``sci``, 0 outside the coverage.
    """
    err, nocov = error_and_mask(sci, wht)
    data = np.ascontiguousarray(np.where(nocov, 0.0, sci), dtype=np.float32)
    mask = nocov | _sources(data, err, nocov, pixscale, params)
    box = int(round(params.back_size_arcsec / pixscale))
    back = _masked_sky(data, mask, box, params.filter_size)
    return np.where(nocov, 0.0, back).astype(np.float32)


@dataclass(frozen=True)
class IracBackground:
    """Background of one AOR's frames (detector coordinates, MJy/sr): the detector-fixed
    ``master`` (median level ~0) and each frame's ``pedestals`` level; frame ``k`` loses
    ``frame(k) = master + pedestals[k]``."""

    master: np.ndarray
    pedestals: np.ndarray

    def frame(self, k: int) -> np.ndarray:
        return self.master + np.float32(self.pedestals[k])

    @property
    def level(self) -> float:
        """Median background level of the AOR (MJy/sr)."""
        return float(np.median(self.master) + np.median(self.pedestals))


def irac_master_background(
    frames: Sequence[np.ndarray],
    errs: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    *,
    pixscale: float,
    params: BackgroundParams = BackgroundParams(),
    source_masks: Sequence[np.ndarray | None] | None = None,
) -> IracBackground:
    """Master background and frame pedestals of one AOR (golfir's ``get_median``).

    frames, errs, masks : the AOR's BCD images (MJy/sr, detector coordinates, all the same
        shape), their 1-sigma uncertainties and bad-pixel masks (True = bad).
    pixscale : detector arcsec per pixel (1.2" for IRAC).
    source_masks : optional per-frame masks of known sources (True = source), e.g. the
        sources of a deeper mosaic (:func:`blot_mask`), masked in every pass.

    Each frame's pedestal is the median of its unmasked pixels less the previous pass's master
    (so the detector pattern under each frame's own mask does not bias it) and the master is the
    per-pixel median of the pedestal-subtracted, masked frames. Pass 1 masks only
    ``source_masks``; in each further pass (``iterations`` in all) the sources of every frame
    are found on ``frame - pedestal - master`` (so detector-fixed structure is not taken for
    sources; a coarse sep sky of ``irac_back_size_arcsec`` removes what is left of the level)
    and masked with the segmentation dilated by ``irac_dilate_arcsec``. Pixels unmasked in fewer
    than ``irac_min_frames`` frames (or than all of them, in a smaller AOR) take a smooth sep
    interpolation of the master; a one-frame AOR gets no master, only its pedestal. Returns
    float32 MJy/sr.
    """
    if not frames:
        raise ValueError("irac_master_background needs at least one frame")
    box = int(round(params.irac_back_size_arcsec / pixscale))
    bads = [np.asarray(m, bool) | ~np.isfinite(f) | ~(np.asarray(e) > 0) for f, e, m in zip(frames, errs, masks)]
    data = [np.ascontiguousarray(np.where(b, 0.0, f), dtype=np.float32) for f, b in zip(frames, bads)]
    known = [np.zeros(b.shape, bool) if m is None else np.asarray(m, bool)
             for b, m in zip(bads, source_masks or [None] * len(frames))]
    masked = list(known)
    master = np.zeros(data[0].shape, np.float32)
    for it in range(max(params.iterations, 1)):
        # the level of each frame relative to the current master: on the raw frame, the
        # detector pattern under each frame's own (different) mask would bias it
        pedestals = np.array([_pedestal(d - master, b | m, b) for d, b, m in zip(data, bads, masked)],
                             dtype=np.float32)
        stack = np.stack([np.where(b | m, np.nan, d - p) for d, b, m, p in zip(data, bads, masked, pedestals)])
        master = _masked_median(stack, box, params.filter_size, min_count=params.irac_min_frames)
        if it == params.iterations - 1:
            break
        for k, (d, err, bad) in enumerate(zip(data, errs, bads)):
            diff = np.ascontiguousarray(d - pedestals[k] - master, dtype=np.float32)
            diff -= _sep_background(diff, bad, box, params.filter_size).back()
            sources = source_mask(
                diff, np.where(bad, 0.0, err), bad, thresh=params.detect_thresh,
                minarea=params.minarea, dilate_pix=params.irac_dilate_arcsec / pixscale,
            )
            masked[k] = sources | known[k]
    return IracBackground(master, pedestals)


def _pedestal(data: np.ndarray, masked: np.ndarray, bad: np.ndarray) -> float:
    """Median of the unmasked pixels (of the good ones if every pixel is masked)."""
    keep = ~masked if np.any(~masked) else ~bad
    return float(np.median(data[keep])) if np.any(keep) else 0.0


def mosaic_source_mask(sci: np.ndarray, wht: np.ndarray, *, pixscale: float,
                       params: BackgroundParams = BackgroundParams()) -> np.ndarray:
    """Sources of an IRAC mosaic (any flux unit per pixel, ``wht`` its inverse variance):
    sep segmentation at ``irac_mosaic_thresh`` times the pixel error above a sep sky of
    ``irac_mosaic_back_size_arcsec`` meshes, grown by one pixel."""
    err, nocov = error_and_mask(sci, wht)
    data = np.ascontiguousarray(np.where(nocov, 0.0, sci), dtype=np.float32)
    box = int(round(params.irac_mosaic_back_size_arcsec / pixscale))
    data -= _sep_background(data, nocov, box, params.filter_size).back()
    return source_mask(data, err, nocov, thresh=params.irac_mosaic_thresh, minarea=params.minarea,
                       dilate_pix=0.0) & ~nocov


def blot_mask(mask: np.ndarray, mask_wcs, frame_wcs, shape: tuple[int, int], *, dilate_pix: float = 0.0
              ) -> np.ndarray:
    """A mosaic mask (True = masked) seen by a frame: the mosaic pixel under each frame pixel
    centre (both WCS with ``all_pix2world``/``all_world2pix``, distortion included), grown by a
    disk of ``dilate_pix`` frame pixels. Frame pixels off the mosaic are not masked."""
    yy, xx = np.indices(shape, dtype=float)
    ra, dec = frame_wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
    mx, my = mask_wcs.all_world2pix(ra, dec, 0)
    ix, iy = np.floor(mx + 0.5).astype(np.int64), np.floor(my + 0.5).astype(np.int64)
    inside = (ix >= 0) & (iy >= 0) & (ix < mask.shape[1]) & (iy < mask.shape[0])
    out = np.zeros(ix.size, bool)
    out[inside] = np.asarray(mask, bool)[iy[inside], ix[inside]]
    out = out.reshape(shape)
    return ndimage.binary_dilation(out, structure=_disk(dilate_pix)) if dilate_pix > 0 and out.any() else out


def _masked_median(stack: np.ndarray, box: int, filter_size: int, min_count: int = 1) -> np.ndarray:
    """Median over axis 0 ignoring NaN; pixels with fewer than ``min(min_count, len(stack))``
    finite planes are filled with a smooth sep background of the median (0 if every pixel is
    filled). A single plane gives 0 (no master) unless ``min_count`` is 1."""
    if stack.shape[0] == 1 and min_count > 1:
        # one frame cannot tell a detector pattern from its own sky, sources and noise
        return np.zeros(stack.shape[1:], dtype=np.float32)
    need = max(1, min(int(min_count), stack.shape[0]))
    empty = np.isfinite(stack).sum(axis=0) < need
    master = np.zeros(stack.shape[1:], dtype=np.float32)
    if empty.all():
        return master
    master[~empty] = np.nanmedian(stack[:, ~empty], axis=0)
    if empty.any():
        smooth = _sep_background(master, empty, box, filter_size).back()
        master = np.where(empty, smooth, master).astype(np.float32)
    return master
