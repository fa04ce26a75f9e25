"""Cone search against a real database: SQL function, Python path and brute force agree exactly."""
import math

import healpy
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from alcsdb import db, healpix
from alcsdb.copyload import copy_columns
from alcsdb.provenance import insert_run
from alcsdb.query import cone_search, cone_search_rows

Z23_DEC = math.degrees(math.asin(2 / 3))
PAIR = (150.0, 2.0)  # two fields' clusters meet here
DUPLICATE = (10.5, -5.25)  # three sources at exactly this position
CLUSTERS = [  # centre, radius (arcsec), rows
    ((3.588333, -30.39725), 240.0, 6000),  # Abell 2744
    ((359.99, 10.0), 300.0, 3000),  # across RA = 0
    ((42.0, 89.98), 200.0, 3000),  # around the north pole
    ((90.0, Z23_DEC), 150.0, 2000),  # on a face vertex
    ((PAIR[0] - 0.01, PAIR[1]), 60.0, 2000),
    ((PAIR[0] + 0.01, PAIR[1]), 60.0, 2000),
]


def disc(rng, ra, dec, radius_arcsec, n):
    r = np.radians(radius_arcsec / 3600) * np.sqrt(rng.uniform(0, 1, n))
    az = rng.uniform(0, 2 * np.pi, n)
    d0, a0 = np.radians(dec), np.radians(ra)
    sin_d = np.clip(np.sin(d0) * np.cos(r) + np.cos(d0) * np.sin(r) * np.cos(az), -1, 1)
    a = a0 + np.arctan2(np.sin(az) * np.sin(r) * np.cos(d0), np.cos(r) - np.sin(d0) * sin_d)
    return np.degrees(a) % 360.0, np.degrees(np.arcsin(sin_d))


@pytest.fixture
def sky(engine):
    """Dense clusters, uniform sky and special positions in `source`; returns the columns loaded."""
    rng = np.random.default_rng(11)
    parts, fields = [], []
    with engine.begin() as conn:
        field_ids = conn.execute(text("SELECT field_id FROM field ORDER BY field_id LIMIT 8")).scalars().all()
        for i, ((ra, dec), radius, n) in enumerate(CLUSTERS):
            parts.append(disc(rng, ra, dec, radius, n))
            fields.append(np.full(n, field_ids[i]))
        n_uniform = 6000
        parts.append((rng.uniform(0, 360, n_uniform), np.degrees(np.arcsin(rng.uniform(-1, 1, n_uniform)))))
        special = [DUPLICATE] * 3 + [(0.0, 90.0), (200.0, -90.0), (0.0, 0.0), (45.0, 0.0), (90.0, Z23_DEC),
                                     (359.9999999999, 10.0), (0.0, 10.0)]
        parts.append((np.array([p[0] for p in special]), np.array([p[1] for p in special])))
        fields += [rng.choice(field_ids, n_uniform), np.full(len(special), field_ids[-1])]
        ra, dec = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        ra[ra >= 360.0] = 0.0
        field_id = np.concatenate(fields)
        order = np.argsort(healpix.hpx29(ra, dec), kind="stable")
        ra, dec, field_id = ra[order], dec[order], field_id[order]
        run_id = insert_run(conn, "ingest", params={"test": "cone"})
        n = len(ra)
        source_id = np.arange(1, n + 1)
        copy_columns(conn, "source", {"source_id": source_id, "run_id": np.full(n, run_id), "field_id": field_id,
                                      "id": source_id, "ra": ra, "dec": dec, "hpx29": healpix.hpx29(ra, dec)})
        names = dict(conn.execute(text("SELECT field_id, name FROM field")).all())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE source"))
    return {"source_id": source_id, "ra": ra, "dec": dec, "field": np.array([names[f] for f in field_id])}


def brute_force(sky, ra, dec, radius):
    distance = healpix.angular_distance_arcsec(ra, dec, sky["ra"], sky["dec"])
    inside = distance <= radius
    return dict(zip(sky["source_id"][inside].tolist(), distance[inside].tolist()))


def check_cone(conn, sky, ra, dec, radius):
    """All three methods return the same rows and distances; returns the rows."""
    want = brute_force(sky, ra, dec, radius)
    sql = conn.execute(text("SELECT source_id, field, ra, dec, distance_arcsec FROM alcs_cone_search(:ra, :dec, :r)"),
                       {"ra": ra, "dec": dec, "r": radius}).all()
    rows = cone_search_rows(conn, ra, dec, radius)
    assert {r[0] for r in sql} == set(want), f"SQL function, cone ({ra}, {dec}, {radius}\")"
    assert {r[0] for r in rows} == set(want), f"Python path, cone ({ra}, {dec}, {radius}\")"
    assert len(sql) == len(rows) == len(want)
    for got in (sql, rows):
        for source_id, field, r_ra, r_dec, distance in got:
            i = source_id - 1
            assert (field, r_ra, r_dec) == (sky["field"][i], sky["ra"][i], sky["dec"][i])
            assert distance == pytest.approx(want[source_id], rel=1e-12, abs=1e-9)
    return rows


