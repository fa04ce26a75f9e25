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
