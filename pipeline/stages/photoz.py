"""Stage `photoz`: EAZY photometric redshifts from the database's photometry.

Input fluxes: each HST filter's total flux `{f}_tot_{i}` (aperture `aperture_index`,
default 2 = D 0.7" as the release README says; the release notebook used 1 = 0.5") and
error `{f}_etot_{i}`, from the newest photometry run, plus the IRAC model fluxes of the
newest IRAC run on the same sources when there is one. Filters map to EAZY numbers through
`alcsdb/data/filters.csv`; the Milky Way E(B-V) is the field's (never looked up), recorded
as the parameter `mw_ebv`. The runs read are recorded as parameters (`photometry_run`,
`irac_run`), so a new upstream run makes the stage run again.

IRAC fluxes (`irac_scale`): `model` (default, the release) takes the IRAC model fluxes as they
are, totals of the models; `hst_total` puts them on the HST totals' scale, IRAC flux / the
model's HST flux (`irac_flux.model_norm`) times the detection image's Kron total with the
point-source correction (`_hst_total_scale`), so the SED has no step between the HST total-flux
definition (Kron-based, short of the true total for faint galaxies) and the IRAC one.

`z_spec` is the source's own (ingested catalogs), or with `zspec_catalog=NAME` the nearest
z_spec of that external catalog (`alcsdb external load`) within `zspec_radius_arcsec`
(for a mock: its truth table, so the QA figure is z_phot against the true redshift).

Writes one `zout` row per source (every release column, p(z) in `pz`, the best-fit template
coefficients in `coeffs`) and the products `{field}_photoz_zgrid.fits` (kind `photoz_zgrid`:
the redshift grid of `pz`; its meta holds the fitted filters' EAZY numbers, the zeropoints
and the timings) and, when some sources have a z_spec, `{field}_photoz_zphot_zspec.png`
(kind `photoz_qa`, `pipeline.plots.zphot_vs_zspec_png`). `source_sed` rebuilds one source's
SED from these (`alcsdb plot sed`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
from astropy.io import fits
from sqlalchemy import text

from alcsdb import columns as rc
from alcsdb import config
from alcsdb.copyload import copy_columns, fetch_columns
from alcsdb.errors import InputError

from .. import photoz as compute
from ..runner import Input, latest_stage_run, require_run

_FIELDS = {f.name: f.default for f in dataclasses.fields(compute.PhotozParams) if f.name != "mw_ebv"}
DEFAULTS = {**_FIELDS, "min_filters": 3, "zspec_catalog": None, "zspec_radius_arcsec": 0.5, "irac_scale": "model"}
IRAC_EAZY = {1: 18, 2: 19}
IRAC_SCALES = ("model", "hst_total")


def plan(conn, field, params, input_dir) -> list[Input]:
    phot = require_run(conn, field, "photometry", "photoz")
    params["photometry_run"] = phot
    params["irac_run"] = latest_stage_run(conn, field.field_id, "irac")
    params["eazy_dir"] = str(config.eazy_dir())
    params["mw_ebv"] = float(field.ebv or 0.0)
    if params["irac_scale"] not in IRAC_SCALES:
        raise InputError(f"photoz --param irac_scale={params['irac_scale']}: choose one of {', '.join(IRAC_SCALES)}")
    if params["zspec_catalog"] is not None:
        from alcsdb.crossmatch import catalog_provenance

        params["zspec_catalog_sha256"] = catalog_provenance(conn, str(params["zspec_catalog"]))["sha256"]
    return []


def _fluxes(conn, field_name: str, params: dict, source_id: int | None = None):
    """Sources (of the photometry run's detection run) and their fluxes/errors (uJy, NaN =
    missing) in the EAZY filters: HST filters in increasing number, then IRAC 18, 19.
    ``source_id``: only that source."""
    phot, irac = params["photometry_run"], params["irac_run"]
    det = conn.execute(text("SELECT s.run_id FROM aperture_flux a JOIN source s USING (source_id) WHERE a.run_id = :p "
                            "LIMIT 1"), {"p": phot}).scalar()
    one = "" if source_id is None else " AND source_id = :s"
    src = fetch_columns(conn, [("source_id", "source_id", "i8"), ("id", "id", "i8"), ("ra", "ra", "f8"),
                               ("dec", "dec", "f8"), ("z_spec", "z_spec", "f8")],
                        f"FROM source WHERE run_id = :d{one} ORDER BY id", {"d": det, "s": source_id})
    index = {int(s): k for k, s in enumerate(src["source_id"])}
    numbers = [int(n) for n in conn.execute(text(
        "SELECT DISTINCT f.eazy_id FROM aperture_flux a JOIN filter f USING (filter_id) WHERE a.run_id = :p "
        "AND a.aperture = :i AND f.name <> 'det' ORDER BY 1"), {"p": phot, "i": params["aperture_index"]}).scalars()]
    if -99 in numbers:
        raise InputError(f"photoz of {field_name}: a filter of photometry run {phot} has no EAZY number "
                         "(alcsdb/data/filters.csv)")
    ap = fetch_columns(conn, [("source_id", "a.source_id", "i8"), ("filter", "f.eazy_id", "i4"),
                              ("tot", "a.tot", "f8"), ("etot", "a.etot", "f8")],
                       "FROM aperture_flux a JOIN filter f USING (filter_id) WHERE a.run_id = :p AND a.aperture = :i "
                       f"AND f.name <> 'det'{one.replace('source_id', 'a.source_id')}",
                       {"p": phot, "i": params["aperture_index"], "s": source_id})
    measured = [(ap["source_id"], ap["filter"], ap["tot"], ap["etot"])]
    if irac is not None:
        # with irac_scale=hst_total each row also carries the detection image's total in the HST
        # convention (_REDDEST_TOT_CORR); the release's `model` scale needs none
        hst_total = params.get("irac_scale", "model") == "hst_total"
        ir = fetch_columns(conn, [("source_id", "i.source_id", "i8"), ("channel", "i.channel", "i4"),
                                  ("flux", "i.flux", "f8"), ("err", "i.err", "f8"),
                                  ("model_norm", "i.model_norm", "f8"),
                                  ("hst_total", "s.flux_auto * t.tot_corr" if hst_total else "NULL::float8", "f8")],
                           "FROM irac_flux i JOIN source s USING (source_id) LEFT JOIN total_correction t ON "
                           f"t.source_id = i.source_id AND t.run_id = :p AND t.filter_id = ({_REDDEST_TOT_CORR}) "
                           f"WHERE i.run_id = :r{one.replace('source_id', 'i.source_id')}",
                           {"r": irac, "p": phot, "s": source_id})
        numbers += list(IRAC_EAZY.values())
        keep = np.array([int(s) in index for s in ir["source_id"]], dtype=bool)
        channel = np.array([IRAC_EAZY[int(c)] for c in ir["channel"]], dtype=np.int64)
        scale = _hst_total_scale(field_name, params, ir) if hst_total else np.ones(len(keep))
        measured.append((ir["source_id"][keep], channel[keep], (ir["flux"] * scale)[keep], (ir["err"] * scale)[keep]))
    n = len(src["id"])
    flux = np.full((n, len(numbers)), np.nan)
    err = np.full((n, len(numbers)), np.nan)
    col = {num: k for k, num in enumerate(numbers)}
    for ids, filters, values, errors in measured:
        rows = np.array([index[int(s)] for s in ids], dtype=np.int64)
        cols = np.array([col[int(f)] for f in filters], dtype=np.int64)
        flux[rows, cols], err[rows, cols] = values, errors
    bad = ~(np.isfinite(flux) & np.isfinite(err) & (err > 0))
    flux[bad], err[bad] = np.nan, np.nan
    return src, flux, err, numbers


# the filter whose point-source total correction the detection image's total takes: the reddest
# HST filter of the photometry run (:p)
_REDDEST_TOT_CORR = ("SELECT f.filter_id FROM total_correction t2 JOIN filter f USING (filter_id) WHERE t2.run_id = :p "
                     "AND f.name <> 'det' ORDER BY f.pivot_angstrom DESC NULLS LAST LIMIT 1")


def _hst_total_scale(field_name: str, params: dict, ir: dict) -> np.ndarray:
    """Per `irac_flux` row: the factor putting its IRAC flux on the HST totals' scale
    (``irac_scale=hst_total``): ``hst_total / model_norm``. The IRAC flux over its model's HST
    flux (`model_norm`, the detection image over the segment) is the source's IRAC-to-HST
    colour; times the detection image's total in the HST convention (``hst_total``: Kron
    ``flux_auto`` times the point-source total correction of the reddest HST filter of the
    photometry run) it is a total like the HST ``{f}_tot_{i}``. NaN (missing) where a factor is
    not finite and positive."""
    if len(ir["model_norm"]) and not np.isfinite(ir["model_norm"]).any():
        raise InputError(f"photoz of {field_name} --param irac_scale=hst_total: irac run {params['irac_run']} "
                         "stored no model_norm (made before migration 0007): run `alcsdb run irac --field "
                         f"{field_name} --force` first")
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = ir["hst_total"] / ir["model_norm"]
    return np.where(np.isfinite(scale) & (scale > 0), scale, np.nan)


def grid_cache_path(pz_params, numbers) -> Path:
    """Where the template grid of these filters/templates/redshifts/E(B-V) is kept between runs.

    The grid (eazy's `tempfilt`) depends on nothing else and dominates the run time, so it is
    computed once per combination; the key hashes the settings and the eazy version.
    """
    from importlib import metadata

    key = {"filters": list(numbers), "eazy": metadata.version("eazy"),
           **{k: getattr(pz_params, k) for k in ("templates_file", "z_min", "z_max", "z_step", "mw_ebv",
                                                 "cat_has_extcorr")}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return config.home() / "cache" / "eazy" / f"tempfilt-{digest}.pkl"


def _load_grid(path: Path):
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
        return None


def _save_grid(path: Path, tempfilt) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(tempfilt, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)  # atomic: concurrent runs never read a half-written grid


def photoz_params(params: dict) -> compute.PhotozParams:
    """The compute settings of a run's parameters (`mw_ebv` recorded by `plan`)."""
    return compute.PhotozParams(mw_ebv=params["mw_ebv"], **{k: params[k] for k in _FIELDS})


def _z_spec(conn, src, params) -> np.ndarray:
    if params["zspec_catalog"] is None:
        return np.where(np.isfinite(src["z_spec"]), src["z_spec"], np.nan)
    from alcsdb.crossmatch import zspec_for_sources

    return zspec_for_sources(conn, str(params["zspec_catalog"]), src["source_id"], params["zspec_radius_arcsec"])


def execute(run, field, inputs, params, outdir, progress) -> None:
    from .. import plots

    src, flux, err, numbers = _fluxes(run.conn, field.name, params)
    if len(numbers) < params["min_filters"]:
        raise InputError(f"photoz of {field.name}: only {len(numbers)} filters with fluxes (need {params['min_filters']})")
    pz_params = photoz_params(params)
    z_spec = _z_spec(run.conn, src, params)
    progress(f"fitting {len(src['id'])} sources in {len(numbers)} filters (template grid first)")
    cache = grid_cache_path(pz_params, numbers)
    tempfilt = _load_grid(cache)
    result = compute.run_photoz(flux, err, numbers, src["id"], z_spec=np.where(z_spec > 0, z_spec, -1.0),
                                ra=src["ra"], dec=src["dec"], params=pz_params, eazy_dir=params["eazy_dir"],
                                tempfilt=tempfilt)
    if tempfilt is None:
        _save_grid(cache, result.tempfilt)
    progress(f"{result.n_at_zmin} sources at z = -1 (p(z) peaked at Z_MIN or unfit); timings {result.timings}")
    zout = result.zout
    values = {}
    for spec in rc.ZOUT_SPECS:
        if spec.name in ("id", "ra", "dec"):
            continue
        arr = np.asarray(zout[spec.name], dtype=float)
        values[rc.ZOUT_SQL_NAME[spec.name]] = np.where(arr == rc.MISSING, np.nan, arr)
    values["z_spec"] = np.where(z_spec > 0, z_spec, np.nan)
    n = len(src["id"])
    run.count("zout", copy_columns(run.conn, "zout", {"source_id": src["source_id"], "run_id": np.full(n, run.run_id),
                                                      "pz": result.pz, "coeffs": result.coeffs, **values}))
    path = outdir / f"{field.name}_photoz_zgrid.fits"
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="z", format="D", array=result.zgrid)], name="ZGRID")
    hdu.header["FILTERS"] = ",".join(map(str, result.filter_numbers))
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    zeropoints = None if result.zeropoints is None else [float(z) for z in result.zeropoints]
    run.register_product(path, "photoz_zgrid", meta={
        "nz": int(len(result.zgrid)), "filters": list(result.filter_numbers), "zeropoints": zeropoints,
        "n_templates": int(result.coeffs.shape[1]), "timings": result.timings})
    with np.errstate(invalid="ignore"):
        has_z = values["z_spec"] > 0
    if has_z.any():
        z_phot = np.asarray(zout["z_phot"], dtype=float)
        qa = plots.zphot_vs_zspec_png(z_phot, values["z_spec"], outdir / f"{field.name}_photoz_zphot_zspec.png",
                                      compute.metrics(z_phot, values["z_spec"]))
        run.register_product(qa, "photoz_qa", meta={"n_zspec": int(has_z.sum()),
                                                    "zspec_catalog": params["zspec_catalog"]})


