"""Positional cross-match of `source` with an external catalog, in the database.

Done with HEALPix, set-based, without any extension
---------------------------------------------------
For a radius r, one of the two sides (the one with fewer rows, the *covered* side) gets, per
object, the order-k HEALPix cells that its disc of radius r may touch (`disc_cells`). Those
(object, cell) rows go into a temporary table by binary COPY; the other side (the *probe*
side) is joined to it on its `hpx29` column, and the exact great-circle distance keeps the
pairs within r::

    CREATE TEMP TABLE xm_cover (cover_id bigint, ra float8, dec float8, cell bigint);
    -- COPY xm_cover FROM STDIN (binary); ANALYZE xm_cover;
    SELECT c.cover_id, p.id, alcs_angdist_arcsec(c.ra, c.dec, p.ra, p.dec) AS sep
    FROM xm_cover c JOIN probe p
      ON (p.hpx29 >> 2 (29 - k)) = c.cell                       -- hash join on the cell
    WHERE p.dec BETWEEN c.dec - band AND c.dec + band            -- cheap, exact pre-test
      AND alcs_angdist_arcsec(c.ra, c.dec, p.ra, p.dec) <= r;

An order-k cell is the range ``[cell << 2(29-k), (cell + 1) << 2(29-k))`` of `hpx29`, so the
join is the range join of the covering with the probe's B-tree column, written as an equality
so that PostgreSQL can hash it: one pass over each side instead of one index range scan per
range (which the planner turns into nested loops and per-range scans beyond ~10 ranges, see
NOTES.md). Each probe row lies in exactly one cell and each object's cells are distinct, so
every pair appears once. The nearest external source of each source is then a window
function over the pairs (`row_number() OVER (PARTITION BY source_id ORDER BY sep,
ext_source_id) = 1`).

Measured (`benchmarks/crossmatch.py`: 1M sources x 1M external rows in the 33 fields, 0.43
per arcsec^2, r = 1", PostgreSQL 15 on 2 cores shared with a load of ~9): `match_pairs` 34 s
(order 16, 2.9 cells per row; order 15: 31 s, order 17: 52 s), Q3C's `q3c_join` 53 s,
astropy's in-memory `search_around_sky` 10.5 s, all with identical pairs. The hash join and
the distance test take about two thirds of `match_pairs`; the Dec-band pre-test saves a
quarter of the join. Storing the run (`crossmatch`) took 96 s: ~85% of the INSERT is the
per-row foreign-key triggers of the `crossmatch` table.

Why the covering is complete
----------------------------
`disc_cells` is `alcsdb.healpix.disc_ranges` for many discs at once. healpy gives each
object's face and order-29 face coordinates ``(X, Y)`` from its `hpx29`; the true face
coordinates lie within ``sqrt(1/2) / 2^29`` of ``(X + 1/2, Y + 1/2) / 2^29``. With
``rho = L (r + MARGIN_RAD) + 2^-29`` (MARGIN_RAD and the single-face argument are in the
`alcsdb.healpix` docstring; L bounds the stretch of face coordinates over the disc: the
global LF, or the smaller equatorial-zone bound of `face_stretch`), when the ball of radius
rho around that centre lies inside the face's open unit square, every point of the disc lies
in the face, within rho of the centre (the arc from the centre stays in the disc, where the
bound L holds), so the order-k cells meeting the ball's bounding box cover the disc. Objects whose
ball crosses a face edge (near the poles and the face boundaries) go through
`healpix.disc_ranges` one by one (its refinement path). The order is the finest at which a
ball of the global bound spans at most two cells per axis (`match_order`): at most 4 cells
per object (about 2.8 on average in the equatorial zone, 3.9 elsewhere).
"""
from __future__ import annotations

import io
import json
import math
import struct
from dataclasses import dataclass
from typing import Mapping, Sequence

import healpy
import numpy as np
from sqlalchemy import Connection, Engine, text

from . import healpix
from .copyload import fetch_columns
from .errors import InputError
from .external import CatalogInfo, catalog_info
from .fields import resolve_field
from .provenance import stage_run
from .versions import FieldRuns, latest_runs, version_runs

N29 = float(1 << healpix.ORDER)


