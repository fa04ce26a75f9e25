"""Connections: the embedded PostgreSQL (pgserver) by default, any server by URL.

Which server: `--db URL` (CLI) > `ALCSDB_DATABASE_URL` > the embedded server whose data lives
in `$ALCSDB_HOME/pgdata`. The embedded server is started on first use and left running for
later commands and processes (`alcsdb db stop` stops it); pgserver takes an inter-process
lock while starting it and recognises a stale `postmaster.pid` after a crash, so there is
never a second server on the same data directory.
"""
from __future__ import annotations

import csv
import logging
import re
import subprocess
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from . import config
from .errors import DatabaseError

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "alcsdb"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def validate_identifier(name: str, what: str = "identifier") -> str:
    """A SQL identifier we build into DDL (schema or role names): lower-case word characters only."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"invalid {what} {name!r}: use lower-case letters, digits and _ (max 63)")
    return name


def pgdata_dir() -> Path:
    return config.home() / "pgdata"


def _embedded_server():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
        import pgserver

    try:
        return pgserver.get_server(pgdata_dir(), cleanup_mode=None)
    except Exception as exc:  # pgserver raises CalledProcessError/TimeoutExpired/AssertionError
        raise DatabaseError(
            f"cannot start the embedded PostgreSQL in {pgdata_dir()}: {exc} "
            f"(see {pgdata_dir() / 'log'})"
        ) from exc


def embedded_url() -> str:
    """Start (or reuse) the embedded server and return the URL of its `alcsdb` database."""
    server = _embedded_server()
    uri = make_url(server.get_uri()).set(drivername="postgresql+psycopg2")
    with create_engine(uri, isolation_level="AUTOCOMMIT").connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": EMBEDDED_DATABASE}).scalar()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{EMBEDDED_DATABASE}"'))
    return uri.set(database=EMBEDDED_DATABASE).render_as_string(hide_password=False)


def embedded_running() -> bool:
    pid_file = pgdata_dir() / "postmaster.pid"
    if not pid_file.exists():
        return False
    import psutil

    try:
        pid = int(pid_file.read_text().split()[0])
    except (ValueError, IndexError):
        return False
    return psutil.pid_exists(pid)


def stop_embedded() -> bool:
    """Stop the embedded server if it runs; True if it was stopped."""
    if not embedded_running():
        return False
    from pgserver._commands import POSTGRES_BIN_PATH

    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata_dir()), "-w", "-m", "fast", "stop"]
    import os

    if os.geteuid() == 0:  # pgserver runs the server as the 'pgserver' system user when root
        cmd = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(cmd)]
    subprocess.run(cmd, check=True, capture_output=True)
    return True


def resolve_url(url: str | None = None) -> str:
    """The URL to use: explicit > ALCSDB_DATABASE_URL > embedded server."""
    url = url or config.database_url()
    if not url:
        return embedded_url()
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if not parsed.drivername.startswith("postgresql"):
        raise DatabaseError(f"alcsdb needs PostgreSQL, got a {parsed.drivername} URL")
    return parsed.render_as_string(hide_password=False)


def with_schema(url: str, schema: str) -> str:
    """The same URL with `search_path` set to `schema` (used to isolate tests and scratch data)."""
    validate_identifier(schema, "schema name")
    parsed = make_url(url)
    query = dict(parsed.query)
    query["options"] = f"-csearch_path={schema}"
    return parsed.set(query=query).render_as_string(hide_password=False)


def schema_of(url: str) -> str | None:
    """The schema a `with_schema` URL works in (None for a URL without one)."""
    options = str(make_url(url).query.get("options", ""))
    found = re.search(r"-csearch_path=(\S+)", options)
    return found.group(1) if found else None


def make_engine(url: str | None = None, **kw) -> Engine:
    """An engine on the resolved URL. JIT is off: it only slows the short queries alcsdb runs."""
    resolved = resolve_url(url)
    parsed: URL = make_url(resolved)
    options = parsed.query.get("options", "")
    if "jit" not in options:
        options = (options + " -cjit=off").strip()
    if "client_connection_check_interval" not in options:
        # the backend of a killed client notices within 2 s even while it waits on a lock or a
        # long statement, so its run's advisory lock is released and it is reported abandoned
        options = (options + " -cclient_connection_check_interval=2000").strip()
    parsed = parsed.set(query={**parsed.query, "options": options})
    kw.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kw)


def describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


# --- migrations -------------------------------------------------------------------------

def alembic_config(connection=None):
    from alembic.config import Config

    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision` and load the package-owned reference rows (fields, filters)."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
        load_reference_data(conn)


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def _csv_rows(name: str) -> Iterator[dict]:
    with resources.files("alcsdb.data").joinpath(name).open() as fh:
        yield from csv.DictReader(line for line in fh if not line.startswith("#"))


def _nullable(row: dict) -> dict:
    return {k: (None if v == "" else v) for k, v in row.items()}


def load_reference_data(conn) -> None:
    """Insert or refresh the 33 release fields and the filter table (owned by the package)."""
    conn.execute(
        text(
            "INSERT INTO field (name, hst_root, irac_root, cluster, survey, ra, dec, z_cluster, ebv) "
            "VALUES (:name, :hst_root, :irac_root, :cluster, :survey, :ra, :dec, :z_cluster, :ebv) "
            "ON CONFLICT (name) DO UPDATE SET hst_root = EXCLUDED.hst_root, irac_root = EXCLUDED.irac_root, "
            "cluster = EXCLUDED.cluster, survey = EXCLUDED.survey, ra = EXCLUDED.ra, dec = EXCLUDED.dec, "
            "z_cluster = EXCLUDED.z_cluster, ebv = EXCLUDED.ebv"
        ),
        [_nullable(r) for r in _csv_rows("fields.csv")],
    )
    conn.execute(
        text(
            "INSERT INTO filter (name, instrument, detector, pivot_angstrom, eazy_id) "
            "VALUES (:name, :instrument, :detector, :pivot_angstrom, :eazy_id) "
            "ON CONFLICT (name) DO UPDATE SET instrument = EXCLUDED.instrument, detector = EXCLUDED.detector, "
            "pivot_angstrom = EXCLUDED.pivot_angstrom, eazy_id = EXCLUDED.eazy_id"
        ),
        [_nullable(r) for r in _csv_rows("filters.csv")],
    )


def require_current(engine: Engine) -> None:
    """Raise a clear error when the database is not migrated to head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise DatabaseError(
            f"database {describe(engine)} is at revision {current or 'none'}, code expects {head}: "
            "run `alcsdb db upgrade`"
        )


@contextmanager
def scratch_schema(base_url: str, prefix: str = "scratch", *, migrate: bool = True, name: str | None = None,
                   keep: bool = False) -> Iterator[str]:
    """A schema on the server of `base_url` (migrated to head unless `migrate=False`); yields its URL.

    By default a fresh `{prefix}_...` schema, dropped afterwards: tests, benchmarks and throw-away
    work use it to stay isolated. `name` works in that schema instead (created if missing, never
    dropped: a benchmark re-running later stages on kept runs); `keep` leaves the fresh schema in
    place (`schema_of(url)` names it).
    """
    import uuid

    schema = validate_identifier(name or f"{prefix}_{uuid.uuid4().hex[:12]}", "schema name")
    drop = name is None and not keep
    admin = make_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    url = with_schema(base_url, schema)
    try:
        if migrate:
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
        yield url
    finally:
        if drop:
            with admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()
