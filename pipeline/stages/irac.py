"""Stage `irac`: IRAC model photometry of the detected sources (golfir's method, `pipeline.irac`).

Reads the newest detect run (its sources, `det_sci` in uJy per pixel, `det_wht`, `seg`) and the
IRAC mosaics (`irac_sci` in uJy per 0.5" pixel, `irac_wht`) of the mosaic run that detect run
used, with that run's `aor` and `bcd` rows. Per channel (`channel` = ch1, ch2 or both):

- the HST model image is the detection image minus a residual smooth sky (sep, sources masked;
  models are normalised segments, so a pedestal would widen them) and the segmentation is grown
  by golfir's watershed (`pipeline.irac.watershed_segmentation`);
- at each patch centre the IRAC PSF is turned (about its reference pixel, the source position in
  golfir's PSF images) to the position angle of every AOR covering it and averaged with the
  AORs' exposure time there (golfir's per-position PSF), and the HST-to-IRAC
  kernel is matched from the PSF of the HST model image to it. That image is the detection image,
  an inverse-variance, f-nu weighted mean of the ACS and WFC3/IR mosaics, so its PSF is the same
  mean of the bands' PSFs (``hst_psf = "detection"``, `detection_psf`: each band's effective PSF
  model of `pipeline.sim_psf`, fitted to the real encircled-energy curves, weighted by the median
  weight of its mosaic in uJy^-2, i.e. for a flat f-nu source). The PSFs of the ACS bands hold
  less light in their halos than F160W's: matched from the F160W PSF alone, an ACS-dominated
  model's IRAC image is 6-7% of its peak off (``hst_psf = "f160w"`` or any modelled band selects
  one band; ``"f105w_star"`` the F105W star of `hff-cutouts/f105w_psf.fits.gz`, the former
  stand-in, 7% off for F160W). ``hst_psf_radius_arcsec`` (default 1.5; null keeps the whole
  PSF) cuts that PSF at a radius: the model cutouts are segment-masked, so they lack the PSF
  halo beyond their segment, which a kernel matched from the full PSF deconvolves as if it were
  there (models too narrow, fluxes low: on the 2' mock the cut raises the medians from -4.1% /
  -4.1% to -1.7% / -2.9%; golfir's HST PSF, a 3"-wide star cutout, is such a cut PSF);
- with `drizzle_sampling` (default true) and the mosaic run's `irac_sampling` maps, each model
  pixel is the sum over AORs of the AOR's share of that pixel times its model under that AOR's
  PSF alone, taken at the mean position of the input pixel centres the drizzle put there
  (`pipeline.sampling`); mosaics without the maps (ingested release mosaics) use the averaged PSF;
- `pipeline.irac.fit_field` fits every patch (`n_proc` processes; on the dask cluster when the
  stage runs as a dask task, `pipeline.distributed.patch_executor`).

Writes `irac_flux` rows (flux, err in uJy; nexp, exptime from the BCD footprints covering the
source; patch; bright; flag = `IracFlag` bits; model_norm = the HST flux of the source's model,
its segment of the model image, so flux / model_norm is its IRAC-to-HST colour) and, per channel, the products
`{field}-ch{N}_model.fits` (kind `irac_model`: HDUs MODEL, RESIDUAL, BACKGROUND, uJy per IRAC
pixel on the mosaic's grid) and `{field}-ch{N}_components.fits` (kind `irac_components`: tables
SOURCES, the per-source fit, and PATCHES, the patch boxes, fitted HST-to-IRAC shifts and model blur, and error
model). The
PSF files are reference data, not products: `plan` records their names and sha256 in the run
parameters (`reference_files`), so a changed PSF file makes the stage run again.
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from sqlalchemy import text

from alcsdb import config
from alcsdb.copyload import fetch_columns
from alcsdb.errors import InputError
from alcsdb.measurements import filter_ids, write_irac
from alcsdb.provenance import file_sha256

from .. import irac as compute
from ..distributed import patch_executor
from ..images import block_to_grid, load_image, pixscale_arcsec
from ..irac_kernel import resample_psf, to_centre
from ..photometry import error_and_mask, estimate_background, ujy_per_count
from ..runner import Input, require_run, run_products
from ..sampling import SamplingMaps, read_sampling

CHANNELS = ("ch1", "ch2")
HST_PSF = ("hff-cutouts", "f105w_psf.fits.gz")
HST_PSF_SCALE = 0.06
"""arcsec per pixel of the HST PSF star (its header's CD matrix)."""
IRAC_PSF_SCALE = 0.1
"""arcsec per pixel of golfir's IRAC PSFs (``PIXASEC``)."""


def _json_value(value):
    return list(value) if isinstance(value, tuple) else value


DEFAULTS = {
    **{k: _json_value(v) for k, v in dataclasses.asdict(compute.IracParams()).items()},
    "channel": "both",
    "n_proc": 1,
    "watershed": True,
    "watershed_smooth_pix": 5.0,
    "watershed_min_sn": 1.0,
    "hst_background_box_arcsec": 32.0,
    "hst_psf": "detection",
    "hst_psf_radius_arcsec": 1.5,
    "drizzle_sampling": True,
}


def irac_params(params: dict) -> compute.IracParams:
    """The `IracParams` part of the stage parameters (JSON lists back to tuples)."""
    fields = {f.name for f in dataclasses.fields(compute.IracParams)}
    return compute.IracParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()
                                 if k in fields})


