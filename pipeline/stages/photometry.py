"""Stage `photometry`: circular-aperture and corrected fluxes in every HST filter.

Reads the newest detect run (its sources, detection image and segmentation) and the HST
mosaics that run detected on. For the detection image and each filter: fluxes in the 7
apertures at the detection positions (no PSF matching, as the release), neighbours masked
by the segmentation; errors from the weight map scaled, per aperture size, to the scatter of
empty apertures (`empty_aperture_scale`: correlated noise, confusion, background residuals),
plus the source's Poisson noise (the mosaic's total EXPTIME as gain); `apcorr_i = flux_auto / flux_aper_i` (detection image,
both over the background the detect run subtracted); per
filter `{f}_tot_corr` from the point-source curve of growth at the circularized Kron radius, and
`corr`, `tot` with errors. Writes `aperture_flux` and `total_correction` rows.

The smooth background of each filter mosaic is estimated with the detection segments (grown by 2
pixels) masked (``background_masks_sources``; False: every pixel, as before): the sources' own
light in the 4" meshes raised it under them, and the 0.7" totals of isolated stars of a 2' mock
were 0.3-1.6% lower (F105W -2.2%, -0.6% with the mask).

``psf_match`` (default None: the release, no PSF matching) names a filter whose PSF every other
filter with a PSF model is convolved to before its apertures are measured (``psf_match=f160w``, as
3D-HST; ``pipeline.psfmatch``); those filters then take the target's ``tot_corr``. Their aperture
errors follow the convolved images' noise through the empty-aperture scaling. The kernels are a
``psf_kernels`` product whose meta lists the matched filters; a filter without a PSF model, or
the target itself, is measured as it is.

``sampling_correction`` (default True) multiplies each filter's aperture fluxes and errors, before
the aperture and total corrections, by the drizzle-sampling factor of the source at its position
(``pipeline.drizzle_psf``): a model of the source (the filter's PSF model convolved with a round
Gaussian of its intrinsic size, from the detection image's ``flux_radius``) is drizzled through
the filter's chips as the mosaic stage drizzled them (the mosaic run's ``hst_exposure_wcs``
products), and the factor is the model's exact aperture flux over its drizzled one. With few
WFC3/IR exposures at pixfrac 0.33 a star's 0.7" flux depends on its sub-pixel position by 4-9%;
the factor takes that out. ``aperture_flux.samp_corr`` records it (``flux`` stays the measured
sum; ``corr = flux * samp_corr * apcorr``). Filters without a PSF model or without the geometry
product (mosaic runs before it existed) are left as they are.

``apcorr_errors`` (default True): ``ecorr`` and ``etot`` also carry the noise of ``apcorr`` (the
detection image's Kron flux over its aperture flux, ``compute.corrected_fluxes``), which the
release's errors leave out. It is common to every filter: on the 2' mock the faint isolated stars'
pulls scatter by 1.48 (NMAD) with the release's errors, but by 0.89 once each star's median pull
over the six filters is removed, and their aperture fluxes over the curve of growth, without
``apcorr``, by 1.09. ``false`` gives the release's ``ecorr = fluxerr * apcorr``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from sqlalchemy import text

from alcsdb.copyload import fetch_columns
from alcsdb.errors import InputError
from alcsdb.measurements import write_apertures, write_total_corrections

from .. import detect as detect_compute
from .. import drizzle_psf, psfmatch
from .. import photometry as compute
from ..sim_psf import effective_psf, mosaic_psf
from ..images import load_image, pixscale_arcsec
from ..runner import Input, require_run, run_products
from .detect import load_mosaics

DEFAULTS = {"subpix": 5, "max_masked_fraction": compute.MAX_MASKED_FRACTION, "background": True,
            "background_masks_sources": True, "psf_match": None, "sampling_correction": True,
            "apcorr_errors": True}


def plan(conn, field, params, input_dir) -> list[Input]:
    det_run = require_run(conn, field, "detect", "photometry")
    inputs = run_products(conn, det_run, ("det_sci", "det_wht", "seg"))
    # the mosaics the detect run read, in the same roles (sci, wht)
    used = dict(conn.execute(text("SELECT product_id, role FROM run_input WHERE run_id = :r"), {"r": det_run}).all())
    runs = conn.execute(text("SELECT DISTINCT run_id FROM product WHERE product_id = ANY(:p)"),
                        {"p": list(used)}).scalars().all()
    mosaics = [dataclasses.replace(i, role=used[i.product_id]) for run in runs for i in run_products(conn, run)
               if i.product_id in used]
    geometry = []
    if params["sampling_correction"]:
        filters = {m.filter for m in mosaics}
        geometry = [i for run in runs for i in run_products(conn, run, ("hst_exposure_wcs",), role="geometry")
                    if i.filter in filters]
    return inputs + mosaics + geometry


def execute(run, field, inputs, params, outdir, progress) -> None:
    det_run = next(i.run_id for i in inputs if i.kind == "seg")
    src = fetch_columns(run.conn, [("source_id", "source_id", "i8"), ("id", "id", "i8"), ("x", "x", "f8"),
                                   ("y", "y", "f8"), ("ra", "ra", "f8"), ("dec", "dec", "f8"),
                                   ("flux_auto", "flux_auto", "f8"), ("kron_rcirc", "kron_rcirc", "f8"),
                                   ("flux_radius", "flux_radius", "f8"), ("fluxerr_auto", "fluxerr_auto", "f8")],
                        "FROM source WHERE run_id = :r ORDER BY id", {"r": det_run})
    by_kind = {i.kind: i for i in inputs}
    image, _, det_wcs = load_image(by_kind["det_sci"].path)
    weight, _, _ = load_image(by_kind["det_wht"].path)
    seg, _, _ = load_image(by_kind["seg"].path)
    seg = seg.astype(np.int32)
    det_scale = pixscale_arcsec(det_wcs)
    mosaics = load_mosaics([i for i in inputs if i.kind in ("hst_sci", "hst_wht")])
    target = _psf_target(params["psf_match"], mosaics)
    matched = {}
    geometry = {i.filter: i.path for i in inputs if i.kind == "hst_exposure_wcs"}
    sizes = _intrinsic_sizes(src["flux_radius"] * det_scale, mosaics, det_scale) if geometry else None

    def measure(sci, wht, wcs, ujy, seg_map, exptime):
        x, y = wcs.all_world2pix(src["ra"], src["dec"], 0)
        return compute.measure_filter(sci, wht, x, y, seg_map, src["id"], pixscale=pixscale_arcsec(wcs),
                                      ujy_per_count=ujy, gain=exptime, background=params["background"],
                                      mask_sources=params["background_masks_sources"], subpix=params["subpix"],
                                      max_masked_fraction=params["max_masked_fraction"])

    progress("detection image apertures")
    det = compute.aperture_photometry(image, weight, src["x"], src["y"], pixscale=det_scale, ujy_per_count=1.0,
                                      seg=seg, subpix=params["subpix"], max_masked_fraction=None, seg_id=src["id"],
                                      background=_detection_background(run.conn, det_run, image, weight, det_scale))
    blocks = {"det": {q: det[q] for q in ("flux", "fluxerr", "flag", "bkg", "mask")}}
    tot_corrs = {}
    for m in mosaics:
        if target is not None and m["filter"] != target["filter"]:
            if psfmatch.has_psf_model(m["filter"]):
                progress(f"{m['filter']} convolved to the {target['filter']} PSF")
                kernel = psfmatch.psf_matching_kernel(m["filter"], target["filter"], round(m["pixscale"], 6),
                                                      round(target["pixscale"], 6))
                m["sci"], bad = psfmatch.convolve_masked(m["sci"], compute.error_and_mask(m["sci"], m["wht"])[1],
                                                         kernel)
                m["wht"] = np.where(bad, 0.0, m["wht"]).astype(np.float32)
                matched[m["filter"]] = kernel
            else:
                progress(f"{m['filter']}: no PSF model, measured without PSF matching (not in psf_kernels)")
        progress(f"{m['filter']} apertures")
        factor = int(round(det_scale / m["pixscale"]))
        seg_map = np.kron(seg, np.ones((factor, factor), dtype=np.int32)) if factor > 1 else seg
        ny, nx = m["sci"].shape
        seg_map = np.pad(seg_map, ((0, max(0, ny - seg_map.shape[0])), (0, max(0, nx - seg_map.shape[1]))))[:ny, :nx]
        phot = measure(m["sci"], m["wht"], m["wcs"], m["ujy"], seg_map, m["header"].get("EXPTIME"))
        block = {q: phot[q] for q in ("flux", "fluxerr", "flag", "bkg", "mask")}
        flux, fluxerr = phot["flux"], phot["fluxerr"]
        if m["filter"] in geometry and psfmatch.has_psf_model(m["filter"]):
            progress(f"{m['filter']} drizzle-sampling factors")
            factors = _sampling_factors(geometry[m["filter"]], m, src, sizes, matched.get(m["filter"]),
                                        params["subpix"], progress)
            flux, fluxerr = flux * factors, fluxerr * factors
            block["samp_corr"] = np.where(np.isfinite(phot["flux"]), factors, np.nan)
        psf_filter = target["filter"] if m["filter"] in matched else m["filter"]
        tot_corr = compute.total_correction(psf_filter, src["kron_rcirc"] * det_scale)
        det_errors = {"fluxerr_auto": src["fluxerr_auto"], "fluxerr_aper_det": det["fluxerr"]} \
            if params["apcorr_errors"] else {}
        corr = compute.corrected_fluxes(flux, fluxerr, src["flux_auto"], det["flux"], tot_corr, **det_errors)
        blocks[m["filter"]] = {**block, **{q: corr[q] for q in ("corr", "ecorr", "tot", "etot")}}
        blocks["det"]["apcorr"] = corr["apcorr"]
        tot_corrs[m["filter"]] = tot_corr
    write_apertures(run, src["source_id"], blocks)
    write_total_corrections(run, src["source_id"], tot_corrs)
    if target is not None:
        _write_kernels(run, field, outdir, target, matched)


def _detection_background(conn, det_run: int, image: np.ndarray, weight: np.ndarray, det_scale: float):
    """The background the detect run subtracted before measuring ``flux_auto`` (its own
    ``back_box_arcsec``, ``back_filter_size`` and ``rescale_weight``), for the detection image's
    apertures: ``apcorr`` then divides two fluxes over the same background. Until session 9 these
    apertures kept the residual sky of the detection image (cluster light, halos), which put the
    faint isolated stars' ``apcorr_2`` anywhere from 0.3 to 7 on the 2' mock."""
    stored = conn.execute(text("SELECT params FROM run WHERE run_id = :r"), {"r": det_run}).scalar_one() or {}
    defaults = detect_compute.DetectParams()
    params = detect_compute.DetectParams(**{k: stored.get(k, getattr(defaults, k))
                                            for k in ("back_box_arcsec", "back_filter_size", "rescale_weight")})
    return detect_compute.detection_background(image, weight, params, det_scale)


def _intrinsic_sizes(r50_arcsec: np.ndarray, mosaics: list[dict], det_scale: float) -> np.ndarray:
    """Each source's intrinsic Gaussian sigma (arcsec) from its detection-image half-light radius,
    less the widest PSF among the filters with a PSF model (on the detection grid): a star comes
    out as a point, a galaxy a little smaller than it is."""
    bands = [m["filter"] for m in mosaics if psfmatch.has_psf_model(m["filter"])]
    if not bands:
        return np.zeros(r50_arcsec.shape)
    psf_r50 = max(drizzle_psf.half_light_radius(mosaic_psf(b, det_scale), det_scale) for b in bands)
    return drizzle_psf.intrinsic_sigma(r50_arcsec, psf_r50)


def _sampling_factors(path, mosaic: dict, src: dict, sizes: np.ndarray, match_kernel, subpix: int,
                      progress) -> np.ndarray:
    """(N, 7) factors of one filter (``pipeline.drizzle_psf.sampling_factors``) at the sources'
    positions on its mosaic, for its apertures, through the chips of its ``hst_exposure_wcs``."""
    chips, pixfrac, kernel = drizzle_psf.read_geometry(path)
    x, y = mosaic["wcs"].all_world2pix(src["ra"], src["dec"], 0)
    scale = mosaic["pixscale"]
    radii = [d / 2 / scale for d in compute.APERTURE_DIAMETERS_ARCSEC]
    pad = 0 if match_kernel is None else match_kernel.shape[0] // 2 + 1
    reach = (int(np.ceil(max(radii))) + 5 + pad) * scale
    psf = effective_psf(mosaic["filter"], scale=drizzle_psf.FINE_SCALE, size_arcsec=2 * reach + 0.5)
    return drizzle_psf.sampling_factors(chips, mosaic["wcs"], x, y, radii, psf=psf, sigma_arcsec=sizes,
                                        pixfrac=pixfrac, kernel=kernel, match_kernel=match_kernel, subpix=subpix,
                                        progress=progress)


def _write_kernels(run, field, outdir, target: dict, kernels: dict) -> None:
    """The matching kernels as a product (`psf_kernels`: one image HDU per convolved filter)."""
    from astropy.io import fits

    hdus = [fits.PrimaryHDU(header=fits.Header([("TARGET", target["filter"], "PSF all filters were matched to")]))]
    for name, kernel in kernels.items():
        hdus.append(fits.ImageHDU(np.asarray(kernel, np.float32), name=name.upper()))
    path = outdir / f"{field.name}_psf_kernels.fits"
    fits.HDUList(hdus).writeto(path, overwrite=True)
    run.register_product(path, "psf_kernels", meta={"target": target["filter"], "matched": sorted(kernels)})


def _psf_target(name: str | None, mosaics: list[dict]) -> dict | None:
    """The mosaic of the ``psf_match`` filter (None when not matching)."""
    if name is None:
        return None
    by_filter = {m["filter"].lower(): m for m in mosaics}
    target = by_filter.get(str(name).lower())
    if target is None:
        raise InputError(f"photometry --param psf_match={name}: no mosaic of that filter "
                         f"(the detect run used {', '.join(sorted(by_filter))})")
    if not psfmatch.has_psf_model(target["filter"]):
        raise InputError(f"photometry --param psf_match={name}: alcsdb has no PSF model of that filter")
    return target
