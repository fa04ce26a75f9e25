"""A catalog version's snapshot: its release-format tables, written once when the version is made.

Versions are immutable, so the tables an export writes never change for a version. `version
create` builds them once from the measurement rows (`alcsdb.release_tables`) and stores them in
`catalog_version_column`, one row per file column: name, big-endian numpy dtype, values per row,
unit, and the values as one bytea, exactly as the FITS file holds them (-99 for missing).
Export then reads ~one bytea per column instead of millions of measurement rows: on the
largest release field, 0.5 s instead of 4-7 s (README, export section).

Integrity: the measurement rows stay the source of truth and the content hash is still taken
over them. The snapshot rows refuse UPDATE and DELETE (migration 0006), and `audit` rebuilds
the tables from the rows (which the content hash vouches for) and compares them with the
snapshot byte for byte (`check`).
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Iterator

import numpy as np
from sqlalchemy import Connection

from .copyload import _HEADER, _TRAILER, copy_out_binary, parse_binary_rows
from .release_tables import column_units, phot_table, zout_table

if TYPE_CHECKING:
    from .versions import FieldRuns

KINDS = ("phot", "zout")
Tables = dict[str, "dict[str, np.ndarray] | None"]


def build(conn: Connection, fr: FieldRuns) -> Tables:
    """The field's release tables from the version's rows: {"phot": {...}, "zout": {...} or None}."""
    return {"phot": phot_table(conn, fr)[0], "zout": zout_table(conn, fr)}


def _field(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def _copy_rows(version_id: int, field_id: int, tables: Tables) -> Iterator[bytes]:
    """The binary COPY stream of the snapshot rows, one row at a time."""
    yield _HEADER
    for kind in KINDS:
        table = tables.get(kind)
        if table is None:
            continue
        units = column_units(kind, list(table))
        for position, (name, values) in enumerate(table.items(), start=1):
            dtype = values.dtype.newbyteorder(">")
            repeat = int(np.prod(values.shape[1:], dtype=np.int64)) if values.ndim > 1 else 1
            unit = units[name]
            yield (struct.pack(">hiiihi", 9, 4, version_id, 2, field_id, len(kind)) + kind.encode()
                   + struct.pack(">ih", 2, position) + _field(name.encode()) + _field(dtype.str.encode())
                   + struct.pack(">ih", 2, repeat) + (_field(unit.encode()) if unit else struct.pack(">i", -1))
                   + _field(np.ascontiguousarray(values, dtype=dtype).tobytes()))
    yield _TRAILER


class _Reader:
    """A file-like source over an iterator of byte strings, for COPY ... FROM STDIN."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buf, self.sent = chunks, b"", 0

    def read(self, size: int = -1) -> bytes:
        while not self.buf:
            try:
                self.buf = next(self.chunks)
            except StopIteration:
                return b""
        size = len(self.buf) if size is None or size < 0 else size
        out, self.buf = self.buf[:size], self.buf[size:]
        self.sent += len(out)
        return out

    readline = read


def store(conn: Connection, version_id: int, field_id: int, tables: Tables) -> int:
    """Insert the snapshot rows of one field (inside the caller's transaction); returns the bytes sent."""
    source = _Reader(_copy_rows(version_id, field_id, tables))
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert("COPY catalog_version_column (version_id, field_id, kind, position, name, dtype, repeat, "
                           "unit, data) FROM STDIN WITH (FORMAT binary)", source, size=1 << 20)
    finally:
        cursor.close()
    return source.sent


def load(conn: Connection, version_id: int, field_id: int) -> tuple[Tables, dict[str, dict]] | None:
    """The stored tables of one field and their units ({kind: {name: unit}}); None without a snapshot.

    The arrays are read-only views in the file's big-endian dtypes.
    """
    raw = copy_out_binary(conn, "SELECT kind, name, dtype, repeat, unit, data FROM catalog_version_column "
                                "WHERE version_id = :v AND field_id = :f ORDER BY kind, position",
                          {"v": version_id, "f": field_id})
    rows = parse_binary_rows(raw)
    if not rows:
        return None
    tables: Tables = {kind: None for kind in KINDS}
    units: dict[str, dict] = {kind: {} for kind in KINDS}
    for kind, name, dtype, repeat, unit, data in rows:
        kind, name = bytes(kind).decode(), bytes(name).decode()
        repeat = struct.unpack(">h", repeat)[0]
        values = np.frombuffer(data, dtype=np.dtype(bytes(dtype).decode()))
        if repeat > 1:
            values = values.reshape(-1, repeat)
        if tables[kind] is None:
            tables[kind] = {}
        tables[kind][name] = values
        units[kind][name] = bytes(unit).decode() if unit is not None else None
    return tables, units


def _listed(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def check(conn: Connection, version_id: int, fr: FieldRuns) -> list[str] | None:
    """How the stored snapshot of one field differs from the tables its rows give now.

    [] when it matches (same columns in the same order, units, dtypes and bytes); None when the
    version has no snapshot (made before migration 0006).
    """
    got = load(conn, version_id, fr.field_id)
    if got is None:
        return None
    stored, stored_units = got
    rebuilt = build(conn, fr)
    problems = []
    for kind in KINDS:
        mine, theirs = stored[kind], rebuilt[kind]
        if mine is None or theirs is None:
            if (mine is None) != (theirs is None):
                problems.append(f"{kind}: the snapshot {'lacks' if mine is None else 'has'} the table, "
                                f"the rows {'give' if mine is None else 'do not give'} it")
            continue
        if list(mine) != list(theirs):
            missing, extra = [n for n in theirs if n not in mine], [n for n in mine if n not in theirs]
            problems.append(f"{kind}: columns differ from the rows' (snapshot lacks {_listed(missing) or 'none'}, "
                            f"has extra {_listed(extra) or 'none'}, or another order)")
            continue
        units = column_units(kind, list(mine))
        bad = [name for name, values in mine.items()
               if stored_units[kind][name] != units[name] or values.shape != theirs[name].shape
               or values.dtype != theirs[name].dtype.newbyteorder(">")
               or values.tobytes() != np.ascontiguousarray(theirs[name], dtype=values.dtype).tobytes()]
        if bad:
            problems.append(f"{kind}: {len(bad)} column(s) differ from the rows ({_listed(bad)})")
    return problems