def face_stretch(dec_deg, radius_arcsec: float) -> np.ndarray:
    """Upper bound, over the disc of `radius_arcsec` around each Dec, of face units per radian of arc.

    In HEALPix's equatorial zone (|z| <= 2/3) face coordinates are affine in (phi, z):
    ``dz = 2/3 (dx + dy)``, ``dphi = pi/4 (dx - dy)``; with ``u, v = (dx +- dy) / sqrt 2``,
    ``ds^2 = 8/9 u^2 / (1 - z^2) + pi^2/8 (1 - z^2) v^2 >= min(8/9, pi^2/8 (1 - zmax^2)) |d(x, y)|^2``.
    A disc inside the zone (``sin(|dec| + r) < 2/3``) therefore stretches by at most
    ``1 / sqrt(min(8/9, pi^2/8 (1 - zmax^2)))`` (1.061 up to |dec| = 28 deg, 1.208 at the zone's
    edge), with 1e-6 added for rounding; elsewhere the global bound `healpix.LF` (1.52425).
    """
    dec = np.abs(np.asarray(dec_deg, dtype=np.float64))
    top = np.minimum(np.radians(dec + radius_arcsec / 3600.0) + healpix.MARGIN_RAD, np.pi / 2)
    zmax = np.sin(top)
    with np.errstate(divide="ignore"):  # zmax = 1 at the poles, where the global bound applies
        local = 1.0 / np.sqrt(np.minimum(8.0 / 9.0, np.pi ** 2 / 8.0 * (1.0 - zmax ** 2))) + 1e-6
    return np.where(zmax < 2.0 / 3.0, local, healpix.LF)


def ball_radius(radius_arcsec: float, stretch=healpix.LF):
    """Radius, in face coordinates, of the ball that holds a disc of `radius_arcsec` (see module doc)."""
    return stretch * (radius_arcsec / healpix.ARCSEC_PER_RAD + healpix.MARGIN_RAD) + 1.0 / N29


def match_order(radius_arcsec: float) -> int:
    """The finest HEALPix order whose cells are at least twice the ball's radius (<= 2 cells per axis)."""
    if not (math.isfinite(radius_arcsec) and radius_arcsec >= 0):
        raise ValueError(f"radius_arcsec must be finite and >= 0, got {radius_arcsec!r}")
    return int(min(healpix.ORDER, max(0, math.floor(math.log2(1.0 / (2.0 * ball_radius(radius_arcsec)))))))


