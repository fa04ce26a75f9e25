"""Stage `detect`: detection image from the HST mosaics, sep detection, `source` rows.

Reads the newest mosaic run's HST science/weight mosaics; ACS mosaics (0.05") are summed
2x2 onto the WFC3/IR grid (0.1") they subsample; the detection image is their
inverse-variance, f-nu weighted combination (`pipeline.detect.detection_image`). Writes
`source` rows and the products `det_sci`, `det_wht` and `seg` (same grid).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from alcsdb import columns as rc
from alcsdb.healpix import hpx29
from alcsdb.measurements import write_sources
from alcsdb.schema import SOURCE_FLOAT_COLUMNS, SOURCE_INT_COLUMNS

from .. import detect as compute
from ..images import block_to_grid, load_image, pixscale_arcsec, save_image
from ..photometry import ujy_per_count
from ..runner import Input, require_run, run_products

DEFAULTS = {k: v for k, v in dataclasses.asdict(compute.DetectParams()).items() if k != "pixscale"}
DEFAULTS["diameters"] = list(DEFAULTS["diameters"])
DEFAULTS["filter_kernel"] = "f160w_psf"
"""The release's matched filter: the F160W PSF (here the WFC3/IR F160W model of ``pipeline.sim_psf``,
fitted to the real encircled-energy curve), flipped and cut to 11 x 11 detection pixels."""
DEFAULTS["highpass_arcsec"] = 1.5
"""Not the release's (it extracted on the 4"-background image): sources are extracted after a 1.5"
running median is removed (BCG and intracluster light; `pipeline.detect.highpass_level`), which
took the completeness of a 2' mock cluster field from 76.5% to 93.0% (seeds 1 and 2; 91.4% and
90.7% with the 2" window used until session 8; benchmarks/hst_accuracy.py);
``--param highpass_arcsec=null`` restores the release's detection."""


def detect_params(params: dict, pixscale: float) -> compute.DetectParams:
    """`DetectParams` from the stage's parameters: ``filter_kernel`` may name a PSF model
    (``"f160w_psf"``: :func:`pipeline.detect.psf_kernel` of that band's effective PSF at the
    detection ``pixscale``), be None (a Gaussian of the F160W FWHM) or hold the kernel's rows."""
    params = dict(params)
    kernel = params.get("filter_kernel")
    if isinstance(kernel, str):
        from ..sim_psf import effective_psf

        band = kernel.removesuffix("_psf")
        params["filter_kernel"] = compute.psf_kernel(effective_psf(band, scale=0.02, size_arcsec=3.0),
                                                     psf_pixscale=0.02, pixscale=pixscale)
    return compute.DetectParams(**params)


def plan(conn, field, params, input_dir) -> list[Input]:
    run = require_run(conn, field, "mosaic", "detect")
    inputs = [i for i in run_products(conn, run, ("hst_sci", "hst_wht"))]
    if not any(i.kind == "hst_sci" for i in inputs):
        raise ValueError(f"mosaic run {run} of {field.name} made no HST mosaics")
    return [dataclasses.replace(i, role=i.kind.removeprefix("hst_")) for i in inputs]


def load_mosaics(inputs: list[Input]) -> list[dict]:
    """Per filter: sci, wht, wcs, header, pixscale, ujy (uJy per image unit)."""
    by_filter: dict[str, dict] = {}
    for item in inputs:
        data, header, wcs = load_image(item.path)
        entry = by_filter.setdefault(item.filter, {"filter": item.filter})
        entry[item.role] = data
        if item.role == "sci":
            entry.update(wcs=wcs, header=header, pixscale=pixscale_arcsec(wcs),
                         ujy=ujy_per_count(photfnu=header.get("PHOTFNU"), photflam=header.get("PHOTFLAM"),
                                           photplam=header.get("PHOTPLAM")))
    return list(by_filter.values())


def detection_grid(mosaics: list[dict]) -> tuple[list[np.ndarray], list[np.ndarray], object]:
    """All mosaics on the coarsest grid (the IR one, which the finer grids subsample exactly)."""
    coarse = max(mosaics, key=lambda m: m["pixscale"])
    ny, nx = coarse["sci"].shape
    scis, whts = [], []
    for m in mosaics:
        sci, wht = block_to_grid(m["sci"], m["wht"], int(round(coarse["pixscale"] / m["pixscale"])))
        scis.append(sci[:ny, :nx])
        whts.append(wht[:ny, :nx])
    return scis, whts, coarse["wcs"]


def execute(run, field, inputs, params, outdir, progress) -> None:
    progress("loading mosaics")
    mosaics = load_mosaics(inputs)
    scis, whts, wcs = detection_grid(mosaics)
    image, weight = compute.detection_image(scis, whts, [m["header"]["PHOTFNU"] for m in mosaics])
    progress(f"detecting on {image.shape[1]}x{image.shape[0]} pixels")
    cat, seg = compute.detect(image, weight, wcs, params=detect_params(params, pixscale_arcsec(wcs)))
    progress(f"{len(cat)} sources")
    for kind, data, dtype in (("det_sci", image, np.float32), ("det_wht", weight, np.float32), ("seg", seg, np.int32)):
        path = save_image(outdir / f"{field.name}-det_{kind.split('_')[-1]}.fits", data, wcs,
                          {"BUNIT": "uJy" if kind == "det_sci" else ""}, dtype=dtype)
        run.register_product(path, kind, filter_id=None)
    columns = source_columns(cat)
    write_sources(run, field.field_id, columns)


def source_columns(cat) -> dict[str, np.ndarray]:
    """The detection table (release names) as `source` columns (SQL names)."""
    renamed = {v: k for k, v in rc.PHOT_SQL_RENAMES.items()}
    out = {"id": np.asarray(cat["id"], dtype=np.int64), "ra": np.asarray(cat["ra"], dtype=float),
           "dec": np.asarray(cat["dec"], dtype=float), "x": np.asarray(cat["x"], dtype=float),
           "y": np.asarray(cat["y"], dtype=float)}
    out["hpx29"] = hpx29(out["ra"], out["dec"])
    for name in SOURCE_INT_COLUMNS + SOURCE_FLOAT_COLUMNS:
        release = renamed.get(name, name)
        if release in cat.colnames:
            values = np.asarray(cat[release])
            out[name] = values.astype(np.int64) if name in SOURCE_INT_COLUMNS else values.astype(float)
    return out
