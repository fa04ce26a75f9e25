"""Export a catalog version in the release's format, reproducibly.

Per field: `{name}_irac_phot_apcorr.fits` (columns and order of `phot_apcorr_columns.md`)
and `{name}_irac.eazypy.zout.fits` (`zout_columns.md`), microJansky, -99 for missing values.
Headers carry the cluster, field, version, content hash, pinned run ids, software versions,
EAZY parameters, DATE = the version's creation time, and CHECKSUM/DATASUM. Nothing in a file
depends on when or where it was written, so exporting a version twice gives identical bytes.
Each export is a run whose outputs are `product` rows with sha256.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from astropy.io import fits
from sqlalchemy import Connection, Engine, text

from . import __version__
from . import columns as rc
from .copyload import fetch_columns
from .errors import InputError
from .fields import resolve_field
from .provenance import file_sha256, git_commit, stage_run
from .schema import SOURCE_FLOAT_COLUMNS, SOURCE_INT_COLUMNS
from .versions import FieldRuns, version_runs

log = logging.getLogger(__name__)
FORMATS = ("fits", "csv", "hats")
MISSING = rc.MISSING


@dataclass
class ExportedFile:
    field: str
    kind: str
    path: Path
    sha256: str
    rows: int


def _fill(n: int, spec: rc.ColumnSpec) -> np.ndarray:
    return np.full((n, *spec.shape), MISSING, dtype=np.dtype(spec.dtype).newbyteorder("="))


def _put(target: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """Store values (NaN or -99 = missing) at row indices; missing stays -99."""
    if values.dtype.kind == "f":
        ok = np.isfinite(values)
        target[rows[ok]] = values[ok]
    else:
        target[rows] = values


def phot_table(conn: Connection, fr: FieldRuns) -> tuple[dict[str, np.ndarray], list[str]]:
    """The phot_apcorr columns of one field of a version: {name: array}, filters."""
    det = fr.runs["detect"]
    src_cols = [("id", "s.id", "i8"), ("ra", "s.ra", "f8"), ("dec", "s.dec", "f8"), ("x", "s.x", "f8"),
                ("y", "s.y", "f8")]
    src_cols += [(c, f"s.{c}", "i8") for c in SOURCE_INT_COLUMNS] + [(c, f"s.{c}", "f8") for c in SOURCE_FLOAT_COLUMNS]
    src = fetch_columns(conn, src_cols, "FROM source s WHERE s.run_id = :d ORDER BY s.id", {"d": det})
    n = len(src["id"])
    index = {int(i): k for k, i in enumerate(src["id"])}
    filters: list[str] = []
    ap = tc = None
    if "photometry" in fr.runs:
        filters = [r[0] for r in conn.execute(text(
            "SELECT f.name FROM filter f WHERE f.name <> 'det' AND f.filter_id IN (SELECT DISTINCT filter_id FROM "
            "total_correction WHERE run_id = :p UNION SELECT DISTINCT filter_id FROM aperture_flux WHERE run_id = :p) "
            "ORDER BY f.pivot_angstrom NULLS LAST, f.name"), {"p": fr.runs["photometry"]})]
        quantities = ("flux", "fluxerr", "flag", "bkg", "mask", "apcorr", "corr", "ecorr", "tot", "etot")
        ap = fetch_columns(conn, [("id", "s.id", "i8"), ("filt", "a.filter_id", "i4"), ("ap", "a.aperture", "i4")]
                           + [(q, f"a.{q}", "i8" if q == "flag" else "f8") for q in quantities],
                           "FROM aperture_flux a JOIN source s USING (source_id) WHERE a.run_id = :p AND s.run_id = :d",
                           {"p": fr.runs["photometry"], "d": det})
        tc = fetch_columns(conn, [("id", "s.id", "i8"), ("filt", "t.filter_id", "i4"), ("tot_corr", "t.tot_corr", "f8")],
                           "FROM total_correction t JOIN source s USING (source_id) WHERE t.run_id = :p "
                           "AND s.run_id = :d", {"p": fr.runs["photometry"], "d": det})
    filter_ids = dict(conn.execute(text("SELECT name, filter_id FROM filter")).all())
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
    if ap is not None:
        rows = np.array([index[int(i)] for i in ap["id"]], dtype=np.int64)
        for filt in ["det", *filters]:
            prefix = "" if filt == "det" else f"{filt}_"
            sel = ap["filt"] == filter_ids[filt]
            for i in range(len(rc.APERTURES)):
                m = sel & (ap["ap"] == i)
                for q in ("flux", "fluxerr", "flag", "bkg", "mask"):
                    _put(out[f"{prefix}{q}_aper_{i}"], rows[m], ap[q][m])
                if filt == "det":
                    _put(out[f"apcorr_{i}"], rows[m], ap["apcorr"][m])
                else:
                    for q in ("corr", "ecorr", "tot", "etot"):
                        _put(out[f"{filt}_{q}_{i}"], rows[m], ap[q][m])
        trows = np.array([index[int(i)] for i in tc["id"]], dtype=np.int64)
        for filt in filters:
            m = tc["filt"] == filter_ids[filt]
            _put(out[f"{filt}_tot_corr"], trows[m], tc["tot_corr"][m])
    if "irac" in fr.runs:
        quantities = ("nexp", "exptime", "flux", "err", "patch", "bright")
        ir = fetch_columns(conn, [("id", "s.id", "i8"), ("channel", "i.channel", "i4")]
                           + [(q, f"i.{q}", "i8" if q in ("nexp", "patch", "bright") else "f8") for q in quantities],
                           "FROM irac_flux i JOIN source s USING (source_id) WHERE i.run_id = :r AND s.run_id = :d",
                           {"r": fr.runs["irac"], "d": det})
        rows = np.array([index[int(i)] for i in ir["id"]], dtype=np.int64)
        for ch in rc.IRAC_CHANNELS:
            m = ir["channel"] == ch
            for q in quantities:
                _put(out[f"irac_ch{ch}_{q}"], rows[m], ir[q][m])
    return out, filters


def zout_table(conn: Connection, fr: FieldRuns) -> dict[str, np.ndarray] | None:
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


def _header_cards(conn: Connection, version: dict, fr: FieldRuns) -> list[tuple[str, object, str]]:
    field = conn.execute(text("SELECT * FROM field WHERE field_id = :f"), {"f": fr.field_id}).mappings().one()
    cards = [("CLUSTER", field["cluster"], "cluster name"), ("FIELD", field["name"], "ALCS field"),
             ("HSTROOT", field["hst_root"], "HST product root"),
             ("Z_CLUS", field["z_cluster"] if field["z_cluster"] is not None else MISSING, "cluster redshift"),
             ("EBV_MW", field["ebv"] if field["ebv"] is not None else MISSING, "Galactic E(B-V), not corrected"),
             ("VERSION", version["name"], "alcsdb catalog version"),
             ("CONTHASH", version["content_hash"], "sha256 of the version's rows"),
             ("DATE", version["created_at"].strftime("%Y-%m-%dT%H:%M:%S"), "version creation time (UTC)"),
             ("VSOFTV", version["software_version"] or "", "alcsdb version that made the version"),
             ("ALCSDBV", __version__, "alcsdb version that exported"),
             ("GITCOMM", (git_commit() or "unknown")[:60], "alcsdb git commit that exported"),
             ("BUNIT", "uJy", "fluxes in microJansky, AB zeropoint 23.9"), ("ABZP", 23.9, "AB zeropoint of fluxes"),
             ("MISSING", MISSING, "value of missing data")]
    for role, key in (("detect", "RUN_DET"), ("photometry", "RUN_PHOT"), ("irac", "RUN_IRAC"), ("photoz", "RUN_PHZ")):
        if role in fr.runs:
            cards.append((key, fr.runs[role], f"run id of the {role} rows"))
    if "photoz" in fr.runs:
        params = conn.execute(text("SELECT stage, params FROM run WHERE run_id = :r"), {"r": fr.runs["photoz"]}).one()
        for key, value in sorted((params[1] or {}).get("eazy", {}).items()):
            if isinstance(value, (int, float, str, bool)) and len(key) <= 60:
                cards.append((f"HIERARCH EAZY {key}", value, "EAZY parameter"))
    return cards


def _write_fits(path: Path, table: dict[str, np.ndarray], cards, kind: str) -> None:
    cols = []
    for name, arr in table.items():
        spec = rc.phot_column_spec(name) if kind == "phot" else next(s for s in rc.ZOUT_SPECS if s.name == name)
        arr = arr.astype(np.dtype(spec.dtype).newbyteorder(">"))
        fmt = {"f8": "D", "f4": "E", "i2": "I", "i4": "J", "i8": "K"}[np.dtype(spec.dtype).str[1:]]
        repeat = int(np.prod(spec.shape)) if spec.shape else 1
        cols.append(fits.Column(name=name, format=f"{repeat if repeat > 1 else ''}{fmt}", unit=spec.unit, array=arr))
    hdu = fits.BinTableHDU.from_columns(cols, name="CATALOG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # long comments are truncated, as intended
        for key, value, comment in cards:
            hdu.header[key] = (value, comment)
    # the checksum comment carries a time: the version's, so that the bytes never depend on the clock
    when = dict((k, v) for k, v, _ in cards)["DATE"]
    primary = fits.PrimaryHDU()
    for h in (primary, hdu):
        h.add_checksum(when=when)
    fits.HDUList([primary, hdu]).writeto(path, overwrite=True)


def _write_csv(path: Path, table: dict[str, np.ndarray]) -> None:
    from astropy.table import Table

    flat = {}
    for name, arr in table.items():
        if arr.ndim == 2:
            flat.update({f"{name}_{k}": arr[:, k] for k in range(arr.shape[1])})
        else:
            flat[name] = arr
    Table(flat).write(path, format="ascii.csv", overwrite=True)


def _fill_zspec(conn: Connection, fr: FieldRuns, tables: dict, catalog: str, radius: float) -> int:
    """Put the nearest external z_spec within `radius` into both tables' z_spec; returns how many."""
    from .crossmatch import zspec_for_sources

    ids, source_ids = (np.array(v) for v in zip(*conn.execute(
        text("SELECT id, source_id FROM source WHERE run_id = :d ORDER BY id"), {"d": fr.runs["detect"]}).all()))
    z = zspec_for_sources(conn, catalog, source_ids, radius)
    found = np.isfinite(z)
    tables["phot"]["z_spec"][found] = z[found]
    if tables["zout"] is not None:
        rows = np.searchsorted(ids, tables["zout"]["id"])
        zz = z[rows]
        ok = np.isfinite(zz)
        tables["zout"]["z_spec"][ok] = zz[ok]
    return int(found.sum())