SPECIAL_CONES = [
    (3.588333, -30.39725, 5.0),  # cluster core
    (3.588333, -30.39725, 3600.0),  # 1 degree, the whole cluster
    (0.0, 10.0, 60.0),  # straddles RA = 0 / 360
    (359.995, 10.0, 600.0),
    (0.001, 10.0, 400.0),
    (0.0, 90.0, 30.0),  # contains the north pole
    (0.0, 0.0, 5e-324),  # a subnormal radius (PostgreSQL raises when a division underflows)
    (180.0, 89.99, 120.0),
    (200.0, -90.0, 1.0),  # the south pole
    (PAIR[0], PAIR[1], 40.0),  # spans two fields
    (90.0, Z23_DEC, 100.0),  # face vertex (three faces)
    (45.0, 0.0, 1.0),  # face corner on the equator
    (DUPLICATE[0], DUPLICATE[1], 0.0),  # radius 0: the sources at exactly this position
    (0.0, 90.0, 0.0),
    (3.588333, -30.39725, 0.0),  # radius 0, nothing there
]


def test_special_cones_match_brute_force(engine, sky):
    with engine.connect() as conn:
        for ra, dec, radius in SPECIAL_CONES:
            rows = check_cone(conn, sky, ra, dec, radius)
            # the cone's distances are alcs_angdist_arcsec's, bit for bit
            assert conn.execute(text(
                "SELECT bool_and(c.distance_arcsec = alcs_angdist_arcsec(:ra, :dec, c.ra, c.dec)) "
                "FROM alcs_cone_search(:ra, :dec, :r) AS c"), {"ra": ra, "dec": dec, "r": radius}).scalar() in (True, None)
            if (ra, dec, radius) == (DUPLICATE[0], DUPLICATE[1], 0.0):
                assert len(rows) == 3 and all(r[4] == 0.0 for r in rows)
            if (ra, dec) == PAIR:
                assert len({r[1] for r in rows}) == 2
            if radius in (600.0, 3600.0) or (ra, dec) == (0.0, 90.0) and radius > 0:
                assert len(rows) > 50, (ra, dec, radius)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_cones_match_brute_force(engine, sky, data):
    centre = data.draw(st.one_of(
        st.tuples(st.floats(0, 360, exclude_max=True), st.floats(-90, 90)),
        st.tuples(st.floats(0, 360, exclude_max=True), st.floats(89.9, 90)),
        st.sampled_from([c[0] for c in CLUSTERS]),
        st.integers(0, len(sky["ra"]) - 1).map(lambda i: (float(sky["ra"][i]), float(sky["dec"][i]))),
    ))
    offset = data.draw(st.tuples(st.floats(-0.02, 0.02), st.floats(-0.02, 0.02)))
    ra = (centre[0] + offset[0]) % 360.0
    dec = min(90.0, max(-90.0, centre[1] + offset[1]))
    radius = data.draw(st.one_of(st.floats(0, 3600), st.floats(0, 10), st.just(0.0)))
    with engine.connect() as conn:
        check_cone(conn, sky, ra, dec, radius)


def test_table_api_and_extra_columns(engine, sky):
    with engine.connect() as conn:
        table = cone_search(conn, 3.588333, -30.39725, 20.0, columns=["id", "flux_auto"])
        rows = cone_search_rows(conn, 3.588333, -30.39725, 20.0)
    assert table.colnames == ["source_id", "field", "ra", "dec", "distance_arcsec", "id", "flux_auto"]
    assert sorted(table["source_id"]) == sorted(r[0] for r in rows) and len(table) > 10
    assert list(zip(table["distance_arcsec"], table["source_id"])) == sorted((r[4], r[0]) for r in rows)
    assert str(table["ra"].unit) == "deg" and str(table["distance_arcsec"].unit) == "arcsec"
    assert list(table["id"]) == list(table["source_id"])  # the fixture sets id = source_id
    assert table["flux_auto"].mask.all()  # NULL in the database
    assert table.meta["cone_radius_arcsec"] == 20.0
    empty = cone_search(engine, 3.588333, -30.39725, 0.0)  # an Engine works too
    assert len(empty) == 0 and empty.colnames[:5] == ["source_id", "field", "ra", "dec", "distance_arcsec"]
    with pytest.raises(ValueError, match="unknown source column"):
        cone_search(engine, 0.0, 0.0, 1.0, columns=["ra; DROP TABLE source"])


