"""Astrometric alignment of the mosaic stage, with DrizzlePac's ``tweakwcs``.

Pure functions on source catalogs and astropy WCS objects (no images are resampled
here: the caller drizzles the preliminary visit mosaics, see ``pipeline.mosaic``).
Pixel coordinates are zero-indexed (``ra, dec = wcs.all_pix2world(x, y, 0)``), which is
also tweakwcs' ``FITSWCSCorrector`` convention. Angles on the sky are in arcsec unless a
name says otherwise; rotations in degrees (counter-clockwise from North through East,
i.e. the change of the position angle of the image +y axis).

The release's procedure (README "Astrometric alignment"):

1. within a visit, x/y shifts between exposures from their high-S/N sources
   (:func:`bright_sources`, :func:`align_exposures`: ``tweakwcs.align_wcs`` with
   ``fitgeom='shift'``, TweakShifts-like);
2. each visit's preliminary mosaic catalog against the reference catalog with proper
   motions projected to the visit epoch (:func:`project_refcat`, :func:`fit_to_reference`
   with ``fitgeom='rscale'``: shift, rotation and scale), the fit propagated to the
   visit's exposures (:func:`apply_fit`);
3. a joint fine alignment of all visits against each other and the reference stars
   (:func:`joint_fine_alignment`): a shift and rotation per visit from one simultaneous
   least-squares fit of the star matches (at each visit's epoch) and the source matches
   between visits;
4. IRAC: one shift per AOR against the HST-based catalog plus the reference stars
   (:func:`fit_to_reference` with ``fitgeom='shift'``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import astropy.units as u
import numpy as np
import sep
from astropy.coordinates import SkyCoord
from astropy.table import Table, vstack
from astropy.time import Time
from astropy.wcs import WCS
from tweakwcs import FITSWCSCorrector, XYXYMatch, align_wcs
from tweakwcs.imalign import NotEnoughCatalogs

from pipeline.detect import wcs_pixscale

log = logging.getLogger(__name__)

GAIA_REF_EPOCH = 2015.5
"""Julian epoch of GAIA DR2 positions (used when the catalog has no ``ref_epoch``)."""


@dataclass(frozen=True)
class AlignParams:
    """Settings of the alignment (recorded by the caller as run parameters).

    snr_min, max_sources, detect_thresh, minarea : :func:`bright_sources` selection.
    winpos_sigma_arcsec : Gaussian window of the centroids; None: ``2 r50 / 2.35`` per
        source (SExtractor XWIN).
    sky_box_arcsec : sep background mesh used before source detection.
    internal_fitgeom, internal_searchrad_arcsec : step 1 (exposures within a visit).
    absolute_fitgeom, absolute_searchrad_arcsec : step 2 (visit vs reference catalog).
    joint_fitgeom, merge_radius_arcsec, joint_star_weight, joint_prior_weight : step 3
        (joint fine alignment: 'shift' or 'rshift' (shift + rotation); match radius between
        visits / to stars; weight of a star match relative to a visit-visit match; weight
        of the zero-correction prior of each visit).
    min_matches_rotation : fits that also solve for rotation/scale ('rshift', 'rscale',
        'general') need this many matches, else the driver falls back to a shift.
    star_exclusion_arcsec : sources of other visits closer than this to a reference star
        are left out of the step-3 / IRAC reference (stars move between epochs).
    tolerance_arcsec, separation_arcsec : tweakwcs ``XYXYMatch`` tolerance and minimum
        separation of distinct sources.
    irac_fitgeom, irac_searchrad_arcsec, irac_separation_arcsec, irac_tolerance_arcsec,
        irac_sky_box_arcsec : step 4 (IRAC AORs; the sky mesh of their source detection).
    irac_isolation_arcsec, irac_isolation_flux_ratio : the step-4 reference keeps only HST
        sources without a neighbour brighter than ``ratio`` times their flux within that
        radius, and reference stars without any other HST source within it (IRAC centroids
        of blends are biased).
    irac_min_matches : an AOR channel whose shift fit failed or matched fewer sources than
        this takes the shift of the other channel of the AOR when that one matched more (both
        arrays share the spacecraft pointing; ``pipeline.mosaic``).
    nclip, sigma : tweakwcs clipping iterations and threshold (in rmse).
    """

    snr_min: float = 15.0
    max_sources: int = 300
    detect_thresh: float = 5.0
    minarea: int = 5
    winpos_sigma_arcsec: float | None = None
    sky_box_arcsec: float = 6.4
    internal_fitgeom: str = "shift"
    internal_searchrad_arcsec: float = 0.5
    absolute_fitgeom: str = "rscale"
    absolute_searchrad_arcsec: float = 1.0
    joint_fitgeom: str = "rshift"
    merge_radius_arcsec: float = 0.15
    joint_star_weight: float = 1.0
    joint_prior_weight: float = 1e-4
    min_matches_rotation: int = 5
    star_exclusion_arcsec: float = 0.5
    tolerance_arcsec: float = 0.15
    separation_arcsec: float = 0.2
    irac_fitgeom: str = "shift"
    irac_searchrad_arcsec: float = 1.5
    irac_separation_arcsec: float = 2.0
    irac_tolerance_arcsec: float = 0.3
    irac_sky_box_arcsec: float = 25.0
    irac_isolation_arcsec: float = 4.0
    irac_min_matches: int = 10
    irac_isolation_flux_ratio: float = 0.1
    nclip: int = 3
    sigma: float = 3.0


@dataclass(frozen=True)
class Fit:
    """One tweakwcs fit of a catalog measured on ``ref_wcs`` to a reference.

    ``matrix``/``shift`` are defined in the tangent plane of ``ref_wcs`` (its pixels) and
    are applied to other WCSs with :func:`apply_fit`. ``wcs`` is ``ref_wcs`` corrected.
    ``rms`` (arcsec) and ``n_matched`` describe the fit; ``status`` is tweakwcs'
    (``'SUCCESS'``, ``'REFERENCE'`` or ``'FAILED: ...'``).
    """

    name: str
    status: str
    ref_wcs: WCS
    wcs: WCS
    matrix: np.ndarray
    shift: np.ndarray
    rms: float
    n_matched: int
    fitgeom: str

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"

    def summary(self) -> str:
        """One log line: name, shift (ref pixels), rotation, scale, rms, N, status."""
        off = wcs_offset(self.ref_wcs, self.wcs)
        return (
            f"{self.name:<28s} {self.shift[0]:8.3f} {self.shift[1]:8.3f} "
            f"{off.dx:8.4f} {off.dy:8.4f} {off.rotation:9.5f} {off.scale:9.6f} "
            f"{self.rms:7.4f} {self.n_matched:4d} {self.fitgeom:<8s} {self.status}"
        )


FIT_LOG_HEADER = (
    "# name                         xshift   yshift  dx(\")    dy(\")   rot(deg)    scale   "
    "rms(\")    N fitgeom  status"
)


@dataclass(frozen=True)
class WCSOffset:
    """Difference between two WCSs of the same image, at a pixel (default: the centre).

    dx, dy : sky offset of that pixel, corrected minus original, arcsec (dx towards East,
        ``dRA cos(dec)``); rotation : change of the position angle of the +y axis (deg);
    scale : ratio of pixel scales, corrected / original.
    """

    dx: float
    dy: float
    rotation: float
    scale: float


@dataclass(frozen=True)
class AlignmentResult:
    """Alignment of one exposure, visit or AOR relative to its header WCS.

    dx, dy (arcsec), rotation (deg), scale : :class:`WCSOffset` of the final WCS vs the
        header WCS at the image centre;
    rms (arcsec), n_matched : the last absolute fit (HST: the joint fit, its star plus
        visit-pair matches; IRAC: the AOR's fit);
    rms_internal (arcsec), n_internal : the within-visit fit of an exposure (NaN / 0 for
        the visit's reference exposure, visits and AORs);
    status : tweakwcs status of the fit to the reference (HST: the visit's fit to the
        reference stars; IRAC: the AOR's fit).
    """

    name: str
    dx: float
    dy: float
    rotation: float
    scale: float
    rms: float
    n_matched: int
    rms_internal: float = float("nan")
    n_internal: int = 0
    status: str = ""


def _east_north(ra0: np.ndarray, dec0: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic (East, North) offsets in arcsec of (ra, dec) from (ra0, dec0) (deg)."""
    a0, d0, a, d = (np.radians(np.asarray(v, float)) for v in (ra0, dec0, ra, dec))
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    east = np.cos(d) * np.sin(a - a0) / cos_c
    north = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cos_c
    return np.degrees(east) * 3600.0, np.degrees(north) * 3600.0


def wcs_offset(original: WCS, corrected: WCS, pixel: tuple[float, float] | None = None) -> WCSOffset:
    """:class:`WCSOffset` of ``corrected`` relative to ``original`` at a zero-indexed pixel
    (default: the image centre from ``original.pixel_shape``, else CRPIX)."""
    if pixel is None:
        if original.pixel_shape is not None:
            pixel = ((original.pixel_shape[0] - 1) / 2.0, (original.pixel_shape[1] - 1) / 2.0)
        else:
            pixel = tuple(original.wcs.crpix - 1)
    x0, y0 = pixel
    step = 10.0
    xs = np.array([x0, x0, x0 + step])
    ys = np.array([y0, y0 + step, y0])
    ra_a, dec_a = original.all_pix2world(xs, ys, 0)
    ra_b, dec_b = corrected.all_pix2world(xs, ys, 0)
    shift_e, shift_n = _east_north(ra_a[0], dec_a[0], ra_b[0], dec_b[0])
    e_a, n_a = _east_north(ra_a[0], dec_a[0], ra_a, dec_a)  # each WCS in its own tangent plane
    e_b, n_b = _east_north(ra_b[0], dec_b[0], ra_b, dec_b)
    rot = np.degrees(np.arctan2(e_b[1], n_b[1]) - np.arctan2(e_a[1], n_a[1]))
    scale = np.mean(np.hypot(e_b[1:], n_b[1:]) / np.hypot(e_a[1:], n_a[1:]))
    return WCSOffset(float(shift_e), float(shift_n), float((rot + 180.0) % 360.0 - 180.0), float(scale))


def bright_sources(
    sci: np.ndarray,
    err: np.ndarray,
    mask: np.ndarray,
    *,
    pixscale: float,
    params: AlignParams = AlignParams(),
    name: str = "",
) -> Table:
    """High-S/N sources for alignment, measured with sep.

    sci, err : image and 1-sigma error (same units, any); mask : True = unusable pixel;
    pixscale : arcsec per pixel.

    A sep sky (``sky_box_arcsec`` mesh) is subtracted, sources are extracted at
    ``detect_thresh * err`` and positioned with windowed centroids (``sep.winpos``,
    SExtractor XWIN with ``sig = 2 r50 / 2.35``); sources with S/N in a circle of radius
    ``2 r50`` below ``snr_min`` are dropped and the ``max_sources`` brightest kept.
    Returns a Table ``x, y`` (zero-indexed pixels), ``flux``, ``snr``, ``r50`` (pixels),
    ``meta['name'] = name``.
    """
    bad = np.asarray(mask, bool) | ~np.isfinite(sci) | ~(np.asarray(err) > 0)
    data = np.ascontiguousarray(np.where(bad, 0.0, sci), dtype=np.float32)
    noise = np.ascontiguousarray(np.where(bad, 0.0, err), dtype=np.float32)
    box = int(np.clip(round(params.sky_box_arcsec / pixscale), 8, max(data.shape)))
    data = data - sep.Background(data, mask=bad, bw=box, bh=box, fw=3, fh=3).back()
    objs = sep.extract(
        data, params.detect_thresh, err=noise, mask=bad, minarea=params.minarea, deblend_cont=0.005
    )
    empty = Table(names=("x", "y", "flux", "snr", "r50"), dtype=(float,) * 5, meta={"name": name})
    if len(objs) == 0:
        return empty
    x, y = objs["x"].astype(float), objs["y"].astype(float)
    r50, _ = sep.flux_radius(
        data, x, y, 6.0 * objs["a"], 0.5, normflux=objs["flux"], subpix=5, mask=bad
    )
    r50 = np.clip(np.nan_to_num(r50, nan=1.0), 0.5, 20.0)
    flux, fluxerr, _ = sep.sum_circle(data, x, y, 2.0 * r50, err=noise, mask=bad, subpix=5)
    snr = flux / np.where(fluxerr > 0, fluxerr, np.inf)
    sig = 2.0 * r50 / 2.35 if params.winpos_sigma_arcsec is None else np.full(len(x), params.winpos_sigma_arcsec / pixscale)
    xw, yw, wflag = sep.winpos(data, x, y, sig, mask=bad)
    good = (wflag == 0) & np.isfinite(xw) & np.isfinite(yw) & (np.hypot(xw - x, yw - y) < 2.0)
    x = np.where(good, xw, x)
    y = np.where(good, yw, y)
    keep = np.flatnonzero(snr >= params.snr_min)
    keep = keep[np.argsort(-flux[keep])][: params.max_sources]
    if len(keep) == 0:
        return empty
    return Table(
        {"x": x[keep], "y": y[keep], "flux": flux[keep], "snr": snr[keep], "r50": r50[keep]},
        meta={"name": name},
    )


def julian_epoch(mjd: float) -> float:
    """Julian epoch (years, e.g. 2015.5) of a Modified Julian Date."""
    return float(Time(mjd, format="mjd", scale="tdb").jyear)


def project_refcat(refcat: Table, epoch_mjd: float, *, ref_epoch: float = GAIA_REF_EPOCH) -> Table:
    """Reference stars moved to an epoch with their proper motions.

    refcat : GAIA-like table with ``ra``, ``dec`` (deg) at ``ref_epoch`` (the table's
        ``ref_epoch`` column when present, else the argument; Julian years), ``pmra``
        (mas/yr, includes cos(dec)) and ``pmdec`` (mas/yr); missing proper motions count
        as zero. Linear motion on the tangent plane (exact to < 1 mas for decades).
    epoch_mjd : the epoch (MJD).

    Returns a copy with the tweakwcs reference columns ``RA``, ``DEC`` (deg) at the epoch.
    """
    out = refcat.copy()
    epoch0 = np.asarray(refcat["ref_epoch"], float) if "ref_epoch" in refcat.colnames else ref_epoch
    dt = julian_epoch(epoch_mjd) - epoch0
    pmra = np.nan_to_num(np.asarray(refcat["pmra"], float)) if "pmra" in refcat.colnames else 0.0
    pmdec = np.nan_to_num(np.asarray(refcat["pmdec"], float)) if "pmdec" in refcat.colnames else 0.0
    dec = np.asarray(refcat["dec"], float)
    out["DEC"] = dec + pmdec * dt / 3.6e6
    out["RA"] = np.asarray(refcat["ra"], float) + pmra * dt / 3.6e6 / np.cos(np.radians(dec))
    return out


def _match(searchrad_arcsec: float, params: AlignParams, pixscale: float, separation_arcsec: float | None = None) -> XYXYMatch:
    """tweakwcs matcher with arcsec settings converted to tangent-plane pixels."""
    sep_arcsec = params.separation_arcsec if separation_arcsec is None else separation_arcsec
    return XYXYMatch(
        searchrad=searchrad_arcsec / pixscale,
        separation=sep_arcsec / pixscale,
        tolerance=params.tolerance_arcsec / pixscale,
        use2dhist=True,
    )


def _fit_fields(fit_info: dict, pixscale: float) -> tuple[np.ndarray, np.ndarray, float, int]:
    if fit_info.get("status") != "SUCCESS":
        return np.eye(2), np.zeros(2), float("nan"), 0
    return (
        np.asarray(fit_info["matrix"], float),
        np.asarray(fit_info["shift"], float),
        float(fit_info["rmse"]) * pixscale,
        int(np.count_nonzero(fit_info["fitmask"])),
    )


def align_exposures(
    wcss: Sequence[WCS],
    catalogs: Sequence[Table],
    names: Sequence[str],
    *,
    params: AlignParams = AlignParams(),
) -> list[Fit]:
    """Step 1: relative alignment of the exposures of one visit (tweakwcs ``align_wcs``,
    ``internal_fitgeom``), TweakShifts-like.

    wcss, catalogs : per chip, its WCS and :func:`bright_sources` catalog (pixels of that
        chip); names : the exposure each chip belongs to (chips of one exposure move
        together: tweakwcs ``group_id``).

    The first exposure with sources is the reference: its sources (through its WCS) are the
    reference catalog, the other exposures are aligned to it in the given order and their
    unmatched sources added to it (``expand_refcat``). Returns one :class:`Fit` per chip
    (``ref_wcs`` the input WCS, ``wcs`` the aligned one; status ``'REFERENCE'`` for the
    reference exposure, ``'FAILED: no sources'`` for chips without sources).
    """
    pixscale = wcs_pixscale(wcss[0])
    correctors = [
        FITSWCSCorrector(w.deepcopy(), meta={"catalog": cat, "name": name, "group_id": name})
        for w, cat, name in zip(wcss, catalogs, names)
    ]
    with_sources = [n for n, cat in zip(names, catalogs) if len(cat)]
    reference_name = with_sources[0] if with_sources else None
    others = [c for c in correctors if len(c.meta["catalog"]) and c.meta["name"] != reference_name]
    if others:
        reference = vstack([
            catalog_radec(cat, w) for w, cat, n in zip(wcss, catalogs, names) if n == reference_name and len(cat)
        ])
        try:
            align_wcs(
                others,
                refcat=reference,
                expand_refcat=True,
                enforce_user_order=True,
                match=_match(params.internal_searchrad_arcsec, params, pixscale),
                fitgeom=params.internal_fitgeom,
                nclip=params.nclip,
                sigma=(params.sigma, "rmse"),
            )
        except NotEnoughCatalogs as exc:
            log.warning("internal alignment skipped: %s", exc)
    fits = []
    for w, c, name in zip(wcss, correctors, names):
        if name == reference_name:
            info = {"status": "REFERENCE"}
        elif not len(c.meta["catalog"]):
            info = {"status": "FAILED: no sources"}
        else:
            info = c.meta.get("fit_info", {"status": "FAILED"})
        matrix, shift, rms, n = _fit_fields(info, pixscale)
        status = info["status"]
        fits.append(Fit(name, status, w, c.wcs if status == "SUCCESS" else w, matrix, shift, rms, n, params.internal_fitgeom))
    return fits


def fit_to_reference(
    wcs: WCS,
    catalog: Table,
    reference: Table,
    *,
    fitgeom: str,
    searchrad_arcsec: float,
    params: AlignParams = AlignParams(),
    separation_arcsec: float | None = None,
    name: str = "",
) -> Fit:
    """Fit the WCS of an image (e.g. a preliminary visit mosaic) so that its sources land
    on a reference catalog (tweakwcs ``align_wcs`` with ``refcat``).

    wcs, catalog : the image WCS and its source catalog (``x``, ``y`` zero-indexed pixels);
    reference : table with ``RA``, ``DEC`` (deg), e.g. :func:`project_refcat` or
        :func:`combined_reference`; fitgeom : 'shift', 'rshift', 'rscale' or 'general'.

    Corrections are defined in the tangent plane of ``wcs`` (its pixels), so
    :func:`apply_fit` propagates them to the exposures that built the image. On failure
    (too few matches, empty catalogs) the returned Fit has the identity correction. Fits
    other than 'shift' need ``params.min_matches_rotation`` matches.
    """
    pixscale = wcs_pixscale(wcs)
    corrector = FITSWCSCorrector(wcs.deepcopy(), meta={"catalog": catalog, "name": name})
    status = "FAILED: empty catalog"
    if len(catalog) and len(reference):
        try:
            align_wcs(
                corrector,
                refcat=reference,
                ref_tpwcs=FITSWCSCorrector(wcs.deepcopy()),
                match=_match(searchrad_arcsec, params, pixscale, separation_arcsec),
                fitgeom=fitgeom,
                minobj=1 if fitgeom == "shift" else params.min_matches_rotation,
                nclip=params.nclip,
                sigma=(params.sigma, "rmse"),
            )
            status = corrector.meta.get("fit_info", {}).get("status", "FAILED")
        except (NotEnoughCatalogs, ValueError, RuntimeError) as exc:
            status = f"FAILED: {exc}"
    info = corrector.meta.get("fit_info", {}) if status == "SUCCESS" else {"status": status}
    matrix, shift, rms, n = _fit_fields(info, pixscale)
    return Fit(name, status, wcs, corrector.wcs if status == "SUCCESS" else wcs, matrix, shift, rms, n, fitgeom)


def apply_fit(wcss: Sequence[WCS], fit: Fit) -> list[WCS]:
    """Apply a :class:`Fit` (defined on ``fit.ref_wcs``'s tangent plane) to other WCSs,
    e.g. the exposures of the visit whose mosaic was fit. Failed fits change nothing."""
    if not fit.ok:
        return [w.deepcopy() for w in wcss]
    out = []
    ref = FITSWCSCorrector(fit.ref_wcs.deepcopy())
    for w in wcss:
        corrector = FITSWCSCorrector(w.deepcopy())
        corrector.set_correction(matrix=fit.matrix, shift=fit.shift, ref_tpwcs=ref)
        out.append(corrector.wcs)
    return out


def catalog_radec(catalog: Table, wcs: WCS) -> Table:
    """``RA``, ``DEC`` (deg) of a pixel catalog through a WCS, with its ``flux`` column
    when present (a new Table)."""
    ra, dec = wcs.all_pix2world(np.asarray(catalog["x"], float), np.asarray(catalog["y"], float), 0)
    out = Table({"RA": np.asarray(ra, float), "DEC": np.asarray(dec, float)})
    if "flux" in catalog.colnames:
        out["flux"] = np.asarray(catalog["flux"], float)
    return out


def isolated(catalog: Table, *, radius_arcsec: float, flux_ratio: float) -> np.ndarray:
    """True for the sources of a ``RA``, ``DEC``, ``flux`` table that have no other source
    brighter than ``flux_ratio`` times their own flux within ``radius_arcsec``."""
    n = len(catalog)
    if n < 2:
        return np.ones(n, bool)
    coords = SkyCoord(np.asarray(catalog["RA"], float), np.asarray(catalog["DEC"], float), unit="deg")
    i, j, _, _ = coords.search_around_sky(coords, radius_arcsec / 3600.0 * u.deg)
    flux = np.asarray(catalog["flux"], float)
    crowding = (i != j) & (flux[j] > flux_ratio * flux[i])
    keep = np.ones(n, bool)
    keep[i[crowding]] = False
    return keep


def isolated_from(targets: Table, sources: Table, *, radius_arcsec: float, exclusion_arcsec: float) -> np.ndarray:
    """True for the ``targets`` (``RA``, ``DEC``) with no ``sources`` (``RA``, ``DEC``)
    between ``exclusion_arcsec`` (the target's own counterpart) and ``radius_arcsec``."""
    if len(targets) == 0 or len(sources) == 0:
        return np.ones(len(targets), bool)
    t = SkyCoord(np.asarray(targets["RA"], float), np.asarray(targets["DEC"], float), unit="deg")
    s = SkyCoord(np.asarray(sources["RA"], float), np.asarray(sources["DEC"], float), unit="deg")
    _, i_target, d2d, _ = t.search_around_sky(s, radius_arcsec / 3600.0 * u.deg)
    keep = np.ones(len(targets), bool)
    keep[i_target[d2d.arcsec > exclusion_arcsec]] = False
    return keep


def combined_reference(stars: Table, others: Sequence[Table], *, exclusion_arcsec: float) -> Table:
    """Reference for steps 3 and 4: the reference stars (already at the epoch, ``RA``,
    ``DEC``) plus the sources of other catalogs (``RA``, ``DEC``) farther than
    ``exclusion_arcsec`` from every star. Returns ``RA``, ``DEC``."""
    star_tab = Table({"RA": np.asarray(stars["RA"], float), "DEC": np.asarray(stars["DEC"], float)})
    other = [Table({"RA": np.asarray(t["RA"], float), "DEC": np.asarray(t["DEC"], float)}) for t in others if len(t)]
    if not other:
        return star_tab
    extra = vstack(other)
    if len(star_tab):
        sc = SkyCoord(extra["RA"], extra["DEC"], unit="deg")
        _, d2d, _ = sc.match_to_catalog_sky(SkyCoord(star_tab["RA"], star_tab["DEC"], unit="deg"))
        extra = extra[d2d.arcsec > exclusion_arcsec]
    return vstack([star_tab, extra]) if len(star_tab) else extra


@dataclass(frozen=True)
class VisitCatalog:
    """A visit for the joint alignment: its (already absolutely aligned) mosaic WCS, the
    mosaic's source catalog (pixels of that mosaic) and its epoch (MJD)."""

    name: str
    wcs: WCS
    catalog: Table
    mjd: float


@dataclass(frozen=True)
class JointCorrection:
    """Step-3 correction of one visit: its sky positions are rotated by ``rotation`` (deg,
    the change of position angle, East of North) about ``center`` and then moved by
    (``dx`` East, ``dy`` North) arcsec (:func:`transform_wcs`). ``rms`` (arcsec) of the
    post-fit residuals of the observations involving the visit: ``n_stars`` reference-star
    matches and ``n_pairs`` source matches with other visits."""

    name: str
    dx: float
    dy: float
    rotation: float
    center: SkyCoord
    rms: float
    n_stars: int
    n_pairs: int

    def apply(self, wcs: WCS) -> WCS:
        return transform_wcs(wcs, self.dx, self.dy, self.rotation, self.center)

    def summary(self) -> str:
        return (f"{self.name:<28s} dx {self.dx:8.4f} dy {self.dy:8.4f} rot {self.rotation:9.5f}  "
                f"rms {self.rms:7.4f}  stars {self.n_stars:4d}  pairs {self.n_pairs:5d}")


def transform_wcs(wcs: WCS, dx: float, dy: float, rotation: float, center: SkyCoord) -> WCS:
    """The WCS whose sky positions are those of ``wcs`` rotated by ``rotation`` degrees
    (position angles increase) about ``center`` and moved by (dx East, dy North) arcsec.

    CRVAL is transformed and the rotation applied to the CD (or CDELT*PC) matrix, i.e. to the
    intermediate world coordinates; pixel distortions (SIP) are untouched. Exact at CRVAL,
    to ~1e-8 relative over an HST/IRAC field."""
    out = wcs.deepcopy()
    crval = SkyCoord(*wcs.wcs.crval, unit="deg")
    east, north = center.spherical_offsets_to(crval)
    t = np.radians(rotation)
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # on (East, North)
    e2, n2 = rot @ np.array([east.arcsec, north.arcsec]) + np.array([dx, dy])
    moved = center.spherical_offsets_by(e2 * u.arcsec, n2 * u.arcsec)
    out.wcs.crval = [moved.ra.deg, moved.dec.deg]
    # intermediate world coordinates are (East, North) on the tangent plane at CRVAL
    if wcs.wcs.has_cd():
        out.wcs.cd = rot @ wcs.wcs.cd
    else:
        cdelt = np.diag(wcs.wcs.cdelt)
        out.wcs.pc = np.linalg.inv(cdelt) @ rot @ cdelt @ wcs.wcs.pc
    out.wcs.set()
    return out
def _offsets_arcsec(center: SkyCoord, table: Table) -> np.ndarray:
    if len(table) == 0:
        return np.zeros((0, 2))
    east, north = center.spherical_offsets_to(SkyCoord(np.asarray(table["RA"], float), np.asarray(table["DEC"], float), unit="deg"))
    return np.column_stack([east.arcsec, north.arcsec])


def _nearest_pairs(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours of two (N, 2) position lists closer than ``radius``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    d = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    ia = np.arange(len(a))
    jb = np.argmin(d, axis=1)
    mutual = (np.argmin(d, axis=0)[jb] == ia) & (d[ia, jb] < radius)
    return ia[mutual], jb[mutual]


def joint_fine_alignment(
    visits: Sequence[VisitCatalog], refcat: Table, *, params: AlignParams = AlignParams()
) -> dict[str, JointCorrection]:
    """Step 3: a shift (and with ``joint_fitgeom='rshift'`` a rotation about the visit's
    mosaic centre) per visit from one simultaneous weighted least-squares fit of
    (a) each visit's sources matched to the reference stars at the visit's epoch
    (:func:`project_refcat`) and (b) sources matched between every pair of visits.

    With ``T_v(p) = p + d_v + theta_v J (p - c_v)`` (linearized rotation on (East, North)
    offsets, ``J(e, n) = (n, -e)``, position angles increase with theta) the observations
    are ``T_v(p) = s`` for a star match (weight ``joint_star_weight``),
    ``T_a(p_a) - T_b(p_b) = 0`` for a pair (weight 1), and ``d_v = 0``, ``theta_v = 0``
    with weight ``joint_prior_weight`` so visits without stars or overlap keep their WCS.
    Matches are mutual nearest neighbours within ``merge_radius_arcsec`` (steps 1-2 aligned
    the visits to that level); sources within ``star_exclusion_arcsec`` of a star are only
    matched to the star (stars move between epochs). Observations off by more than
    ``sigma`` times the rms are dropped (``nclip`` iterations). The stars fix the absolute
    frame, the pairs the relative one.
    """
    out: dict[str, JointCorrection] = {}
    if not visits:
        return out
    nv = len(visits)
    npar = 3 if params.joint_fitgeom == "rshift" else 2
    centre = SkyCoord(
        np.mean([v.wcs.wcs.crval[0] for v in visits]), np.mean([v.wcs.wcs.crval[1] for v in visits]), unit="deg"
    )
    visit_centres, pos, galaxy = [], [], []
    obs: list[tuple[tuple[int, ...], tuple[float, ...], tuple[np.ndarray, ...], np.ndarray, float]] = []
    for k, v in enumerate(visits):
        nx, ny = v.wcs.pixel_shape
        visit_centres.append(SkyCoord(*v.wcs.all_pix2world((nx - 1) / 2.0, (ny - 1) / 2.0, 0), unit="deg"))
        p = _offsets_arcsec(centre, catalog_radec(v.catalog, v.wcs))
        stars = _offsets_arcsec(centre, project_refcat(refcat, v.mjd))
        for i, j in zip(*_nearest_pairs(p, stars, params.merge_radius_arcsec)):
            obs.append(((k,), (1.0,), (p[i],), stars[j] - p[i], params.joint_star_weight))
        near_star = np.zeros(len(p), bool)
        if len(stars) and len(p):
            d = np.hypot(p[:, None, 0] - stars[None, :, 0], p[:, None, 1] - stars[None, :, 1])
            near_star = d.min(axis=1) < params.star_exclusion_arcsec
        pos.append(p)
        galaxy.append(np.flatnonzero(~near_star))
    east, north = centre.spherical_offsets_to(SkyCoord(visit_centres))
    vc = np.column_stack([east.arcsec, north.arcsec])
    for a in range(nv):
        for b in range(a + 1, nv):
            ia, ib = _nearest_pairs(pos[a][galaxy[a]], pos[b][galaxy[b]], params.merge_radius_arcsec)
            for i, j in zip(galaxy[a][ia], galaxy[b][ib]):
                obs.append(((a, b), (1.0, -1.0), (pos[a][i], pos[b][j]), pos[b][j] - pos[a][i], 1.0))
    # theta is solved in units of 1/scale radians so that all columns are in arcsec
    all_pos = np.concatenate(pos)
    scale = max(float(np.max(np.abs(all_pos))) if len(all_pos) else 1.0, 1.0)
    n_obs = len(obs)
    design = np.zeros((2 * n_obs + npar * nv, npar * nv))
    target = np.zeros(2 * n_obs + npar * nv)
    weight = np.full(2 * n_obs + npar * nv, params.joint_prior_weight)
    for r, (ks, signs, ps, t, w) in enumerate(obs):
        for k, sgn, p in zip(ks, signs, ps):
            design[2 * r, npar * k] = sgn
            design[2 * r + 1, npar * k + 1] = sgn
            if npar == 3:
                rel = (p - vc[k]) / scale
                design[2 * r, npar * k + 2] = sgn * rel[1]
                design[2 * r + 1, npar * k + 2] = -sgn * rel[0]
        target[2 * r: 2 * r + 2] = t
        weight[2 * r: 2 * r + 2] = w
    design[2 * n_obs:, :] = np.eye(npar * nv)
    use = np.ones(n_obs, bool)
    for _ in range(params.nclip + 1):
        w = weight * np.concatenate([np.repeat(use, 2), np.ones(npar * nv, bool)])
        solution = np.linalg.solve(design.T @ (design * w[:, None]), design.T @ (w * target))
        r2 = (design @ solution - target)[: 2 * n_obs].reshape(-1, 2)
        resid = np.hypot(r2[:, 0], r2[:, 1])
        rms = float(np.sqrt(np.mean(resid[use] ** 2))) if use.any() else 0.0
        keep = resid <= params.sigma * max(rms, 1e-4)
        if np.array_equal(keep, use):
            break
        use = keep
    for k, v in enumerate(visits):
        mine = [r for r, o in enumerate(obs) if k in o[0] and use[r]]
        n_star = sum(1 for r in mine if len(obs[r][0]) == 1)
        theta = float(solution[npar * k + 2]) / scale if npar == 3 else 0.0
        out[v.name] = JointCorrection(
            v.name, float(solution[npar * k]), float(solution[npar * k + 1]), float(np.degrees(theta)),
            visit_centres[k], float(np.sqrt(np.mean(resid[mine] ** 2))) if mine else float("nan"),
            n_star, len(mine) - n_star,
        )
    return out
