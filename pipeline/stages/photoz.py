"""Stage `photoz`: EAZY photometric redshifts from the database's photometry.

Input fluxes: each HST filter's total flux `{f}_tot_{i}` (aperture `aperture_index`,
default 2 = D 0.7" as the release README says; the release notebook used 1 = 0.5") and
error `{f}_etot_{i}`, from the newest photometry run, plus the IRAC model fluxes of the
newest IRAC run on the same sources when there is one. Filters map to EAZY numbers through
`alcsdb/data/filters.csv`; the Milky Way E(B-V) is the field's (never looked up). The runs
read are recorded as parameters (`photometry_run`, `irac_run`), so a new upstream run makes
the stage run again. Writes one `zout` row per source (every release column, p(z) in `pz`)
and the product `{field}_photoz_zgrid.fits` (kind `photoz_zgrid`): the redshift grid of `pz`.
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
DEFAULTS = {**_FIELDS, "min_filters": 3}


def plan(conn, field, params, input_dir) -> list[Input]:
    phot = require_run(conn, field, "photometry", "photoz")
    params["photometry_run"] = phot
    params["irac_run"] = latest_stage_run(conn, field.field_id, "irac")
    params["eazy_dir"] = str(config.eazy_dir())
    return []


def _fluxes(conn, field, params):
    phot, irac = params["photometry_run"], params["irac_run"]
    det = conn.execute(text("SELECT s.run_id FROM aperture_flux a JOIN source s USING (source_id) WHERE a.run_id = :p "
                            "LIMIT 1"), {"p": phot}).scalar()
    src = fetch_columns(conn, [("source_id", "source_id", "i8"), ("id", "id", "i8"), ("ra", "ra", "f8"),
                               ("dec", "dec", "f8"), ("z_spec", "z_spec", "f8")],
                        "FROM source WHERE run_id = :d ORDER BY id", {"d": det})
    index = {int(s): k for k, s in enumerate(src["source_id"])}
    ap = fetch_columns(conn, [("source_id", "a.source_id", "i8"), ("filter", "f.eazy_id", "i4"),
                              ("tot", "a.tot", "f8"), ("etot", "a.etot", "f8")],
                       "FROM aperture_flux a JOIN filter f USING (filter_id) WHERE a.run_id = :p AND a.aperture = :i "
                       "AND f.name <> 'det'", {"p": phot, "i": params["aperture_index"]})
    if (ap["filter"] == -99).any():
        raise InputError(f"photoz of {field.name}: a filter of photometry run {phot} has no EAZY number "
                         "(alcsdb/data/filters.csv)")
    numbers = sorted(set(ap["filter"].tolist()))
    if irac is not None:
        ir = fetch_columns(conn, [("source_id", "source_id", "i8"), ("channel", "channel", "i4"), ("flux", "flux", "f8"),
                                  ("err", "err", "f8")], "FROM irac_flux WHERE run_id = :r", {"r": irac})
        numbers += [18, 19]
    n = len(src["id"])
    flux = np.full((n, len(numbers)), np.nan)
    err = np.full((n, len(numbers)), np.nan)
    col = {num: k for k, num in enumerate(numbers)}
    rows = np.array([index[int(s)] for s in ap["source_id"]], dtype=np.int64)
    for num in set(ap["filter"].tolist()):
        m = ap["filter"] == num
        flux[rows[m], col[num]], err[rows[m], col[num]] = ap["tot"][m], ap["etot"][m]
    if irac is not None:
        keep = np.array([int(s) in index for s in ir["source_id"]])
        rows = np.array([index[int(s)] for s in ir["source_id"][keep]], dtype=np.int64)
        for ch, num in ((1, 18), (2, 19)):
            m = ir["channel"][keep] == ch
            flux[rows[m], col[num]], err[rows[m], col[num]] = ir["flux"][keep][m], ir["err"][keep][m]
    bad = ~(np.isfinite(flux) & np.isfinite(err) & (err > 0))
    flux[bad], err[bad] = np.nan, np.nan
    return src, flux, err, numbers


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


def execute(run, field, inputs, params, outdir, progress) -> None:
    src, flux, err, numbers = _fluxes(run.conn, field, params)
    if len(numbers) < params["min_filters"]:
        raise InputError(f"photoz of {field.name}: only {len(numbers)} filters with fluxes (need {params['min_filters']})")
    pz_params = compute.PhotozParams(mw_ebv=field.ebv or 0.0, **{k: params[k] for k in _FIELDS})
    z_spec = np.where(np.isfinite(src["z_spec"]), src["z_spec"], -1.0)
    progress(f"fitting {len(src['id'])} sources in {len(numbers)} filters (template grid first)")
    cache = grid_cache_path(pz_params, numbers)
    tempfilt = _load_grid(cache)
    result = compute.run_photoz(flux, err, numbers, src["id"], z_spec=z_spec, ra=src["ra"], dec=src["dec"],
                                params=pz_params, eazy_dir=params["eazy_dir"], tempfilt=tempfilt)
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
                                                      "pz": result.pz, **values}))
    path = outdir / f"{field.name}_photoz_zgrid.fits"
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="z", format="D", array=result.zgrid)], name="ZGRID")
    hdu.header["FILTERS"] = ",".join(map(str, result.filter_numbers))
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    run.register_product(path, "photoz_zgrid", meta={"nz": int(len(result.zgrid)), "timings": result.timings})
