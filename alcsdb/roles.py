"""Least-privilege PostgreSQL roles: `alcs_reader`, `alcs_writer`, `alcs_admin`.

`create_roles(conn)` creates the three roles (NOLOGIN group roles, idempotently: roles are
cluster-wide) and grants them on the schema of the connection (`current_schema()`):

| role          | may                                                                             |
|---------------|---------------------------------------------------------------------------------|
| `alcs_reader` | SELECT on every table and view; EXECUTE on the cone search and its pure helpers |
| `alcs_writer` | the reader's rights; INSERT on the tables whose rows carry a `run_id` (except    |
|               | `catalog_version_run`) and on `run`; UPDATE of run status columns only; USAGE   |
|               | on sequences; INSERT of new filter names                                        |
| `alcs_admin`  | owns the schema's tables, views, sequences and functions (migrations need      |
|               | ownership), CREATE on the schema: runs `db upgrade` and creates catalog versions |

Nobody gets UPDATE or DELETE of `catalog_version` rows; the triggers of migration 0003 refuse
those even to owners. EXECUTE on the schema's functions is revoked from PUBLIC (PostgreSQL
grants it by default) so that only these roles call them; trigger functions need no grant.
Login users get a role with `grant_role(conn, user, "reader")` (`alcsdb db grant`).

Run both as a superuser (the embedded server's `postgres` is one): creating roles and
changing owners need it. Re-run `create_roles` after `alcsdb db upgrade` when the migration ran
as a superuser: new tables are then granted too (tables created by `alcs_admin` get SELECT for
the reader and the writer through default privileges).

Names reach SQL only through `validate_identifier` and `psycopg2.sql.Identifier`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from psycopg2 import sql
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from .db import validate_identifier
from .errors import InputError
from .provenance import LOCK_NAMESPACE
from .schema import Base

KINDS = ("reader", "writer", "admin")
DEFAULT_PREFIX = "alcs_"
#: run columns a writer may update: the status change at the end of a run (and `abandoned`)
RUN_STATUS_COLUMNS = ("status", "finished_at", "wall_time_s", "peak_rss_mb", "n_rows", "message")
#: tables with a run_id that only version creation (admin) writes
ADMIN_ONLY_TABLES = ("catalog_version_run",)
#: login user names `grant_role` accepts (quoted as identifiers: e-mail-like names work)
_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,40}_$")
_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.@-]{0,62}$")
_RELKIND_DDL = {"r": "TABLE", "p": "TABLE", "f": "FOREIGN TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW",
                "S": "SEQUENCE"}
_ROLES_LOCK = 1  # second key of the advisory lock that serialises concurrent `db roles` in a database


def role_name(kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The role of `kind` (reader, writer, admin): `alcs_reader` ... with the default prefix."""
    if kind not in KINDS:
        raise InputError(f"unknown role {kind!r}: choose one of {', '.join(KINDS)}")
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise InputError(f"invalid role prefix {prefix!r}: lower-case letters, digits and _, ending in _")
    return validate_identifier(f"{prefix}{kind}", "role name")


def writer_insert_tables() -> list[str]:
    """Tables the pipeline and ingest append to: `run` and every table whose rows carry a run_id."""
    tables = [t.name for t in Base.metadata.sorted_tables if "run_id" in t.c and t.name not in ADMIN_ONLY_TABLES]
    return sorted(tables)


@dataclass
class RolesReport:
    schema: str
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    tables: int = 0
    functions: int = 0
    owned: int = 0


def _exec(conn: Connection, template: str, **parts: str | sql.Composable) -> None:
    """Run a statement whose names are quoted by psycopg2 (a str becomes an Identifier), never string-formatted."""
    composed = sql.SQL(template).format(**{k: v if isinstance(v, sql.Composable) else sql.Identifier(v)
                                           for k, v in parts.items()})
    conn.exec_driver_sql(composed.as_string(conn.connection.dbapi_connection))


def role_exists(conn: Connection, name: str) -> bool:
    return bool(conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).scalar())


def _create_role(conn: Connection, name: str) -> bool:
    """CREATE ROLE name NOLOGIN unless it exists; True if created (a concurrent creator wins quietly)."""
    if role_exists(conn, name):
        return False
    try:
        with conn.begin_nested():
            _exec(conn, "CREATE ROLE {r} NOLOGIN", r=name)
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) not in ("42710", "23505"):  # duplicate_object, unique_violation
            raise
        return False
    return True