def channels(params: dict) -> tuple[str, ...]:
    choice = str(params["channel"]).lower()
    if choice == "both":
        return CHANNELS
    if choice not in CHANNELS:
        raise InputError(f"--param channel={params['channel']!r}: choose ch1, ch2 or both")
    return (choice,)


def psf_files(chans: tuple[str, ...], hst_psf: str = "detection") -> dict[str, tuple[str, ...]]:
    """Reference PSFs by role: one IRAC PSF per channel and, for ``hst_psf = "f105w_star"``, the
    HST star (shared-data parts)."""
    irac = {f"irac_psf_{ch}": ("psf", f"irac_{ch}_warm_psf.fits") for ch in chans}
    return {"hst_psf": HST_PSF, **irac} if hst_psf == "f105w_star" else irac


def check_hst_psf(value: str) -> str:
    from ..sim_bands import BANDS

    value = str(value).lower()
    if value in ("detection", "f105w_star") or (value in BANDS and BANDS[value].is_hst):
        return value
    raise InputError(f"--param hst_psf={value!r}: choose detection, f105w_star or an HST band with a PSF model "
                     f"({', '.join(b for b in BANDS if BANDS[b].is_hst)})")


def mosaic_run_of(conn, det_run: int) -> int | None:
    """The run that made the mosaics a detect run read (None if it read none)."""
    return conn.execute(text(
        "SELECT p.run_id FROM run_input ri JOIN product p USING (product_id) WHERE ri.run_id = :r "
        "AND p.kind IN ('hst_sci', 'hst_wht') ORDER BY p.run_id DESC LIMIT 1"), {"r": det_run}).scalar()


