"""Bulk writes with PostgreSQL binary COPY, built from numpy arrays without a Python loop per row.

`copy_columns(conn, "aperture_flux", {"source_id": ids, "flux": flux, ...})` streams the rows in
COPY's binary format: floats travel as exact IEEE doubles (so values round-trip bit for bit),
NaN and masked values become SQL NULL, and the column types come from `alcsdb.schema`.
"""
from __future__ import annotations

import io
import re
import struct
from typing import Mapping

import numpy as np
from sqlalchemy import ARRAY, BigInteger, Boolean, Connection, Double, Integer, SmallInteger, Text
from sqlalchemy.sql.sqltypes import REAL

from .schema import Base

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_ARRAY_OIDS = {"f8": 701, "f4": 700}


def _scalar_dtype(sqltype) -> str | None:
    """Big-endian numpy dtype for a scalar SQL column type; None for text."""
    if isinstance(sqltype, Boolean):
        return "?"
    if isinstance(sqltype, SmallInteger):
        return ">i2"
    if isinstance(sqltype, BigInteger):
        return ">i8"
    if isinstance(sqltype, Integer):
        return ">i4"
    if isinstance(sqltype, REAL):
        return ">f4"
    if isinstance(sqltype, Double):
        return ">f8"
    if isinstance(sqltype, Text):
        return None
    raise TypeError(f"copy_columns does not handle {sqltype!r}")


def _null_mask(values: np.ndarray) -> np.ndarray:
    mask = np.zeros(values.shape[0], dtype=bool)
    if np.ma.isMaskedArray(values):
        m = np.ma.getmaskarray(values)
        mask |= m if m.ndim == 1 else m.any(axis=tuple(range(1, m.ndim)))
        values = np.ma.getdata(values)
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        mask |= bad if bad.ndim == 1 else bad.all(axis=tuple(range(1, bad.ndim)))
    elif values.dtype.kind == "O":
        mask |= np.array([v is None for v in values], dtype=bool)
    return mask


def _encode(values, sqltype) -> tuple[np.ndarray, np.ndarray | list]:
    """(lengths int32 with -1 for NULL, payload (n, width) uint8 or list of bytes)."""
    values = values if isinstance(values, np.ndarray) else np.asarray(values)
    null = _null_mask(values)
    data = np.ma.getdata(values)
    n = data.shape[0]
    if isinstance(sqltype, ARRAY):
        item = "f4" if isinstance(sqltype.item_type, REAL) else "f8"
        dims = data.shape[1:]  # one value per row: (k,) or (k1, k2) for 2-d arrays
        arr = np.ascontiguousarray(np.where(np.isfinite(data), data, np.nan), dtype=">" + item).reshape(n, -1)
        k = arr.shape[1]
        head = np.frombuffer(struct.pack(f">iii{'ii' * len(dims)}", len(dims), 0, _ARRAY_OIDS[item],
                                         *[v for d in dims for v in (d, 1)]), dtype=np.uint8)
        elem_len = np.frombuffer(struct.pack(">i", arr.itemsize), dtype=np.uint8)
        body = np.concatenate([np.tile(elem_len, (n, k, 1)), arr.view(np.uint8).reshape(n, k, arr.itemsize)], axis=2)
        payload = np.concatenate([np.tile(head, (n, 1)), body.reshape(n, -1)], axis=1)
    else:
        dtype = _scalar_dtype(sqltype)
        if dtype is None:
            strings = [b"" if nul else str(v).encode() for v, nul in zip(data, null)]
            lengths = np.array([len(s) for s in strings], dtype=np.int64)
            lengths[null] = -1
            return lengths, strings
        clean = np.where(null, 0, data) if data.dtype.kind in "fO" else data
        if dtype[-2] == "i" and clean.dtype.kind == "f":
            clean = np.rint(clean)
        arr = np.ascontiguousarray(clean, dtype=dtype)
        payload = arr.view(np.uint8).reshape(n, arr.itemsize)
    lengths = np.full(n, payload.shape[1], dtype=np.int64)
    lengths[null] = -1
    return lengths, payload


def encode_binary(table: str, columns: Mapping[str, np.ndarray]) -> tuple[bytes, int]:
    """The COPY binary stream for `columns` of `table` and the number of rows."""
    sqltable = Base.metadata.tables[table]
    names = list(columns)
    encoded = [_encode(columns[name], sqltable.c[name].type) for name in names]
    n = len(encoded[0][0]) if encoded else 0
    if any(len(lens) != n for lens, _ in encoded):
        raise ValueError(f"copy into {table}: columns have different lengths")
    sizes = 2 + sum(4 + np.maximum(lens, 0) for lens, _ in encoded)
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    out = np.zeros(starts[-1], dtype=np.uint8)
    count = np.frombuffer(struct.pack(">h", len(names)), dtype=np.uint8)
    out[starts[:-1, None] + np.arange(2)] = count
    pos = starts[:-1] + 2
    for lens, payload in encoded:
        len_bytes = lens.astype(">i4").view(np.uint8).reshape(n, 4)
        out[pos[:, None] + np.arange(4)] = len_bytes
        pos = pos + 4
        present = lens >= 0
        if isinstance(payload, list):
            for i in np.flatnonzero(present):
                out[pos[i]: pos[i] + lens[i]] = np.frombuffer(payload[i], dtype=np.uint8)
        elif present.any():
            width = payload.shape[1]
            rows = np.flatnonzero(present)
            out[pos[rows, None] + np.arange(width)] = payload[rows]
        pos = pos + np.maximum(lens, 0)
    return _HEADER + out.tobytes() + _TRAILER, n


