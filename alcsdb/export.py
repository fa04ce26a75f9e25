"""Export a catalog version in the release's format, reproducibly.

Per field: `{name}_irac_phot_apcorr.fits` (columns and order of `phot_apcorr_columns.md`)
and `{name}_irac.eazypy.zout.fits` (`zout_columns.md`), microJansky, -99 for missing values.
Headers carry the cluster, field, version, content hash, pinned run ids, software versions,
EAZY parameters, DATE = the version's creation time, and CHECKSUM/DATASUM. Nothing in a file
depends on when or where it was written, so exporting a version twice gives identical bytes.
Each export is a run whose outputs are `product` rows with sha256.

The tables come from the version's snapshot (`alcsdb.snapshot`: stored once by `version
create`), or are built from the rows (`alcsdb.release_tables`) for versions made before
snapshots existed; `alcsdb.fitswriter` writes them, byte for byte as astropy would, in about a
third of astropy's time.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import Connection, Engine, text

from . import __version__
from . import columns as rc
from .errors import InputError
from .fields import resolve_field
from .fitswriter import Column, write_table
from .provenance import file_sha256, git_commit, stage_run
from .release_tables import _fill, _put, column_units, phot_table, zout_table  # noqa: F401 (hats, compare)
from .snapshot import build as build_tables
from .snapshot import load as load_snapshot
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


def _write_fits(path: Path, table: dict[str, np.ndarray], cards, kind: str,
                units: dict[str, str | None] | None = None) -> str:
    """Write one release table (columns in `table` order, dtypes as given) and return its sha256.

    The checksum comments carry the version's creation time (`DATE`), so the bytes never depend on the clock.
    """
    units = units or column_units(kind, list(table))
    when = dict((k, v) for k, v, _ in cards)["DATE"]
    return write_table(path, [Column(name, arr, units[name]) for name, arr in table.items()], cards,
                       extname="CATALOG", when=when)


def _write_csv(path: Path, table: dict[str, np.ndarray]) -> None:
    from astropy.table import Table

    flat = {}
    for name, arr in table.items():
        if arr.ndim == 2:
            flat.update({f"{name}_{k}": arr[:, k] for k in range(arr.shape[1])})
        else:
            flat[name] = arr
    Table(flat).write(path, format="ascii.csv", overwrite=True)


def version_tables(conn: Connection, version: dict, fr: FieldRuns) -> tuple[dict, dict]:
    """The field's release tables ({"phot": ..., "zout": ... or None}) and units ({kind: {name: unit}}).

    Read from the version's snapshot (`alcsdb.snapshot`), as written when the version was made;
    versions made before snapshots existed get them built from the rows.
    """
    stored = load_snapshot(conn, version["version_id"], fr.field_id)
    if stored is not None:
        return stored
    tables = build_tables(conn, fr)
    return tables, {kind: column_units(kind, list(t)) for kind, t in tables.items() if t is not None}


def _fill_zspec(conn: Connection, fr: FieldRuns, tables: dict, catalog: str, radius: float) -> int:
    """Put the nearest external z_spec within `radius` into both tables' z_spec; returns how many."""
    from .crossmatch import zspec_for_sources

    ids, source_ids = (np.array(v) for v in zip(*conn.execute(
        text("SELECT id, source_id FROM source WHERE run_id = :d ORDER BY id"), {"d": fr.runs["detect"]}).all()))
    z = zspec_for_sources(conn, catalog, source_ids, radius)
    found = np.isfinite(z)
    tables["phot"]["z_spec"] = tables["phot"]["z_spec"].copy()  # a snapshot's arrays are read-only
    tables["phot"]["z_spec"][found] = z[found]
    if tables["zout"] is not None:
        rows = np.searchsorted(ids, tables["zout"]["id"])
        zz = z[rows]
        ok = np.isfinite(zz)
        tables["zout"]["z_spec"] = tables["zout"]["z_spec"].copy()
        tables["zout"]["z_spec"][ok] = zz[ok]
    return int(found.sum())


def export_version(engine: Engine, version_name: str, out_dir: Path, *, field: str | None = None,
                   fmt: str = "fits", zspec: str | None = None, zspec_radius: float = 0.5,
                   progress: Callable[[str], None] | None = None) -> list[ExportedFile]:
    """Write the version's files; with `zspec`, z_spec comes from that external catalog (nearest match
    within `zspec_radius` arcsec), recorded in the export run's parameters and inputs."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "hats":  # one HATS catalog for all fields: alcsdb/hats.py
        from .hats import check_out_dir

        check_out_dir(out_dir)
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
        if fmt == "hats":
            from .hats import write_hats

            return write_hats(run, version, fields, out_dir, zspec=zspec, zspec_radius=zspec_radius, progress=progress)
        for fr in fields:
            if progress:
                progress(f"{fr.field}: reading rows")
            cards = _header_cards(conn, version, fr)
            tables, units = version_tables(conn, version, fr)
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
                    sha = _write_fits(path, table, cards, kind, units[kind])
                else:
                    _write_csv(path, table)
                    sha = file_sha256(path)
                run.register_product(path, f"export_{kind}", field_id=fr.field_id, sha256=sha,
                                     meta={"version": version_name, "format": fmt})
                written.append(ExportedFile(fr.field, kind, path, sha, len(next(iter(table.values())))))
    return written