def disc_cells(ra: np.ndarray, dec: np.ndarray, hpx29: np.ndarray, radius_arcsec: float,
               order: int) -> tuple[np.ndarray, np.ndarray]:
    """Order-`order` NESTED cells that the discs of `radius_arcsec` around each position may touch.

    `ra`, `dec` in degrees, `hpx29` their order-29 indices (as stored). Returns
    ``(row, cell)``: int64 arrays, one entry per (object, cell), `row` indexing the inputs,
    cells distinct per object. Every point within the radius of object i has
    ``hpx29 >> 2 (29 - order)`` among object i's cells.
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    hpx29 = np.asarray(hpx29, dtype=np.int64)
    if not 0 <= order <= healpix.ORDER:
        raise ValueError(f"order must be within [0, {healpix.ORDER}], got {order!r}")
    rho = ball_radius(radius_arcsec, face_stretch(dec, radius_arcsec))
    n = 1 << order
    xi, yi, face = healpy.pix2xyf(1 << healpix.ORDER, hpx29, nest=True)
    xc = (xi + 0.5) / N29
    yc = (yi + 0.5) / N29
    inside = (xc > rho) & (xc < 1.0 - rho) & (yc > rho) & (yc < 1.0 - rho)
    x0 = np.floor((xc - rho) * n).astype(np.int64)
    x1 = np.floor((xc + rho) * n).astype(np.int64)
    y0 = np.floor((yc - rho) * n).astype(np.int64)
    y1 = np.floor((yc + rho) * n).astype(np.int64)
    rows_in = np.flatnonzero(inside)
    span = int(max((x1 - x0)[rows_in].max(initial=0), (y1 - y0)[rows_in].max(initial=0))) + 1
    rows, cells = [], []
    for dx in range(span):
        for dy in range(span):
            keep = rows_in[(x0[rows_in] + dx <= x1[rows_in]) & (y0[rows_in] + dy <= y1[rows_in])]
            rows.append(keep)
            cells.append(healpy.xyf2pix(n, x0[keep] + dx, y0[keep] + dy, face[keep], nest=True))
    shift = 2 * (healpix.ORDER - order)
    for i in np.flatnonzero(~inside):
        ranges = healpix.disc_ranges(float(ra[i]), float(dec[i]), radius_arcsec, order=order) >> shift
        own = np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi in ranges])
        rows.append(np.full(len(own), i, dtype=np.int64))
        cells.append(own)
    return (np.concatenate(rows).astype(np.int64, copy=False) if rows else np.zeros(0, np.int64),
            np.concatenate(cells).astype(np.int64, copy=False) if cells else np.zeros(0, np.int64))


# --- the database side ------------------------------------------------------------------

#: work_mem for the hash join of a match (the default 4 MB spills a 1M-row hash to disk)
MATCH_WORK_MEM = "256MB"
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_FIXED_TYPES = {"int8": ">i8", "float8": ">f8"}


def copy_fixed(conn: Connection, table: str, columns: Mapping[str, tuple[str, np.ndarray]]) -> int:
    """Binary COPY of NOT NULL int8/float8 columns into any table (temporary ones included).

    `columns` maps a column name to (SQL type, values). Every row has the same width, so the
    stream is one numpy structured array: no per-row work in Python.
    """
    names = list(columns)
    n = len(next(iter(columns.values()))[1]) if names else 0
    fields = [("count", ">i2")]
    for name in names:
        fields += [(f"_len_{name}", ">i4"), (name, _FIXED_TYPES[columns[name][0]])]
    rows = np.empty(n, dtype=np.dtype(fields))
    rows["count"] = len(names)
    for name, (_, values) in columns.items():
        rows[f"_len_{name}"] = 8
        rows[name] = values
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {table} ({', '.join(names)}) FROM STDIN WITH (FORMAT binary)",
                           io.BytesIO(_COPY_HEADER + rows.tobytes() + struct.pack(">h", -1)))
    finally:
        cursor.close()
    return n


@dataclass(frozen=True)
class Side:
    """One side of a match: a SELECT list source (`id, ra, dec, hpx29`) with its parameters."""

    name: str  # "source" or "external"
    from_sql: str  # "(SELECT <id> AS id, ra, dec, hpx29 FROM ... WHERE ...)"
    params: dict


def source_side(runs: list[int] | None = None, *, id_table: str | None = None) -> Side:
    """The sources of detect runs, or the sources whose ids are in a temporary table `id_table`."""
    if id_table is not None:
        return Side("source", f"(SELECT s.source_id AS id, s.ra, s.dec, s.hpx29 FROM source s "
                              f"JOIN {id_table} USING (source_id))", {})
    return Side("source", "(SELECT source_id AS id, ra, dec, hpx29 FROM source WHERE run_id = ANY(:src_runs))",
                {"src_runs": list(runs or [])})


def external_side(catalog_id: int, *, with_z_spec: bool = False) -> Side:
    """The rows of an external catalog (only those with a z_spec when `with_z_spec`)."""
    where = " AND z_spec IS NOT NULL" if with_z_spec else ""
    return Side("external", "(SELECT ext_source_id AS id, ra, dec, hpx29 FROM external_source "
                            f"WHERE catalog_id = :ext_catalog{where})", {"ext_catalog": catalog_id})


@dataclass(frozen=True)
class MatchStats:
    """What `match_pairs` did: rows on each side, which side it covered, at which order, and the pairs."""

    n_source: int
    n_external: int
    covered: str
    order: int
    n_cells: int
    n_pairs: int


def dec_band(radius_arcsec: float) -> float:
    """Half-width in degrees of the Dec band that holds every pair within the radius.

    A great-circle distance is never smaller than the difference in Dec, so this cheap test
    (evaluated before the trigonometry) drops about two thirds of the candidate pairs without
    losing any; the relative margin covers the rounding of both expressions.
    """
    return radius_arcsec / 3600.0 * (1.0 + 1e-9) + 1e-12


def match_pairs(conn: Connection, sources: Side, external: Side, radius_arcsec: float,
                order: int | None = None) -> MatchStats:
    """Every (source, external) pair within `radius_arcsec`, into temp table `xm_pairs`.

    `xm_pairs (source_id, ext_source_id, separation_arcsec)` lives until the transaction ends.
    The side with fewer rows is covered with `disc_cells` (module docstring); the join and
    the exact distance run in the database.
    """
    order = match_order(radius_arcsec) if order is None else order
    counts = {side.name: conn.execute(text(f"SELECT count(*) FROM {side.from_sql} AS t"), side.params).scalar_one()
              for side in (sources, external)}
    covered, probe = (external, sources) if counts["external"] <= counts["source"] else (sources, external)
    got = fetch_columns(conn, [("id", "id", "i8"), ("ra", "ra", "f8"), ("dec", "dec", "f8"), ("hpx29", "hpx29", "i8")],
                        f"FROM {covered.from_sql} AS t", covered.params)
    row, cell = disc_cells(got["ra"], got["dec"], got["hpx29"], radius_arcsec, order)
    for name in ("xm_cover", "xm_pairs"):
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    conn.execute(text("CREATE TEMP TABLE xm_cover (cover_id bigint, ra float8, dec float8, cell bigint) "
                      "ON COMMIT DROP"))
    copy_fixed(conn, "xm_cover", {"cover_id": ("int8", got["id"][row]), "ra": ("float8", got["ra"][row]),
                                  "dec": ("float8", got["dec"][row]), "cell": ("int8", cell)})
    conn.execute(text("ANALYZE xm_cover"))
    ids = ("c.cover_id", "p.id") if covered.name == "source" else ("p.id", "c.cover_id")
    distance = "alcs_angdist_arcsec(c.ra, c.dec, p.ra, p.dec)"
    previous = conn.execute(text("SELECT current_setting('work_mem')")).scalar_one()
    conn.execute(text("SELECT set_config('work_mem', :w, true)"), {"w": MATCH_WORK_MEM})
    n_pairs = conn.execute(text(
        f"CREATE TEMP TABLE xm_pairs ON COMMIT DROP AS "
        f"SELECT {ids[0]} AS source_id, {ids[1]} AS ext_source_id, {distance} AS separation_arcsec "
        f"FROM xm_cover c JOIN {probe.from_sql} AS p ON (p.hpx29 >> :shift) = c.cell "
        f"WHERE p.dec BETWEEN c.dec - :band AND c.dec + :band AND {distance} <= :radius"),
        {**probe.params, "shift": 2 * (healpix.ORDER - order), "radius": radius_arcsec,
         "band": dec_band(radius_arcsec)}).rowcount
    conn.execute(text("SELECT set_config('work_mem', :w, true)"), {"w": previous})
    conn.execute(text("DROP TABLE xm_cover"))
    return MatchStats(n_source=counts["source"], n_external=counts["external"], covered=covered.name, order=order,
                      n_cells=len(cell), n_pairs=n_pairs)


def check_radius(radius_arcsec: float) -> float:
    if not (isinstance(radius_arcsec, (int, float)) and math.isfinite(radius_arcsec) and 0 < radius_arcsec <= 3600):
        raise InputError(f"match radius must be within (0, 3600] arcsec, got {radius_arcsec!r}")
    return float(radius_arcsec)


def select_fields(conn: Connection, version: str | None = None, field: str | None = None) -> list[FieldRuns]:
    """The fields to match and their runs: a version's pinned runs, else each field's latest runs.

    The `detect` role of each field is the run whose `source` rows are matched.
    """
    wanted = resolve_field(conn, field)[0] if field else None
    if version is not None:
        fields = [fr for fr in version_runs(conn, version)[1] if wanted is None or fr.field_id == wanted]
        if not fields:
            raise InputError(f"catalog version {version} has no field {field}")
    else:
        targets = [(wanted,)] if wanted is not None else conn.execute(text(
            "SELECT f.field_id FROM field f WHERE EXISTS (SELECT 1 FROM source s WHERE s.field_id = f.field_id) "
            "ORDER BY f.name")).all()
        names = dict(conn.execute(text("SELECT field_id, name FROM field")).all())
        fields = [FieldRuns(fid, names[fid], latest_runs(conn, fid)) for (fid,) in targets]
    fields = [fr for fr in fields if "detect" in fr.runs]
    if not fields:
        raise InputError(f"no sources to match{' in field ' + field if field else ''}: "
                         "ingest a catalog or run detection first")
    return fields


@dataclass(frozen=True)
class CrossmatchResult:
    """A stored crossmatch run and its numbers."""

    run_id: int
    catalog: str
    radius_arcsec: float
    source_runs: tuple[int, ...]
    stats: MatchStats
    n_sources_matched: int
    n_external_matched: int


def crossmatch(engine: Engine, catalog: str, radius_arcsec: float, *, version: str | None = None,
               field: str | None = None, order: int | None = None) -> CrossmatchResult:
    """Match the sources of a version (or the latest runs) with an external catalog; store the pairs.

    One `crossmatch` run writes every pair within the radius into `crossmatch` with its
    separation and `is_nearest` (the pair is the source's nearest external source).
    """
    radius = check_radius(radius_arcsec)
    with engine.connect() as conn:
        info = catalog_info(conn, catalog)
        fields = select_fields(conn, version, field)
    runs = tuple(sorted(fr.runs["detect"] for fr in fields))
    order = match_order(radius) if order is None else order
    params = {"catalog": info.name, "catalog_id": info.catalog_id, "catalog_run_id": info.run_id,
              "catalog_sha256": info.sha256, "radius_arcsec": radius, "version": version, "field": field,
              "source_runs": list(runs), "order": order}
    field_id = fields[0].field_id if field else None
    with stage_run(engine, "crossmatch", field_id=field_id, params=params) as run:
        if info.product_id is not None:
            run.add_input(info.product_id, "external_catalog")
        stats = match_pairs(run.conn, source_side(list(runs)), external_side(info.catalog_id), radius, order)
        inserted = run.conn.execute(text(
            "INSERT INTO crossmatch (run_id, source_id, ext_source_id, separation_arcsec, is_nearest) "
            "SELECT :run, source_id, ext_source_id, separation_arcsec, "
            "row_number() OVER (PARTITION BY source_id ORDER BY separation_arcsec, ext_source_id) = 1 "
            "FROM xm_pairs"), {"run": run.run_id}).rowcount
        run.count("crossmatch", inserted)
        n_src, n_ext = run.conn.execute(text(
            "SELECT count(DISTINCT source_id), count(DISTINCT ext_source_id) FROM xm_pairs")).one()
    return CrossmatchResult(run_id=run.run_id, catalog=info.name, radius_arcsec=radius, source_runs=runs,
                            stats=stats, n_sources_matched=n_src, n_external_matched=n_ext)


def find_crossmatch(conn: Connection, catalog_id: int, radius_arcsec: float, source_runs: Sequence[int]) -> int | None:
    """The newest succeeded crossmatch run of this catalog, radius and source runs, if any."""
    return conn.execute(text(
        "SELECT run_id FROM run WHERE stage = 'crossmatch' AND status = 'succeeded' "
        "AND (params->>'catalog_id')::int = :c AND (params->>'radius_arcsec')::float8 = :r "
        "AND params->'source_runs' = CAST(:runs AS jsonb) ORDER BY run_id DESC LIMIT 1"),
        {"c": catalog_id, "r": float(radius_arcsec), "runs": json.dumps(sorted(int(r) for r in source_runs))},
    ).scalar()


def zspec_for_sources(conn: Connection, catalog_name: str, source_ids: Sequence[int] | np.ndarray,
                      radius_arcsec: float) -> np.ndarray:
    """z_spec of the nearest external source with a z_spec within the radius, per source id (NaN if none).

    For export's `--zspec NAME`: runs inside the caller's transaction (temporary tables only,
    nothing stored); record `catalog_provenance(conn, NAME)` and the radius with the export.
    """
    radius = check_radius(radius_arcsec)
    info = catalog_info(conn, catalog_name)
    ids = np.asarray(source_ids, dtype=np.int64)
    out = np.full(len(ids), np.nan)
    if len(ids) == 0:
        return out
    conn.execute(text("DROP TABLE IF EXISTS xm_ids"))
    conn.execute(text("CREATE TEMP TABLE xm_ids (source_id bigint PRIMARY KEY) ON COMMIT DROP"))
    copy_fixed(conn, "xm_ids", {"source_id": ("int8", np.unique(ids))})
    conn.execute(text("ANALYZE xm_ids"))
    match_pairs(conn, source_side(id_table="xm_ids"), external_side(info.catalog_id, with_z_spec=True), radius)
    got = fetch_columns(conn, [("source_id", "p.source_id", "i8"), ("z_spec", "e.z_spec", "f8")],
                        "FROM (SELECT DISTINCT ON (source_id) source_id, ext_source_id FROM xm_pairs "
                        "ORDER BY source_id, separation_arcsec, ext_source_id) p "
                        "JOIN external_source e USING (ext_source_id)", {})
    conn.execute(text("DROP TABLE xm_pairs"))
    conn.execute(text("DROP TABLE xm_ids"))
    order = np.argsort(got["source_id"])
    known, z = got["source_id"][order], got["z_spec"][order]
    pos = np.clip(np.searchsorted(known, ids), 0, max(len(known) - 1, 0))
    hit = (known[pos] == ids) if len(known) else np.zeros(len(ids), bool)
    out[hit] = z[pos[hit]]
    return out


def catalog_provenance(conn: Connection, catalog_name: str) -> dict:
    """What an export that used `zspec_for_sources` should record about the catalog."""
    info: CatalogInfo = catalog_info(conn, catalog_name)
    return {"catalog": info.name, "catalog_id": info.catalog_id, "run_id": info.run_id, "path": info.path,
            "sha256": info.sha256, "n_rows": info.n_rows}