# ---------------------------------------------------------------------------------------
# Reading a run back: one source's SED


def source_sed(conn, source_id: int, run_id: int | None = None) -> tuple[compute.SedData, str]:
    """The SED of source `source_id` from the photoz run `run_id` (default: the newest
    succeeded photoz run with a row for it), rebuilt from its stored coefficients and the
    run's recorded parameters, fluxes and zeropoints; and a title naming source and run.
    InputError (one line) for an unknown source or a source without such a row."""
    known = conn.execute(text("SELECT s.id, f.name FROM source s JOIN run r USING (run_id) "
                              "LEFT JOIN field f ON f.field_id = r.field_id WHERE s.source_id = :s"),
                         {"s": source_id}).first()
    if known is None:
        raise InputError(f"source {source_id}: no such source_id")
    where = "z.run_id = :r" if run_id is not None else "TRUE"
    row = conn.execute(text(
        "SELECT z.run_id, r.params, z.z_phot, z.z_spec, z.pz, z.coeffs FROM zout z JOIN run r USING (run_id) "
        f"WHERE z.source_id = :s AND r.stage = 'photoz' AND r.status = 'succeeded' AND {where} "
        "ORDER BY r.finished_at DESC, z.run_id DESC LIMIT 1"), {"s": source_id, "r": run_id}).mappings().first()
    if row is None:
        which = f"photoz run {run_id}" if run_id is not None else "any succeeded photoz run"
        raise InputError(f"source {source_id} (field {known.name}, id {known.id}) has no zout row from {which}: "
                         f"run `alcsdb run photoz --field {known.name}` first")
    params = row["params"]
    meta = conn.execute(text("SELECT meta FROM product WHERE run_id = :r AND kind = 'photoz_zgrid'"),
                        {"r": row["run_id"]}).scalar_one()
    if "mw_ebv" not in params or "n_templates" not in meta:
        raise InputError(f"photoz run {row['run_id']} stored no template coefficients (made before they were "
                         f"stored): run `alcsdb run photoz --field {known.name} --force`")
    _, flux, err, numbers = _fluxes(conn, known.name, params, source_id=source_id)
    if list(numbers) != list(meta["filters"]):
        raise InputError(f"photoz run {row['run_id']}: the photometry of source {source_id} is now in filters "
                         f"{numbers}, the run fitted {meta['filters']}")
    pz_params = photoz_params(params)
    zgrid = pz_params.zgrid()
    # NULL (SQL) = not fitted: all-NaN arrays are stored as NULL
    pz = np.full(len(zgrid), np.nan) if row["pz"] is None else np.array(row["pz"], dtype=float)
    coeffs = np.full(meta["n_templates"], np.nan) if row["coeffs"] is None else np.array(row["coeffs"], dtype=float)
    sed = compute.sed_from_coeffs(coeffs, -1.0 if row["z_phot"] is None else row["z_phot"], flux[0], err[0], numbers,
                                  params=pz_params, zgrid=zgrid, pz=pz, zeropoints=meta.get("zeropoints"),
                                  z_spec=np.nan if row["z_spec"] is None else row["z_spec"], id=source_id,
                                  eazy_dir=params["eazy_dir"])
    return sed, f"source {source_id} ({known.name} #{known.id}, photoz run {row['run_id']})"
