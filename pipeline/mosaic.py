"""Mosaic stage: release pixel grids, visits, drizzling, and the stage driver.

Pure functions (arrays / astropy objects in, arrays / dataclasses out) plus the readers
of the stage's inputs (:func:`read_flt`, :func:`read_bcd`) and the driver
:func:`build_mosaics`, which writes the mosaic FITS files and returns their metadata.

Conventions (release README "Image Mosaics"):

- grids (:func:`release_grid`): north-up TAN WCS at the field centre; WFC3/IR 0.1"/pix;
  ACS and WFC3/UVIS 0.05"/pix subsampling the IR grid exactly 2x2; IRAC 0.5"/pix, 5x5 IR
  pixels each; pixel corners of the three layers coincide.
- drizzle (:func:`drizzle`): DrizzlePac's C kernel ``drizzlepac.cdriz.tdriz`` (what
  AstroDrizzle calls), with a WCS mapping ``cdriz.DefaultWCSMapping`` from each input's
  (aligned) WCS, distortion included, to the output WCS; ``pixfrac`` 0.33 for HST, 0.2
  for IRAC; inverse-variance weights, for HST from each exposure's background noise (the
  median of its error array: sky, dark and read noise, as AstroDrizzle's IVM weights, not
  the sources' own Poisson noise), for IRAC likewise in the final drizzle (the AOR alignment
  mosaics use the uncertainty images pixel by pixel); masked (DQ != 0)
  pixels weight 0. HST output in electrons/s per output pixel (PHOTFNU/PHOTFLAM/PHOTPLAM in the
  header); IRAC input MJy/sr, output microJansky per output pixel
  (1 MJy/sr = 1e12 uJy/sr times the pixel solid angle); ``wht`` is the inverse variance
  of each output pixel's background noise in the output units (pixel-to-pixel
  correlations ignored; a source's own Poisson noise is added by the photometry).
- pixels are zero-indexed, ``ra, dec = wcs.all_pix2world(x, y, 0)``.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_area
from drizzlepac import cdriz
from drizzlepac import __version__ as drizzlepac_version

from pipeline.align import (
    FIT_LOG_HEADER,
    AlignmentResult,
    AlignParams,
    Fit,
    VisitCatalog,
    apply_fit,
    align_exposures,
    bright_sources,
    catalog_radec,
    combined_reference,
    fit_to_reference,
    isolated,
    isolated_from,
    JointCorrection,
    joint_fine_alignment,
    project_refcat,
    wcs_offset,
)
from pipeline.background import (BackgroundParams, blot_mask, exposure_pedestal, irac_master_background,
                                 mosaic_source_mask, smooth_background)
from pipeline.detect import wcs_pixscale
from pipeline.photometry import error_and_mask
from pipeline.bright_light import bright_light_model
from pipeline.drizzle_psf import ChipGeometry, write_geometry
from pipeline.sampling import sampling_maps, write_sampling
from pipeline.sim_bands import BANDS
from pipeline.sim_psf import mosaic_psf

IR_PIXSCALE = 0.1
"""WFC3/IR release pixel (arcsec)."""
LAYER_FACTORS = {"ir": 1.0, "optical": 0.5, "irac": 5.0}
"""Pixel size of each grid layer in IR pixels (ACS/UVIS 2x2 subsampled, IRAC 5x5 blocks)."""
HST_UNITS = "electrons/s"
IRAC_UNITS = "MJy/sr"
UJY_PER_MJY = 1e12
STERADIAN_PER_DEG2 = (math.pi / 180.0) ** 2

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class GridSpec:
    """The release grid of a field: centre (deg) and the IR layer size ``n_ir`` (pixels
    per side, a multiple of 10 so that every layer has an even size)."""

    ra: float
    dec: float
    n_ir: int

    def scale(self, layer: str) -> float:
        """Pixel scale (arcsec) of a layer: 'ir' 0.1, 'optical' 0.05, 'irac' 0.5."""
        return IR_PIXSCALE * LAYER_FACTORS[layer]

    def shape(self, layer: str) -> tuple[int, int]:
        """(ny, nx) of a layer."""
        n = int(round(self.n_ir / LAYER_FACTORS[layer]))
        return n, n

    @property
    def size_arcmin(self) -> float:
        return self.n_ir * IR_PIXSCALE / 60.0

    def wcs(self, layer: str) -> WCS:
        """North-up (East left) TAN WCS of a layer, tangent point at the grid centre,
        which is the corner shared by the four central pixels of every layer."""
        ny, nx = self.shape(layer)
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [self.ra, self.dec]
        w.wcs.crpix = [nx / 2.0 + 0.5, ny / 2.0 + 0.5]
        s = self.scale(layer) / 3600.0
        w.wcs.cd = np.array([[-s, 0.0], [0.0, s]])
        w.wcs.radesys = "ICRS"
        w.wcs.set()
        w.pixel_shape = (nx, ny)
        return w


def release_grid(ra: float, dec: float, size_arcmin: float) -> GridSpec:
    """Release grid centred on (ra, dec) (deg) covering at least ``size_arcmin`` per side."""
    n_ir = 10 * int(math.ceil(size_arcmin * 60.0 / IR_PIXSCALE / 10.0 - 1e-9))
    return GridSpec(float(ra), float(dec), max(n_ir, 10))


def footprint_slices(
    out_wcs: WCS, wcss: Sequence[WCS], *, pad: int = 4
) -> tuple[slice, slice] | None:
    """Bounding box (numpy ``(slice_y, slice_x)``) on ``out_wcs``'s pixels of the images
    with WCSs ``wcss`` (their edges sampled every ~1/8 side), padded by ``pad`` pixels and
    clipped to ``out_wcs.pixel_shape``; None if they do not overlap it."""
    nx_out, ny_out = out_wcs.pixel_shape
    xs, ys = [], []
    for w in wcss:
        nx, ny = w.pixel_shape
        t = np.linspace(0.0, 1.0, 9)
        ex = np.concatenate([t * nx, np.full(9, nx), t[::-1] * nx, np.zeros(9)]) - 0.5
        ey = np.concatenate([np.zeros(9), t * ny, np.full(9, ny), t[::-1] * ny]) - 0.5
        ox, oy = out_wcs.all_world2pix(*w.all_pix2world(ex, ey, 0), 0)
        xs.append(ox)
        ys.append(oy)
    x, y = np.concatenate(xs), np.concatenate(ys)
    x0 = max(int(np.floor(np.nanmin(x))) - pad, 0)
    x1 = min(int(np.ceil(np.nanmax(x))) + pad + 1, nx_out)
    y0 = max(int(np.floor(np.nanmin(y))) - pad, 0)
    y1 = min(int(np.ceil(np.nanmax(y))) + pad + 1, ny_out)
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


def cutout_wcs(wcs: WCS, slices: tuple[slice, slice]) -> WCS:
    """WCS of the sub-array ``array[slices]`` of an image with WCS ``wcs``."""
    sy, sx = slices
    out = wcs.deepcopy()
    out.wcs.crpix = [wcs.wcs.crpix[0] - sx.start, wcs.wcs.crpix[1] - sy.start]
    out.wcs.set()
    out.pixel_shape = (sx.stop - sx.start, sy.stop - sy.start)
    return out


# --------------------------------------------------------------------------- exposures
@dataclass(frozen=True)
class ExposureInfo:
    """What the stage needs from an exposure's primary header (HST FLT or IRAC BCD).

    name : ROOTNAME (lower case) or the BCD name; filter : lower case ('f160w', 'ch1');
    mjd : mid-exposure MJD; pa : PA_V3 (HST) or PA (IRAC), deg; visit_key : VISIT keyword,
    else ROOTNAME[:6] (HST program + visit), AORKEY for IRAC; target : (RA_TARG, DEC_TARG)
    or the WCS reference point; layer : grid layer of the instrument.
    """

    name: str
    telescope: str
    instrument: str
    detector: str
    filter: str
    exptime: float
    mjd: float
    expstart: float
    expend: float
    pa: float
    visit_key: str | None
    target: tuple[float, float] | None
    layer: str


def grid_layer(instrument: str, detector: str) -> str:
    """Grid layer of an instrument/detector: 'ir' (WFC3/IR), 'irac', else 'optical'."""
    if instrument.upper() == "IRAC":
        return "irac"
    return "ir" if detector.upper() == "IR" else "optical"


def _hst_filter(header: Mapping) -> str:
    names = [str(header.get(k, "")).strip() for k in ("FILTER", "FILTER1", "FILTER2")]
    for n in names:
        if n and not n.upper().startswith("CLEAR") and n.upper() != "N/A":
            return n.lower()
    raise ValueError(f"no filter in header of {header.get('ROOTNAME', '?')}")


def exposure_info(header: Mapping, *, name: str | None = None) -> ExposureInfo:
    """:class:`ExposureInfo` from an HST FLT primary header or an IRAC BCD header."""
    instrument = str(header.get("INSTRUME", "")).strip().upper()
    if instrument == "IRAC":
        exptime = float(header.get("EXPTIME", 0.0))
        start = float(header["MJD_OBS"])
        end = start + exptime / 86400.0
        aorkey = str(int(header["AORKEY"]))
        ra = header.get("RA_REF", header.get("CRVAL1"))
        dec = header.get("DEC_REF", header.get("CRVAL2"))
        return ExposureInfo(
            name=name or f"r{aorkey}-ch{int(header['CHNLNUM'])}-{int(header.get('EXPID', 0)):04d}",
            telescope=str(header.get("TELESCOP", "Spitzer")), instrument="IRAC", detector="IRAC",
            filter=f"ch{int(header['CHNLNUM'])}", exptime=exptime, mjd=0.5 * (start + end),
            expstart=start, expend=end, pa=float(header.get("PA", 0.0)), visit_key=aorkey,
            target=None if ra is None else (float(ra), float(dec)), layer="irac",
        )
    detector = str(header.get("DETECTOR", "")).strip().upper()
    rootname = str(header.get("ROOTNAME", name or "")).strip().lower()
    start, end = float(header["EXPSTART"]), float(header.get("EXPEND", header["EXPSTART"]))
    if "VISIT" in header:
        visit_key = str(header["VISIT"]).strip()
    else:
        visit_key = rootname[:6] or None
    target = None
    if "RA_TARG" in header and "DEC_TARG" in header:
        target = (float(header["RA_TARG"]), float(header["DEC_TARG"]))
    return ExposureInfo(
        name=name or rootname, telescope=str(header.get("TELESCOP", "HST")), instrument=instrument,
        detector=detector, filter=_hst_filter(header), exptime=float(header.get("EXPTIME", 0.0)),
        mjd=0.5 * (start + end), expstart=start, expend=end, pa=float(header.get("PA_V3", 0.0)),
        visit_key=visit_key, target=target, layer=grid_layer(instrument, detector),
    )


@dataclass(frozen=True)
class Exposure:
    """One science array (one chip of an HST exposure, or one IRAC BCD).

    sci, err : float32 image and 1-sigma error in ``units`` ('electrons/s' per pixel for
        HST, 'MJy/sr' for IRAC); mask : True where unusable (DQ != 0, non-finite, err <= 0);
    wcs : the WCS used to drizzle it (header WCS, or the aligned one); ``pixel_shape`` set;
    photometry : PHOTFNU / PHOTFLAM / PHOTPLAM (HST) or FLUXCONV (IRAC) when present;
    path, extver : the file and its SCI extension version (1 for BCDs).
    """

    info: ExposureInfo
    sci: np.ndarray
    err: np.ndarray
    mask: np.ndarray
    wcs: WCS
    units: str
    path: str
    extver: int = 1
    photometry: Mapping[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def pixscale(self) -> float:
        return wcs_pixscale(self.wcs)


def _image_wcs(header: fits.Header, hdul: fits.HDUList | None, shape: tuple[int, int]) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(header, hdul)
    w.pixel_shape = (shape[1], shape[0])
    return w


def read_flt(path: str | Path) -> list[Exposure]:
    """The chips of an HST FLT/FLC file (one :class:`Exposure` per SCI extension), in
    electrons/s (images with BUNIT 'ELECTRONS' are divided by EXPTIME)."""
    path = Path(path)
    out = []
    with fits.open(path) as hdul:
        primary = hdul[0].header
        info = exposure_info(primary)
        extvers = [h.ver for h in hdul if h.name == "SCI"]
        for ver in extvers:
            sci_hdu = hdul["SCI", ver]
            sci = np.asarray(sci_hdu.data, dtype=np.float32)
            err = np.asarray(hdul["ERR", ver].data, dtype=np.float32)
            dq = np.asarray(hdul["DQ", ver].data) if ("DQ", ver) in hdul else np.zeros(sci.shape, np.int16)
            if str(sci_hdu.header.get("BUNIT", "")).strip().upper() == "ELECTRONS":
                sci, err = sci / info.exptime, err / info.exptime
            photometry = {
                k: float(sci_hdu.header.get(k, primary.get(k)))
                for k in ("PHOTFNU", "PHOTFLAM", "PHOTPLAM")
                if sci_hdu.header.get(k, primary.get(k)) is not None
            }
            mask = (dq != 0) | ~np.isfinite(sci) | ~(err > 0)
            out.append(Exposure(
                info=info, sci=sci, err=err, mask=mask, wcs=_image_wcs(sci_hdu.header, hdul, sci.shape),
                units=HST_UNITS, path=str(path), extver=ver, photometry=photometry,
            ))
    return out


def read_bcd(path: str | Path) -> Exposure:
    """An IRAC BCD (MJy/sr) with its ``_cbunc`` uncertainty image."""
    path = Path(path)
    unc_path = path.with_name(path.name.replace("_bcd.fits", "_cbunc.fits"))
    with fits.open(path) as hdul:
        header = hdul[0].header
        sci = np.asarray(hdul[0].data, dtype=np.float32)
        wcs = _image_wcs(header, hdul, sci.shape)
    err = np.asarray(fits.getdata(unc_path), dtype=np.float32)
    mask = ~np.isfinite(sci) | ~(err > 0) | ~np.isfinite(err)
    info = exposure_info(header, name=path.name.replace("_bcd.fits", ""))
    photometry = {"FLUXCONV": float(header["FLUXCONV"])} if "FLUXCONV" in header else {}
    return Exposure(info=info, sci=sci, err=err, mask=mask, wcs=wcs, units=IRAC_UNITS,
                    path=str(path), photometry=photometry)


# --------------------------------------------------------------------------- visits
@dataclass(frozen=True)
class Visit:
    """A visit (HST) or AOR (IRAC): exposures of one instrument/detector/filter taken in
    one target acquisition. ``members`` index the headers given to :func:`group_visits`;
    ``mjd`` is the mean mid-exposure MJD, ``pa`` the first member's position angle."""

    name: str
    instrument: str
    detector: str
    filter: str
    layer: str
    members: tuple[int, ...]
    mjd: float
    pa: float


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def _same_visit(a: ExposureInfo, b: ExposureInfo, max_gap_days: float, max_sep_arcmin: float, max_dpa_deg: float) -> bool:
    if (a.instrument, a.detector, a.filter) != (b.instrument, b.detector, b.filter):
        return False
    if abs(b.mjd - a.mjd) >= max_gap_days:
        return False
    if a.visit_key is not None and b.visit_key is not None:
        return a.visit_key == b.visit_key
    if a.target is None or b.target is None:
        return False
    dra = (a.target[0] - b.target[0]) * math.cos(math.radians(a.target[1]))
    sep_arcmin = 60.0 * math.hypot(dra, a.target[1] - b.target[1])
    return sep_arcmin < max_sep_arcmin and _angle_diff(a.pa, b.pa) < max_dpa_deg


