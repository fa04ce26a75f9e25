"""`alcsdb ingest PATH`: recognise release files by name and load each in its own run.

For every file: its sha256 is computed first (an identical file already ingested is skipped),
the file is read and validated completely BEFORE anything is written (bad input leaves the
database exactly as it was), then one `ingest` run registers the file as a product (a unique
index on the sha256 of ingested products makes two concurrent ingests of one file produce
one copy) and COPYs its rows in a single transaction.
"""
from __future__ import annotations

import logging
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from alcsdb import columns as rc
from alcsdb.errors import InputError
from alcsdb.fields import resolve_field
from alcsdb.provenance import file_sha256, stage_run

from . import aorlog, catalog, images, zout

log = logging.getLogger(__name__)

CATALOG_KINDS = ("phot_apcorr", "irac_phot", "phot")  # most complete first
ROW_KINDS = {*CATALOG_KINDS, "zout", "aor_log"}
#: kinds registered as products only (their content is not table rows)
PRODUCT_KINDS = {"cat_combined", "master", "hst_sci", "hst_wht", "hst_psf", "det_sci", "det_wht", "seg", "irac_sci",
                 "irac_wht", "irac_model", "irac_residual", "irac_components"}
ORDER = {**{k: 0 for k in CATALOG_KINDS}, "zout": 1, "aor_log": 2}

Progress = Callable[[str], None]


@dataclass
class FileResult:
    path: Path
    kind: str
    status: str  # ingested | already | skipped | superseded | would-ingest | error
    field: str | None = None
    run_id: int | None = None
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    message: str = ""


