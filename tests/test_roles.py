"""Least-privilege roles: each role connects for real and is refused what it must not do."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from alcsdb import db, roles, versions
from alcsdb.errors import InputError
from alcsdb.export import export_version
from ingest import fixtures

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)
INSUFFICIENT_PRIVILEGE = "42501"

def alcsdb(url: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, connecting with `url`."""
    proc = subprocess.run([sys.executable, "-m", "alcsdb", "--db", url, *map(str, args)], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"alcsdb {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def as_user(url: str, user: str) -> str:
    """The same server, database and schema, connecting as `user` (the test servers trust local users)."""
    return make_url(url).set(username=user, password=None).render_as_string(hide_password=False)


def drop_roles_with_prefix(engine, prefix: str) -> None:
    with engine.begin() as conn:
        names = conn.execute(text("SELECT rolname FROM pg_roles WHERE starts_with(rolname, :p) ORDER BY rolname DESC"),
                             {"p": prefix}).scalars().all()
        for name in names:
            conn.exec_driver_sql(f'DROP OWNED BY "{name}" CASCADE')
        for name in names:
            conn.exec_driver_sql(f'DROP ROLE "{name}"')


@pytest.fixture
def prefix(engine):
    """Private role names for this test (roles are cluster-wide); dropped afterwards."""
    value = f"t_{uuid.uuid4().hex[:8]}_"
    yield value
    engine.dispose()
    drop_roles_with_prefix(engine, value)


@pytest.fixture
def release_dir(tmp_path) -> Path:
    fixtures.write_release(tmp_path / "release", [A2744], n_sources=60, seed=5, filters=["f814w", "f160w"], n_aors=1,
                           n_bcd=3, mosaic_shape=(32, 32))
    return tmp_path / "release"


def refused(engine, statement: str, params: dict | None = None) -> str:
    """Run `statement` in a transaction that is rolled back; assert PostgreSQL refused it for lack of privilege."""
    with engine.connect() as conn:
        with pytest.raises(DBAPIError) as err:
            conn.execute(text(statement), params or {})
        conn.rollback()
    assert err.value.orig.pgcode == INSUFFICIENT_PRIVILEGE, f"{statement}: {err.value.orig}"
    return str(err.value.orig)


def allowed(engine, statement: str, params: dict | None = None) -> None:
    with engine.connect() as conn:
        conn.execute(text(statement), params or {})
        conn.rollback()


def invoke(url: str, *args: str):
    """The CLI in-process (click's runner)."""
    from click.testing import CliRunner

    from alcsdb.cli import cli

    return CliRunner().invoke(cli, ["--db", url, *args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def test_default_role_names():
    assert [roles.role_name(k) for k in roles.KINDS] == ["alcs_reader", "alcs_writer", "alcs_admin"]
    for prefix in ('x"; DROP TABLE source; --', "", "Alcs_", "alcs"):
        with pytest.raises(InputError):
            roles.role_name("reader", prefix=prefix)


def test_roles_connect_as_each_and_least_privilege(engine, db_url, prefix, release_dir):
    out = alcsdb(db_url, "db", "roles", "--prefix", prefix).stdout
    assert out.count("created") == 3
    again = ok(invoke(db_url, "db", "roles", "--prefix", prefix)).stdout  # idempotent
    assert again.count("exists") == 3 and "created" not in again
    users = {k: f"{prefix}{k}_user" for k in roles.KINDS}
    ok(invoke(db_url, "db", "grant", users["reader"], "--role", "reader", "--create", "--prefix", prefix))
    with engine.begin() as conn:
        for kind in ("writer", "admin"):
            assert roles.grant_role(conn, users[kind], kind, prefix=prefix, create=True)
        assert not roles.grant_role(conn, users["writer"], "writer", prefix=prefix)  # exists: a no-op grant
        conn.exec_driver_sql(f'CREATE ROLE "{prefix}nobody" LOGIN')
    urls = {k: as_user(db_url, u) for k, u in users.items()}
    engines = {k: db.make_engine(u) for k, u in urls.items()}
    nobody = db.make_engine(as_user(db_url, f"{prefix}nobody"))
    try:
        # the writer runs a real ingest (catalog, zout, AOR logs, mosaics) through the CLI
        ok(invoke(urls["writer"], "ingest", str(release_dir)))
        with engine.connect() as conn:
            n_sources = conn.execute(text("SELECT count(*) FROM source")).scalar()
            ingest_runs = conn.execute(text("SELECT username, status FROM run")).all()
        assert n_sources == 60 and {s for _, s in ingest_runs} == {"succeeded"}
        # only the admin creates versions
        result = invoke(urls["writer"], "version", "create", "v1")
        assert result.exit_code == 1 and "permission denied" in result.stderr
        assert len(result.stderr.splitlines()) == 1
        ok(invoke(urls["admin"], "version", "create", "v1"))
        with engine.connect() as conn:
            version_id, created_by = conn.execute(text("SELECT version_id, created_by FROM catalog_version")).one()
        assert created_by == users["admin"]
        files = export_version(engines["writer"], "v1", release_dir.parent / "export")  # export is a writer's stage
        assert len(files) == 2

        # reader: reads, calls the cone search, nothing else
        reader = engines["reader"]
        with reader.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM source")).scalar() == 60
            near = conn.execute(text("SELECT count(*) FROM alcs_cone_search(:ra, :dec, 300)"),
                                {"ra": A2744[2], "dec": A2744[3]}).scalar()
            assert near == 60
        new_catalog = release_dir.parent / f"{A2744[0]}_irac_phot_apcorr.fits"
        fixtures.write_phot_apcorr(new_catalog, A2744[0], A2744[2], A2744[3], 20, ["f160w"], seed=6)
        result = invoke(urls["reader"], "ingest", str(new_catalog))
        assert result.exit_code == 1 and "permission denied" in result.stderr
        assert len(result.stderr.splitlines()) == 1
        for statement in (
            "INSERT INTO field (name, hst_root, cluster, ra, dec) VALUES ('x', 'x', 'x', 1, 1)",
            "UPDATE run SET status = 'failed'",
            "UPDATE source SET ra = 0",
            "DELETE FROM aperture_flux",
            "TRUNCATE source CASCADE",
            "CREATE TABLE scratch (a int)",
            "CREATE VIEW scratch AS SELECT 1 AS a",
            "CREATE FUNCTION scratch() RETURNS int LANGUAGE sql RETURN 1",
            "CREATE INDEX scratch ON source (ra)",
            "CREATE SCHEMA scratch",
            "UPDATE catalog_version SET note = 'changed'",
            "DELETE FROM catalog_version_run",
            "INSERT INTO catalog_version (name) VALUES ('v2')",
            "SELECT nextval(pg_get_serial_sequence('source', 'source_id'))",
        ):
            refused(reader, statement)

        # writer: appends and closes its runs, never alters a version nor drops or rewrites rows
        writer = engines["writer"]
        allowed(writer, "UPDATE run SET status = 'failed', message = 'x' WHERE run_id = 1")
        for statement in (
            "UPDATE catalog_version SET note = 'changed'",
            "UPDATE catalog_version_run SET run_id = run_id",
            "DELETE FROM catalog_version",
            "TRUNCATE catalog_version CASCADE",
            "INSERT INTO catalog_version_run (version_id, field_id, stage, run_id) VALUES (1, 1, 'irac', 1)",
            "DROP TABLE source CASCADE",
            "DROP TABLE catalog_version CASCADE",
            "ALTER TABLE source ADD COLUMN scratch int",
            "ALTER TABLE catalog_version DISABLE TRIGGER USER",
            "UPDATE run SET params = '{}'",
            "UPDATE source SET ra = 0",
            "DELETE FROM source",
            "TRUNCATE aperture_flux",
            "CREATE TABLE scratch (a int)",
        ):
            refused(writer, statement)

        # admin: owns the schema (runs migrations), still cannot alter a version (triggers)
        admin = engines["admin"]
        message = refused(admin, "UPDATE catalog_version SET note = 'changed' WHERE version_id = :v", {"v": version_id})
        assert "immutable" in message
        refused(admin, "DELETE FROM catalog_version_run")
        db.downgrade(admin, "0002_cone_search")  # drops triggers and functions it owns ...
        db.upgrade(admin)  # ... and makes them again
        assert db.current_revision(admin) == db.head_revision()
        refused(admin, "UPDATE catalog_version SET note = 'changed'")

        # a login role without an alcsdb role gets nothing
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar()
        refused(nobody, f"SELECT count(*) FROM {schema}.source")
        refused(nobody, f"SELECT {schema}.alcs_angdist_arcsec(0, 0, 1, 1)")
        with engine.connect() as conn:
            assert versions.verify_hash(conn, "v1")[0] == versions.verify_hash(conn, "v1")[1]
            assert conn.execute(text("SELECT count(*) FROM source")).scalar() == 60
    finally:
        for e in (*engines.values(), nobody):
            e.dispose()


def test_grant_errors_are_one_line(engine, db_url, prefix):
    with engine.begin() as conn:
        roles.create_roles(conn, prefix=prefix)
    cases = {
        "missing_user": "does not exist",
        'bad"name': "invalid user name",
        "x; DROP ROLE postgres": "invalid user name",
        f"{prefix}reader": "one of the alcsdb roles",
    }
    for user, message in cases.items():
        result = invoke(db_url, "db", "grant", user, "--role", "reader", "--prefix", prefix)
        assert result.exit_code == 1 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error:")
    result = invoke(db_url, "db", "grant", "someone", "--role", "reader", "--prefix", "t_nonexistent_")
    assert result.exit_code == 1 and "run `alcsdb db roles` first" in result.stderr
    result = invoke(db_url, "db", "roles", "--prefix", "Bad-Prefix")
    assert result.exit_code == 1 and "invalid role prefix" in result.stderr