def copy_columns(conn: Connection, table: str, columns: Mapping[str, np.ndarray]) -> int:
    """COPY the rows given column-wise into `table` inside the connection's transaction."""
    payload, n = encode_binary(table, columns)
    if n == 0:
        return 0
    names = ", ".join(f'"{c}"' for c in columns)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f'COPY "{table}" ({names}) FROM STDIN WITH (FORMAT binary)', io.BytesIO(payload))
    finally:
        cursor.close()
    return n


def next_ids(conn: Connection, table: str, column: str, n: int) -> np.ndarray:
    """Reserve `n` values of a table's identity sequence (for rows that others reference)."""
    from sqlalchemy import text

    if n == 0:
        return np.zeros(0, dtype=np.int64)
    seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}).scalar_one()
    ids = conn.execute(text("SELECT nextval(CAST(:s AS regclass)) FROM generate_series(1, :n)"),
                       {"s": seq, "n": n}).scalars().all()
    return np.asarray(ids, dtype=np.int64)


#: NULL sentinels for fetch_columns: floats come back NaN, integers the release's -99
_FETCH = {"f8": ("float8", "'NaN'", ">f8"), "i2": ("int2", "-99", ">i2"), "i4": ("int4", "-99", ">i4"),
          "i8": ("int8", "-99", ">i8")}


def fetch_columns(conn: Connection, select: list[tuple[str, str, str]], from_sql: str, params: dict) -> dict:
    """Run `SELECT <exprs> <from_sql>` and return {name: numpy array}, read by binary COPY.

    `select` holds (name, SQL expression, kind) with kind f8/i2/i4/i8. NULLs become NaN (floats)
    or -99 (integers), so every row has the same width and numpy parses the stream directly.
    """
    exprs = ", ".join(f"coalesce(CAST({expr} AS {_FETCH[kind][0]}), {_FETCH[kind][1]})" for _, expr, kind in select)
    fields = [("count", ">i2")]
    for name, _, kind in select:
        fields += [(f"_len_{name}", ">i4"), (name, _FETCH[kind][2])]
    sql = bind_params(conn, f"SELECT {exprs} {from_sql}", params)
    buf = io.BytesIO()
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT binary)", buf)
    finally:
        cursor.close()
    raw = buf.getvalue()
    header_len = 19 + struct.unpack(">i", raw[15:19])[0]
    body = raw[header_len:-2]
    rows = np.frombuffer(body, dtype=np.dtype(fields))
    return {name: rows[name].astype(_FETCH[kind][2][1:]) for name, _, kind in select}


class _Chunks:
    """A file-like sink that keeps what COPY writes, joined once at the end."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data) -> None:
        self.parts.append(data)


def copy_out_binary(conn: Connection, sql: str, params: dict) -> bytes:
    """The raw binary COPY stream of `SELECT ...` (header, rows, trailer)."""
    sink = _Chunks()
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY ({bind_params(conn, sql, params)}) TO STDOUT WITH (FORMAT binary)", sink)
    finally:
        cursor.close()
    return b"".join(sink.parts)


def parse_binary_rows(raw: bytes) -> list[list[memoryview | None]]:
    """The fields of each row of a binary COPY stream, as views into `raw` (None for NULL).

    A Python loop per field: meant for few rows with large values (bytea), where `fetch_columns`
    is for many rows of fixed-width numbers.
    """
    if raw[:11] != _HEADER[:11]:
        raise ValueError("not a PostgreSQL binary COPY stream")
    view = memoryview(raw)
    pos = 19 + struct.unpack_from(">i", raw, 15)[0]
    rows = []
    while True:
        (count,) = struct.unpack_from(">h", raw, pos)
        pos += 2
        if count == -1:
            return rows
        fields: list[memoryview | None] = []
        for _ in range(count):
            (length,) = struct.unpack_from(">i", raw, pos)
            pos += 4
            if length < 0:
                fields.append(None)
            else:
                fields.append(view[pos:pos + length])
                pos += length
        rows.append(fields)


def bind_params(conn: Connection, sql: str, params: dict) -> str:
    """SQL with `:name` markers bound by the driver (psycopg2 mogrify quotes every value), for COPY (query)."""
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        return cursor.mogrify(re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", sql), params).decode()
    finally:
        cursor.close()