def plan(conn, field, params, input_dir) -> list[Input]:
    chans = channels(params)
    det_run = require_run(conn, field, "detect", "irac")
    det = run_products(conn, det_run, ("det_sci", "det_wht", "seg"))
    if {i.kind for i in det} != {"det_sci", "det_wht", "seg"}:
        raise InputError(f"detect run {det_run} of {field.name} lacks det_sci/det_wht/seg products")
    mosaic_run = mosaic_run_of(conn, det_run) or require_run(conn, field, "mosaic", "irac")
    irac = [i for i in run_products(conn, mosaic_run, ("irac_sci", "irac_wht")) if i.filter in chans]
    for ch in chans:
        if {i.kind for i in irac if i.filter == ch} != {"irac_sci", "irac_wht"}:
            raise InputError(f"mosaic run {mosaic_run} of {field.name} has no {ch} mosaic (irac_sci + irac_wht): "
                             f"run with --param channel=... for the channels it has")
    if params.get("drizzle_sampling", True):
        irac += [i for i in run_products(conn, mosaic_run, ("irac_sampling",)) if i.filter in chans]
    params["hst_psf"] = check_hst_psf(params.get("hst_psf", "detection"))
    params["reference_files"] = {role: {"file": "/".join(parts), "sha256": file_sha256(config.shared_path(*parts))}
                                 for role, parts in psf_files(chans, params["hst_psf"]).items()}
    hst = []
    if params["hst_psf"] == "detection":
        det_mosaic_run = mosaic_run_of(conn, det_run)
        if det_mosaic_run is None:
            raise InputError(f"detect run {det_run} of {field.name} read no HST mosaics: the detection image's PSF "
                             f"is unknown (use --param hst_psf=f160w)")
        hst = [dataclasses.replace(i, role=f"{i.kind}_{i.filter}")
               for i in run_products(conn, det_mosaic_run, ("hst_sci", "hst_wht"))]
    return det + [dataclasses.replace(i, role=f"{i.kind}_{i.filter}") for i in irac] + hst


# ----------------------------------------------------------------------------- pure helpers
def hst_model_inputs(image: np.ndarray, weight: np.ndarray, seg: np.ndarray, ids: np.ndarray,
                     xpeak: np.ndarray, ypeak: np.ndarray, *, pixscale: float, box_arcsec: float,
                     watershed: bool, smooth_pix: float, min_sn: float) -> tuple[np.ndarray, np.ndarray]:
    """(HST model image, segmentation) for the IRAC models.

    ``image`` (uJy per pixel) minus its smooth sky (sep mesh of ``box_arcsec``, at most the image
    size, with the segments and uncovered pixels masked), 0 where ``weight`` is 0; the
    segmentation grown by golfir's watershed when ``watershed`` (its significance uses ``weight``
    rescaled to the measured sky rms, as detection does; ``smooth_pix``, ``min_sn`` as in
    ``watershed_segmentation``).
    """
    err, nocov = error_and_mask(image, weight)
    box = min(box_arcsec, max(image.shape) * pixscale)
    bkg = estimate_background(image, err, nocov | (seg > 0), pixscale=pixscale, box_arcsec=box)
    model = np.where(nocov, 0.0, image - bkg.level)
    if not watershed:
        return model, seg
    scaled = np.where(nocov, 0.0, weight / bkg.err_scale ** 2)
    grown = compute.watershed_segmentation(model, scaled, seg, ids, xpeak, ypeak, smooth_pix=smooth_pix,
                                           min_sn=min_sn)
    return model, grown


def band_psf(band: str, pixscale: float) -> np.ndarray:
    """The PSF of a mosaic of HST ``band`` on a ``pixscale`` grid (``pipeline.sim_psf.mosaic_psf``:
    the band's effective PSF model averaged over the output pixel); odd-sized, centred, unit sum."""
    from ..sim_psf import mosaic_psf

    return mosaic_psf(band, pixscale)


def detection_weights(mosaics: dict[str, tuple[np.ndarray, float, float]], pixscale: float) -> dict[str, float]:
    """Weight of each band in the detection image for a flat f-nu source: per band (wht, PHOTFNU,
    mosaic pixel scale), the median over covered pixels of its weight on the detection grid
    (``block_to_grid``, as `pipeline.detect`) in uJy^-2 (``wht / ujy_per_count**2``)."""
    out = {}
    for band, (wht, photfnu, scale) in mosaics.items():
        factor = int(round(pixscale / scale))
        _, w = block_to_grid(np.zeros_like(wht), wht, factor)
        good = w[(w > 0) & np.isfinite(w)]
        out[band] = float(np.median(good)) / ujy_per_count(photfnu=photfnu) ** 2 if good.size else 0.0
    return out


