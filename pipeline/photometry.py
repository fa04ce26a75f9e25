"""HST aperture photometry with the release's (grizli + sep) conventions.

Pure functions: numpy arrays in, numpy arrays out. Pixel coordinates are zero-indexed
(``x = 0`` is the centre of the first column), as sep and ``wcs.all_pix2world(x, y, 0)``
use them. Fluxes come out in microJansky: each function that measures flux takes the
image's ``ujy_per_count`` factor (1.0 for an image already in uJy per pixel).

The release's conventions reproduced here (grizli ``prep.make_SEP_catalog`` and
``auto_script.multiband_catalog``):

- circular apertures of DIAMETERS ``APERTURE_DIAMETERS_ARCSEC`` at the detection positions,
  no PSF matching, pixels of neighbouring sources masked with the detection segmentation
  map (sep ``segmap``/``seg_id``), subpixel sampling 5;
- masked pixels inside an aperture (bad pixels and neighbours' segments) are treated as
  sep does when given a mask array, which grizli always passed: the sum over the
  unmasked pixels is scaled by (aperture area on the image) / (unmasked area), and its
  variance likewise (SExtractor's correction), so a masked pixel counts as the mean of
  the unmasked ones;
- errors from the inverse-variance weight map, ``err = 1 / sqrt(wht)``, optionally scaled
  by the ratio of the measured background rms to that error (grizli ``rescale_weight``,
  SExtractor ``MAP_WEIGHT``); see :func:`estimate_background`;
- a smooth sep background subtracted before summing; ``bkg`` is the background summed
  in the same aperture;
- a value is NaN (-99 on export) where more than 20% of the aperture is masked or off the
  image, which includes a filter that does not cover the source;
- ``apcorr = flux_auto / flux_aper`` (detection image), ``corr = flux * apcorr``,
  ``tot = corr * tot_corr`` with ``tot_corr = 1 / EE(r_kron)`` from the tabulated HST
  encircled-energy curves.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import sep
from astropy.table import Table
from scipy import ndimage

from alcsdb.config import shared_path

APERTURE_DIAMETERS_ARCSEC: tuple[float, ...] = (0.36, 0.5, 0.7, 1.0, 1.2, 1.5, 3.0)
"""Aperture diameters (arcsec) of ``flux_aper_0`` .. ``flux_aper_6``."""

AB_ZEROPOINT_UJY = 23.9
"""AB magnitude of 1 microJansky: ``mag = 23.9 - 2.5 log10(flux_uJy)``."""

MAX_MASKED_FRACTION = 0.2
"""Aperture values are NaN when a larger fraction of the aperture is masked."""

EE_MAX_RADIUS_ARCSEC = 5.0
"""Radius where the encircled energy is taken to be 1 (grizli appends this point)."""

KRON_MIN_RADIUS_ARCSEC = 0.35
"""Minimum circularized Kron radius (aperture diameter 0.7")."""


def ujy_per_count(
    photfnu: float | None = None,
    photflam: float | None = None,
    photplam: float | None = None,
) -> float:
    """MicroJansky per (count/s) of an HST image, from its header calibration.

    ``uJy = counts/s * 3631e6 * 10**(-0.4 ZP)`` with the AB zeropoint
    ``ZP = -2.5 log10(PHOTFNU) + 8.90`` (PHOTFNU in Jy s / e-), or, without PHOTFNU,
    ``ZP = -2.5 log10(PHOTFLAM) - 21.10 - 5 log10(PHOTPLAM) + 18.6921``
    (PHOTFLAM in erg/s/cm2/A per e-/s, PHOTPLAM in Angstrom).
    """
    if photfnu is not None:
        zeropoint = -2.5 * np.log10(photfnu) + 8.90
    elif photflam is not None and photplam is not None:
        zeropoint = -2.5 * np.log10(photflam) - 21.10 - 5 * np.log10(photplam) + 18.6921
    else:
        raise ValueError("ujy_per_count needs PHOTFNU, or PHOTFLAM and PHOTPLAM")
    return float(3631e6 * 10 ** (-0.4 * zeropoint))


def error_and_mask(sci: np.ndarray, wht: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel error ``1/sqrt(wht)`` and the mask of unusable pixels.

    A pixel is masked where the weight is zero, negative or not finite, or the image is
    not finite (as grizli: sep ignores masked pixels). Masked errors are set to 0.
    Returns ``(err, mask)``: float32 error in the image's units, boolean mask.
    """
    wht = np.asarray(wht, dtype=np.float32)
    mask = ~(np.isfinite(wht) & (wht > 0) & np.isfinite(sci))
    err = np.zeros(wht.shape, dtype=np.float32)
    np.sqrt(wht, out=err, where=~mask)
    np.divide(1.0, err, out=err, where=~mask)
    return err, mask


@dataclass(frozen=True)
class Background:
    """A smooth sep background and the error rescaling measured with it.

    ``level``: background image (image units per pixel); ``err_scale``: measured noise /
    weight-map error, the factor grizli applies to ``1/sqrt(wht)`` so errors follow the
    measured noise (SExtractor MAP_WEIGHT); see :func:`estimate_background`.
    """

    level: np.ndarray
    err_scale: float


def estimate_background(
    sci: np.ndarray,
    err: np.ndarray,
    mask: np.ndarray,
    *,
    pixscale: float,
    box_arcsec: float = 4.0,
    filter_size: int = 3,
    err_scale: str = "mesh",
) -> Background:
    """sep background with a ``box_arcsec`` mesh (grizli: 64 px x 0.06" = 3.84") and a
    ``filter_size`` x ``filter_size`` median filter of the mesh, masked pixels ignored.

    ``err_scale`` says how the error scale is measured: ``"mesh"`` as grizli (the release's
    detection): the median over unmasked pixels of sep's mesh rms / ``err``, a per-pixel
    noise that in crowded cluster fields also holds halo gradients and faint sources (3.9x
    the weight-map error on a 0.5' mock cluster core whose noise matches the weights);
    ``"blocks"``: :func:`noise_scale` on the image minus the background, the noise of
    0.4" block sums, what aperture errors need. ``pixscale`` is in arcsec per pixel; the
    mesh is ``round(box_arcsec / pixscale)`` px.
    """
    box = max(1, int(round(box_arcsec / pixscale)))
    data = np.ascontiguousarray(sci, dtype=np.float32)
    bkg = sep.Background(data, mask=mask, bw=box, bh=box, fw=filter_size, fh=filter_size)
    level = bkg.back(dtype=np.float32)
    if err_scale == "blocks":
        return Background(level=level, err_scale=noise_scale(data - level, err, mask, pixscale=pixscale))
    if err_scale != "mesh":
        raise ValueError(f"err_scale must be 'mesh' or 'blocks', not {err_scale!r}")
    good = ~np.asarray(mask, bool) & (err > 0)
    ratio = bkg.rms(dtype=np.float32)[good] / err[good]
    return Background(level=level, err_scale=float(np.median(ratio)))


def noise_scale(
    residual: np.ndarray,
    err: np.ndarray,
    mask: np.ndarray,
    *,
    pixscale: float,
    block_arcsec: float = 0.4,
    thresh: float = 2.0,
    minarea: int = 5,
    grow: int = 2,
    iterations: int = 2,
) -> float:
    """Measured noise in units of the weight-map error ``err``, on the scale of small
    apertures and of the detection filter.

    ``residual`` is the background-subtracted image, ``pixscale`` its arcsec per pixel.
    Sources are found with sep (``thresh`` x ``err`` x the scale found so far, starting at
    1, ``minarea`` pixels, no deblending; ``iterations`` passes) and masked with their
    segments grown by ``grow`` pixels. The image is cut into cells
    of ``k + 1`` pixels, ``k = round(block_arcsec / pixscale)``, and each cell's first
    ``k`` x ``k`` pixels summed (a one-pixel gap between blocks, so that the noise
    correlated between neighbouring pixels does not couple neighbouring blocks); for
    every three consecutive blocks without a masked pixel (along rows and along columns)
    the second difference of their sums ``B0 - 2 B1 + B2`` is divided by its error from
    the weights ``sqrt(V0 + 4 V1 + V2)`` (``V`` the summed ``err**2``); the scale is
    1.4826 x the median absolute deviation of these ratios (1.0 with fewer than 30).

    Second differences cancel light that varies linearly across three blocks (halos,
    gradients), and block sums include the drizzle's pixel-to-pixel noise correlation,
    which single pixels miss (their scatter is ~0.85 of the weight-map error on the
    mosaics, 0.4" block sums ~1.0). grizli and SExtractor's MAP_WEIGHT use the median of
    sep's mesh rms over ``err`` instead (``estimate_background(err_scale="mesh")``); in
    deep cluster fields that rms includes the light of faint sources and the gradients of
    galaxy halos inside each mesh: 3.9 on a 0.5' mock cluster core, errors 4x too high.
    """
    bad = np.asarray(mask, bool) | ~(err > 0) | ~np.isfinite(residual)
    data = np.ascontiguousarray(np.where(bad, 0.0, residual), dtype=np.float32)
    sigma = np.ascontiguousarray(np.where(bad, 0.0, err), dtype=np.float32)
    scale = 1.0
    for _ in range(iterations):
        scale = _block_noise_ratio(data, sigma, bad, scale * sigma, thresh=thresh, minarea=minarea, grow=grow,
                                   block=max(1, int(round(block_arcsec / pixscale))))
    return scale


def _block_noise_ratio(data: np.ndarray, sigma: np.ndarray, bad: np.ndarray, detect_sigma: np.ndarray, *,
                       thresh: float, minarea: int, grow: int, block: int) -> float:
    """One pass of :func:`noise_scale`: sources above ``thresh`` x ``detect_sigma`` masked."""
    pixstack = sep.get_extract_pixstack()
    sep.set_extract_pixstack(max(pixstack, data.size))
    try:
        _, seg = sep.extract(data, thresh, err=np.ascontiguousarray(detect_sigma, dtype=np.float32), mask=bad,
                             minarea=minarea, deblend_cont=1.0, clean=False, segmentation_map=True)
    finally:
        sep.set_extract_pixstack(pixstack)
    keep = ~bad & ~(ndimage.binary_dilation(seg > 0, iterations=grow) if grow > 0 else seg > 0)
    k = block
    ny, nx = (data.shape[0] // (k + 1)) * (k + 1), (data.shape[1] // (k + 1)) * (k + 1)

    def block_sum(a: np.ndarray) -> np.ndarray:
        cells = a[:ny, :nx].reshape(ny // (k + 1), k + 1, nx // (k + 1), k + 1)
        return cells[:, :k, :, :k].sum(axis=(1, 3), dtype=np.float64)

    total = block_sum(np.where(keep, data, 0.0))
    var = block_sum(np.where(keep, sigma, 0.0) ** 2)
    clean = block_sum(keep) == k * k
    ratios = []
    for axis in (0, 1):
        def part(a: np.ndarray, lo: int | None, hi: int | None) -> np.ndarray:
            return a[lo:hi] if axis == 0 else a[:, lo:hi]

        ok = part(clean, None, -2) & part(clean, 1, -1) & part(clean, 2, None)
        second = part(total, None, -2) - 2 * part(total, 1, -1) + part(total, 2, None)
        spread = part(var, None, -2) + 4 * part(var, 1, -1) + part(var, 2, None)
        ratios.append(second[ok] / np.sqrt(spread[ok]))
    ratio = np.concatenate(ratios)
    if ratio.size < 30:
        return 1.0
    return float(1.4826 * np.median(np.abs(ratio - np.median(ratio))))


def circle_area_pixels(diameter_arcsec: float, pixscale: float) -> float:
    """Area (pixels) of a circular aperture of the given diameter."""
    return float(np.pi * (0.5 * diameter_arcsec / pixscale) ** 2)


def aperture_photometry(
    sci: np.ndarray,
    wht: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    pixscale: float,
    ujy_per_count: float,
    mask: np.ndarray | None = None,
    seg: np.ndarray | None = None,
    seg_id: np.ndarray | None = None,
    background: Background | None = None,
    diameters: tuple[float, ...] = APERTURE_DIAMETERS_ARCSEC,
    subpix: int = 5,
    max_masked_fraction: float | None = MAX_MASKED_FRACTION,
    gain: float | None = None,
    aperture_err_scale: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Circular-aperture photometry of one image at fixed (zero-indexed) positions.

    Parameters
    ----------
    sci, wht : image (counts/s or uJy) and its inverse-variance weight (same units^-2).
    x, y : zero-indexed pixel positions (the detection catalog's ``x``, ``y``).
    pixscale : arcsec per pixel of this image.
    ujy_per_count : uJy per image unit (see :func:`ujy_per_count`; 1.0 for a uJy image).
    mask : extra pixels to ignore (True = masked), besides invalid weights/pixels.
    seg, seg_id : detection segmentation map (int32) and each source's label; pixels of
        other sources are excluded from a source's apertures (sep: masked if
        ``seg != seg_id and seg != 0``).
    background : subtracted before summing and summed into ``bkg`` (None: no
        subtraction, ``bkg`` = 0); its ``err_scale`` multiplies the errors.
    diameters : aperture diameters in arcsec.
    max_masked_fraction : ``flux``, ``fluxerr`` and ``bkg`` are NaN where a larger
        fraction of the aperture area is masked or off the image (None: never).
    gain : detected counts per image unit (the exposure time in seconds for an image in
        electrons/s): adds the source's Poisson variance ``flux / gain`` to ``fluxerr``
        (None: the weight map's background noise only). The mosaics' weights leave it
        out (see ``pipeline.mosaic.drizzle``); it dominates the errors of bright stars.
    aperture_err_scale : one factor per diameter multiplying the weight-map errors of
        that aperture, instead of the background's ``err_scale`` (see
        :func:`empty_aperture_scale`).

    Returns
    -------
    dict of (N, len(diameters)) arrays: ``flux``, ``fluxerr``, ``bkg`` (uJy), ``flag``
    (sep aperture flags, int), ``mask`` (masked or off-image area in pixels).
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    err, bad = error_and_mask(sci, wht)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    data = np.ascontiguousarray(sci, dtype=np.float32)
    if background is not None:
        data = data - background.level
        err = err * np.float32(background.err_scale)
    data[bad] = 0.0
    err[bad] = 0.0
    valid = (~bad).astype(np.float32)
    seg_kwargs = {}
    if seg is not None:
        if seg_id is None:
            raise ValueError("seg needs seg_id, the label of each source")
        seg_kwargs = {
            "segmap": np.ascontiguousarray(seg, dtype=np.int32),
            "seg_id": np.asarray(seg_id, dtype=np.int32),
        }

    shape = (x.size, len(diameters))
    out = {
        "flux": np.empty(shape),
        "fluxerr": np.empty(shape),
        "flag": np.empty(shape, dtype=np.int16),
        "bkg": np.zeros(shape),
        "mask": np.empty(shape),
    }
    if aperture_err_scale is not None and background is not None:
        err = err / np.float32(background.err_scale)
    for i, diameter in enumerate(diameters):
        radius = 0.5 * diameter / pixscale
        err_i = err if aperture_err_scale is None else err * np.float32(aperture_err_scale[i])
        flux, fluxerr, flag = sep.sum_circle(
            data, x, y, radius, err=err_i, mask=bad, subpix=subpix, gain=gain, **seg_kwargs
        )
        out["flux"][:, i] = flux * ujy_per_count
        out["fluxerr"][:, i] = fluxerr * ujy_per_count
        out["flag"][:, i] = flag
        if background is not None:
            level = sep.sum_circle(
                background.level, x, y, radius, mask=bad, subpix=subpix, **seg_kwargs
            )[0]
            out["bkg"][:, i] = level * ujy_per_count
        covered = sep.sum_circle(valid, x, y, radius, subpix=0)[0]
        area = circle_area_pixels(diameter, pixscale)
        out["mask"][:, i] = np.clip(np.round(area - covered, 6), 0.0, area)
        if max_masked_fraction is not None:
            blank = out["mask"][:, i] > max_masked_fraction * area
            for key in ("flux", "fluxerr", "bkg"):
                out[key][blank, i] = np.nan
    return out


def measure_filter(
    sci: np.ndarray,
    wht: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    seg: np.ndarray,
    seg_id: np.ndarray,
    *,
    pixscale: float,
    ujy_per_count: float,
    gain: float | None = None,
    background: bool = True,
    mask_sources: bool = True,
    subpix: int = 5,
    max_masked_fraction: float | None = MAX_MASKED_FRACTION,
) -> dict[str, np.ndarray]:
    """One filter mosaic's apertures as the photometry stage measures them: a ``"blocks"``
    background (:func:`estimate_background`) with the segments grown by 2 pixels masked
    (``mask_sources``), the empty-aperture error scales (:func:`empty_aperture_scale`), then
    :func:`aperture_photometry` at the zero-indexed ``x``, ``y`` with neighbours masked by ``seg``
    (same grid) and the Poisson term of ``gain``. ``background=False``: no subtraction, weight-map
    errors."""
    err, mask = error_and_mask(sci, wht)
    sky_mask = mask | ndimage.binary_dilation(seg > 0, iterations=2) if mask_sources else mask
    bkg = estimate_background(sci, err, sky_mask, pixscale=pixscale, err_scale="blocks") if background else None
    scales = empty_aperture_scale(sci, wht, seg, pixscale=pixscale, background=bkg) if bkg is not None else None
    return aperture_photometry(sci, wht, x, y, pixscale=pixscale, ujy_per_count=ujy_per_count, seg=seg,
                               seg_id=seg_id, background=bkg, gain=gain, aperture_err_scale=scales, subpix=subpix,
                               max_masked_fraction=max_masked_fraction)


def empty_aperture_scale(
    sci: np.ndarray,
    wht: np.ndarray,
    seg: np.ndarray,
    *,
    pixscale: float,
    background: Background,
    diameters: tuple[float, ...] = APERTURE_DIAMETERS_ARCSEC,
    n: int = 4000,
    min_apertures: int = 30,
    seed: int = 0,
) -> np.ndarray:
    """Aperture-error scale per diameter from empty apertures (as deep surveys calibrate
    aperture errors, e.g. Labbe et al. 2005, Skelton et al. 2014).

    ``n`` random positions (fixed ``seed``); for each diameter, the apertures (plus 2 pixels)
    that hold no segment pixel (``seg`` > 0, same grid) and no masked pixel are summed on
    ``sci - background.level``; the scale is 1.4826 x the median absolute deviation of the
    sums over the median weight-map error of the same apertures (``sqrt(sum 1/wht)``). It
    holds what the weights do not: correlated noise, the light of the many sources below
    the detection threshold (confusion) and background residuals, which in a deep mock
    cluster field make faint point sources scatter by 1.5-2x their weight-map errors.
    Diameters with fewer than ``min_apertures`` empty apertures take the largest scale
    measured (at least ``background.err_scale``).
    """
    err, bad = error_and_mask(sci, wht)
    data = np.ascontiguousarray(np.where(bad, 0.0, sci - background.level), dtype=np.float64)
    var = np.where(bad, 0.0, err.astype(np.float64) ** 2)
    blocked = ((np.asarray(seg) > 0) | bad).astype(np.float64)
    rng = np.random.default_rng(seed)
    scales = np.full(len(diameters), np.nan)
    for i, diameter in enumerate(diameters):
        r = 0.5 * diameter / pixscale
        if 2 * (r + 3) >= min(sci.shape):
            continue
        x = rng.uniform(r + 2, sci.shape[1] - r - 3, n)
        y = rng.uniform(r + 2, sci.shape[0] - r - 3, n)
        empty = sep.sum_circle(blocked, x, y, r + 2, subpix=1)[0] == 0
        if empty.sum() < min_apertures:
            continue
        sums = sep.sum_circle(data, x[empty], y[empty], r, subpix=5)[0]
        predicted = np.sqrt(sep.sum_circle(var, x[empty], y[empty], r, subpix=5)[0])
        scales[i] = 1.4826 * np.median(np.abs(sums - np.median(sums))) / np.median(predicted)
    fallback = max(float(np.nanmax(scales)) if np.isfinite(scales).any() else 0.0, background.err_scale)
    return np.where(np.isfinite(scales), scales, fallback)


@lru_cache(maxsize=4)
def _encircled_energy(path: Path) -> Table:
    return Table.read(path)


def encircled_energy_column(filter_name: str, columns: list[str]) -> str | None:
    """The EE-table column of an HST filter (``"f160w"`` -> ``"wfc3,ir,f160w"``).

    As grizli: F0xx/F1xx filters are WFC3/IR; others ACS/WFC (chip 1), else WFC3/UVIS
    (chip 2). None when the file has no curve for the filter.
    """
    name = filter_name.lower()
    if name[:2] in ("f0", "f1"):
        candidates = [f"wfc3,ir,{name}"]
    else:
        candidates = [f"acs,wfc1,{name}", f"wfc3,uvis2,{name}"]
    return next((c for c in candidates if c in columns), None)


def total_correction(
    filter_name: str,
    kron_rcirc_arcsec: np.ndarray,
    *,
    ee_path: Path | None = None,
    rmin_arcsec: float = KRON_MIN_RADIUS_ARCSEC,
    rmax_arcsec: float = EE_MAX_RADIUS_ARCSEC,
) -> np.ndarray:
    """Point-source correction for flux outside the Kron aperture, ``{f}_tot_corr``.

    ``1 / EE(clip(kron_rcirc_arcsec, rmin, rmax))`` with EE linearly interpolated in the
    filter's curve of ``hst_encircled_energy.fits`` (radius in arcsec, tabulated to 2")
    extended with ``EE(5") = 1`` as grizli does. All ones when the filter has no curve.
    ``kron_rcirc_arcsec`` is the circularized Kron radius ``kron_rcirc * pixscale``.
    """
    radius = np.clip(np.asarray(kron_rcirc_arcsec, dtype=np.float64), rmin_arcsec, rmax_arcsec)
    table = _encircled_energy(ee_path or shared_path("psf", "hst_encircled_energy.fits"))
    column = encircled_energy_column(filter_name, table.colnames)
    if column is None:
        return np.ones_like(radius)
    ee_radius = np.append(np.asarray(table["radius"], dtype=np.float64), rmax_arcsec)
    ee_value = np.append(np.asarray(table[column], dtype=np.float64), 1.0)
    return 1.0 / np.interp(radius, ee_radius, ee_value)


def corrected_fluxes(
    flux: np.ndarray,
    fluxerr: np.ndarray,
    flux_auto: np.ndarray,
    flux_aper_det: np.ndarray,
    tot_corr: np.ndarray,
    *,
    fluxerr_auto: np.ndarray | None = None,
    fluxerr_aper_det: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Aperture-corrected and total fluxes of one filter (the release's ``{f}_corr_i``,
    ``{f}_ecorr_i``, ``{f}_tot_i``, ``{f}_etot_i``).

    flux, fluxerr : (N, n_aper) aperture fluxes of the filter (uJy).
    flux_auto : (N,) Kron flux in the detection image; flux_aper_det : (N, n_aper)
    aperture fluxes in the detection image; tot_corr : (N,) the filter's ``tot_corr``.

    Returns ``apcorr = flux_auto / flux_aper_det``, ``corr = flux * apcorr``,
    ``ecorr = fluxerr * apcorr``, ``tot = corr * tot_corr``, ``etot = ecorr * tot_corr``
    (NaN propagates: a masked aperture stays NaN).

    With ``fluxerr_auto`` (N,) and ``fluxerr_aper_det`` (N, n_aper), the detection image's errors,
    ``ecorr`` also carries the noise of ``apcorr`` itself: ``ecorr^2 = (fluxerr apcorr)^2 +
    (flux sigma_apcorr)^2``. The Kron aperture holds the circle's pixels plus others, so
    ``flux_auto = flux_aper + C`` with C independent and ``sigma_apcorr^2 = (max(err_auto^2 -
    err_aper^2, 0) + (1 - apcorr)^2 err_aper^2) / flux_aper^2`` (0 where an error is not finite).
    The release (grizli) leaves this term out; it is the same in every filter, so colours do not
    carry it, totals do.
    """
    apcorr = np.asarray(flux_auto, dtype=np.float64)[:, None] / flux_aper_det
    corr = flux * apcorr
    ecorr = fluxerr * apcorr
    if fluxerr_auto is not None and fluxerr_aper_det is not None:
        var_auto = np.asarray(fluxerr_auto, dtype=np.float64)[:, None] ** 2
        var_aper = np.asarray(fluxerr_aper_det, dtype=np.float64) ** 2
        var_apcorr = (np.clip(var_auto - var_aper, 0.0, None) + (1.0 - apcorr) ** 2 * var_aper) / flux_aper_det ** 2
        ecorr = np.sqrt(ecorr ** 2 + flux ** 2 * np.where(np.isfinite(var_apcorr), var_apcorr, 0.0))
    tot_corr = np.asarray(tot_corr, dtype=np.float64)[:, None]
    return {
        "apcorr": apcorr,
        "corr": corr,
        "ecorr": ecorr,
        "tot": corr * tot_corr,
        "etot": ecorr * tot_corr,
    }
