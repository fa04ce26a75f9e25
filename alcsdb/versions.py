"""Catalog versions: named, immutable sets of runs per field, with a content hash.

A version pins, per field, one run for each role:

| role         | rows                                   | runs that can fill it      |
|--------------|----------------------------------------|----------------------------|
| `detect`     | `source`                               | detect, ingest (catalog)   |
| `photometry` | `aperture_flux`, `total_correction`    | photometry, ingest         |
| `irac`       | `irac_flux`                            | irac, ingest               |
| `photoz`     | `zout`                                 | photoz, ingest (zout)      |

By default each role takes the latest succeeded run that measured the pinned sources. The
content hash is sha256 over a canonical text serialisation of every covered row: fields in
name order, rows ordered by catalog id, filter name and aperture, values as PostgreSQL prints
them (shortest exact float text), surrogate keys (source_id, run_id, filter_id) left out, so
that re-ingesting an export gives the same hash. Triggers (migration 0003) refuse UPDATE and
DELETE of versions and of rows of pinned runs; foreign keys refuse deleting pinned runs.

A version also stores its release-format tables (`alcsdb.snapshot`, table
`catalog_version_column`), built once from the rows when it is created; export reads them, and
`audit` checks them against the rows. The content hash does not cover them (it is the rows').
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from . import __version__
from .copyload import bind_params
from .errors import InputError
from .fields import resolve_field
from .schema import SOURCE_FLOAT_COLUMNS, SOURCE_INT_COLUMNS, ZOUT_ARRAY_COLUMNS, ZOUT_FLOAT_COLUMNS, ZOUT_INT_COLUMNS
from .snapshot import build as build_snapshot
from .snapshot import store as store_snapshot

ROLES = ("detect", "photometry", "irac", "photoz")
ROLE_TABLE = {"detect": "source", "photometry": "aperture_flux", "irac": "irac_flux", "photoz": "zout"}
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")

SOURCE_HASH_COLUMNS = ("id", "ra", "dec", "x", "y", *SOURCE_INT_COLUMNS, *SOURCE_FLOAT_COLUMNS)
ZOUT_HASH_COLUMNS = (*ZOUT_INT_COLUMNS, *ZOUT_FLOAT_COLUMNS, *ZOUT_ARRAY_COLUMNS, "pz")


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _VERSION_NAME.match(name):
        raise InputError(f"invalid version name {name!r}: letters, digits and _.+- only, at most 64 characters")
    return name


@dataclass
class FieldRuns:
    field_id: int
    field: str
    runs: dict[str, int]  # role -> run_id


def _first_source(conn: Connection, detect_run: int) -> int | None:
    return conn.execute(text("SELECT min(source_id) FROM source WHERE run_id = :r"), {"r": detect_run}).scalar()


def latest_runs(conn: Connection, field_id: int) -> dict[str, int]:
    """Per role, the newest succeeded run of the field (photometry etc. measured on those sources)."""
    detect = conn.execute(text(
        "SELECT r.run_id FROM run r WHERE r.field_id = :f AND r.status = 'succeeded' "
        "AND EXISTS (SELECT 1 FROM source s WHERE s.run_id = r.run_id) "
        "ORDER BY r.finished_at DESC, r.run_id DESC LIMIT 1"), {"f": field_id}).scalar()
    if detect is None:
        return {}
    runs = {"detect": detect}
    first = _first_source(conn, detect)
    for role in ("photometry", "irac", "photoz"):
        run = conn.execute(text(
            f"SELECT r.run_id FROM run r JOIN (SELECT DISTINCT run_id FROM {ROLE_TABLE[role]} WHERE source_id = :s) m "
            "USING (run_id) WHERE r.status = 'succeeded' ORDER BY r.finished_at DESC, r.run_id DESC LIMIT 1"),
            {"s": first}).scalar()
        if run is not None:
            runs[role] = run
    return runs


def version_runs(conn: Connection, name: str) -> tuple[dict, list[FieldRuns]]:
    """The version row (as a dict) and its pinned runs per field, fields in name order."""
    version = conn.execute(text("SELECT * FROM catalog_version WHERE name = :n"), {"n": name}).mappings().first()
    if version is None:
        raise InputError(f"unknown catalog version {name!r}: see `alcsdb version list`")
    rows = conn.execute(text(
        "SELECT f.field_id, f.name, cvr.stage, cvr.run_id FROM catalog_version_run cvr JOIN field f USING (field_id) "
        "WHERE cvr.version_id = :v ORDER BY f.name, cvr.stage"), {"v": version["version_id"]}).all()
    by_field: dict[int, FieldRuns] = {}
    for fid, fname, role, run in rows:
        by_field.setdefault(fid, FieldRuns(fid, fname, {})).runs[role] = run
    return dict(version), sorted(by_field.values(), key=lambda fr: fr.field)


def _hash_queries(fr: FieldRuns) -> list[tuple[str, str, dict]]:
    """(label, SELECT, params) whose COPY text output, in order, is the canonical content."""
    out = []
    det = fr.runs.get("detect")
    if det is None:
        return out
    cols = ", ".join(f"s.{c}" for c in SOURCE_HASH_COLUMNS)
    out.append(("source", f"SELECT {cols} FROM source s WHERE s.run_id = :d ORDER BY s.id", {"d": det}))
    if "photometry" in fr.runs:
        out.append(("aperture_flux",
                    "SELECT s.id, f.name, a.aperture, a.flux, a.fluxerr, a.flag, a.bkg, a.mask, a.apcorr, a.corr, "
                    "a.ecorr, a.tot, a.etot FROM aperture_flux a JOIN source s USING (source_id) "
                    "JOIN filter f USING (filter_id) WHERE a.run_id = :p AND s.run_id = :d "
                    "ORDER BY s.id, f.name, a.aperture", {"p": fr.runs["photometry"], "d": det}))
        out.append(("total_correction",
                    "SELECT s.id, f.name, t.tot_corr FROM total_correction t JOIN source s USING (source_id) "
                    "JOIN filter f USING (filter_id) WHERE t.run_id = :p AND s.run_id = :d ORDER BY s.id, f.name",
                    {"p": fr.runs["photometry"], "d": det}))
    if "irac" in fr.runs:
        out.append(("irac_flux",
                    "SELECT s.id, i.channel, i.flux, i.err, i.nexp, i.exptime, i.patch, i.bright, i.flag "
                    "FROM irac_flux i JOIN source s USING (source_id) WHERE i.run_id = :i AND s.run_id = :d "
                    "ORDER BY s.id, i.channel", {"i": fr.runs["irac"], "d": det}))
    if "photoz" in fr.runs:
        zcols = ", ".join(f"z.{c}" for c in ZOUT_HASH_COLUMNS)
        out.append(("zout", f"SELECT s.id, {zcols} FROM zout z JOIN source s USING (source_id) "
                            "WHERE z.run_id = :z AND s.run_id = :d ORDER BY s.id", {"z": fr.runs["photoz"], "d": det}))
    return out


class _Sink:
    def __init__(self, digest):
        self.digest = digest

    def write(self, data):
        self.digest.update(data if isinstance(data, bytes) else data.encode())


def content_hash(conn: Connection, fields: list[FieldRuns]) -> str:
    """sha256 over the canonical serialisation of the rows the runs cover (see module docs)."""
    digest = hashlib.sha256()
    raw = conn.connection.dbapi_connection
    cursor = raw.cursor()
    try:
        cursor.execute("SET LOCAL extra_float_digits = 1")  # shortest text that round-trips exactly
        for fr in fields:
            for label, sql, params in _hash_queries(fr):
                digest.update(f"\n#{fr.field}:{label}\n".encode())
                cursor.copy_expert(f"COPY ({bind_params(conn, sql, params)}) TO STDOUT", _Sink(digest))
    finally:
        cursor.close()
    return digest.hexdigest()


def create_version(engine: Engine, name: str, *, fields: list[str] | None = None, note: str | None = None,
                   runs: dict[str, int] | None = None, snapshot: bool = True) -> dict:
    """Freeze the latest runs of `fields` (all fields with sources when None) as version `name`.

    `runs` overrides the default choice for a role (`{"photoz": 12}`), for a single field. With
    `snapshot` (the default) the release tables of each field are stored with the version
    (`alcsdb.snapshot`), in the same transaction, so that export reads them instead of the rows.
    """

    validate_name(name)
    with engine.begin() as conn:
        if conn.execute(text("SELECT 1 FROM catalog_version WHERE name = :n"), {"n": name}).scalar():
            raise InputError(f"catalog version {name!r} already exists (versions are immutable)")
        if fields:
            targets = [resolve_field(conn, f) for f in fields]
        else:
            targets = [tuple(r) for r in conn.execute(text(
                "SELECT f.field_id, f.name FROM field f WHERE EXISTS (SELECT 1 FROM source s WHERE "
                "s.field_id = f.field_id) ORDER BY f.name"))]
        if not targets:
            raise InputError("no field has sources yet: ingest or run the pipeline first")
        pinned = []
        for fid, fname in targets:
            chosen = latest_runs(conn, fid)
            if runs:
                if len(targets) > 1:
                    raise InputError("explicit runs need exactly one --field")
                chosen.update(runs)
            if "detect" not in chosen:
                raise InputError(f"field {fname} has no sources: nothing to version")
            pinned.append(FieldRuns(fid, fname, chosen))
        pinned.sort(key=lambda fr: fr.field)
        digest = content_hash(conn, pinned)
        version_id = conn.execute(text(
            "INSERT INTO catalog_version (name, note, software_version, content_hash) VALUES (:n, :note, :sv, :h) "
            "RETURNING version_id"), {"n": name, "note": note, "sv": __version__, "h": digest}).scalar_one()
        conn.execute(text("INSERT INTO catalog_version_run (version_id, field_id, stage, run_id) "
                          "VALUES (:v, :f, :s, :r)"),
                     [{"v": version_id, "f": fr.field_id, "s": role, "r": run}
                      for fr in pinned for role, run in fr.runs.items()])
        stored = sum(store_snapshot(conn, version_id, fr.field_id, build_snapshot(conn, fr)) for fr in pinned
                     ) if snapshot else 0
    return {"name": name, "version_id": version_id, "content_hash": digest,
            "fields": {fr.field: fr.runs for fr in pinned}, "snapshot_bytes": stored}


def verify_hash(conn: Connection, name: str) -> tuple[str, str]:
    """(stored, recomputed) content hash of a version."""
    version, fields = version_runs(conn, name)
    return version["content_hash"], content_hash(conn, fields)
