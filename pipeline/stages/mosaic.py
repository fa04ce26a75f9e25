"""Stage `mosaic`: drizzled HST and IRAC mosaics on the release grid, with alignment.

`prepare` registers the raw inputs found under `--input` (HST FLT exposures, IRAC BCDs and
their uncertainty images, the reference star catalog) as products of an `ingest` run, once
per file content (sha256). `execute` runs `pipeline.mosaic.build_mosaics` (visits, internal
and absolute alignment with proper motions, per-visit background, drizzle with
`drizzlepac.cdriz`; IRAC master background per AOR and per-AOR alignment) and writes:
`exposure` rows (one per HST exposure, with its visit and applied alignment), `aor` and
`bcd` rows (one per AOR and channel / per frame), the mosaics as products (`hst_sci`,
`hst_wht`, `irac_sci`, `irac_wht`), the IRAC drizzle sampling maps (`irac_sampling`, one file
per channel: `pipeline.sampling`), the drizzled HST chips' aligned WCS, weights and masks
(`hst_exposure_wcs`, `{root}-{filt}_wcs.fits`: `pipeline.drizzle_psf`, which the photometry stage
drizzles source models through) and the alignment log.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from sqlalchemy import text

from alcsdb.copyload import copy_columns
from alcsdb.errors import InputError
from alcsdb.measurements import filter_ids
from alcsdb.provenance import file_sha256, stage_run

from .. import mosaic as compute
from ..runner import Input

DEFAULTS = {"size_arcmin": None, **compute.MosaicParams().as_dict()}
RAW_PATTERNS = {"raw_flt": "hst/*_fl[tc].fits", "raw_bcd": "irac/**/*_bcd.fits", "raw_cbunc": "irac/**/*_cbunc.fits",
                "refcat": "refcat.fits"}


def _raw_files(input_dir: Path) -> list[tuple[str, Path]]:
    if input_dir is None:
        raise InputError("the mosaic stage needs --input DIR with hst/ and irac/ exposures")
    files = [(kind, p) for kind, pattern in RAW_PATTERNS.items() for p in sorted(Path(input_dir).glob(pattern))]
    if not any(kind == "raw_flt" for kind, _ in files):
        raise InputError(f"{input_dir}: no HST exposures (hst/*_flt.fits)")
    return files


def prepare(engine, field, params, input_dir, progress) -> None:
    """Register raw inputs not yet known (by sha256) in one ingest run."""
    files = [(kind, p, file_sha256(p)) for kind, p in _raw_files(input_dir)]
    with engine.connect() as conn:
        known = set(conn.execute(text("SELECT sha256 FROM product WHERE ingested AND sha256 = ANY(:s)"),
                                 {"s": [sha for _, _, sha in files]}).scalars())
    new = [f for f in files if f[2] not in known]
    if not new:
        return
    progress(f"registering {len(new)} raw files")
    with stage_run(engine, "ingest", field_id=field.field_id,
                   params={"raw_dir": str(Path(input_dir).resolve()), "files": len(new)}) as run:
        for kind, path, sha in new:
            pid = run.register_product(path, kind, ingested=True, sha256=sha)
            run.add_input(pid, "raw")


def plan(conn, field, params, input_dir) -> list[Input]:
    files = _raw_files(input_dir)
    params["input_dir"] = str(Path(input_dir).resolve())
    shas = {file_sha256(p): (kind, p) for kind, p in files}
    rows = conn.execute(text("SELECT product_id, sha256, run_id FROM product WHERE ingested AND sha256 = ANY(:s)"),
                        {"s": list(shas)}).all()
    return [Input(pid, "raw", shas[sha][0], shas[sha][1], sha, None, run, {}) for pid, sha, run in rows]


def _params(params: dict) -> compute.MosaicParams:
    from ..align import AlignParams
    from ..background import BackgroundParams

    kw = {k: v for k, v in params.items() if k in {f.name for f in dataclasses.fields(compute.MosaicParams)}}
    # nested settings arrive as dicts (JSON parameters)
    kw["align"] = AlignParams(**kw["align"]) if isinstance(kw.get("align"), dict) else AlignParams()
    kw["background"] = (BackgroundParams(**kw["background"]) if isinstance(kw.get("background"), dict)
                        else BackgroundParams())
    return compute.MosaicParams(**kw)


def _size(input_dir: Path, params: dict) -> float:
    if params.get("size_arcmin"):
        return float(params["size_arcmin"])
    info = Path(input_dir) / "mock.json"
    if info.exists():
        return float(json.loads(info.read_text())["parameters"].get("size_arcmin", 2.0))
    return 2.0


def _corners(path: str) -> list[list[float]] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        header = fits.getheader(path)
        wcs = WCS(header, naxis=2)
    if not wcs.has_celestial:
        return None
    return wcs.calc_footprint(axes=(header["NAXIS1"], header["NAXIS2"])).tolist()


def execute(run, field, inputs, params, outdir, progress) -> None:
    input_dir = Path(params["input_dir"])
    grid = compute.release_grid(field.ra, field.dec, _size(input_dir, params))
    with compute.c_output_silenced(fds=(1,)):  # the libraries' prints; progress goes to stderr
        result = compute.build_mosaics(input_dir, grid, _params(params), progress, output_dir=outdir, root=field.name)
    conn = run.conn
    fids = filter_ids(conn, sorted({p.filter for p in result.products}))
    for p in result.products:
        irac = p.instrument.upper() == "IRAC"
        for kind, path in (("sci", p.sci_path), ("wht", p.wht_path)):
            run.register_product(path, f"{'irac' if irac else 'hst'}_{kind}", filter_id=fids[p.filter],
                                 meta={"n_exposures": p.n_exposures, "exptime": p.exptime, "visits": list(p.visits)})
        if p.sampling_path is not None:
            run.register_product(p.sampling_path, "irac_sampling", filter_id=fids[p.filter],
                                 meta={"aors": list(p.visits)})
        if p.geometry_path is not None:
            run.register_product(p.geometry_path, "hst_exposure_wcs", filter_id=fids[p.filter],
                                 meta={"n_exposures": p.n_exposures})
    log_path = outdir / f"{field.name}_alignment.log"
    log_path.write_text("\n\n".join(f"== {name}\n{body}" for name, body in sorted(result.logs.items())))
    run.register_product(log_path, "alignment_log")
    hst = [e for e in result.exposures if e.instrument.upper() != "IRAC"]
    raw_ids = {str(i.path): i.product_id for i in inputs}
    fids.update(filter_ids(conn, sorted({e.filter for e in hst})))
    if hst:
        n = len(hst)
        col = lambda f: np.array([f(e) for e in hst], dtype=object)  # noqa: E731
        run.count("exposure", copy_columns(conn, "exposure", {
            "run_id": np.full(n, run.run_id), "field_id": np.full(n, field.field_id),
            "filter_id": col(lambda e: fids[e.filter]), "product_id": col(lambda e: raw_ids.get(str(e.path))),
            "rootname": col(lambda e: e.name), "instrument": col(lambda e: e.instrument),
            "detector": col(lambda e: e.detector), "visit": col(lambda e: e.visit),
            "exptime": np.array([e.exptime for e in hst]), "expstart_mjd": np.array([e.mjd for e in hst]),
            "pa_v3": np.array([e.pa for e in hst]),
            "align_dx_arcsec": np.array([e.alignment.dx for e in hst]),
            "align_dy_arcsec": np.array([e.alignment.dy for e in hst]),
            "align_rot_deg": np.array([e.alignment.rotation for e in hst]),
            "align_scale": np.array([e.alignment.scale for e in hst]),
            "align_rms_arcsec": np.array([e.alignment.rms for e in hst]),
            "align_nmatch": np.array([e.alignment.n_matched for e in hst])}))
    frames = [e for e in result.exposures if e.instrument.upper() == "IRAC"]
    for aor in result.aors:
        channel = int(str(aor.channel).lstrip("ch"))
        mine = [e for e in frames if e.visit == aor.name]
        corners = [_corners(e.path) for e in mine]
        aor_id = conn.execute(text(
            "INSERT INTO aor (run_id, field_id, aorkey, channel, n_bcd, exptime, mjd_start, mjd_end, pa_deg, "
            "align_dx_arcsec, align_dy_arcsec, align_rms_arcsec, background) VALUES (:r, :f, :k, :c, :n, :t, :m0, "
            ":m1, :pa, :dx, :dy, :rms, :bkg) RETURNING aor_id"),
            {"r": run.run_id, "f": field.field_id, "k": aor.aorkey, "c": channel, "n": aor.n_frames, "t": aor.exptime,
             "m0": min((e.mjd for e in mine), default=aor.mjd), "m1": max((e.mjd for e in mine), default=aor.mjd),
             "pa": aor.pa, "dx": aor.alignment.dx, "dy": aor.alignment.dy, "rms": aor.alignment.rms,
             "bkg": aor.background_median}).scalar_one()
        run.count("aor", 1)
        if mine:
            m = len(mine)
            run.count("bcd", copy_columns(conn, "bcd", {
                "aor_id": np.full(m, aor_id), "seq": np.arange(m), "run_id": np.full(m, run.run_id),
                "file": np.array([Path(e.path).name for e in mine], dtype=object),
                "exptime": np.array([e.exptime for e in mine]), "mjd_obs": np.array([e.mjd for e in mine]),
                "theta": np.array([e.pa for e in mine]),
                "corners": np.array([c if c is not None else np.full((4, 2), np.nan) for c in corners])}))