def detection_psf(weights: dict[str, float], pixscale: float) -> np.ndarray:
    """PSF of the detection image: the ``weights``-weighted mean of the bands' mosaic PSFs
    (``band_psf``). Bands without a PSF model are left out (and named by ``InputError`` when
    none has one)."""
    from ..sim_bands import BANDS

    known = {b: w for b, w in weights.items() if b in BANDS and BANDS[b].is_hst and w > 0}
    if not known:
        raise InputError(f"no PSF model for the detection bands {sorted(weights)}: use --param hst_psf=f160w")
    total = sum(known.values())
    return sum(w / total * band_psf(b, pixscale) for b, w in known.items())


def truncate_psf(psf: np.ndarray, radius_pix: float) -> np.ndarray:
    """``psf`` set to 0 beyond ``radius_pix`` of its centre pixel (n//2, n//2), unit sum."""
    yy, xx = np.indices(psf.shape)
    out = np.where(np.hypot(yy - psf.shape[0] // 2, xx - psf.shape[1] // 2) <= radius_pix, psf, 0.0)
    return out / out.sum()


def grid_orientation(wcs: WCS) -> float:
    """Angle (deg) of a celestial WCS's +y axis east of north (0 for a north-up grid)."""
    cd = wcs.pixel_scale_matrix
    return float(np.degrees(np.arctan2(cd[0, 1], cd[1, 1])))


def _tangent(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection (radians) about (ra0, dec0), all in degrees in."""
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    return np.cos(d) * np.sin(a - a0) / cosc, (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc


def footprint_cover(ra: np.ndarray, dec: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """(n_points, n_frames) True where a point lies inside a frame's footprint.

    ``corners``: (n_frames, 4, 2) [ra, dec] in degrees, the quadrilateral in order around it
    (``WCS.calc_footprint``); points and corners are projected on the tangent plane at the
    points' mean position (safe across RA = 0 for fields much smaller than a hemisphere).
    """
    ra, dec = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    corners = np.asarray(corners, float).reshape(-1, 4, 2)
    if corners.shape[0] == 0 or ra.size == 0:
        return np.zeros((ra.size, corners.shape[0]), dtype=bool)
    ra0 = float(np.degrees(np.arctan2(np.sin(np.radians(ra)).mean(), np.cos(np.radians(ra)).mean())))
    dec0 = float(np.mean(dec))
    px, py = _tangent(ra, dec, ra0, dec0)
    cx, cy = _tangent(corners[..., 0], corners[..., 1], ra0, dec0)
    ex, ey = np.roll(cx, -1, axis=1) - cx, np.roll(cy, -1, axis=1) - cy          # (nf, 4) edges
    cross = ex[None] * (py[:, None, None] - cy[None]) - ey[None] * (px[:, None, None] - cx[None])
    good = np.isfinite(corners).all(axis=(1, 2))
    return ((cross >= 0).all(axis=2) | (cross <= 0).all(axis=2)) & good[None, :]


def coverage(ra: np.ndarray, dec: np.ndarray, corners: np.ndarray, exptime: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Number of frames covering each position and their summed exposure time (s)."""
    inside = footprint_cover(ra, dec, corners)
    return inside.sum(axis=1).astype(np.int64), inside.astype(float) @ np.nan_to_num(np.asarray(exptime, float))


@dataclasses.dataclass(frozen=True)
class AorFrames:
    """The frames of one channel: per AOR the array position angle (deg, east of north, of the
    detector's +y axis), per frame its AOR index, footprint corners (n, 4, 2) and exptime (s)."""

    pa_deg: np.ndarray
    aor_index: np.ndarray
    corners: np.ndarray
    exptime: np.ndarray


class KernelAtPosition:
    """The HST-to-IRAC matching kernel and the IRAC PSF (both on the HST grid of ``out_scale``
    arcsec/pixel; the PSFs given at ``irac_psf_scale`` and ``hst_psf_scale``) at an IRAC mosaic
    position (zero-indexed pixel of ``irac_wcs``): the PSF averaged over the AORs covering it, each
    turned about the PSF's reference pixel ``irac_psf_reference`` (x, y; the source position in the
    PSF image, default the centre pixel) to its angle on the grid and weighted by its exposure time
    there (``position_psf``), then moved so that the reference pixel is the centre (``to_centre``,
    not recentred on the core). Positions no frame covers use every AOR weighted by its total
    exposure time. Results are cached per distinct weight set (rounded
    to 1%), so a field with few AOR combinations builds few kernels."""

    def __init__(self, irac_psf: np.ndarray, hst_psf: np.ndarray, frames: AorFrames, irac_wcs: WCS, *,
                 out_scale: float, irac_psf_scale: float = IRAC_PSF_SCALE, hst_psf_scale: float = HST_PSF_SCALE,
                 irac_psf_reference: tuple[float, float] | None = None):
        self.irac_psf, self.hst_psf = irac_psf, hst_psf
        self.reference = (tuple(float(v) for v in irac_psf_reference) if irac_psf_reference is not None
                          else (float(irac_psf.shape[1] // 2), float(irac_psf.shape[0] // 2)))
        self.out_scale, self.irac_psf_scale, self.hst_psf_scale = out_scale, irac_psf_scale, hst_psf_scale
        self.frames, self.wcs = frames, irac_wcs
        self.angles = frames.pa_deg - grid_orientation(irac_wcs)
        self._cached = lru_cache(maxsize=None)(self._build)

    def weights(self, x: float, y: float) -> np.ndarray:
        ra, dec = self.wcs.all_pix2world([x], [y], 0)
        inside = footprint_cover(ra, dec, self.frames.corners)[0]
        n_aor = len(self.angles)
        exptime = np.nan_to_num(self.frames.exptime)
        w = np.bincount(self.frames.aor_index[inside], weights=exptime[inside], minlength=n_aor)
        if not w.sum() > 0:
            w = np.bincount(self.frames.aor_index, weights=exptime, minlength=n_aor)
        if not w.sum() > 0:
            w = np.ones(n_aor)
        return w / w.sum()

    def _build(self, key: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
        w = np.array(key)
        use = w > 0
        psf = to_centre(compute.position_psf(self.irac_psf, self.angles[use], w[use], self.reference),
                        self.reference)
        kernel = compute.matching_kernel(self.hst_psf, self.hst_psf_scale, psf, self.irac_psf_scale,
                                         out_scale=self.out_scale, recenter_target=False)
        on_grid = resample_psf(psf, self.irac_psf_scale, self.out_scale)
        return kernel, on_grid

    def aor(self, pa_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """The matching kernel and the IRAC PSF (HST grid) under one AOR's PSF alone (array angle
        ``pa_deg``, as ``aor.pa_deg``)."""
        angle = pa_deg - grid_orientation(self.wcs)
        psf = to_centre(compute.position_psf(self.irac_psf, [angle], [1.0], self.reference), self.reference)
        kernel = compute.matching_kernel(self.hst_psf, self.hst_psf_scale, psf, self.irac_psf_scale,
                                         out_scale=self.out_scale, recenter_target=False)
        return kernel, resample_psf(psf, self.irac_psf_scale, self.out_scale)

    def _at(self, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
        return self._cached(tuple(np.round(self.weights(x, y), 2).tolist()))

    def kernel(self, x: float, y: float) -> np.ndarray:
        return self._at(x, y)[0]

    def psf(self, x: float, y: float) -> np.ndarray:
        return self._at(x, y)[1]


def read_sampling_product(path: Path, shape: tuple[int, int]) -> SamplingMaps:
    """The mosaic run's sampling maps of one channel (``pipeline.sampling``), checked against the
    mosaic's shape; ``InputError`` naming the file otherwise."""
    try:
        maps = read_sampling(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable drizzle sampling maps ({exc})") from exc
    if maps.maps.shape[2:] != tuple(shape):
        raise InputError(f"{path}: sampling maps of shape {maps.maps.shape[2:]} for a mosaic of {tuple(shape)}")
    return maps


def image_header(path: Path) -> fits.Header:
    """Primary header updated with the first 2-D image HDU's header (as ``load_image``), no data read."""
    with fits.open(path) as hdul:
        header = hdul[0].header.copy()
        hdu = next((h for h in hdul if h.is_image and h.header.get("NAXIS") == 2), None)
        if hdu is not None and hdu is not hdul[0]:
            header.update(hdu.header)
    return header


def load_hst_psf(path: Path) -> np.ndarray:
    """The HST PSF star, its sky (median of the border pixels) subtracted."""
    psf = np.asarray(fits.getdata(path), dtype=float)
    border = np.concatenate([psf[0], psf[-1], psf[:, 0], psf[:, -1]])
    return psf - np.median(border)


def load_irac_psf(path: Path) -> np.ndarray:
    psf = np.asarray(fits.getdata(path), dtype=float)
    return psf / psf.sum()


def irac_psf_reference(path: Path) -> tuple[float, float]:
    """Zero-indexed (x, y) of the source in a golfir IRAC PSF image: ``CRPIX - 1`` from its header,
    else golfir's rotation centre ``shape / 2 - 1``."""
    header = fits.getheader(path)
    default = (header["NAXIS1"] / 2 - 1, header["NAXIS2"] / 2 - 1)
    return (float(header.get("CRPIX1", default[0] + 1)) - 1, float(header.get("CRPIX2", default[1] + 1)) - 1)


def segment_fluxes(image: np.ndarray, seg: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Sum of ``image`` over each id's segment: the HST flux of its IRAC model (before the
    matching kernel, whose sum is 1, and the unit-sum normalisation of
    ``irac_models.source_models``); NaN where that sum is not positive (no model)."""
    ids = np.asarray(ids, dtype=np.int64)
    sums = np.bincount(seg.ravel(), weights=np.nan_to_num(image).ravel(), minlength=int(ids.max(initial=0)) + 1)
    out = sums[ids]
    return np.where(out > 0, out, np.nan)


def bright_flag(flag: np.ndarray) -> np.ndarray:
    return ((np.asarray(flag) & int(compute.IracFlag.BRIGHT)) != 0).astype(np.int64)


# ----------------------------------------------------------------------------- database side
def aor_frames(conn, mosaic_run: int, channel: int) -> AorFrames:
    aors = conn.execute(text(
        "SELECT a.aor_id, a.pa_deg, (SELECT degrees(atan2(avg(sin(radians(b.theta))), avg(cos(radians(b.theta))))) "
        "FROM bcd b WHERE b.aor_id = a.aor_id) AS theta FROM aor a WHERE a.run_id = :r AND a.channel = :c "
        "ORDER BY a.aor_id"), {"r": mosaic_run, "c": channel}).all()
    if not aors:
        raise InputError(f"mosaic run {mosaic_run} has no ch{channel} AOR rows: the IRAC PSF angles are unknown")
    index = {aor_id: k for k, (aor_id, _, _) in enumerate(aors)}
    pa = np.array([p if p is not None else (t if t is not None else np.nan) for _, p, t in aors], dtype=float)
    if not np.isfinite(pa).all():
        raise InputError(f"mosaic run {mosaic_run}: ch{channel} AORs without a position angle")
    rows = conn.execute(text("SELECT aor_id, corners, exptime FROM bcd WHERE aor_id = ANY(:a) ORDER BY aor_id, seq"),
                        {"a": list(index)}).all()
    corners = np.array([c if c is not None else np.full((4, 2), np.nan) for _, c, _ in rows], float).reshape(-1, 4, 2)
    return AorFrames(pa, np.array([index[a] for a, _, _ in rows], dtype=np.int64), corners,
                     np.array([t if t is not None else np.nan for _, _, t in rows], float))


def write_model_products(run, field_name: str, ch: str, filter_id: int, outdir: Path, wcs: WCS,
                         result: compute.FieldResult, block: dict[str, np.ndarray]) -> None:
    header = wcs.to_header()
    header["BUNIT"] = "uJy"
    images = [fits.ImageHDU(np.asarray(a, np.float32), header=header, name=name)
              for name, a in (("MODEL", result.model_image), ("RESIDUAL", result.residual_image),
                              ("BACKGROUND", result.background_image))]
    primary = fits.PrimaryHDU()
    primary.header["FILTER"], primary.header["RUN_ID"] = ch, run.run_id
    model_path = outdir / f"{field_name}-{ch}_model.fits"
    fits.HDUList([primary, *images]).writeto(model_path, overwrite=True)
    run.register_product(model_path, "irac_model", filter_id=filter_id)
    sources = Table({"id": result.id, **block})
    if result.err_factor is not None:
        sources["err_factor"] = result.err_factor
    sources["flux"].unit = sources["err"].unit = "uJy"
    boxes = result.grid.boxes
    patches = Table({"patch": [b.index for b in boxes], "x0": [b.x0 for b in boxes], "y0": [b.y0 for b in boxes],
                     "nx": [b.nx for b in boxes], "ny": [b.ny for b in boxes],
                     "shift_x": result.shifts[:, 0], "shift_y": result.shifts[:, 1],
                     "blur_arcsec": np.sqrt(result.shifts[:, 2]) * pixscale_arcsec(wcs),
                     "err_scale": result.error_model[:, 0], "model_error": result.error_model[:, 1]})
    patches.meta["COMMENT"] = ["x0, y0, nx, ny: IRAC mosaic pixels (zero-indexed); shift: fitted HST-to-IRAC "
                               "model shift, IRAC pixels; blur_arcsec: sigma of the fitted Gaussian blur of the "
                               "models (the mosaic PSF's excess width over the reference PSF); "
                               "err_scale, model_error: pixel variance "
                               "err_scale^2/wht + (model_error * source model)^2 of the final fit"]
    hdus = [primary.copy()]
    for name, table in (("SOURCES", sources), ("PATCHES", patches)):
        hdu = fits.table_to_hdu(table)
        hdu.name = name
        hdus.append(hdu)
    comp_path = outdir / f"{field_name}-{ch}_components.fits"
    fits.HDUList(hdus).writeto(comp_path, overwrite=True)
    run.register_product(comp_path, "irac_components", filter_id=filter_id)


def execute(run, field, inputs, params, outdir, progress) -> None:
    by_role = {i.role: i for i in inputs}
    det_run = by_role["seg"].run_id
    mosaic_run = next(i.run_id for i in inputs if i.kind == "irac_sci")
    src = fetch_columns(run.conn, [("source_id", "source_id", "i8"), ("id", "id", "i8"), ("x", "x", "f8"),
                                   ("y", "y", "f8"), ("ra", "ra", "f8"), ("dec", "dec", "f8"),
                                   ("mag_auto", "mag_auto", "f8"), ("flux_radius", "flux_radius", "f8"),
                                   ("xpeak", "coalesce(xpeak, round(x))", "i8"),
                                   ("ypeak", "coalesce(ypeak, round(y))", "i8")],
                        "FROM source WHERE run_id = :r ORDER BY id", {"r": det_run})
    image, _, hst_wcs = load_image(by_role["det_sci"].path)
    weight, _, _ = load_image(by_role["det_wht"].path)
    seg, _, _ = load_image(by_role["seg"].path)
    hst_scale = pixscale_arcsec(hst_wcs)
    progress(f"HST model image and segmentation ({len(src['id'])} sources)")
    model_image, model_seg = hst_model_inputs(
        image, weight, seg.astype(np.int32), src["id"], src["xpeak"], src["ypeak"], pixscale=hst_scale,
        box_arcsec=params["hst_background_box_arcsec"], watershed=params["watershed"],
        smooth_pix=params["watershed_smooth_pix"], min_sn=params["watershed_min_sn"])
    sources = compute.SourceTable(src["id"], src["x"], src["y"], src["mag_auto"], src["flux_radius"] * hst_scale)
    refs = params["reference_files"]
    choice = params.get("hst_psf", "detection")
    if choice == "f105w_star":
        hst_psf, hst_psf_scale = load_hst_psf(config.shared_path(*refs["hst_psf"]["file"].split("/"))), HST_PSF_SCALE
    elif choice == "detection":
        mosaics = {}
        for item in inputs:
            if item.kind == "hst_wht":
                wht, _, wcs = load_image(item.path)
                photfnu = image_header(by_role[f"hst_sci_{item.filter}"].path).get("PHOTFNU")
                if photfnu is None:
                    raise InputError(f"{by_role[f'hst_sci_{item.filter}'].path}: no PHOTFNU")
                mosaics[item.filter] = (wht, float(photfnu), pixscale_arcsec(wcs))
        weights = detection_weights(mosaics, hst_scale)
        progress("HST PSF: detection-image mean of " + ", ".join(f"{b} {w / sum(weights.values()):.2f}"
                                                                  for b, w in weights.items()))
        hst_psf, hst_psf_scale = detection_psf(weights, hst_scale), hst_scale
    else:
        hst_psf, hst_psf_scale = band_psf(choice, hst_scale), hst_scale
    if params.get("hst_psf_radius_arcsec") is not None:
        hst_psf = truncate_psf(hst_psf, float(params["hst_psf_radius_arcsec"]) / hst_psf_scale)
    fit_params = irac_params(params)
    model_norm = segment_fluxes(model_image, model_seg, src["id"])
    fids = filter_ids(run.conn, list(channels(params)))
    blocks = {}
    for ch in channels(params):
        irac, _, irac_wcs = load_image(by_role[f"irac_sci_{ch}"].path)
        irac_wht, _, _ = load_image(by_role[f"irac_wht_{ch}"].path)
        number = int(ch[2:])
        frames = aor_frames(run.conn, mosaic_run, number)
        psf_path = config.shared_path(*refs[f"irac_psf_{ch}"]["file"].split("/"))
        psfs = KernelAtPosition(load_irac_psf(psf_path), hst_psf, frames, irac_wcs, out_scale=hst_scale,
                                hst_psf_scale=hst_psf_scale, irac_psf_reference=irac_psf_reference(psf_path))
        geometry = compute.IracGeometry.from_wcs(hst_wcs, irac_wcs)
        sampling = None
        if f"irac_sampling_{ch}" in by_role:
            maps = read_sampling_product(by_role[f"irac_sampling_{ch}"].path, irac.shape)
            per_aor = [psfs.aor(pa) for pa in maps.pa_deg]
            sampling = compute.AorSampling([k for k, _ in per_aor], [p for _, p in per_aor], maps)
            progress(f"{ch}: models follow the drizzle's sampling of {len(maps.names)} AORs")
        progress(f"{ch}: fitting {irac.shape[1]}x{irac.shape[0]} IRAC pixels, {len(frames.pa_deg)} AORs")
        with patch_executor() as executor:
            result = compute.fit_field(model_image, model_seg, sources, irac, irac_wht, geometry, psfs.kernel,
                                       psfs.psf, fit_params, irac_scale=pixscale_arcsec(irac_wcs),
                                       n_proc=int(params["n_proc"]), executor=executor, sampling=sampling)
        nexp, exptime = coverage(src["ra"], src["dec"], frames.corners, frames.exptime)
        blocks[number] = {"flux": result.flux, "err": result.err, "nexp": nexp, "exptime": exptime,
                          "patch": result.patch.astype(np.int64), "bright": bright_flag(result.flag),
                          "flag": result.flag.astype(np.int64), "model_norm": model_norm}
        good = np.isfinite(result.flux)
        progress(f"{ch}: {int(good.sum())} of {len(good)} sources measured, {len(result.grid.boxes)} patches")
        write_model_products(run, field.name, ch, fids[ch], outdir, irac_wcs, result, blocks[number])
    write_irac(run, src["source_id"], blocks)

