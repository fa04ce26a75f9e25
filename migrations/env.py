"""Alembic environment: migrations target `alcsdb.schema.Base.metadata`.

Called from `alcsdb db upgrade` with a connection (config.attributes["connection"]), or from
the `alembic` command line, which connects like alcsdb does (ALCSDB_DATABASE_URL or the
embedded server). Objects go into the connection's current schema (its search_path), which
is how the tests isolate each test in its own schema.
"""
from alembic import context

from alcsdb.schema import Base

target_metadata = Base.metadata


def run_with(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      compare_server_default=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_with(connection)
else:
    from alcsdb.db import make_engine

    with make_engine().connect() as conn:
        run_with(conn)
        conn.commit()
