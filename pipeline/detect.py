"""HST source detection with the release's (grizli + sep) conventions.

Pure functions: arrays and an astropy WCS in, an astropy Table and a segmentation array
out. The detection image made by :func:`detection_image` is in microJansky per pixel, so
every flux in the catalog of :func:`detect` (``flux``, ``cflux``, ``peak``, ``cpeak``,
``flux_iso``, ``flux_auto``, ``bkg_auto``, ``flux_aper_i`` ... and their errors) is in
microJansky and every magnitude is AB (``23.9 - 2.5 log10(flux)``); an image in other
units gives fluxes in those units (and meaningless magnitudes).

Conventions (grizli ``prep.make_SEP_catalog``): ``x``, ``y`` zero-indexed,
``x_image = x + 1``; ``ra, dec = wcs.all_pix2world(x, y, 0)``; ``id`` is the source's
label in the segmentation map (1..N in sep order); Kron quantities as described in
:func:`detect`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import sep
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from scipy import ndimage

from pipeline.photometry import (
    AB_ZEROPOINT_UJY,
    APERTURE_DIAMETERS_ARCSEC,
    KRON_MIN_RADIUS_ARCSEC,
    aperture_photometry,
    error_and_mask,
    estimate_background,
    total_correction,
    ujy_per_count,
)

F160W_FWHM_ARCSEC = 0.151
"""WFC3/IR F160W PSF FWHM (WFC3 Instrument Handbook); only used for the fallback kernel."""

KERNEL_SIZE = 11
"""Side (pixels) of the detection kernel cut from the PSF (grizli: the central 11x11)."""

SEP_COLUMNS = (
    "thresh", "npix", "tnpix", "xmin", "xmax", "ymin", "ymax", "x", "y",
    "x2", "y2", "xy", "errx2", "erry2", "errxy", "a", "b", "theta",
    "cxx", "cyy", "cxy", "cflux", "flux", "cpeak", "peak",
    "xcpeak", "ycpeak", "xpeak", "ypeak", "flag",
)
_IMAGE_SUFFIXED = {"x2", "y2", "xy", "a", "b", "theta", "cxx", "cyy", "cxy"}

FLUX_RADIUS_FRACTIONS = (0.2, 0.5, 0.9)
"""Light fractions of ``flux_radius_20``, ``flux_radius``, ``flux_radius_90``."""


@dataclass(frozen=True)
class DetectParams:
    """Detection and Kron settings; the defaults are the release's.

    back_box_arcsec, back_filter_size : sep background mesh (arcsec) and median filter
        (meshes); the README's "4 arcsec" and 3.
    filter_kernel : detection filter. The release used the drizzled F160W PSF, flipped
        and normalized (a matched filter, Zackay & Ofek 2017): build it with
        :func:`psf_kernel`. None: a Gaussian of FWHM ``F160W_FWHM_ARCSEC``. Any 2-d
        array is stored as a tuple of row tuples, so the parameters stay hashable and
        serializable (provenance).
    filter_type : sep filter treatment ("conv" as grizli; "matched" weighs by noise).
    threshold : detection threshold in units of the per-pixel error (weight map).
    minarea, deblend_nthresh, deblend_cont, clean, clean_param : sep.extract settings
        (``deblend_cont=1.0`` turns deblending off).
    rescale_weight : scale ``1/sqrt(wht)`` by the median (background rms / error), as
        grizli and SExtractor's MAP_WEIGHT do.
    pixscale : arcsec per pixel; None: from the WCS.
    kron_factor, kron_rmax : Kron aperture ``kron_factor * kr`` with ``kr`` measured
        within ``kron_rmax`` isophotal radii (2.5, 6 as SExtractor); no floor on kr.
    kron_min_radius_arcsec : minimum circularized Kron radius; smaller apertures use a
        circle of this radius (0.35", i.e. D = 0.7").
    highpass_arcsec : None (the release) or a scale (arcsec): sources are extracted
        (segmentation, positions and shapes) on the background-subtracted image minus its
        running median over this scale (:func:`highpass`), which removes the light of
        brightest cluster galaxies, intracluster light and the outskirts of bright members;
        ``flux_iso``, the Kron quantities and the apertures are still measured on the image
        with only the release's background subtracted (sep's own ``flux``, ``cflux``,
        ``peak`` and ``cpeak`` are of the image it extracted from); each release source is
        kept, with the release's shape (:func:`_merge_release`): the catalog is the
        release's plus the sources found inside its segments. In a cluster core the release's 1-sigma
        isophote joins most of the core into a few parents of 100-560 arcsec^2 (a 2' mock);
        ``deblend_cont`` x a parent's flux then hides sources up to 5 mag brighter than the
        depth inside them (galaxies of 21.8 and 22.5 mag 1.3" apart stayed one source).
        Careful cluster-field catalogs remove that light before detecting (HFF: Merlin et al.
        2016, Shipley et al. 2018 model and subtract it; median filtering as Livermore et al.
        2017).
    segmask : mask neighbours' segmentation pixels in Kron and aperture sums (grizli).
    subpix : sep subpixel sampling of apertures (grizli 5; 1 mimics SExtractor's
        pixel-centre sums).
    tot_corr_filter : filter whose encircled-energy curve gives ``tot_corr``.
    diameters : detection-image aperture diameters (arcsec).
    """

    back_box_arcsec: float = 4.0
    back_filter_size: int = 3
    filter_kernel: tuple[tuple[float, ...], ...] | None = None
    filter_type: str = "conv"
    threshold: float = 1.0
    minarea: int = 9
    deblend_nthresh: int = 32
    deblend_cont: float = 0.001
    clean: bool = True
    clean_param: float = 1.0
    rescale_weight: bool = True
    pixscale: float | None = None
    kron_factor: float = 2.5
    kron_rmax: float = 6.0
    kron_min_radius_arcsec: float = KRON_MIN_RADIUS_ARCSEC
    highpass_arcsec: float | None = None
    segmask: bool = True
    subpix: int = 5
    tot_corr_filter: str = "f160w"
    diameters: tuple[float, ...] = APERTURE_DIAMETERS_ARCSEC

    def __post_init__(self) -> None:
        if self.filter_kernel is not None:
            rows = tuple(tuple(float(v) for v in row) for row in np.asarray(self.filter_kernel))
            object.__setattr__(self, "filter_kernel", rows)
        object.__setattr__(self, "diameters", tuple(float(d) for d in self.diameters))


def detection_image(
    scis: Sequence[np.ndarray],
    whts: Sequence[np.ndarray],
    photfnus: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Combine filter mosaics on one pixel grid into the detection image (uJy / pixel).

    Each mosaic ``s_i`` (counts/s) with inverse-variance weight ``w_i`` and calibration
    ``c_i = ujy_per_count(PHOTFNU_i)`` (uJy per count/s) is put in uJy, ``c_i s_i``, with
    weight ``w_i / c_i**2`` (uJy^-2); the detection image is their inverse-variance
    weighted mean and its weight the sum of the weights:

        image  = sum_i (w_i / c_i**2) c_i s_i / sum_i (w_i / c_i**2)
        weight = sum_i  w_i / c_i**2

    This is grizli's ``make_filter_combinations(weight_fnu=2)`` with the reference
    PHOTFNU set to 1 uJy. Pixels with zero total weight are 0 in both. Invalid pixels of
    a mosaic (non-finite, or weight <= 0) do not contribute.
    """
    if not (len(scis) == len(whts) == len(photfnus) > 0):
        raise ValueError("detection_image needs as many sci, wht and PHOTFNU values (>= 1)")
    numerator = np.zeros(np.shape(scis[0]), dtype=np.float64)
    weight = np.zeros_like(numerator)
    for sci, wht, photfnu in zip(scis, whts, photfnus):
        scale = ujy_per_count(photfnu=photfnu)
        _, bad = error_and_mask(sci, wht)
        w = np.where(bad, 0.0, np.asarray(wht, dtype=np.float64)) / scale**2
        numerator += w * np.where(bad, 0.0, np.asarray(sci, dtype=np.float64)) * scale
        weight += w
    image = np.divide(numerator, weight, out=np.zeros_like(numerator), where=weight > 0)
    return image.astype(np.float32), weight.astype(np.float32)


def psf_kernel(
    psf: np.ndarray, *, psf_pixscale: float, pixscale: float, size: int = KERNEL_SIZE
) -> np.ndarray:
    """Matched-filter detection kernel from a PSF image (grizli's F160W kernel).

    The PSF is resampled onto a ``size`` x ``size`` grid of ``pixscale`` pixels centred
    on its brightest pixel (cubic-spline interpolation, averaged over each output pixel
    when it is larger than a PSF pixel; same scales reproduce the central cut exactly),
    flipped in x and y (the optimal filter is the PSF cross-correlation) and normalized
    to unit sum. Both scales in arcsec per pixel.
    """
    psf = np.asarray(psf, dtype=np.float64)
    cy, cx = np.unravel_index(np.argmax(psf), psf.shape)
    ratio = pixscale / psf_pixscale
    nsub = 1 if ratio <= 1 else int(np.ceil(3 * ratio))
    offsets = (
        np.arange(size)[:, None] - size // 2 + (np.arange(nsub)[None, :] + 0.5) / nsub - 0.5
    ).ravel() * ratio
    yy, xx = np.meshgrid(cy + offsets, cx + offsets, indexing="ij")
    samples = ndimage.map_coordinates(psf, [yy, xx], order=3, mode="constant")
    kernel = samples.reshape(size, nsub, size, nsub).mean(axis=(1, 3))[::-1, ::-1]
    return kernel / kernel.sum()


def gaussian_kernel(fwhm_arcsec: float, pixscale: float, size: int = KERNEL_SIZE) -> np.ndarray:
    """Normalized ``size`` x ``size`` Gaussian of the given FWHM sampled at pixel centres."""
    sigma = fwhm_arcsec / pixscale / (2 * np.sqrt(2 * np.log(2)))
    r = np.arange(size) - size // 2
    profile = np.exp(-0.5 * (r / sigma) ** 2)
    kernel = np.outer(profile, profile)
    return kernel / kernel.sum()


def wcs_pixscale(wcs: WCS) -> float:
    """Mean pixel scale (arcsec) of a celestial WCS."""
    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)


def detection_background(image: np.ndarray, weight: np.ndarray, params: DetectParams, pixscale: float):
    """The detection image's sep background (``params.back_box_arcsec``, ``back_filter_size``), as
    ``pipeline.photometry.Background``; its ``err_scale`` is 1 unless ``params.rescale_weight``.
    :func:`detect` subtracts it before everything it measures, ``flux_auto`` included; the
    photometry stage subtracts it before the detection image's apertures, so that ``apcorr =
    flux_auto / flux_aper`` compares fluxes over the same background (as grizli's detection
    catalog)."""
    err, mask = error_and_mask(image, weight)
    data = np.ascontiguousarray(image, dtype=np.float32)
    data[mask] = 0.0
    background = estimate_background(data, err, mask, pixscale=pixscale, box_arcsec=params.back_box_arcsec,
                                     filter_size=params.back_filter_size)
    return background if params.rescale_weight else replace(background, err_scale=1.0)


def detect(
    image: np.ndarray,
    weight: np.ndarray,
    wcs: WCS,
    *,
    params: DetectParams = DetectParams(),
) -> tuple[Table, np.ndarray]:
    """Detect sources and measure the release's detection-catalog columns.

    image, weight : detection image (uJy/pixel, see :func:`detection_image`) and its
        inverse-variance weight; weight <= 0 or non-finite pixels are masked.
    wcs : the image's WCS (``ra, dec = wcs.all_pix2world(x, y, 0)``).

    Steps (grizli ``make_SEP_catalog`` / ``compute_SEP_auto_params``): sep background
    subtracted; ``err = 1/sqrt(weight)`` (times the background rms ratio if
    ``rescale_weight``); ``sep.extract`` at ``threshold * err``; ``flux_iso`` summed over
    the source's segment; Kron radius ``kr = sep.kron_radius(data, x, y, a, b, theta,
    kron_rmax)`` with neighbours masked, ``kron_radius = kron_factor * kr`` (the aperture,
    in units of a and b), ``kron_rcirc = kron_radius * sqrt(a b)`` (pixels); ``flux_auto``
    is the sum in that ellipse, or in a circle of ``kron_min_radius_arcsec`` when
    ``kron_rcirc`` is not larger; ``flux_radius_*`` within ``6 a`` normalized to
    ``flux_auto``; ``tot_corr = 1/EE(kron_rcirc * pixscale)`` of ``tot_corr_filter``;
    ``mag_auto = 23.9 - 2.5 log10(flux_auto * tot_corr)``; circular apertures of
    ``diameters`` (neighbours masked, never blanked). Sources with non-finite shape,
    ``flux_auto <= 0`` or ``flux_radius <= 0`` are dropped; the others keep their
    segmentation label as ``id``. A Kron radius sep cannot measure (its first moment is
    not positive, e.g. a galaxy on the over-subtracted wing of a brighter one) is 0, as
    grizli sets it, and the source gets the minimum circle: it is not dropped (a 20.4 mag
    cluster galaxy was, on a mock cluster core).

    Returns the catalog (columns in the order of the release's ``phot_apcorr`` file)
    and the int32 segmentation map (0 = sky and masked pixels; label = ``id``).
    """
    pixscale = params.pixscale if params.pixscale is not None else wcs_pixscale(wcs)
    err, mask = error_and_mask(image, weight)
    data = np.ascontiguousarray(image, dtype=np.float32)
    data[mask] = 0.0
    background = detection_background(image, weight, params, pixscale)
    err *= np.float32(background.err_scale)
    data_bkg = data - background.level
    data_bkg[mask] = 0.0
    extract_on = data_bkg
    if params.highpass_arcsec:
        extract_on = data_bkg - highpass_level(data_bkg, mask, params.highpass_arcsec / pixscale)
        extract_on[mask] = 0.0

    if params.filter_kernel is None:
        kernel = gaussian_kernel(F160W_FWHM_ARCSEC, pixscale)
    else:
        kernel = np.asarray(params.filter_kernel, dtype=np.float64)
    sep.set_extract_pixstack(max(300_000, data.size // 20))
    extract = dict(
        err=err, mask=mask, minarea=params.minarea,
        filter_kernel=kernel, filter_type=params.filter_type,
        deblend_nthresh=params.deblend_nthresh, deblend_cont=params.deblend_cont,
        clean=params.clean, clean_param=params.clean_param, segmentation_map=True,
    )
    objects, seg = sep.extract(extract_on, params.threshold, **extract)
    seg[mask] = 0
    if extract_on is not data_bkg:
        release, release_seg = sep.extract(data_bkg, params.threshold, **extract)
        release_seg[mask] = 0
        objects, seg = _merge_release(objects, seg, release, release_seg)
    ids = np.arange(1, len(objects) + 1, dtype=np.int32)
    objects = objects.copy()
    objects["theta"] = np.clip(objects["theta"], -np.pi / 2, np.pi / 2)
    finite = np.ones(len(objects), dtype=bool)
    for name in ("x", "y", "a", "b", "theta"):
        finite &= np.isfinite(objects[name])
    objects, ids = objects[finite], ids[finite]

    catalog = Table()
    for name in SEP_COLUMNS:
        catalog[f"{name}_image" if name in _IMAGE_SUFFIXED else name] = objects[name]
    x, y = catalog["x"].data.astype(np.float64), catalog["y"].data.astype(np.float64)
    catalog["x_image"] = x + 1
    catalog["y_image"] = y + 1
    catalog["id"] = ids
    ra, dec = wcs.all_pix2world(x, y, 0)
    catalog["ra"], catalog["dec"] = ra, dec
    catalog["x_world"], catalog["y_world"] = ra, dec

    flux_iso, var_iso, area_iso = _segment_sums(data_bkg, err, seg, ids)
    catalog["flux_iso"] = flux_iso
    catalog["fluxerr_iso"] = np.sqrt(var_iso)
    catalog["area_iso"] = area_iso
    with np.errstate(invalid="ignore", divide="ignore"):
        catalog["mag_iso"] = AB_ZEROPOINT_UJY - 2.5 * np.log10(flux_iso)

    seg_kwargs = {"segmap": seg, "seg_id": ids} if params.segmask else {}
    auto = _kron_photometry(data, data_bkg, err, mask, catalog, pixscale, params, seg_kwargs)
    for name, values in auto.items():
        catalog[name] = values
    catalog["tot_corr"] = total_correction(
        params.tot_corr_filter, catalog["kron_rcirc"] * pixscale,
        rmin_arcsec=params.kron_min_radius_arcsec,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        catalog["mag_auto"] = AB_ZEROPOINT_UJY - 2.5 * np.log10(
            catalog["flux_auto"] * catalog["tot_corr"]
        )
        catalog["magerr_auto"] = 2.5 / np.log(10) * catalog["fluxerr_auto"] / catalog["flux_auto"]

    apertures = aperture_photometry(
        image, weight, x, y, pixscale=pixscale, ujy_per_count=1.0,
        seg=seg if params.segmask else None, seg_id=ids if params.segmask else None,
        background=background, diameters=params.diameters, subpix=params.subpix,
        max_masked_fraction=None,
    )
    for i in range(len(params.diameters)):
        for key in ("flux", "fluxerr", "flag", "bkg", "mask"):
            catalog[f"{key}_aper_{i}"] = apertures[key][:, i]

    keep = (catalog["flux_auto"] > 0) & (catalog["flux_radius"] > 0)
    catalog = catalog[keep]
    catalog.meta.update(
        PIXSCALE=pixscale, THRESH=params.threshold, MINAREA=params.minarea,
        DEBCONT=params.deblend_cont, DEBTHRSH=params.deblend_nthresh,
        KRONFACT=params.kron_factor, MINKRON=params.kron_min_radius_arcsec / pixscale,
        TOTCFILT=params.tot_corr_filter, ERRSCALE=background.err_scale,
        HIGHPASS=params.highpass_arcsec or 0.0,
    )
    return catalog, seg


_RELEASE_COLUMNS = ("x2", "y2", "xy", "a", "b", "theta", "cxx", "cyy", "cxy")


def _merge_release(objects: np.ndarray, seg: np.ndarray, release: np.ndarray, release_seg: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The sources extracted after the high-pass, merged with the release's extraction so that
    every release source is in the catalog, plus the sources the high-pass found inside the
    release's segments:

    - each release segment gives its source's shape (second moments, a, b, theta) to the
      brightest (sep ``flux``) high-pass source whose position lies in it, which keeps its own
      position (the release's centroid of an unsplit pair lies between the two; the offsets
      from truth of a 2' mock grew from 0.013" to 0.017" with it). The high-pass keeps only the
      inner part of a large galaxy, whose moments would shrink its Kron ellipse (a BCG-like
      n = 4 galaxy of r_e = 5" lost 14% of ``flux_auto``);
    - a release source without any high-pass source in its segment (light smooth on the
      high-pass scale) is added with the pixels of its segment that no high-pass segment holds.

    Returns the objects and the segmentation (labels 1..N in the order of the objects)."""
    objects = objects.copy()
    ny, nx = release_seg.shape
    xi = np.clip(np.round(objects["x"]).astype(int), 0, nx - 1)
    yi = np.clip(np.round(objects["y"]).astype(int), 0, ny - 1)
    label = release_seg[yi, xi]
    order = np.argsort(-np.nan_to_num(objects["flux"], nan=-np.inf), kind="stable")
    taken = np.zeros(len(release) + 1, dtype=bool)
    for i in order:
        lab = int(label[i])
        if lab == 0 or taken[lab]:
            continue
        taken[lab] = True
        for name in _RELEASE_COLUMNS:
            objects[name][i] = release[name][lab - 1]
    missing = np.flatnonzero(~taken[1:])
    if missing.size:
        relabel = np.zeros(len(release) + 1, dtype=np.int32)
        relabel[missing + 1] = len(objects) + 1 + np.arange(missing.size, dtype=np.int32)
        added = relabel[release_seg]
        seg = np.where((seg == 0) & (added > 0), added, seg).astype(seg.dtype)
        objects = np.concatenate([objects, release[missing]])
    return objects, seg


def highpass_level(data: np.ndarray, mask: np.ndarray, size_pixels: float) -> np.ndarray:
    """Running median of ``data`` over a window of ``size_pixels`` (the light on larger
    scales, which :func:`detect` removes before extracting when ``highpass_arcsec`` is set).

    For speed the median runs on ``k`` x ``k`` block means, ``k = max(1, round(size_pixels /
    8))``, with an odd window of ``round(size_pixels / k)`` blocks (at least 3), and is
    interpolated bilinearly back to every pixel (block centres at ``k i + (k - 1) / 2``).
    Masked pixels count as 0 (they are 0 in the detection image). A source much smaller
    than the window leaves the median at the level around it; light that is smooth over the
    window (a BCG's envelope, intracluster light) is removed."""
    k = max(1, int(round(size_pixels / 8.0)))
    ny, nx = data.shape
    py, px = (-ny) % k, (-nx) % k
    padded = np.pad(np.where(mask, 0.0, data).astype(np.float32), ((0, py), (0, px)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // k, k, padded.shape[1] // k, k).mean(axis=(1, 3))
    window = max(3, int(round(size_pixels / k)) | 1)
    median = ndimage.median_filter(blocks, size=window, mode="nearest")
    if k == 1:
        return median[:ny, :nx].astype(np.float32)
    rows = (np.arange(ny) - (k - 1) / 2.0) / k
    cols = (np.arange(nx) - (k - 1) / 2.0) / k
    out = np.empty((ny, nx), dtype=np.float32)
    step = max(1, 4_000_000 // max(nx, 1))
    for r0 in range(0, ny, step):
        rr, cc = np.meshgrid(rows[r0:r0 + step], cols, indexing="ij")
        out[r0:r0 + step] = ndimage.map_coordinates(median, [rr, cc], order=1, mode="nearest")
    return out


def _segment_sums(
    data: np.ndarray, err: np.ndarray, seg: np.ndarray, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum of data, of err**2 and pixel count over each segment label in ``ids``."""
    labels = seg.ravel()
    size = int(labels.max()) + 1 if labels.size else 1
    total = np.bincount(labels, weights=data.ravel().astype(np.float64), minlength=size)
    variance = np.bincount(labels, weights=err.ravel().astype(np.float64) ** 2, minlength=size)
    count = np.bincount(labels, minlength=size)
    return total[ids], variance[ids], count[ids]


def _kron_photometry(
    data: np.ndarray,
    data_bkg: np.ndarray,
    err: np.ndarray,
    mask: np.ndarray,
    catalog: Table,
    pixscale: float,
    params: DetectParams,
    seg_kwargs: dict,
) -> dict[str, np.ndarray]:
    """Kron radius, ``flux_auto`` (ellipse, or minimum circle) and flux radii."""
    x, y = catalog["x"].data.astype(np.float64), catalog["y"].data.astype(np.float64)
    a, b = catalog["a_image"].data.astype(np.float64), catalog["b_image"].data.astype(np.float64)
    theta = catalog["theta_image"].data.astype(np.float64)
    kr, _ = sep.kron_radius(data_bkg, x, y, a, b, theta, params.kron_rmax, mask=mask, **seg_kwargs)
    kron_radius = params.kron_factor * np.where(np.isfinite(kr), kr, 0.0)
    kron_rcirc = kron_radius * np.sqrt(a * b)
    min_radius = params.kron_min_radius_arcsec / pixscale
    small = kron_rcirc <= min_radius

    n = len(x)
    flux, fluxerr, total = np.zeros(n), np.zeros(n), np.zeros(n)
    flag = np.zeros(n, dtype=np.int16)
    for subset, is_circle in ((~small, False), (small, True)):
        if not subset.any():
            continue
        kwargs = {key: value[subset] if key == "seg_id" else value for key, value in seg_kwargs.items()}
        common = dict(mask=mask, subpix=params.subpix, **kwargs)
        if is_circle:
            args = (x[subset], y[subset], min_radius)
            summed = sep.sum_circle(data_bkg, *args, err=err, **common)
            unsubtracted = sep.sum_circle(data, *args, **common)[0]
        else:
            args = (x[subset], y[subset], a[subset], b[subset], theta[subset], kron_radius[subset])
            summed = sep.sum_ellipse(data_bkg, *args, err=err, **common)
            unsubtracted = sep.sum_ellipse(data, *args, **common)[0]
        flux[subset], fluxerr[subset], flag[subset] = summed
        total[subset] = unsubtracted

    radii, radius_flag = sep.flux_radius(
        data_bkg, x, y, 6.0 * a, list(FLUX_RADIUS_FRACTIONS), normflux=flux, mask=mask,
        subpix=params.subpix, **seg_kwargs,
    )
    return {
        "kron_radius": kron_radius,
        "kron_rcirc": kron_rcirc,
        "flux_auto": flux,
        "fluxerr_auto": fluxerr,
        "bkg_auto": total - flux,
        "flag_auto": flag,
        "area_auto": np.pi * np.maximum(kron_rcirc, min_radius) ** 2,
        "flux_radius_flag": radius_flag,
        "flux_radius_20": radii[:, 0],
        "flux_radius": radii[:, 1],
        "flux_radius_90": radii[:, 2],
    }