def _relations(conn: Connection, schema: str, kinds: str) -> list[tuple[str, str]]:
    """(name, relkind) of the schema's relations of these kinds, less sequences owned by a column."""
    return [tuple(r) for r in conn.execute(text(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :s AND c.relkind::text = ANY(:k) AND NOT EXISTS (SELECT 1 FROM pg_depend d "
        "WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')) "
        "ORDER BY c.relname"), {"s": schema, "k": list(kinds)})]


def _functions(conn: Connection, schema: str, *, triggers: bool) -> list[str]:
    """Signatures (regprocedure text, already quoted by PostgreSQL) of the schema's functions."""
    return list(conn.execute(text(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = :s AND p.prokind = 'f' AND (p.prorettype = 'trigger'::regtype) = :t ORDER BY 1"),
        {"s": schema, "t": triggers}).scalars())


def _function(signature: str) -> sql.SQL:
    """`name(argtypes)` as PostgreSQL's regprocedure output prints it (quoted where needed), checked."""
    if not re.fullmatch(r'[\w."]+\([\w ,\[\]".]*\)', signature):
        raise ValueError(f"unexpected function signature {signature!r}")
    return sql.SQL(signature)


def create_roles(conn: Connection, prefix: str = DEFAULT_PREFIX) -> RolesReport:
    """Create the three roles if missing and (re)grant them on `current_schema()`; idempotent.

    Runs in the caller's transaction; `prefix` (default `alcs_`) lets tests use private roles.
    """
    schema = conn.execute(text("SELECT current_schema()")).scalar()
    if schema is None:
        raise InputError("no current schema: the search_path names no existing schema")
    database = conn.execute(text("SELECT current_database()")).scalar()
    conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": LOCK_NAMESPACE, "b": _ROLES_LOCK})
    reader, writer, admin = (role_name(k, prefix) for k in KINDS)
    report = RolesReport(schema=schema)
    for name in (reader, writer, admin):
        (report.created if _create_role(conn, name) else report.existing).append(name)

    names = {"s": schema, "db": database, "reader": reader, "writer": writer, "admin": admin}
    _exec(conn, "GRANT CONNECT ON DATABASE {db} TO {reader}, {writer}, {admin}", **names)
    _exec(conn, "GRANT USAGE ON SCHEMA {s} TO {reader}, {writer}", **names)
    _exec(conn, "GRANT USAGE, CREATE ON SCHEMA {s} TO {admin}", **names)

    # admin: owner of everything alcsdb made in the schema (ALTER and DROP in migrations need it)
    relations = _relations(conn, schema, "rpvmfS")  # sequences owned by a column follow their table
    for rel, kind in relations:
        _exec(conn, f"ALTER {_RELKIND_DDL[kind]} {{s}}.{{t}} OWNER TO {{admin}}", t=rel, **names)
    functions = _functions(conn, schema, triggers=False) + _functions(conn, schema, triggers=True)
    for fn in functions:
        _exec(conn, "ALTER FUNCTION {s}.{f} OWNER TO {admin}", f=_function(fn), **names)
    report.owned = len(relations) + len(functions)
    tables = [rel for rel, kind in relations if kind in "rpvmf"]

    # reader and writer: read everything, call the pure functions (not the trigger functions)
    _exec(conn, "GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {reader}, {writer}", **names)
    _exec(conn, "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC", **names)
    callable_ = _functions(conn, schema, triggers=False)
    for fn in callable_:
        _exec(conn, "GRANT EXECUTE ON FUNCTION {s}.{f} TO {reader}, {writer}", f=_function(fn), **names)
    _exec(conn, "ALTER DEFAULT PRIVILEGES FOR ROLE {admin} IN SCHEMA {s} GRANT SELECT ON TABLES TO {reader}, {writer}",
          **names)

    # writer: append rows, close its runs, draw ids
    present = set(tables)
    for table in writer_insert_tables():
        if table in present:
            _exec(conn, "GRANT INSERT ON {s}.{t} TO {writer}", t=table, **names)
    _exec(conn, "GRANT UPDATE ({c}) ON {s}.run TO {writer}",
          c=sql.SQL(", ").join(sql.Identifier(c) for c in RUN_STATUS_COLUMNS), **names)
    # a filter name the package does not know is registered by `INSERT ... ON CONFLICT (name) DO UPDATE SET
    # name = EXCLUDED.name` (alcsdb.measurements.filter_ids), which needs UPDATE of that column
    _exec(conn, "GRANT INSERT, UPDATE (name) ON {s}.filter TO {writer}", **names)
    _exec(conn, "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {writer}", **names)
    report.tables, report.functions = len(tables), len(callable_)
    return report


def grant_role(conn: Connection, user: str, kind: str, *, prefix: str = DEFAULT_PREFIX,
               create: bool = False) -> bool:
    """Make login role `user` a member of the `kind` role; with `create`, create `user` (LOGIN) if missing.

    Returns True if `user` was created. The user connects with its own name (and password,
    which an administrator sets: `ALTER ROLE name PASSWORD ...`, never through alcsdb).
    """
    role = role_name(kind, prefix)
    if not isinstance(user, str) or not _USER_NAME.match(user):
        raise InputError(f"invalid user name {user!r}: letters, digits and _.@- only, at most 63 characters")
    if user in {role_name(k, prefix) for k in KINDS}:
        raise InputError(f"{user} is one of the alcsdb roles; grant it to a login user")
    if not role_exists(conn, role):
        raise InputError(f"role {role} does not exist: run `alcsdb db roles` first")
    created = False
    if not role_exists(conn, user):
        if not create:
            raise InputError(f"user {user!r} does not exist: create it (CREATE ROLE ... LOGIN) or pass --create")
        created = _create_login(conn, user)
    _exec(conn, "GRANT {r} TO {u}", r=role, u=user)
    return created


def _create_login(conn: Connection, user: str) -> bool:
    try:
        with conn.begin_nested():
            _exec(conn, "CREATE ROLE {u} LOGIN", u=user)
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) not in ("42710", "23505"):
            raise
        return False
    return True