def test_sql_function_joins_and_explains(engine, sky):
    with engine.connect() as conn:
        joined = conn.execute(text(
            "SELECT c.source_id, s.id, c.field FROM alcs_cone_search(3.588333, -30.39725, 15) AS c "
            "JOIN source AS s USING (source_id) ORDER BY c.distance_arcsec")).all()
        assert joined and all(r[0] == r[1] for r in joined)
        per_cone = conn.execute(text(
            "SELECT p.n, count(c.source_id) FROM (VALUES (1, 3.588333, -30.39725), (2, 0.0, 10.0)) AS p(n, ra, dec) "
            "CROSS JOIN LATERAL alcs_cone_search(p.ra, p.dec, 30) AS c GROUP BY p.n ORDER BY p.n")).all()
        assert [r[1] for r in per_cone] == [len(brute_force(sky, 3.588333, -30.39725, 30)),
                                           len(brute_force(sky, 0.0, 10.0, 30))]


SQL_BAD_INPUTS = [
    ("NULL, 0, 1", "ra_deg must not be NULL"),
    ("0, NULL, 1", "dec_deg must not be NULL"),
    ("0, 0, NULL", "radius_arcsec must not be NULL"),
    ("'NaN', 0, 1", "ra_deg must be finite"),
    ("'Infinity', 0, 1", "ra_deg must be finite"),
    ("0, 'NaN', 1", "dec_deg must be within"),
    ("0, 90.5, 1", "dec_deg must be within"),
    ("0, -91, 1", "dec_deg must be within"),
    ("0, 0, -1", "radius_arcsec must be finite and >= 0"),
    ("0, 0, 'NaN'", "radius_arcsec must be finite and >= 0"),
    ("0, 0, 'Infinity'", "radius_arcsec must be finite and >= 0"),
]
PYTHON_BAD_INPUTS = [
    ((float("nan"), 0.0, 1.0), "ra_deg must be finite"),
    ((0.0, 91.0, 1.0), "dec_deg must be within"),
    ((0.0, 0.0, -0.5), "radius_arcsec must be >= 0"),
    ((0.0, 0.0, None), "radius_arcsec must be a real number"),
]


def test_bad_input_raises(engine):
    # alcs_hpx_disc_ranges reports through the function that checks, alcs_hpx_disc_cells
    for function, checker in (("alcs_cone_search", "alcs_cone_search"), ("alcs_hpx_disc_ranges", "alcs_hpx_disc_cells")):
        for args, message in SQL_BAD_INPUTS:
            with engine.connect() as conn:
                with pytest.raises(DBAPIError, match=f"{checker}: {message}"):
                    conn.execute(text(f"SELECT * FROM {function}({args})")).all()
    for args, message in PYTHON_BAD_INPUTS:
        with pytest.raises(ValueError, match=message):
            cone_search(engine, *args)
        with pytest.raises(ValueError, match=message):
            cone_search_rows(engine, *args)


def test_sql_healpix_helpers_match_python(engine):
    rng = np.random.default_rng(5)
    ra = np.concatenate([rng.uniform(0, 360, 300), [0.0, 45.0, 90.0, 0.0, 123.0, 359.9999999]])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, 100))), rng.uniform(89.5, 90, 100),
                          -rng.uniform(89.5, 90, 100), [0.0, 0.0, Z23_DEC, 90.0, -90.0, -Z23_DEC]])
    with engine.connect() as conn:
        for order in (0, 9, 29):
            got = conn.execute(text("SELECT alcs_hpx_ang2pix(:o, a, d) FROM unnest(CAST(:ra AS float8[]), "
                                    "CAST(:dec AS float8[])) AS t(a, d)"),
                               {"o": order, "ra": ra.tolist(), "dec": dec.tolist()}).scalars().all()
            assert got == healpy.ang2pix(2 ** order, ra, dec, nest=True, lonlat=True).tolist()
        for i in range(0, len(ra), 5):
            radius = float(rng.choice([0.0, 1.0, 30.0, 600.0, 3600.0]))
            got = conn.execute(text("SELECT lo, hi FROM alcs_hpx_disc_ranges(:ra, :dec, :r)"),
                               {"ra": float(ra[i]), "dec": float(dec[i]), "r": radius}).all()
            assert np.array_equal(np.array(got, dtype=np.int64).reshape(-1, 2),
                                  healpix.disc_ranges(ra[i], dec[i], radius)), (ra[i], dec[i], radius)
        distance = conn.execute(text("SELECT alcs_angdist_arcsec(:a, :b, :c, :d)"),
                                {"a": 10.0, "b": 20.0, "c": 10.001, "d": 20.002}).scalar()
        assert distance == healpix.angular_distance_arcsec(10.0, 20.0, 10.001, 20.002)
        with pytest.raises(DBAPIError, match="hpx_order must be within"):
            conn.execute(text("SELECT alcs_hpx_ang2pix(30, 0, 0)"))


def test_downgrade_drops_the_functions(engine):
    db.downgrade(engine, "0001_initial")
    with engine.connect() as conn:
        left = conn.execute(text("SELECT proname FROM pg_proc WHERE proname LIKE 'alcs\\_%' "
                                 "AND pronamespace = current_schema()::regnamespace")).scalars().all()
    assert left == []
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alcs_cone_search(0, 0, 1)")).scalar() == 0
