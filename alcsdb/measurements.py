"""Writing measurement rows (sources, aperture fluxes, total corrections, IRAC fluxes) in a run.

Shared by ingest (rows read from release files) and the pipeline stages (rows computed), so
both store the same things the same way: column-wise numpy arrays, NaN or masked = NULL,
entries where every quantity is missing are not stored (export writes -99 for them).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from sqlalchemy import Connection, text

from .copyload import copy_columns, next_ids
from .provenance import RunContext


def present(quantities: Mapping[str, np.ndarray]) -> np.ndarray:
    """Element-wise: where any quantity has a value."""
    mask = None
    for values in quantities.values():
        has = ~np.ma.getmaskarray(values) if np.ma.isMaskedArray(values) else np.isfinite(values)
        mask = has if mask is None else (mask | has)
    return mask


def filter_ids(conn: Connection, names: list[str]) -> dict[str, int]:
    """Filter ids by name; a filter the package does not know yet is registered (name only)."""
    known = dict(conn.execute(text("SELECT name, filter_id FROM filter")).all())
    for name in names:
        if name not in known:
            known[name] = conn.execute(text("INSERT INTO filter (name) VALUES (:n) ON CONFLICT (name) DO UPDATE "
                                            "SET name = EXCLUDED.name RETURNING filter_id"), {"n": name}).scalar_one()
    return {n: known[n] for n in names}


def write_sources(run: RunContext, field_id: int, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """COPY `source` rows (columns by SQL name, incl. id, ra, dec, hpx29); returns their source ids."""
    n = len(columns["id"])
    source_ids = next_ids(run.conn, "source", "source_id", n)
    run.count("source", copy_columns(run.conn, "source", {
        "source_id": source_ids, "run_id": np.full(n, run.run_id), "field_id": np.full(n, field_id), **columns}))
    return source_ids


def write_apertures(run: RunContext, source_ids: np.ndarray, blocks: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """`aperture_flux` rows from {filter: {quantity: (n, 7) array}} (filter `det` = detection image)."""
    fids = filter_ids(run.conn, list(blocks))
    for filt, block in blocks.items():
        rows_src, rows_ap = np.nonzero(present(block))
        if rows_src.size == 0:
            continue
        m = rows_src.size
        run.count("aperture_flux", copy_columns(run.conn, "aperture_flux", {
            "source_id": source_ids[rows_src], "filter_id": np.full(m, fids[filt]), "aperture": rows_ap,
            "run_id": np.full(m, run.run_id), **{q: arr[rows_src, rows_ap] for q, arr in block.items()}}))


def write_total_corrections(run: RunContext, source_ids: np.ndarray, tot_corr: Mapping[str, np.ndarray]) -> None:
    fids = filter_ids(run.conn, list(tot_corr))
    for filt, values in tot_corr.items():
        keep = np.isfinite(values)
        m = int(keep.sum())
        run.count("total_correction", copy_columns(run.conn, "total_correction", {
            "source_id": source_ids[keep], "filter_id": np.full(m, fids[filt]), "run_id": np.full(m, run.run_id),
            "tot_corr": values[keep]}))


def write_irac(run: RunContext, source_ids: np.ndarray, channels: Mapping[int, Mapping[str, np.ndarray]]) -> None:
    """`irac_flux` rows from {channel: {quantity: (n,) array}}."""
    for ch, block in channels.items():
        keep = present(block)
        m = int(keep.sum())
        run.count("irac_flux", copy_columns(run.conn, "irac_flux", {
            "source_id": source_ids[keep], "channel": np.full(m, ch), "run_id": np.full(m, run.run_id),
            **{q: v[keep] for q, v in block.items()}}))
