"""What `alcsdb db status` reports: revision, rows per table, runs by status, abandoned runs."""
from __future__ import annotations

from sqlalchemy import Engine, text

from . import db
from .provenance import abandoned_runs
from .schema import Base


def database_status(engine: Engine) -> dict:
    revision = db.current_revision(engine)
    info = {"url": db.describe(engine), "revision": revision, "head": db.head_revision(), "tables": {},
            "runs": [], "abandoned": []}
    if revision is None:
        return info
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            info["tables"][table.name] = conn.execute(text(f'SELECT count(*) FROM "{table.name}"')).scalar()
        info["abandoned"] = abandoned_runs(conn)
        info["runs"] = [dict(r) for r in conn.execute(text(
            "SELECT stage, status, count(*) AS runs, max(finished_at) AS last_finished FROM run "
            "GROUP BY stage, status ORDER BY stage, status")).mappings()]
    return info