def export_version(engine: Engine, version_name: str, out_dir: Path, *, field: str | None = None,
                   fmt: str = "fits", zspec: str | None = None, zspec_radius: float = 0.5,
                   progress: Callable[[str], None] | None = None) -> list[ExportedFile]:
    """Write the version's files; with `zspec`, z_spec comes from that external catalog (nearest match
    within `zspec_radius` arcsec), recorded in the export run's parameters and inputs."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "hats":
        raise InputError("--format hats is not available yet (it comes with the scale-out work); use fits or csv")
    out_dir = Path(out_dir)
    with engine.connect() as conn:
        version, fields = version_runs(conn, version_name)
        if field:
            fid, _ = resolve_field(conn, field)
            fields = [fr for fr in fields if fr.field_id == fid]
            if not fields:
                raise InputError(f"version {version_name} has no field {field}")
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"version": version_name, "field": field, "format": fmt, "out": str(out_dir.resolve())}
    if zspec:
        from .crossmatch import catalog_provenance

        with engine.connect() as conn:
            params["zspec"] = {**catalog_provenance(conn, zspec), "radius_arcsec": zspec_radius}
    written: list[ExportedFile] = []
    with stage_run(engine, "export", params=params) as run:
        conn = run.conn
        if zspec:
            pid = conn.execute(text("SELECT product_id FROM external_catalog WHERE name = :n"), {"n": zspec}).scalar()
            if pid is not None:
                run.add_input(pid, "zspec_catalog")
        pinned = {r for fr in fields for r in fr.runs.values()}
        for (pid,) in conn.execute(text("SELECT product_id FROM product WHERE run_id = ANY(:r) AND kind NOT LIKE "
                                        "'export%'"), {"r": sorted(pinned)}):
            run.add_input(pid, "version_rows")
        for fr in fields:
            if progress:
                progress(f"{fr.field}: reading rows")
            cards = _header_cards(conn, version, fr)
            tables = {"phot": phot_table(conn, fr)[0], "zout": zout_table(conn, fr)}
            if zspec:
                n = _fill_zspec(conn, fr, tables, zspec, zspec_radius)
                cards = [*cards, ("ZSPECCAT", zspec, "external catalog of z_spec"),
                         ("ZSPECN", n, f"sources with a z_spec within {zspec_radius} arcsec")]
            suffix = {"phot": "_irac_phot_apcorr", "zout": "_irac.eazypy.zout"}
            for kind, table in tables.items():
                if table is None:
                    continue
                path = out_dir / f"{fr.field}{suffix[kind]}.{'fits' if fmt == 'fits' else 'csv'}"
                if progress:
                    progress(f"{fr.field}: writing {path.name}")
                if fmt == "fits":
                    _write_fits(path, table, cards, kind)
                else:
                    _write_csv(path, table)
                sha = file_sha256(path)
                run.register_product(path, f"export_{kind}", field_id=fr.field_id, sha256=sha,
                                     meta={"version": version_name, "format": fmt})
                written.append(ExportedFile(fr.field, kind, path, sha, len(next(iter(table.values())))))
    return written
