"""alcs_cone_range snaps its radius, as every other cone function does

Revision ID: 0009_cone_range_snap_radius
Revises: 0008_aperture_samp_corr

PostgreSQL raises "value out of range: underflow" when a float division or product comes out
exactly zero. Migration 0002 snaps coordinates and radii below 1e-30 to 0 for that reason
(`alcs_snap`, `alcsdb.healpix.snap`), but `alcs_cone_range` divided the raw radius by 3600, so a
cone of radius 5e-324 arcsec (found by the property test on PostgreSQL 15) failed instead of
returning the sources at distance 0. The function is redefined from migration 0002's text with
`alcs_snap(radius_arcsec) / 3600`; the rows it returns are unchanged for every other radius.
"""
import importlib.util
from pathlib import Path

from alembic import op

revision = "0009_cone_range_snap_radius"
down_revision = "0008_aperture_samp_corr"
branch_labels = None
depends_on = None

SIGNATURE = "alcs_cone_range(double precision, double precision, double precision, bigint, bigint)"
OLD = "AND abs(src.dec - dec_deg) <= radius_arcsec / 3600 + 1e-9"
NEW = "AND abs(src.dec - dec_deg) <= alcs_snap(radius_arcsec) / 3600 + 1e-9"


def _original() -> str:
    spec = importlib.util.spec_from_file_location("_alcs_0002", Path(__file__).with_name("0002_cone_search.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sql = dict(module.FUNCTIONS)[SIGNATURE]
    assert OLD in sql
    return sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    op.execute(_original().replace(OLD, NEW))


def downgrade() -> None:
    op.execute(_original())