def discover(path: Path) -> tuple[list[tuple[Path, rc.ParsedName]], list[FileResult]]:
    """Release files under `path` (a file or a directory, recursively), and those skipped."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    found, skipped = [], []
    for p in files:
        try:
            parsed = rc.parse_root(p.name)
        except ValueError as exc:
            if path.is_file():
                raise InputError(f"{p}: {exc}") from None
            skipped.append(FileResult(p, "unknown", "skipped", message=str(exc)))
            continue
        if parsed.kind == rc.IGNORED:
            skipped.append(FileResult(p, parsed.kind, "skipped", message=parsed.extra.get("reason", "")))
            continue
        found.append((p, parsed))
    return found, skipped


def _supersede(found: list[tuple[Path, rc.ParsedName]]) -> tuple[list, list[FileResult]]:
    """Of several catalog variants of one root in one directory, only the most complete is loaded."""
    best: dict[tuple[Path, str], tuple[Path, rc.ParsedName]] = {}
    for p, parsed in found:
        if parsed.kind in CATALOG_KINDS:
            key = (p.parent, rc.field_key(parsed.root))
            if key not in best or CATALOG_KINDS.index(parsed.kind) < CATALOG_KINDS.index(best[key][1].kind):
                best[key] = (p, parsed)
    keep, superseded = [], []
    for p, parsed in found:
        winner = best.get((p.parent, rc.field_key(parsed.root))) if parsed.kind in CATALOG_KINDS else None
        if winner is not None and winner[0] != p:
            superseded.append(FileResult(p, parsed.kind, "superseded", message=f"{winner[0].name} has the same sources"))
        else:
            keep.append((p, parsed))
    keep.sort(key=lambda item: (ORDER.get(item[1].kind, 3), str(item[0])))
    return keep, superseded


def iter_ingest(engine: Engine, path: Path, *, field: str | None = None, dry_run: bool = False,
                progress: Progress | None = None) -> Iterator[FileResult]:
    """Ingest every release file under `path`, yielding each file's result as it is done.

    Raises InputError at the first bad file (the files before it stay loaded, each in its run).
    """
    found, skipped = discover(Path(path))
    keep, superseded = _supersede(found)
    yield from skipped
    yield from superseded
    roots_by_dir: dict[Path, set[str]] = {}
    for p, parsed in keep:
        if parsed.root:
            roots_by_dir.setdefault(p.parent, set()).add(parsed.root)
    dry_catalogs: dict[int, np.ndarray] = {}  # dry run: ids of the catalogs that would be loaded
    for i, (p, parsed) in enumerate(keep, 1):
        if progress:
            progress(f"[{i}/{len(keep)}] {p.name}")
        yield ingest_file(engine, p, parsed, field=field, dry_run=dry_run,
                          sibling_roots=roots_by_dir.get(p.parent, set()), dry_catalogs=dry_catalogs)


def ingest_path(engine: Engine, path: Path, **kw) -> list[FileResult]:
    return list(iter_ingest(engine, path, **kw))


def _field_for(conn, path: Path, parsed: rc.ParsedName, field: str | None, sibling_roots: set[str],
               reader_obj) -> tuple[int, str]:
    if field:
        return resolve_field(conn, field)
    if parsed.root:
        return resolve_field(conn, parsed.root)
    if len(sibling_roots) == 1:
        return resolve_field(conn, next(iter(sibling_roots)))
    if isinstance(reader_obj, aorlog.AorLog):
        ra, dec = reader_obj.centre
        fid = aorlog.nearest_field(conn, ra, dec)
        if fid is not None:
            name = conn.execute(text("SELECT name FROM field WHERE field_id = :f"), {"f": fid}).scalar_one()
            return fid, name
        raise InputError(f"{path}: no field centre within 0.5 deg of the AOR ({ra:.4f}, {dec:.4f}); use --field")
    raise InputError(f"{path}: cannot tell the field; use --field")


def _read(path: Path, parsed: rc.ParsedName):
    if parsed.kind in CATALOG_KINDS:
        return catalog.read_catalog(path)
    if parsed.kind == "zout":
        return zout.read_zout(path)
    if parsed.kind == "aor_log":
        return aorlog.read_aor_log(path)
    filt = parsed.extra.get("filter") or (f"ch{parsed.extra['channel']}" if "channel" in parsed.extra else None)
    return images.read_image(path, parsed.kind, filt)


def ingest_file(engine: Engine, path: Path, parsed: rc.ParsedName, *, field: str | None = None,
                dry_run: bool = False, sibling_roots: set[str] = frozenset(),
                dry_catalogs: dict[int, np.ndarray] | None = None) -> FileResult:
    sha = file_sha256(path)
    with engine.connect() as conn:
        done = conn.execute(text("SELECT run_id FROM product WHERE sha256 = :s AND ingested"), {"s": sha}).scalar()
    if done is not None:
        return FileResult(path, parsed.kind, "already", run_id=done,
                          message=f"identical file (sha256 {sha[:12]}) already ingested by run {done}")
    obj = _read(path, parsed)
    with engine.connect() as conn:
        field_id, field_name = _field_for(conn, path, parsed, field, sibling_roots, obj)
        source_run = None
        if isinstance(obj, zout.ZoutFile):
            if dry_run and dry_catalogs and field_id in dry_catalogs:
                zout.check_ids_against(obj, dry_catalogs[field_id], "the catalog of this ingest")
            else:
                source_run = zout.check_ids(conn, obj, field_id)
        filter_id = None
        if isinstance(obj, images.Image) and obj.filter:
            filter_id = conn.execute(text("SELECT filter_id FROM filter WHERE name = :n"), {"n": obj.filter}).scalar()
    counts = obj.row_counts()
    if dry_run:
        if isinstance(obj, catalog.Catalog) and dry_catalogs is not None:
            dry_catalogs[field_id] = obj.ids
        return FileResult(path, parsed.kind, "would-ingest", field=field_name, rows=counts)
    params = {"file": str(path.resolve()), "kind": parsed.kind, "sha256": sha, "field": field_name}
    try:
        with stage_run(engine, "ingest", field_id=field_id, params=params) as run:
            product_id = run.register_product(
                path, parsed.kind, field_id=field_id, filter_id=filter_id, ingested=True, sha256=sha,
                footprint=getattr(obj, "footprint", None), meta=getattr(obj, "meta", None))
            run.add_input(product_id, "release_file")
            if isinstance(obj, catalog.Catalog):
                catalog.write_catalog(run, obj, field_id)
            elif isinstance(obj, zout.ZoutFile):
                zout.write_zout(run, obj, field_id, source_run)
            elif isinstance(obj, aorlog.AorLog):
                aorlog.write_aor_log(run, obj, field_id, product_id)
            else:
                images.write_image(run, obj, field_id, filter_id)
            rows = dict(run.n_rows)
    except IntegrityError as exc:
        if "uq_product_ingested_sha256" in str(exc.orig):
            return FileResult(path, parsed.kind, "already", field=field_name,
                              message="identical file ingested concurrently by another process")
        raise
    return FileResult(path, parsed.kind, "ingested", field=field_name, run_id=run.run_id, rows=rows)