def group_visits(
    headers: Sequence[Mapping | ExposureInfo],
    *,
    max_gap_days: float = 1.0,
    max_sep_arcmin: float = 1.0,
    max_dpa_deg: float = 1.0,
) -> list[Visit]:
    """Group exposures into visits (README "Visits").

    Two exposures share a visit when they have the same instrument, detector and filter,
    are less than ``max_gap_days`` apart (mid-exposure, chained in time order), and either
    both carry a visit key (VISIT keyword, else ROOTNAME[:6]; AORKEY for IRAC) and it is
    the same, or (without keys) their targets are closer than ``max_sep_arcmin`` and their
    position angles differ by less than ``max_dpa_deg``. Several headers of one exposure
    (chips) fall in the same visit. :class:`ExposureInfo` objects may be given instead of
    headers. Visits are returned in time order; names follow grizli,
    ``{rootname[:6]}-{pa:05.1f}-{filter}`` (HST) and ``r{AORKEY}-{ch}`` (IRAC).
    """
    infos = [h if isinstance(h, ExposureInfo) else exposure_info(h) for h in headers]
    groups: list[list[int]] = []
    for i in sorted(range(len(infos)), key=lambda k: infos[k].mjd):
        for members in reversed(groups):
            if _same_visit(infos[members[-1]], infos[i], max_gap_days, max_sep_arcmin, max_dpa_deg):
                members.append(i)
                break
        else:
            groups.append([i])
    visits = []
    for members in groups:
        first = infos[members[0]]
        if first.layer == "irac":
            name = f"r{first.visit_key}-{first.filter}"
        else:
            name = f"{first.name[:6]}-{first.pa % 360.0:05.1f}-{first.filter}"
        visits.append(Visit(
            name=name, instrument=first.instrument, detector=first.detector, filter=first.filter,
            layer=first.layer, members=tuple(members),
            mjd=float(np.mean([infos[m].mjd for m in members])), pa=first.pa,
        ))
    names = [v.name for v in visits]
    return [
        replace(v, name=f"{v.name}-{names[:k].count(v.name) + 1}") if names.count(v.name) > 1 else v
        for k, v in enumerate(visits)
    ]


