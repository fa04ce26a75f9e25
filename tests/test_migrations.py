"""The migrations produce exactly the models, and upgrade -> downgrade -> upgrade works."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from alcsdb import db
from alcsdb.schema import Base


def test_migrations_match_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True,
                                                                      "compare_server_default": True}),
                                Base.metadata)
    assert diff == [], f"schema.py and migrations differ: {diff}"


def test_upgrade_downgrade_upgrade(engine):
    head = db.head_revision()
    assert db.current_revision(engine) == head
    db.downgrade(engine, "base")
    assert db.current_revision(engine) is None
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set(), f"downgrade left tables behind: {tables}"
    db.upgrade(engine)
    assert db.current_revision(engine) == head
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM field")).scalar() == 33


def test_reference_data_loaded(engine):
    with engine.connect() as conn:
        fields = dict(conn.execute(text("SELECT name, cluster FROM field")).all())
        assert fields["j001408m3023"] == "Abell 2744"
        assert len(fields) == 33
        surveys = dict(conn.execute(text("SELECT survey, count(*) FROM field GROUP BY survey")).all())
        assert surveys == {"HFF": 5, "CLASH": 12, "RELICS": 16}
        f160w = conn.execute(text("SELECT eazy_id, instrument FROM filter WHERE name = 'f160w'")).one()
        assert tuple(f160w) == (205, "WFC3")
    # loading twice changes nothing (upgrade is re-runnable)
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM field")).scalar() == 33


def test_schema_doc_is_current():
    """docs/schema.md is generated from the models; regenerate with `python -m alcsdb.schema_doc`."""
    from pathlib import Path

    from alcsdb.schema_doc import render

    committed = (Path(__file__).parent.parent / "docs" / "schema.md").read_text()
    assert committed == render(), "docs/schema.md is stale: python -m alcsdb.schema_doc > docs/schema.md"


def _schemas(base: str) -> set[str]:
    engine = db.make_engine(base)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT nspname FROM pg_namespace")).scalars())
    finally:
        engine.dispose()


def test_scratch_schema_drops_keeps_and_reuses(server_urls):
    base = server_urls["embedded"]
    with db.scratch_schema(base, "tscratch") as url:
        fresh = db.schema_of(url)
        assert fresh.startswith("tscratch_") and db.current_revision(db.make_engine(url)) == db.head_revision()
    assert fresh not in _schemas(base)
    with db.scratch_schema(base, "tscratch", keep=True) as url:
        kept = db.schema_of(url)
    assert kept in _schemas(base)
    try:
        # a named schema is reused as it is (rows survive) and never dropped
        with db.scratch_schema(base, name=kept) as url:
            engine = db.make_engine(url)
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE marker (x int)"))
            engine.dispose()
        with db.scratch_schema(base, name=kept) as url:
            engine = db.make_engine(url)
            with engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM marker")).scalar() == 0
            engine.dispose()
        assert kept in _schemas(base)
    finally:
        admin = db.make_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {kept} CASCADE"))
        admin.dispose()
    assert db.schema_of(base) is None
