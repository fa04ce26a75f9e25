"""External catalogs: any FITS, CSV or VOTable table, loaded with positions indexed like `source`.

`load_catalog(engine, path, name)` reads the file with astropy's readers, chunk by chunk
(FITS memory-mapped, CSV with astropy's fast chunked reader, VOTable whole), and streams
the rows into `external_source` with COPY in one `external` run: the run's parameters say
which columns were used, the file is a `product` (path, sha256, size) and the run's input.

Per row: `ra`, `dec` (ICRS degrees; a column's unit is honoured, sexagesimal strings are read
as hours / degrees, RA is wrapped into [0, 360)), `hpx29` (`alcsdb.healpix.hpx29`, as for
`source`), `ext_id` (the file's id, as text), `z_spec` (negative values, the usual "no
redshift" sentinels -1 and -99, load as NULL) and `data`: every other scalar column (or the
`columns` asked for) as JSON, read in SQL with ``(data->>'NAME')::float8``. Floats are
written with Python's shortest round-trip repr, so every value reads back exactly.
Float32 columns use float32's shortest repr (the decimal the catalog's author wrote).
`external_catalog.columns` records the file's column names, units and dtypes.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle
from astropy.io import ascii
from astropy.table import Table
from sqlalchemy import Connection, Engine, text

from .errors import InputError
from .healpix import hpx29
from .provenance import file_sha256, stage_run

RA_NAMES = ("ra", "ra_deg", "radeg", "raj2000", "_raj2000", "ra_j2000", "ra_icrs", "alpha_j2000", "x_world")
DEC_NAMES = ("dec", "de", "dec_deg", "decdeg", "dej2000", "_dej2000", "decj2000", "dec_j2000", "de_icrs",
             "dec_icrs", "delta_j2000", "y_world")
ID_NAMES = ("id", "objid", "obj_id", "object_id", "source_id", "number", "name")
Z_SPEC_NAMES = ("z_spec", "zspec", "specz", "spec_z", "z_sp", "zsp")
FORMATS = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".fits.gz": "fits", ".csv": "ascii.csv",
           ".ecsv": "ascii.ecsv", ".vot": "votable", ".votable": "votable", ".xml": "votable"}
CHUNK_ROWS = 100_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class ColumnPlan:
    """Which file columns fill `ra`, `dec`, `ext_id`, `z_spec`, and which go into `data`."""

    ra: str
    dec: str
    ext_id: str | None
    z_spec: str | None
    data: tuple[str, ...]
    skipped: tuple[str, ...] = ()  # vector columns left out of `data`


@dataclass(frozen=True)
class ExternalRows:
    """One chunk of a catalog, ready for `external_source`: degrees, order-29 index, text id, JSON."""

    ra: np.ndarray
    dec: np.ndarray
    hpx29: np.ndarray
    ext_id: list[str | None]
    z_spec: np.ndarray
    data: list[str]


@dataclass(frozen=True)
class CatalogInfo:
    """An external catalog as stored: its id, the run that loaded it, its file and column plan."""

    catalog_id: int
    name: str
    run_id: int
    product_id: int | None
    path: str | None
    sha256: str | None
    n_rows: int
    columns: dict


def table_format(path: Path) -> str:
    """astropy format name from the file name (FITS, CSV, ECSV, VOTable); InputError otherwise."""
    name = path.name.lower()
    for suffix, fmt in sorted(FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise InputError(f"{path}: unknown catalog format (expected one of {', '.join(sorted(FORMATS))})")


def read_chunks(path: Path, fmt: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[Table]:
    """The file's table in chunks of about `chunk_rows` rows.

    FITS tables are memory-mapped (a chunk is read when sliced); CSV goes through astropy's
    fast reader in chunks of the file (about `chunk_rows` lines each); other formats are read
    whole and sliced.
    """
    try:
        if fmt == "ascii.csv":
            with path.open("rb") as fh:
                head = fh.read(1 << 20)
            chunk_bytes = max(int(chunk_rows * len(head) / max(head.count(b"\n"), 1)), 1 << 16)
            if path.stat().st_size <= chunk_bytes:
                yield Table.read(path, format="ascii.csv", guess=False)
            else:
                yield from ascii.read(path, format="csv", guess=False,
                                      fast_reader={"chunk_size": chunk_bytes, "chunk_generator": True})
            return
        memmap = fmt == "fits" and not path.name.lower().endswith(".gz")
        table = Table.read(path, format=fmt, memmap=True) if memmap else Table.read(path, format=fmt)
    except InputError:
        raise
    except Exception as exc:  # astropy raises many kinds for a malformed file
        raise InputError(f"{path}: cannot read as {fmt}: {' '.join(str(exc).split())}") from exc
    for start in range(0, max(len(table), 1), chunk_rows):
        yield table[start:start + chunk_rows]


def _find(path: Path, colnames: Sequence[str], given: str | None, candidates: Sequence[str], what: str,
          option: str, required: bool) -> str | None:
    """The column named `given`, else the one column whose lower-case name is a known candidate."""
    if given is not None:
        if given not in colnames:
            raise InputError(f"{path}: no column {given!r} for {what} (columns: {', '.join(colnames)})")
        return given
    found = [c for c in colnames if c.lower() in candidates]
    if len(found) > 1:
        raise InputError(f"{path}: several columns could be {what} ({', '.join(found)}): choose one with {option}")
    if not found and required:
        raise InputError(f"{path}: no {what} column found among {', '.join(colnames)}: name it with {option}")
    return found[0] if found else None


def plan_columns(path: Path, table: Table, *, ra: str | None = None, dec: str | None = None,
                 id_col: str | None = None, z_spec: str | None = None,
                 columns: Sequence[str] | None = None) -> ColumnPlan:
    """Decide which columns fill which field (explicit names, else the usual names, case-insensitive)."""
    names = list(table.colnames)
    ra_col = _find(path, names, ra, RA_NAMES, "RA", "--ra", True)
    dec_col = _find(path, names, dec, DEC_NAMES, "Dec", "--dec", True)
    id_name = _find(path, names, id_col, ID_NAMES, "id", "--id", False)
    z_name = _find(path, names, z_spec, Z_SPEC_NAMES, "z_spec", "--z-spec", False)
    used = {ra_col, dec_col, id_name, z_name}
    if columns is not None:
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(f"{path}: --columns names missing from the file: {', '.join(missing)}")
        vector = [c for c in columns if table[c].ndim > 1]
        if vector:
            raise InputError(f"{path}: --columns names vector columns, which cannot be stored: {', '.join(vector)}")
        return ColumnPlan(ra_col, dec_col, id_name, z_name, tuple(c for c in columns if c not in used))
    data = tuple(c for c in names if c not in used and table[c].ndim == 1)
    skipped = tuple(c for c in names if c not in used and table[c].ndim > 1)
    return ColumnPlan(ra_col, dec_col, id_name, z_name, data, skipped)


def _angle_deg(path: Path, column, name: str, hours_if_text: bool) -> np.ndarray:
    """A column of angles in degrees: its unit if it has one, degrees if not, sexagesimal text parsed."""
    if column.dtype.kind in "US":
        if np.ma.getmaskarray(column).any():
            raise InputError(f"{path}: column {name} has empty values")
        unit = column.unit or (u.hourangle if hours_if_text else u.deg)
        try:
            return Angle(np.asarray(column).astype(str), unit=unit).deg
        except Exception as exc:  # astropy's parser raises ValueError and its own errors
            raise InputError(f"{path}: column {name}: cannot parse angles: {exc}") from exc
    if column.dtype.kind not in "fiu":
        raise InputError(f"{path}: column {name} is not numeric ({column.dtype})")
    data = np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan)
    if column.unit is not None and column.unit != u.dimensionless_unscaled:
        try:
            data = (data * column.unit).to_value(u.deg)
        except u.UnitConversionError as exc:
            raise InputError(f"{path}: column {name} has unit {column.unit}, not an angle") from exc
    return np.asarray(data, dtype=np.float64)


def _json_values(column) -> list[str]:
    """JSON text of each value of a column; masked, NaN and infinite values are null."""
    kind = column.dtype.kind
    mask = np.ma.getmaskarray(column)
    data = np.asarray(column)
    if kind == "b":
        out = ["true" if v else "false" for v in data.tolist()]
    elif kind == "f" and data.dtype.itemsize < 8:  # float32: its own shortest repr ("0.1", not 0.100000001)
        out = [v if v not in ("nan", "inf", "-inf") else "null" for v in data.astype(str).tolist()]
    elif kind in "fiu":
        out = _numbers(data, "null")
    else:
        out = [json.dumps(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for v in data.tolist()]
    if mask.any():
        for i in np.flatnonzero(mask):
            out[i] = "null"
    return out


def prepare_rows(path: Path, table: Table, plan: ColumnPlan) -> ExternalRows:
    """Positions in degrees (RA in [0, 360)), hpx29, ids as text, z_spec (negative = NULL), JSON data."""
    ra = _angle_deg(path, table[plan.ra], plan.ra, True)
    dec = _angle_deg(path, table[plan.dec], plan.dec, False)
    bad = ~(np.isfinite(ra) & np.isfinite(dec))
    if bad.any():
        raise InputError(f"{path}: {int(bad.sum())} rows have no valid position in {plan.ra}/{plan.dec} "
                         f"(first: row {int(np.flatnonzero(bad)[0])} of its chunk)")
    off = np.abs(dec) > 90
    if off.any():
        raise InputError(f"{path}: {plan.dec} must lie within [-90, 90] deg, found {dec[off][0]!r}")
    ra = np.mod(ra, 360.0)
    ra[ra >= 360.0] = 0.0  # -1e-20 % 360 == 360.0
    n = len(table)
    if plan.ext_id is not None:
        col = table[plan.ext_id]
        masked = np.ma.getmaskarray(col)
        ext_id = [None if m else (v.decode() if isinstance(v, bytes) else str(v))
                  for v, m in zip(np.asarray(col).tolist(), masked)]
    else:
        ext_id = [None] * n
    if plan.z_spec is not None:
        z = np.ma.filled(np.ma.asarray(table[plan.z_spec], dtype=np.float64), np.nan)
        with np.errstate(invalid="ignore"):
            z = np.where(np.isfinite(z) & (z >= 0), z, np.nan)
    else:
        z = np.full(n, np.nan)
    keys = [json.dumps(c) + ":" for c in plan.data]
    parts = [[k + v for v in _json_values(table[c])] for k, c in zip(keys, plan.data)]
    data = ["{" + ",".join(p) + "}" for p in zip(*parts)] if parts else ["{}"] * n
    return ExternalRows(ra=ra, dec=dec, hpx29=hpx29(ra, dec), ext_id=ext_id, z_spec=z, data=data)


def _csv_quote(value: str | None) -> str:
    return "" if value is None else '"' + value.replace('"', '""') + '"'


def _numbers(values: np.ndarray, missing: str = "") -> list[str]:
    """Text of each number (floats: Python's shortest round-trip repr); NaN and infinities -> `missing`.

    `str` of a list formats in C; float repr is what both COPY and JSON read back exactly.
    """
    out = str(values.tolist())[1:-1].split(", ") if len(values) else []
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        for i in np.flatnonzero(~np.isfinite(values)):
            out[i] = missing
    return out


def csv_block(rows: ExternalRows, catalog_id: int, run_id: int) -> str:
    """COPY CSV text for `external_source (catalog_id, run_id, ext_id, ra, dec, hpx29, z_spec, data)`."""
    prefix = f"{catalog_id},{run_id},"
    return "".join(
        f"{prefix}{_csv_quote(e)},{r},{d},{h},{z},{_csv_quote(j)}\n"
        for e, r, d, h, z, j in zip(rows.ext_id, _numbers(rows.ra), _numbers(rows.dec), _numbers(rows.hpx29),
                                    _numbers(rows.z_spec), rows.data))


def _column_meta(table: Table, plan: ColumnPlan) -> dict:
    def meta(c: str) -> dict:
        col = table[c]
        return {"unit": col.unit.to_string() if col.unit is not None else None, "dtype": col.dtype.str}

    return {"ra": plan.ra, "dec": plan.dec, "id": plan.ext_id, "z_spec": plan.z_spec,
            "data": {c: meta(c) for c in plan.data}, "skipped": list(plan.skipped),
            "units": {c: meta(c)["unit"] for c in (plan.ra, plan.dec, plan.z_spec) if c is not None}}


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"invalid catalog name {name!r}: letters, digits and _.+- only, at most 64 characters")
    return name


def load_catalog(engine: Engine, path: str | Path, name: str, *, ra: str | None = None, dec: str | None = None,
                 id_col: str | None = None, z_spec: str | None = None, columns: Sequence[str] | None = None,
                 chunk_rows: int = CHUNK_ROWS) -> CatalogInfo:
    """Load a catalog file as external catalog `name` in one `external` run; returns what was stored."""
    path = Path(path)
    validate_name(name)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    fmt = table_format(path)
    with engine.connect() as conn:
        other = conn.execute(text("SELECT c.run_id, p.path FROM external_catalog c LEFT JOIN product p "
                                  "USING (product_id) WHERE c.name = :n"), {"n": name}).first()
    if other is not None:
        raise InputError(f"external catalog {name!r} already exists (run {other[0]}, from {other[1]}): "
                         "choose another --name")
    sha = file_sha256(path)
    params = {"name": name, "path": str(path.resolve()), "sha256": sha, "format": fmt, "ra": ra, "dec": dec,
              "id": id_col, "z_spec": z_spec, "columns": list(columns) if columns is not None else None,
              "chunk_rows": chunk_rows}
    with stage_run(engine, "external", params=params) as run:
        product_id = run.register_product(path, "external_catalog", sha256=sha, meta={"format": fmt})
        run.add_input(product_id, "catalog")
        catalog_id = None
        plan = None
        n = 0
        raw = run.conn.connection.dbapi_connection
        for chunk in read_chunks(path, fmt, chunk_rows):
            if plan is None:
                plan = plan_columns(path, chunk, ra=ra, dec=dec, id_col=id_col, z_spec=z_spec, columns=columns)
                catalog_id = run.conn.execute(text(
                    "INSERT INTO external_catalog (name, run_id, product_id, columns) VALUES "
                    "(:n, :r, :p, CAST(:c AS jsonb)) RETURNING catalog_id"),
                    {"n": name, "r": run.run_id, "p": product_id,
                     "c": json.dumps({"file": str(path.resolve()), "format": fmt, **_column_meta(chunk, plan)})},
                ).scalar_one()
                run.count("external_catalog", 1)
            if len(chunk) == 0:
                continue
            block = csv_block(prepare_rows(path, chunk, plan), catalog_id, run.run_id)
            with raw.cursor() as cursor:
                cursor.copy_expert("COPY external_source (catalog_id, run_id, ext_id, ra, dec, hpx29, z_spec, data) "
                                   "FROM STDIN WITH (FORMAT csv)", io.StringIO(block))
            n += len(chunk)
        if n == 0:
            raise InputError(f"{path}: the table has no rows")
        run.count("external_source", n)
        run.conn.execute(text("ANALYZE external_source"))
    with engine.connect() as conn:
        return catalog_info(conn, name)


def catalog_info(conn: Connection, name: str) -> CatalogInfo:
    """The stored external catalog `name`; InputError naming the known catalogs if there is none."""
    row = conn.execute(text(
        "SELECT c.catalog_id, c.name, c.run_id, c.product_id, p.path, p.sha256, c.columns, "
        "(SELECT count(*) FROM external_source e WHERE e.catalog_id = c.catalog_id) AS n_rows "
        "FROM external_catalog c LEFT JOIN product p USING (product_id) WHERE c.name = :n"),
        {"n": name}).mappings().first()
    if row is None:
        known = conn.execute(text("SELECT string_agg(name, ', ' ORDER BY name) FROM external_catalog")).scalar()
        raise InputError(f"unknown external catalog {name!r} (loaded: {known or 'none'}; "
                         "load one with `alcsdb external load`)")
    return CatalogInfo(catalog_id=row["catalog_id"], name=row["name"], run_id=row["run_id"],
                       product_id=row["product_id"], path=row["path"], sha256=row["sha256"], n_rows=row["n_rows"],
                       columns=row["columns"] or {})


def list_catalogs(conn: Connection) -> list[dict]:
    """Every external catalog: name, rows, rows with z_spec, run, file and when it was loaded."""
    rows = conn.execute(text(
        "SELECT c.name, count(e.ext_source_id) AS rows, count(e.z_spec) AS with_z_spec, c.run_id, "
        "r.finished_at AS loaded_at, p.path AS file FROM external_catalog c JOIN run r USING (run_id) "
        "LEFT JOIN product p USING (product_id) LEFT JOIN external_source e USING (catalog_id) "
        "GROUP BY c.catalog_id, r.finished_at, p.path ORDER BY c.name")).mappings().all()
    return [dict(r) for r in rows]