# --------------------------------------------------------------------------- drizzle
def _pixel_area_sr(wcs: WCS) -> float:
    return float(proj_plane_pixel_area(wcs.celestial)) * STERADIAN_PER_DEG2


def background_error(err: np.ndarray, mask: np.ndarray) -> float:
    """An exposure's background noise (units of ``err``): the median error of its usable
    pixels (``mask`` False), which the sky dominates. Drizzle weights use it instead of the
    pixel errors, which include each source's own Poisson noise."""
    good = ~np.asarray(mask, bool) & np.isfinite(err) & (err > 0)
    return float(np.median(err[good])) if good.any() else float("inf")


def drizzle(
    exposures: Sequence[Exposure],
    grid: GridSpec | WCS,
    *,
    pixfrac: float,
    kernel: str = "square",
    stepsize: int = 10,
    irac_background_weights: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Drizzle exposures onto a release grid layer (or any output WCS with
    ``pixel_shape``) with ``drizzlepac.cdriz.tdriz``.

    Each input pixel value is first put in output flux units per input pixel (electrons/s
    stay; MJy/sr times ``1e12 * Omega_in`` gives uJy) and drizzled with ``scale =
    sqrt(Omega_out / Omega_in)`` (tdriz multiplies values by scale**2), so the output is
    flux per output pixel and a source's summed flux is conserved. Input weights are
    ``1 / (sigma * scale**2)**2`` in the output units (0 for masked pixels), so ``wht``
    (tdriz's summed weight) is the output pixels' inverse variance (correlations ignored).
    For HST ``sigma`` is the exposure's background noise (:func:`background_error`):
    weights with the sources' own Poisson noise (the error array pixel by pixel) bias the
    weighted mean low wherever exposures sample a steep profile at different phases
    (undersampled WFC3/IR stars lost 8-20% of their flux that way). IRAC keeps the pixel
    errors of its uncertainty images unless ``irac_background_weights`` (the stage's final
    IRAC drizzle, :class:`MosaicParams`): they lowered the mock's IRAC star peaks ~3% in the
    weighted mean, while the AOR alignment mosaics were tuned on them.
    tdriz combines inputs as the weighted mean; drizzling visits separately and combining
    them with their ``wht`` gives the same image as drizzling all exposures at once.

    Returns float32 ``(sci, wht)``; pixels without data are 0 in both.
    """
    if isinstance(grid, GridSpec):
        layers = {e.info.layer for e in exposures}
        if len(layers) != 1:
            raise ValueError(f"drizzle: exposures of several grid layers {sorted(layers)}")
        out_wcs = grid.wcs(layers.pop())
    else:
        out_wcs = grid
    nx, ny = out_wcs.pixel_shape
    sci = np.zeros((ny, nx), dtype=np.float32)
    wht = np.zeros((ny, nx), dtype=np.float32)
    ctx = np.zeros((ny, nx), dtype=np.int32)
    area_out = _pixel_area_sr(out_wcs)
    for exp in exposures:
        area_in = _pixel_area_sr(exp.wcs)
        pix_ratio = math.sqrt(area_out / area_in)
        if exp.units == IRAC_UNITS:
            to_flux = UJY_PER_MJY * area_in
        elif exp.units == HST_UNITS:
            to_flux = 1.0
        else:
            raise ValueError(f"drizzle: unknown units {exp.units!r}")
        good = ~exp.mask
        data = np.where(good, exp.sci * to_flux, 0.0).astype(np.float32)
        sigma = exp.err if exp.units == IRAC_UNITS and not irac_background_weights else \
            background_error(exp.err, exp.mask)
        sigma_out = np.asarray(sigma, dtype=np.float64) * to_flux * pix_ratio**2
        weight = np.zeros(data.shape, dtype=np.float32)
        np.divide(1.0, np.broadcast_to(sigma_out, data.shape) ** 2, out=weight, where=good, casting="unsafe")
        drizzle_array(data, weight, exp.wcs, out_wcs, sci, wht, ctx, pix_ratio=pix_ratio, pixfrac=pixfrac,
                      kernel=kernel, stepsize=stepsize)
    return sci, wht


@contextlib.contextmanager
def c_output_silenced(fds: tuple[int, ...] = (1, 2)):
    """File descriptors ``fds`` (stdout and stderr) sent to /dev/null, for C code that prints:
    drizzlepac's C drizzle prints a line per call to stderr, which would flood a CLI user's
    terminal and fill the pipe of a parent process that reads it only at the end (the photometry
    stage drizzles every source's model)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def drizzle_array(data: np.ndarray, weight: np.ndarray, in_wcs: WCS, out_wcs: WCS, sci: np.ndarray, wht: np.ndarray,
                  ctx: np.ndarray, *, pix_ratio: float, pixfrac: float, kernel: str, stepsize: int = 10) -> None:
    """Add one float32 array (output flux units per input pixel) with its float32 weights to the
    output ``sci``/``wht``/``ctx`` arrays of ``out_wcs`` (``cdriz.tdriz``, weighted mean; ``pix_ratio``
    = output / input pixel side). The call :func:`drizzle` makes per exposure."""
    in_ny, in_nx = data.shape
    mapping = cdriz.DefaultWCSMapping(in_wcs, out_wcs, in_nx, in_ny, stepsize)
    with c_output_silenced():
        cdriz.tdriz(
            data, weight, sci, wht, ctx, 1, 0, 1, 1, in_ny, pix_ratio, 1.0, 1.0, "center",
            pixfrac, kernel, "cps", 1.0, 1.0, "INDEF", 0, 0, 1, mapping,
        )


def _set_card(hdr: fits.Header, key: str, value, comment: str) -> None:
    """Set a card, dropping the comment when the card would exceed 80 characters."""
    width = max(len(str(value)) + 2, 20) if isinstance(value, str) else 20
    hdr[key] = (value, comment) if 11 + width + 3 + len(comment) <= 80 else value


def mosaic_header(
    out_wcs: WCS,
    exposures: Sequence[Exposure],
    *,
    pixfrac: float,
    kernel: str,
    bunit: str,
    sci_name: str = "",
    wht_name: str = "",
) -> fits.Header:
    """FITS header of a filter mosaic recording its inputs as AstroDrizzle does.

    WCS of the grid; TELESCOP, INSTRUME, DETECTOR, FILTER (upper case), EXPTIME (sum over
    distinct exposures, s), EXPSTART/EXPEND (MJD), NEXPOSUR, BUNIT, PHOTFNU/PHOTFLAM/PHOTPLAM
    (HST: the median of the inputs') or PIXAR_SR (IRAC); NDRIZIM (number of drizzled
    chips) and for each chip ``Dnnn`` + VER, GEOM, DATA (``file[SCI,n]``), DEXP and EXPT
    (exposure time), OUDA, OUWE, MASK, WTSC, KERN, PIXF, COEF, OUUN, FVAL, SCAL (output
    pixel, arcsec).
    """
    if not exposures:
        raise ValueError("mosaic_header needs at least one exposure")
    hdr = fits.Header()
    first = exposures[0].info
    distinct = {e.info.name: e.info for e in exposures}
    hdr["TELESCOP"] = first.telescope
    hdr["INSTRUME"] = first.instrument
    hdr["DETECTOR"] = first.detector
    hdr["FILTER"] = (first.filter.upper() if first.layer != "irac" else first.filter, "filter / IRAC channel")
    hdr["EXPTIME"] = (float(sum(i.exptime for i in distinct.values())), "total exposure time (s)")
    hdr["EXPSTART"] = (min(i.expstart for i in distinct.values()), "first exposure start (MJD)")
    hdr["EXPEND"] = (max(i.expend for i in distinct.values()), "last exposure end (MJD)")
    hdr["NEXPOSUR"] = (len(distinct), "number of exposures")
    hdr["BUNIT"] = bunit
    for key in ("PHOTFNU", "PHOTFLAM", "PHOTPLAM"):
        values = [e.photometry[key] for e in exposures if key in e.photometry]
        if values:
            hdr[key] = float(np.median(values))
    if first.layer == "irac":
        hdr["PIXAR_SR"] = (_pixel_area_sr(out_wcs), "output pixel solid angle (sr)")
    hdr.update(out_wcs.to_header(relax=False))
    scale = wcs_pixscale(out_wcs)
    hdr["NDRIZIM"] = (len(exposures), "Drizzle, number of images drizzled onto output")
    for k, e in enumerate(exposures, start=1):
        cards = {
            "VER": (f"cdriz drizzlepac {drizzlepac_version}", "Drizzle, task version"),
            "GEOM": ("wcs", "Drizzle, source of geometric information"),
            "DATA": (f"{Path(e.path).name}[SCI,{e.extver}]", "Drizzle, input data image"),
            "DEXP": (e.info.exptime, "Drizzle, input image exposure time (s)"),
            "EXPT": (e.info.exptime, "Drizzle, input image exposure time (s)"),
            "OUDA": (sci_name, "Drizzle, output data image"),
            "OUWE": (wht_name, "Drizzle, output weighting image"),
            "MASK": ("DQ", "Drizzle, input weighting image"),
            "WTSC": (1.0, "Drizzle, weighting factor for input image"),
            "KERN": (kernel, "Drizzle, form of weight distribution kernel"),
            "PIXF": (pixfrac, "Drizzle, linear size of drop"),
            "COEF": ("SIP", "Drizzle, source of coefficients"),
            "OUUN": ("cps", "Drizzle, units of output image - counts or cps"),
            "FVAL": ("0", "Drizzle, fill value for zero weight output pix"),
            "SCAL": (scale, "Drizzle, pixel size (arcsec) of output image"),
        }
        for key, (value, comment) in cards.items():
            _set_card(hdr, f"D{k:03d}{key}", value, comment)
    return hdr


# --------------------------------------------------------------------------- stage driver
@dataclass(frozen=True)
class MosaicParams:
    """Parameters of :func:`build_mosaics` (recorded by the caller as run parameters).

    pixfrac_hst, pixfrac_irac, kernel : final drizzle (README: 0.33, 0.2, square);
    irac_background_weights : the final IRAC drizzle weights each frame by its background
        noise (median uncertainty), as HST, not by the pixel errors with the sources' Poisson
        noise (which biased the mock's IRAC star peaks ~3% low);
    prelim_pixfrac : drizzle of the preliminary visit / AOR mosaics used for alignment;
    max_visit_gap_days, max_visit_sep_arcmin, max_visit_dpa_deg : :func:`group_visits`;
    align, background : :class:`~pipeline.align.AlignParams`,
        :class:`~pipeline.background.BackgroundParams`.
    """

    pixfrac_hst: float = 0.33
    pixfrac_irac: float = 0.2
    irac_background_weights: bool = True
    kernel: str = "square"
    prelim_pixfrac: float = 1.0
    max_visit_gap_days: float = 1.0
    max_visit_sep_arcmin: float = 1.0
    max_visit_dpa_deg: float = 1.0
    align: AlignParams = AlignParams()
    background: BackgroundParams = BackgroundParams()

    def as_dict(self) -> dict:
        """Plain nested dict (for the run's parameter record)."""
        return asdict(self)


@dataclass(frozen=True)
class MosaicProduct:
    """A written filter mosaic: ``sci`` (electrons/s or uJy per pixel) and ``wht``
    (inverse variance) FITS files, and what went into it."""

    filter: str
    instrument: str
    detector: str
    layer: str
    sci_path: Path
    wht_path: Path
    n_exposures: int
    exptime: float
    visits: tuple[str, ...]
    sampling_path: Path | None = None
    """IRAC: the drizzle sampling maps (``pipeline.sampling``)."""
    geometry_path: Path | None = None
    """HST: the drizzled chips' aligned WCS, weights and masks (``pipeline.drizzle_psf``)."""


@dataclass(frozen=True)
class ExposureRecord:
    """One input exposure (HST exposure or IRAC BCD) with its alignment. ``mjd`` is the
    mid-exposure MJD, ``expstart`` the start; ``pa`` PA_V3 (HST) or PA (IRAC), deg; ``sky``
    the pedestal subtracted (HST, electrons/s per native pixel, first chip) or the median
    of the AOR's master background (IRAC, MJy/sr)."""

    name: str
    path: str
    instrument: str
    detector: str
    filter: str
    visit: str
    exptime: float
    mjd: float
    expstart: float
    pa: float
    sky: float
    alignment: AlignmentResult


@dataclass(frozen=True)
class AorRecord:
    """One IRAC AOR and channel: frames, master background level, alignment."""

    name: str
    aorkey: int
    channel: str
    n_frames: int
    exptime: float
    mjd: float
    pa: float
    background_median: float
    alignment: AlignmentResult


@dataclass
class MosaicResult:
    """What :func:`build_mosaics` wrote and measured: products, per-exposure, per-visit
    and per-AOR alignment, a text log per visit/AOR, the parameters used, wall times (s)
    per step, and the median smooth background subtracted from each HST visit (electrons/s
    per output pixel)."""

    output_dir: Path
    products: list[MosaicProduct]
    exposures: list[ExposureRecord]
    visits: list[AlignmentResult]
    aors: list[AorRecord]
    logs: dict[str, str]
    params: dict
    timings: dict[str, float]
    backgrounds: dict[str, float]


@dataclass
class _VisitState:
    visit: Visit
    chips: list[Exposure]
    header_wcs: list[WCS]
    wcs: list[WCS]
    internal: list[Fit]
    mosaic_wcs: WCS | None = None
    catalog: Table | None = None
    fit: Fit | None = None
    joint: JointCorrection | None = None
    final_mosaic_wcs: WCS | None = None


def _noop(_: str) -> None:
    return None


def _sub_grid(grid: GridSpec, layer: str, wcss: Sequence[WCS]) -> WCS | None:
    full = grid.wcs(layer)
    slices = footprint_slices(full, wcss)
    return None if slices is None else cutout_wcs(full, slices)


def _mosaic_catalog(chips: Sequence[Exposure], out_wcs: WCS, pixfrac: float, kernel: str, params: AlignParams, name: str) -> Table:
    sci, wht = drizzle(chips, out_wcs, pixfrac=pixfrac, kernel=kernel)
    err, nocov = error_and_mask(sci, wht)
    return bright_sources(sci, err, nocov, pixscale=wcs_pixscale(out_wcs), params=params, name=name)


def _fit_with_fallback(wcs: WCS, catalog: Table, reference: Table, *, fitgeom: str, searchrad: float,
                       params: AlignParams, name: str) -> Fit:
    """Fit with ``fitgeom``; if that fails (e.g. too few matches for a rotation), a shift."""
    fit = fit_to_reference(wcs, catalog, reference, fitgeom=fitgeom, searchrad_arcsec=searchrad,
                           params=params, name=name)
    if not fit.ok and fitgeom != "shift":
        fit = fit_to_reference(wcs, catalog, reference, fitgeom="shift", searchrad_arcsec=searchrad,
                               params=params, name=name)
    return fit


def _align_hst(
    chips: Sequence[Exposure], grid: GridSpec, refcat: Table, params: MosaicParams, progress: Progress = _noop
) -> tuple[list[_VisitState], dict[str, str]]:
    """Steps 1-3 of the alignment for all HST chips; returns per-visit states (aligned
    chip WCSs, fits) and a text log per visit."""
    ap = params.align
    visits = group_visits([c.info for c in chips], max_gap_days=params.max_visit_gap_days,
                          max_sep_arcmin=params.max_visit_sep_arcmin, max_dpa_deg=params.max_visit_dpa_deg)
    states: list[_VisitState] = []
    for visit in visits:
        vchips = [chips[i] for i in visit.members]
        progress(f"align {visit.name}: {len(vchips)} chips")
        cats = [bright_sources(c.sci, c.err, c.mask, pixscale=c.pixscale, params=ap, name=c.name) for c in vchips]
        internal = align_exposures([c.wcs for c in vchips], cats, [c.name for c in vchips], params=ap)
        state = _VisitState(visit, list(vchips), [c.wcs for c in vchips], [f.wcs for f in internal], internal)
        state.mosaic_wcs = _sub_grid(grid, visit.layer, state.wcs)
        if state.mosaic_wcs is None:
            continue
        aligned = [replace(c, wcs=w) for c, w in zip(vchips, state.wcs)]
        state.catalog = _mosaic_catalog(aligned, state.mosaic_wcs, params.prelim_pixfrac, params.kernel, ap, visit.name)
        fit = _fit_with_fallback(state.mosaic_wcs, state.catalog, project_refcat(refcat, visit.mjd),
                                 fitgeom=ap.absolute_fitgeom, searchrad=ap.absolute_searchrad_arcsec,
                                 params=ap, name=visit.name)
        state.fit = fit
        state.wcs = apply_fit(state.wcs, fit)
        states.append(state)
    progress(f"joint fine alignment of {len(states)} visits")
    joint = joint_fine_alignment(
        [VisitCatalog(s.visit.name, s.fit.wcs, s.catalog, s.visit.mjd) for s in states], refcat, params=ap
    )
    logs = {}
    for s in states:
        s.joint = joint[s.visit.name]
        s.wcs = [s.joint.apply(w) for w in s.wcs]
        s.final_mosaic_wcs = s.joint.apply(s.fit.wcs)
        lines = [f"# visit {s.visit.name}  mjd {s.visit.mjd:.5f}  pa {s.visit.pa:.2f}", "# exposure shifts", FIT_LOG_HEADER]
        lines += [f.summary() for f in s.internal]
        lines += ["# visit mosaic vs reference stars at the visit epoch", FIT_LOG_HEADER, s.fit.summary()]
        lines += ["# joint fine alignment (all visits and reference stars)", s.joint.summary()]
        logs[s.visit.name] = "\n".join(lines) + "\n"
    return states, logs


@dataclass
class _Stack:
    """Running inverse-variance combination of visit mosaics on one full grid layer."""

    layer: str
    shape: tuple[int, int]
    chips: list[Exposure] = field(default_factory=list)
    visits: list[str] = field(default_factory=list)
    num: np.ndarray | None = None
    den: np.ndarray | None = None

    def add(self, slices: tuple[slice, slice], sci: np.ndarray, wht: np.ndarray) -> None:
        if self.num is None:
            self.num = np.zeros(self.shape, dtype=np.float64)
            self.den = np.zeros(self.shape, dtype=np.float64)
        self.num[slices] += wht.astype(np.float64) * sci
        self.den[slices] += wht

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        sci = np.divide(self.num, self.den, out=np.zeros(self.shape), where=self.den > 0)
        return sci.astype(np.float32), self.den.astype(np.float32)


def _bright_light(drizzled: Sequence[tuple], grid: GridSpec, bp: BackgroundParams,
                  progress: Progress) -> dict[str, np.ndarray]:
    """Per filter of a layer in ``bp.bright_model_layers``: the models of its bright sources
    (``pipeline.bright_light``) fitted on the stack of its visits (pedestals only), on the
    filter's full grid layer. Filters without a PSF model are left out."""
    if bp.bright_model_mag is None:
        return {}
    out = {}
    for filt in sorted({d[0].visit.filter for d in drizzled}):
        mine = [d for d in drizzled if d[0].visit.filter == filt]
        layer = mine[0][1]
        photfnu = mine[0][3][0].photometry.get("PHOTFNU")
        if layer not in bp.bright_model_layers or filt not in BANDS or not photfnu:
            continue
        stack = _Stack(layer, grid.shape(layer))
        for _, _, slices, _, sci, wht in mine:
            stack.add(slices, sci, wht)
        sci, wht = stack.result()
        scale = grid.scale(layer)
        out[filt], fits_ = bright_light_model(
            sci, wht, mosaic_psf(filt, scale), pixscale=scale, to_ujy=float(photfnu) * 1e6,
            mag_limit=bp.bright_model_mag, max_sources=bp.bright_model_max, stamp_arcsec=bp.bright_model_stamp_arcsec)
        progress(f"{filt}: {len(fits_)} bright sources modelled for the sky")
    return out


def _drizzle_hst(states: Sequence[_VisitState], grid: GridSpec, params: MosaicParams,
                 progress: Progress) -> tuple[dict[str, _Stack], dict[str, float]]:
    """Final drizzle of each visit (aligned WCS) on its part of the release grid, minus
    its smooth background, combined per filter. In the layers of ``bright_model_layers`` the
    background is estimated on the visit minus the models of its filter's bright sources
    (``_bright_light``), which the mosaic keeps; those visits are held until their filter's
    models are fitted, the others are combined as they are drizzled.
    Also returns each visit's median background (output units)."""
    bp = params.background
    stacks: dict[str, _Stack] = {}
    levels: dict[str, float] = {}

    def combine(s: _VisitState, layer: str, slices, chips, sci, wht, light: np.ndarray | None) -> None:
        base = sci if light is None else sci - light[slices]
        background = smooth_background(base, wht, pixscale=grid.scale(layer), params=bp)
        levels[s.visit.name] = float(np.median(background[wht > 0])) if np.any(wht > 0) else float("nan")
        stack = stacks.setdefault(s.visit.filter, _Stack(layer, grid.shape(layer)))
        stack.add(slices, sci - background, wht)
        stack.chips.extend(chips)
        stack.visits.append(s.visit.name)

    held = []
    for s in states:
        layer = s.visit.layer
        full = grid.wcs(layer)
        slices = footprint_slices(full, s.wcs)
        if slices is None:
            continue
        progress(f"drizzle {s.visit.name}")
        chips = [replace(c, wcs=w) for c, w in zip(s.chips, s.wcs)]
        sci, wht = drizzle(chips, cutout_wcs(full, slices), pixfrac=params.pixfrac_hst, kernel=params.kernel)
        if bp.bright_model_mag is not None and layer in bp.bright_model_layers:
            held.append((s, layer, slices, chips, sci, wht))
        else:
            combine(s, layer, slices, chips, sci, wht, None)
    light = _bright_light(held, grid, bp, progress)
    for s, layer, slices, chips, sci, wht in held:
        combine(s, layer, slices, chips, sci, wht, light.get(s.visit.filter))
    return stacks, levels


def _write_product(stack: _Stack, grid: GridSpec, filt: str, output_dir: Path, root: str, pixfrac: float, kernel: str) -> MosaicProduct:
    kind = "drc" if stack.layer == "optical" else "drz"
    sci_path = output_dir / f"{root}-{filt}_{kind}_sci.fits"
    wht_path = output_dir / f"{root}-{filt}_{kind}_wht.fits"
    bunit = "uJy" if stack.layer == "irac" else "ELECTRONS/S"
    header = mosaic_header(grid.wcs(stack.layer), stack.chips, pixfrac=pixfrac, kernel=kernel, bunit=bunit,
                           sci_name=sci_path.name, wht_name=wht_path.name)
    sci, wht = stack.result()
    fits.PrimaryHDU(sci, header=header).writeto(sci_path, overwrite=True)
    header["BUNIT"] = f"({bunit})**-2"
    fits.PrimaryHDU(wht, header=header).writeto(wht_path, overwrite=True)
    first = stack.chips[0].info
    geometry_path = None
    if stack.layer != "irac":
        geometry_path = write_geometry(
            output_dir / f"{root}-{filt}_wcs.fits",
            [ChipGeometry(f"{c.name}[{c.extver}]", c.wcs, background_error(c.err, c.mask), c.mask)
             for c in stack.chips], pixfrac=pixfrac, kernel=kernel)
    return MosaicProduct(
        filter=filt, instrument=first.instrument, detector=first.detector, layer=stack.layer,
        sci_path=sci_path, wht_path=wht_path, n_exposures=len({c.name for c in stack.chips}),
        exptime=float(header["EXPTIME"]), visits=tuple(stack.visits), geometry_path=geometry_path,
    )


def _hst_reference(products: Sequence[MosaicProduct], params: AlignParams) -> Table:
    """``RA``, ``DEC``, ``flux`` of the bright sources of one HST mosaic (the IR filter with
    the longest total exposure, else the longest optical one), for the IRAC alignment."""
    if not products:
        return Table({"RA": np.zeros(0), "DEC": np.zeros(0), "flux": np.zeros(0)})
    best = max(products, key=lambda p: (p.layer == "ir", p.exptime))
    sci = fits.getdata(best.sci_path)
    wht = fits.getdata(best.wht_path)
    with fits.open(best.sci_path) as hdul:
        wcs = _image_wcs(hdul[0].header, None, sci.shape)
    err, nocov = error_and_mask(sci, wht)
    return catalog_radec(bright_sources(sci, err, nocov, pixscale=wcs_pixscale(wcs), params=params), wcs)


def irac_reference(refcat: Table, hst_sources: Table, mjd: float, params: AlignParams) -> Table:
    """Reference of an AOR's shift: the isolated HST sources (:func:`~pipeline.align.isolated`)
    away from the reference stars, plus the reference stars at the AOR epoch that have no
    other HST source nearby (``RA``, ``DEC``)."""
    stars = project_refcat(refcat, mjd)
    stars = stars[isolated_from(stars, hst_sources, radius_arcsec=params.irac_isolation_arcsec,
                                exclusion_arcsec=params.star_exclusion_arcsec)]
    hst = hst_sources[isolated(hst_sources, radius_arcsec=params.irac_isolation_arcsec,
                               flux_ratio=params.irac_isolation_flux_ratio)]
    return combined_reference(stars, [hst], exclusion_arcsec=params.star_exclusion_arcsec)


def _alignment(name: str, original: WCS, final: WCS, *, rms: float, n_matched: int, status: str,
               internal: Fit | None = None) -> AlignmentResult:
    off = wcs_offset(original, final)
    return AlignmentResult(
        name=name, dx=off.dx, dy=off.dy, rotation=off.rotation, scale=off.scale,
        rms=rms, n_matched=n_matched,
        rms_internal=internal.rms if internal is not None and internal.ok else float("nan"),
        n_internal=internal.n_matched if internal is not None and internal.ok else 0,
        status=status,
    )


def _hst_alignment(name: str, original: WCS, final: WCS, state: _VisitState, internal: Fit | None = None) -> AlignmentResult:
    """HST: rms and matches of the joint fit (star + visit-pair matches), status of the
    visit's fit to the reference stars."""
    joint = state.joint
    return _alignment(name, original, final, rms=joint.rms, n_matched=joint.n_stars + joint.n_pairs,
                      status=state.fit.status, internal=internal)


def _sibling_shift(entry: tuple, done: Sequence[tuple], logs: dict[str, str], min_matches: int = 10) -> tuple:
    """An AOR channel whose shift fit failed, or matched fewer than ``min_matches`` sources,
    takes the fitted shift of the other channel of the same AOR if that one matched more (both
    arrays observe with the same spacecraft pointing, so they share its error): on the 2'
    mock a ch2 fit found too few matches and kept the injected 0.11"; on the 0.5' mock one
    matched 4 sources and missed by 0.11"."""
    aor, originals, aligned, bg, fit, sub = entry
    if fit.ok and fit.n_matched >= min_matches:
        return entry
    key = originals[0].info.visit_key
    mine = fit.n_matched if fit.ok else 0
    sibling = next((e for e in done if e[4].ok and e[4].n_matched > mine and e[0].name != aor.name
                    and e[1][0].info.visit_key == key), None)
    if sibling is None or sibling[4].fitgeom != "shift":
        return entry
    other = sibling[4]
    # a shift in pixels of one cutout of the IRAC grid is the same shift in any other cutout
    moved = replace(other, name=aor.name, ref_wcs=sub, wcs=apply_fit([sub], other)[0],
                    status=f"SUCCESS (shift of {sibling[0].name}; own fit {fit.status})")
    aligned = apply_fit([f.wcs for f in originals], other)
    logs[aor.name] += f"{moved.summary()}\n"
    return aor, originals, aligned, bg, moved, sub


def _irac(frames: Sequence[Exposure], grid: GridSpec, refcat: Table, hst_reference: Table,
          params: MosaicParams, progress: Progress
          ) -> tuple[dict[str, _Stack], list[AorRecord], list[ExposureRecord], dict[str, str], dict]:
    """IRAC: master background and pedestals, per-AOR shift, drizzle per channel; then (with
    ``background.irac_mosaic_mask``) the backgrounds again with the sources of that channel
    mosaic masked in every frame, and the final drizzle with its sampling maps per channel
    (``pipeline.sampling``)."""
    ap = params.align
    bp = params.background
    ap_irac = replace(ap, sky_box_arcsec=ap.irac_sky_box_arcsec, tolerance_arcsec=ap.irac_tolerance_arcsec)
    aors = group_visits([f.info for f in frames], max_gap_days=params.max_visit_gap_days)
    full = grid.wcs("irac")
    done = []  # (aor, originals, aligned WCS, background, fit)
    logs = {}
    for aor in aors:
        originals = [frames[i] for i in aor.members]
        progress(f"IRAC {aor.name}: {len(originals)} frames")
        bg = irac_master_background([f.sci for f in originals], [f.err for f in originals],
                                    [f.mask for f in originals], pixscale=originals[0].pixscale, params=bp)
        members = [replace(f, sci=f.sci - bg.frame(k)) for k, f in enumerate(originals)]
        slices = footprint_slices(full, [f.wcs for f in members])
        if slices is None:
            continue
        sub = cutout_wcs(full, slices)
        catalog = _mosaic_catalog(members, sub, params.prelim_pixfrac, params.kernel, ap_irac, aor.name)
        reference = irac_reference(refcat, hst_reference, aor.mjd, ap)
        fit = fit_to_reference(sub, catalog, reference, fitgeom=ap.irac_fitgeom,
                               searchrad_arcsec=ap.irac_searchrad_arcsec, params=ap_irac,
                               separation_arcsec=ap.irac_separation_arcsec, name=aor.name)
        aligned = apply_fit([f.wcs for f in members], fit)
        logs[aor.name] = f"# AOR {aor.name}  mjd {aor.mjd:.5f}  pa {aor.pa:.2f}\n{FIT_LOG_HEADER}\n{fit.summary()}\n"
        done.append((aor, originals, aligned, bg, fit, sub))
    for i, entry in enumerate(done):
        done[i] = _sibling_shift(entry, done, logs, ap.irac_min_matches)

    def chips(entry, background) -> list[Exposure]:
        _, originals, aligned, _, _, _ = entry
        return [replace(f, sci=f.sci - background.frame(k), wcs=w) for k, (f, w) in enumerate(zip(originals, aligned))]

    def stack_all() -> dict[str, _Stack]:
        out: dict[str, _Stack] = {}
        for entry in done:
            aor = entry[0]
            stack = out.setdefault(aor.filter, _Stack("irac", grid.shape("irac")))
            stack.chips.extend(chips(entry, entry[3]))
            stack.visits.append(aor.name)
        for filt, stack in out.items():
            progress(f"drizzle IRAC {filt}: {len(stack.chips)} frames")
            sci, wht = drizzle(stack.chips, full, pixfrac=params.pixfrac_irac, kernel=params.kernel,
                               irac_background_weights=params.irac_background_weights)
            stack.add((slice(None), slice(None)), sci, wht)
        return out

    stacks = stack_all()
    if bp.irac_mosaic_mask and done:
        masks = {filt: mosaic_source_mask(*stack.result(), pixscale=grid.scale("irac"), params=bp)
                 for filt, stack in stacks.items()}
        for i, (aor, originals, aligned, _, fit, sub) in enumerate(done):
            progress(f"IRAC {aor.name}: background with the mosaic's sources masked")
            known = [blot_mask(masks[aor.filter], full, w, f.sci.shape, dilate_pix=bp.irac_mosaic_dilate_arcsec / f.pixscale)
                     for f, w in zip(originals, aligned)]
            bg = irac_master_background([f.sci for f in originals], [f.err for f in originals],
                                        [f.mask for f in originals], pixscale=originals[0].pixscale, params=bp,
                                        source_masks=known)
            done[i] = (aor, originals, aligned, bg, fit, sub)
        stacks = stack_all()
    samplings = {}
    for filt in stacks:
        progress(f"IRAC {filt}: drizzle sampling maps")
        groups = [(e[0].name, int(e[1][0].info.visit_key), e[0].pa, chips(e, e[3])) for e in done if e[0].filter == filt]
        samplings[filt] = sampling_maps(groups, full, drizzle, pixfrac=params.pixfrac_irac, kernel=params.kernel,
                                        irac_background_weights=params.irac_background_weights)

    aor_records, exp_records = [], []
    for aor, originals, aligned, bg, fit, sub in done:
        level = bg.level
        aor_records.append(AorRecord(
            name=aor.name, aorkey=int(originals[0].info.visit_key), channel=aor.filter, n_frames=len(originals),
            exptime=float(sum(f.info.exptime for f in originals)), mjd=aor.mjd, pa=aor.pa,
            background_median=level,
            alignment=_alignment(aor.name, sub, fit.wcs, rms=fit.rms, n_matched=fit.n_matched, status=fit.status),
        ))
        for f, w in zip(originals, aligned):
            exp_records.append(ExposureRecord(
                name=f.name, path=f.path, instrument="IRAC", detector="IRAC", filter=aor.filter,
                visit=aor.name, exptime=f.info.exptime, mjd=f.info.mjd, expstart=f.info.expstart, pa=f.info.pa,
                sky=level,
                alignment=_alignment(f.name, f.wcs, w, rms=fit.rms, n_matched=fit.n_matched, status=fit.status),
            ))
    return stacks, aor_records, exp_records, logs, samplings


def build_mosaics(
    input_dir: str | Path,
    grid: GridSpec,
    params: MosaicParams = MosaicParams(),
    progress: Progress | None = None,
    *,
    output_dir: str | Path | None = None,
    root: str = "field",
) -> MosaicResult:
    """Run the mosaic stage on an input directory and write the filter mosaics.

    input_dir : ``hst/*_flt.fits`` (or ``_flc``), ``irac/r{AOR}/ch{N}/bcd/*_bcd.fits`` with
        their ``_cbunc.fits``, ``refcat.fits`` (GAIA-like: ra, dec, pmra, pmdec, ...).
    grid : :func:`release_grid` of the field; output_dir : default ``input_dir/mosaic``;
    root : file name prefix (``{root}-{filter}_drz_sci.fits``; ``_drc_`` for ACS/UVIS).

    HST: pedestal sky of each exposure subtracted, visits (:func:`group_visits`), steps 1-3
    of ``pipeline.align``, final drizzle of each visit (pixfrac 0.33) minus its smooth
    background, inverse-variance combination per
    filter. IRAC: per-AOR master background, per-AOR shift against the HST mosaic's sources
    and the reference stars, drizzle per channel (pixfrac 0.2, uJy per pixel).
    ``progress`` receives one message per step.
    """
    progress = progress or _noop
    input_dir = Path(input_dir)
    output_dir = Path(output_dir) if output_dir is not None else input_dir / "mosaic"
    output_dir.mkdir(parents=True, exist_ok=True)
    refcat = Table.read(input_dir / "refcat.fits")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    hst_files = sorted((input_dir / "hst").glob("*_fl[tc].fits"))
    chips, pedestals = [], {}
    for chip in (c for path in hst_files for c in read_flt(path)):
        pedestals[(chip.name, chip.extver)] = exposure_pedestal(
            chip.sci, chip.err, chip.mask, pixscale=chip.pixscale, params=params.background)
        chips.append(replace(chip, sci=chip.sci - pedestals[(chip.name, chip.extver)]))
    progress(f"{len(hst_files)} HST exposures, pedestal sky subtracted")
    states, logs = _align_hst(chips, grid, refcat, params, progress) if chips else ([], {})
    timings["align_hst"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    stacks, backgrounds = _drizzle_hst(states, grid, params, progress)
    products = [
        _write_product(stack, grid, filt, output_dir, root, params.pixfrac_hst, params.kernel)
        for filt, stack in stacks.items()
    ]
    timings["drizzle_hst"] = time.perf_counter() - t1

    exposures, visits = [], []
    for s in states:
        visits.append(_hst_alignment(s.visit.name, s.mosaic_wcs, s.final_mosaic_wcs, s))
        for chip, header_wcs, final, internal in zip(s.chips, s.header_wcs, s.wcs, s.internal):
            if chip.extver != min(c.extver for c in s.chips if c.name == chip.name):
                continue
            exposures.append(ExposureRecord(
                name=chip.name, path=chip.path, instrument=chip.info.instrument, detector=chip.info.detector,
                filter=chip.info.filter, visit=s.visit.name, exptime=chip.info.exptime, mjd=chip.info.mjd,
                expstart=chip.info.expstart, pa=chip.info.pa, sky=pedestals[(chip.name, chip.extver)],
                alignment=_hst_alignment(chip.name, header_wcs, final, s, internal),
            ))

    t2 = time.perf_counter()
    bcd_files = sorted((input_dir / "irac").glob("r*/ch*/bcd/*_bcd.fits"))
    aors: list[AorRecord] = []
    if bcd_files:
        frames = [read_bcd(p) for p in bcd_files]
        hst_reference = _hst_reference(products, params.align)
        stacks, aors, irac_exposures, irac_logs, samplings = _irac(frames, grid, refcat, hst_reference, params,
                                                                   progress)
        exposures.extend(irac_exposures)
        logs.update(irac_logs)
        for filt, stack in stacks.items():
            product = _write_product(stack, grid, filt, output_dir, root, params.pixfrac_irac, params.kernel)
            path = write_sampling(output_dir / f"{root}-{filt}_sampling.fits", samplings[filt],
                                  grid.wcs("irac").to_header(), filt)
            products.append(replace(product, sampling_path=path))
    timings["irac"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    for name, text in logs.items():
        (output_dir / f"{name}_wcs.log").write_text(text)
    return MosaicResult(output_dir, products, exposures, visits, aors, logs, params.as_dict(), timings, backgrounds)
