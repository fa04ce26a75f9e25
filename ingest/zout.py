"""EAZY output `{root}_irac.eazypy.zout.fits` -> `zout` rows, matched to catalog sources by `id`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import text

from alcsdb import columns as rc
from alcsdb.copyload import copy_columns
from alcsdb.errors import InputError
from alcsdb.provenance import RunContext
from alcsdb.schema import ZOUT_ARRAY_COLUMNS, ZOUT_INT_COLUMNS

from .fitsio import as_float, as_int, column, read_table


@dataclass
class ZoutFile:
    path: Path
    ids: np.ndarray
    values: dict[str, np.ndarray]  # SQL column name -> array
    source_ids: np.ndarray | None = None  # set by check_ids

    def row_counts(self) -> dict[str, int]:
        return {"zout": len(self.ids)}


def read_zout(path: Path) -> ZoutFile:
    data, _header, _units = read_table(path)
    names = set(data.columns.names)
    if "id" not in names:
        raise InputError(f"{path}: missing required column 'id'")
    ids = np.asarray(column(data, "id", path)).astype(np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise InputError(f"{path}: {int((counts > 1).sum())} duplicate id(s), e.g. {uniq[counts > 1][:5].tolist()}")
    values: dict[str, np.ndarray] = {}
    for release, sql in rc.ZOUT_SQL_NAME.items():
        if release in ("id", "ra", "dec") or release not in names:
            continue
        if sql in ZOUT_ARRAY_COLUMNS:
            arr = np.asarray(data[release], dtype=np.float64)
            if arr.ndim != 2:
                raise InputError(f"{path}: column {release!r} should hold a vector of percentiles per row, "
                                 f"has shape {arr.shape[1:] or 'scalar'}")
            arr = np.where(arr == -99, np.nan, arr)
            values[sql] = arr
        elif sql in ZOUT_INT_COLUMNS:
            values[sql] = as_int(column(data, release, path))
        else:
            values[sql] = as_float(column(data, release, path))
    return ZoutFile(path=path, ids=ids, values=values)


def catalog_run_for(conn, field_id: int) -> int | None:
    """The newest succeeded run that wrote sources of the field (what a zout file refers to)."""
    return conn.execute(text(
        "SELECT r.run_id FROM run r WHERE r.field_id = :f AND r.status = 'succeeded' AND r.stage IN "
        "('ingest', 'detect') AND EXISTS (SELECT 1 FROM source s WHERE s.run_id = r.run_id) "
        "ORDER BY r.finished_at DESC, r.run_id DESC LIMIT 1"), {"f": field_id}).scalar()


def check_ids(conn, z: ZoutFile, field_id: int) -> int:
    """Match the zout ids to the field's newest catalog; sets `z.source_ids`, returns that catalog's run."""
    source_run = catalog_run_for(conn, field_id)
    if source_run is None:
        raise InputError(f"{z.path}: no catalog of this field is in the database: ingest the catalog first")
    lookup = dict(conn.execute(text("SELECT id, source_id FROM source WHERE run_id = :r"), {"r": source_run}).all())
    z.source_ids = check_ids_against(z, lookup, f"the catalog of run {source_run}")
    return source_run


def check_ids_against(z: ZoutFile, catalog_ids, what: str) -> np.ndarray:
    """Every zout id must be a catalog id; returns the mapped values (source ids for a dict)."""
    lookup = catalog_ids if isinstance(catalog_ids, dict) else {int(i): int(i) for i in catalog_ids}
    mapped = np.array([lookup.get(int(i), -1) for i in z.ids], dtype=np.int64)
    unmatched = mapped < 0
    if unmatched.all():
        raise InputError(f"{z.path}: none of its {len(z.ids)} ids match {what}")
    if unmatched.any():
        raise InputError(f"{z.path}: {unmatched.sum()} of {len(z.ids)} ids match no source of {what}, "
                         f"e.g. id {z.ids[unmatched][0]}")
    return mapped


def write_zout(run: RunContext, z: ZoutFile, field_id: int, source_run: int) -> None:
    """COPY the rows matched by `check_ids`; the catalog run's products become inputs (lineage)."""
    conn = run.conn
    for (product_id,) in conn.execute(text("SELECT product_id FROM product WHERE run_id = :r"), {"r": source_run}):
        run.add_input(product_id, "sources")
    n = len(z.ids)
    run.count("zout", copy_columns(conn, "zout", {"source_id": z.source_ids, "run_id": np.full(n, run.run_id),
                                                  **z.values}))
