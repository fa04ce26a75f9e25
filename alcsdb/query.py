"""Cone searches from Python: the HEALPix ranges are computed here, the exact distance in SQL.

`cone_search_rows(conn, ra, dec, radius_arcsec)` computes the order-29 ranges covering the cone
with `alcsdb.healpix.disc_ranges` (complete by construction), and runs one prepared statement
(server-side ``PREPARE``, one per number of ranges and column list, kept per connection) that
scans each range with the `hpx29` B-tree index and keeps the rows whose haversine distance
(``alcs_angdist_arcsec`` of migration 0002) is within the radius. It returns
the same rows as ``alcs_cone_search`` and as a brute-force scan of `source`. Every value the
caller passes (position, radius) and every range reaches the server as a bound parameter;
extra column names are checked against the `source` table.

Pass a Connection for repeated searches: an Engine checks a connection out of its pool (and
pings it) on every call. The statements run in the connection's current transaction.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import numpy as np
from astropy.table import MaskedColumn, Table
from sqlalchemy import Connection, Engine

from . import healpix
from .schema import Source

BASE_COLUMNS = ("source_id", "field", "ra", "dec", "distance_arcsec")
MAX_RANGES = 64  # above this, the covering is coarsened (fewer, larger pixels)
_STATEMENTS_KEY = "alcsdb_cone_statements"


def _extra_columns(columns: Iterable[str] | None) -> tuple[str, ...]:
    """The requested extra `source` columns, validated against the schema."""
    if columns is None:
        return ()
    if isinstance(columns, str):
        columns = [columns]
    known = set(Source.__table__.columns.keys())
    extra: list[str] = []
    for name in columns:
        if name in BASE_COLUMNS:
            continue
        if name not in known:
            raise ValueError(f"unknown source column {name!r} (known: {', '.join(sorted(known))})")
        if name not in extra:
            extra.append(name)
    return tuple(extra)


def _ranges(ra: float, dec: float, radius_arcsec: float, order: int | None) -> list[int]:
    """Flat covering ranges [lo0, hi0, ...], coarsened to at most MAX_RANGES (a coarser cover is still complete)."""
    order = healpix.coarse_order(radius_arcsec) if order is None else order
    flat = healpix.disc_ranges_flat(ra, dec, radius_arcsec, order)
    while len(flat) > 2 * MAX_RANGES and order > 0:
        order -= 1
        flat = healpix.disc_ranges_flat(ra, dec, radius_arcsec, order)
    return flat


def statement_sql(n_ranges: int, extra: Sequence[str] = ()) -> str:
    """The prepared query for `n_ranges` ranges: $1 ra, $2 dec, $3 radius, then lo, hi pairs.

    Each range is scanned by ``alcs_cone_range`` (migration 0002: one index range scan and the
    exact distance, the same SQL ``alcs_cone_search`` runs). PostgreSQL replans a prepared
    statement at every call unless its generic plan costs no more than the custom ones, so
    nothing may be constant-folded once the parameters are known: the cone comes through a
    subquery that is not flattened (OFFSET 0) and the ranges as a VALUES list of fixed length.
    Extra columns come from `source` by primary key.
    """
    values = ", ".join(f"(${4 + 2 * i}::bigint, ${5 + 2 * i}::bigint)" for i in range(n_ranges))
    outer = "".join(f', x."{c}"' for c in extra)
    join_extra = "JOIN source AS x ON x.source_id = s.source_id " if extra else ""
    return (
        f"SELECT s.source_id, f.name, s.ra, s.dec, s.distance_arcsec{outer} "
        f"FROM (SELECT $1::float8 AS ra, $2::float8 AS dec, $3::float8 AS radius OFFSET 0) AS c "
        f"CROSS JOIN (VALUES {values}) AS r(lo, hi) "
        f"CROSS JOIN LATERAL alcs_cone_range(c.ra, c.dec, c.radius, r.lo, r.hi) AS s "
        f"JOIN field AS f ON f.field_id = s.field_id {join_extra}"
    ).rstrip()


def _statement_name(conn: Connection, n_ranges: int, extra: tuple[str, ...]) -> str:
    """Name of the prepared statement on this connection, preparing it on first use."""
    key = hashlib.sha1(",".join(extra).encode()).hexdigest()[:10]
    name = f"alcsdb_cone_{n_ranges}_{key}"
    prepared: set[str] = conn.info.setdefault(_STATEMENTS_KEY, set())
    if name not in prepared:
        types = ", ".join(["double precision"] * 3 + ["bigint"] * (2 * n_ranges))
        with conn.connection.dbapi_connection.cursor() as cur:
            cur.execute(f"PREPARE {name} ({types}) AS {statement_sql(n_ranges, extra)}")
        prepared.add(name)
    return name


def _run(conn: Connection, ra: float, dec: float, radius_arcsec: float, extra: tuple[str, ...],
         order: int | None) -> list[tuple]:
    ranges = _ranges(ra, dec, radius_arcsec, order)
    if not conn.in_transaction():
        conn.begin()  # what conn.execute would do: the DBAPI opens a transaction on first use
    name = _statement_name(conn, len(ranges) // 2, extra)
    params = [float(ra), float(dec), float(radius_arcsec), *ranges]
    with conn.connection.dbapi_connection.cursor() as cur:
        cur.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(params))})", params)
        return cur.fetchall()


def cone_search_rows(conn_or_engine: Connection | Engine, ra: float, dec: float, radius_arcsec: float, *,
                     columns: Iterable[str] | None = None, order: int | None = None) -> list[tuple]:
    """Sources within `radius_arcsec` of (ra, dec) (degrees ICRS) as plain tuples, in no particular order.

    Each tuple is (source_id, field name, ra, dec, distance_arcsec, *columns), where `columns`
    names extra columns of `source`. `order` is the HEALPix order of the covering (default
    `healpix.coarse_order(radius_arcsec)`; any order gives the same rows, only the speed
    changes). Raises ValueError for an invalid cone, column or order.
    """
    extra = _extra_columns(columns)
    healpix.check_cone(ra, dec, radius_arcsec)
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            return _run(conn, ra, dec, radius_arcsec, extra, order)
    return _run(conn_or_engine, ra, dec, radius_arcsec, extra, order)


def _column(name: str, values: list) -> MaskedColumn | np.ndarray:
    missing = [v is None for v in values]
    if not any(missing):
        return np.array(values)
    filled = [v for v in values if v is not None]
    fill = type(filled[0])() if filled else 0.0
    return MaskedColumn([fill if m else v for v, m in zip(values, missing)], name=name, mask=missing)


def cone_search(conn_or_engine: Connection | Engine, ra: float, dec: float, radius_arcsec: float, *,
                columns: Iterable[str] | None = None) -> Table:
    """Sources within `radius_arcsec` of (ra, dec) as an astropy Table sorted by distance.

    Columns: source_id, field (field name), ra, dec (deg), distance_arcsec (arcsec), then the
    extra `source` columns asked for (NULL values masked). `meta` records the cone.
    """
    extra = _extra_columns(columns)
    rows = cone_search_rows(conn_or_engine, ra, dec, radius_arcsec, columns=extra)
    values = list(zip(*rows)) if rows else [()] * (len(BASE_COLUMNS) + len(extra))
    source_id = np.array(values[0], dtype=np.int64)
    distance = np.array(values[4], dtype=np.float64)
    data = [source_id, np.array(values[1], dtype=str), np.array(values[2], dtype=np.float64),
            np.array(values[3], dtype=np.float64), distance]
    data += [_column(name, list(column)) for name, column in zip(extra, values[5:])]
    order = np.lexsort((source_id, distance))  # nearest first, ties by source_id
    return Table([column[order] for column in data], names=BASE_COLUMNS + extra,
                 units={"ra": "deg", "dec": "deg", "distance_arcsec": "arcsec"},
                 meta={"cone_ra_deg": float(ra), "cone_dec_deg": float(dec),
                       "cone_radius_arcsec": float(radius_arcsec)})
