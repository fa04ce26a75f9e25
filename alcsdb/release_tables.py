"""The release-format tables of one field of a catalog version, built from the version's rows.

`phot_table` gives the columns of `{root}_irac_phot_apcorr.fits` (order of
`phot_apcorr_columns.md`), `zout_table` those of `{root}_irac.eazypy.zout.fits`: numpy arrays
in the release's dtypes, one row per source in catalog id order, -99 where a value is missing
(SQL NULL, no row, or not finite). Rows are read by binary COPY; the per-aperture rows are
scattered into a (source, filter, aperture) grid with one vectorised assignment per quantity.

`version create` stores these tables once as the version's snapshot (`alcsdb.snapshot`), export
reads the snapshot, and `audit` rebuilds them here to check the snapshot against the rows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Connection, text

from . import columns as rc
from .copyload import fetch_columns
from .schema import SOURCE_FLOAT_COLUMNS, SOURCE_INT_COLUMNS

if TYPE_CHECKING:
    from .versions import FieldRuns

MISSING = rc.MISSING
APERTURE_SQL = ("flux", "fluxerr", "flag", "bkg", "mask", "apcorr", "corr", "ecorr", "tot", "etot")


def _fill(n: int, spec: rc.ColumnSpec) -> np.ndarray:
    return np.full((n, *spec.shape), MISSING, dtype=np.dtype(spec.dtype).newbyteorder("="))


def _put(target: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """Store values (NaN or -99 = missing) at row indices; missing stays -99."""
    if values.dtype.kind == "f":
        ok = np.isfinite(values)
        target[rows[ok]] = values[ok]
    else:
        target[rows] = values


def _grid(n_cells: int, cells: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A flat grid of `n_cells`, -99 everywhere but at `cells`, which get the (finite) values."""
    grid = np.full(n_cells, MISSING, dtype=np.float64 if values.dtype.kind == "f" else np.int64)
    _put(grid, cells, values)
    return grid


def _photometry_filters(conn: Connection, run: int) -> list[str]:
    """The HST filters a photometry run measured, in pivot-wavelength order (as the release)."""
    return [r[0] for r in conn.execute(text(
        "SELECT f.name FROM filter f WHERE f.name <> 'det' AND f.filter_id IN (SELECT DISTINCT filter_id FROM "
        "total_correction WHERE run_id = :p UNION SELECT DISTINCT filter_id FROM aperture_flux WHERE run_id = :p) "
        "ORDER BY f.pivot_angstrom NULLS LAST, f.name"), {"p": run})]


def phot_table(conn: Connection, fr: FieldRuns) -> tuple[dict[str, np.ndarray], list[str]]:
    """The phot_apcorr columns of one field of a version: {name: array}, filters."""
    det = fr.runs["detect"]
    src_cols = [("id", "s.id", "i8"), ("ra", "s.ra", "f8"), ("dec", "s.dec", "f8"), ("x", "s.x", "f8"),
                ("y", "s.y", "f8")]
    src_cols += [(c, f"s.{c}", "i8") for c in SOURCE_INT_COLUMNS] + [(c, f"s.{c}", "f8") for c in SOURCE_FLOAT_COLUMNS]
    src = fetch_columns(conn, src_cols, "FROM source s WHERE s.run_id = :d ORDER BY s.id", {"d": det})
    ids = src["id"]  # unique within the run (constraint) and sorted: row of a catalog id = searchsorted
    n = len(ids)
    filters = _photometry_filters(conn, fr.runs["photometry"]) if "photometry" in fr.runs else []
    names = rc.phot_apcorr_columns(filters, with_irac=True)
    out = {name: _fill(n, rc.phot_column_spec(name)) for name in names}
    rows_all = np.arange(n)
    renamed = {v: k for k, v in rc.PHOT_SQL_RENAMES.items()}
    for col, values in src.items():
        name = renamed.get(col, col)
        if name in out:
            _put(out[name], rows_all, values)
    _put(out["x_image"], rows_all, src["x"] + 1)
    _put(out["y_image"], rows_all, src["y"] + 1)
    out["x_world"][:] = src["ra"]
    out["y_world"][:] = src["dec"]
    if "photometry" in fr.runs:
        _photometry_columns(conn, fr, ids, filters, out)
    if "irac" in fr.runs:
        quantities = ("nexp", "exptime", "flux", "err", "patch", "bright")
        ir = fetch_columns(conn, [("id", "s.id", "i8"), ("channel", "i.channel", "i4")]
                           + [(q, f"i.{q}", "i8" if q in ("nexp", "patch", "bright") else "f8") for q in quantities],
                           "FROM irac_flux i JOIN source s USING (source_id) WHERE i.run_id = :r AND s.run_id = :d",
                           {"r": fr.runs["irac"], "d": det})
        rows = np.searchsorted(ids, ir["id"])
        for ch in rc.IRAC_CHANNELS:
            m = ir["channel"] == ch
            for q in quantities:
                _put(out[f"irac_ch{ch}_{q}"], rows[m], ir[q][m])
    return out, filters


def _photometry_columns(conn: Connection, fr: FieldRuns, ids: np.ndarray, filters: list[str],
                        out: dict[str, np.ndarray]) -> None:
    """Fill the aperture, apcorr, corr/tot and tot_corr columns from the photometry run's rows."""
    run, det = fr.runs["photometry"], fr.runs["detect"]
    n, n_ap = len(ids), len(rc.APERTURES)
    filter_ids = dict(conn.execute(text("SELECT name, filter_id FROM filter")).all())
    order = ["det", *filters]
    position = np.full(max(filter_ids.values()) + 1, -1, dtype=np.int64)  # filter_id -> index in `order`
    position[[filter_ids[f] for f in order]] = np.arange(len(order))
    ap = fetch_columns(conn, [("id", "s.id", "i8"), ("filt", "a.filter_id", "i4"), ("ap", "a.aperture", "i4")]
                       + [(q, f"a.{q}", "i8" if q == "flag" else "f8") for q in APERTURE_SQL],
                       "FROM aperture_flux a JOIN source s USING (source_id) WHERE a.run_id = :p AND s.run_id = :d",
                       {"p": run, "d": det})
    # cell of each row in the (source, filter, aperture) grid; filters outside `order` have none
    fpos = position[ap["filt"]]
    keep = fpos >= 0
    cells = (np.searchsorted(ids, ap["id"][keep]) * len(order) + fpos[keep]) * n_ap + ap["ap"][keep]
    shape = (n, len(order), n_ap)
    for q in APERTURE_SQL:
        grid = _grid(n * len(order) * n_ap, cells, ap[q][keep]).reshape(shape)
        for k, filt in enumerate(order):
            prefix = "" if filt == "det" else f"{filt}_"
            for i in range(n_ap):
                if q in rc.APERTURE_QUANTITIES:
                    name = f"{prefix}{q}_aper_{i}"
                elif q == "apcorr":
                    name = f"apcorr_{i}" if filt == "det" else None
                else:
                    name = f"{filt}_{q}_{i}" if filt != "det" else None
                if name is not None:
                    out[name][:] = grid[:, k, i]
    tc = fetch_columns(conn, [("id", "s.id", "i8"), ("filt", "t.filter_id", "i4"), ("tot_corr", "t.tot_corr", "f8")],
                       "FROM total_correction t JOIN source s USING (source_id) WHERE t.run_id = :p "
                       "AND s.run_id = :d", {"p": run, "d": det})
    trows = np.searchsorted(ids, tc["id"])
    for filt in filters:
        m = tc["filt"] == filter_ids[filt]
        _put(out[f"{filt}_tot_corr"], trows[m], tc["tot_corr"][m])


def zout_table(conn: Connection, fr: FieldRuns) -> dict[str, np.ndarray] | None:
    """The zout columns of one field of a version (None without a photo-z run)."""
    if "photoz" not in fr.runs:
        return None
    select = [("id", "s.id", "i8"), ("ra", "s.ra", "f8"), ("dec", "s.dec", "f8")]
    for spec in rc.ZOUT_SPECS:
        if spec.name in ("id", "ra", "dec"):
            continue
        sql = rc.ZOUT_SQL_NAME[spec.name]
        kind = "i8" if np.dtype(spec.dtype).kind in "iu" else "f8"
        if spec.shape:
            select += [(f"{sql}__{k}", f"z.{sql}[{k + 1}]", kind) for k in range(spec.shape[0])]
        else:
            select.append((sql, f"z.{sql}", kind))
    got = fetch_columns(conn, select, "FROM zout z JOIN source s USING (source_id) WHERE z.run_id = :z "
                                      "AND s.run_id = :d ORDER BY s.id", {"z": fr.runs["photoz"], "d": fr.runs["detect"]})
    n = len(got["id"])
    out = {}
    for spec in rc.ZOUT_SPECS:
        col = _fill(n, spec)
        sql = rc.ZOUT_SQL_NAME[spec.name]
        if spec.shape:
            for k in range(spec.shape[0]):
                _put(col[:, k], np.arange(n), got[f"{sql}__{k}"])
        else:
            _put(col, np.arange(n), got[sql if spec.name not in ("id", "ra", "dec") else spec.name])
        out[spec.name] = col
    return out


def column_units(kind: str, names: list[str]) -> dict[str, str | None]:
    """The TUNIT of each column of a release table (`kind` phot or zout)."""
    if kind == "phot":
        return {name: rc.phot_column_spec(name).unit for name in names}
    specs = {s.name: s for s in rc.ZOUT_SPECS}
    return {name: specs[name].unit for name in names}
