"""catalog_version_column: each version's release-format tables, written once with the version

Revision ID: 0006_version_snapshot
Revises: 0005_zout_coeffs

One row per column of each exported file of a version (see `alcsdb/snapshot.py`):
- the column's values as one bytea (big-endian, as in the FITS file), stored uncompressed
  out of line (STORAGE EXTERNAL): export reads them without decompressing, and pglz gains
  little on floating-point data (measured in the README's export section);
- immutable like the version: UPDATE, DELETE and TRUNCATE are refused by the trigger function
  of migration 0003.
Versions created before this migration have no snapshot; export builds their tables from the rows.
"""
from alembic import op
import sqlalchemy as sa

revision = "0006_version_snapshot"
down_revision = "0005_zout_coeffs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_version_column",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("field_id", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False, comment="phot or zout"),
        sa.Column("position", sa.SmallInteger(), nullable=False, comment="column number in the file, from 1"),
        sa.Column("name", sa.Text(), nullable=False, comment="FITS TTYPE"),
        sa.Column("dtype", sa.Text(), nullable=False,
                  comment="numpy dtype of the values, big-endian: >f8, >i4, >i2, ..."),
        sa.Column("repeat", sa.SmallInteger(), nullable=False,
                  comment="values per row: 1, or the length of a vector column"),
        sa.Column("unit", sa.Text(), nullable=True, comment="FITS TUNIT"),
        sa.Column("data", sa.LargeBinary(), nullable=False,
                  comment="rows x repeat values, big-endian, -99 for missing"),
        sa.CheckConstraint("kind IN ('phot', 'zout')", name=op.f("ck_catalog_version_column_kind")),
        sa.CheckConstraint("repeat >= 1", name=op.f("ck_catalog_version_column_repeat")),
        sa.CheckConstraint("dtype IN ('>f8', '>f4', '>i8', '>i4', '>i2')", name=op.f("ck_catalog_version_column_dtype")),
        sa.ForeignKeyConstraint(["field_id"], ["field.field_id"],
                                name=op.f("fk_catalog_version_column_field_id_field")),
        sa.ForeignKeyConstraint(["version_id"], ["catalog_version.version_id"],
                                name=op.f("fk_catalog_version_column_version_id_catalog_version")),
        sa.PrimaryKeyConstraint("version_id", "field_id", "kind", "position", name=op.f("pk_catalog_version_column")),
        sa.UniqueConstraint("version_id", "field_id", "kind", "name",
                            name=op.f("uq_catalog_version_column_version_id_field_id_kind_name")),
    )
    op.execute("ALTER TABLE catalog_version_column ALTER COLUMN data SET STORAGE EXTERNAL")
    op.execute("CREATE TRIGGER catalog_version_column_immutable BEFORE UPDATE OR DELETE ON catalog_version_column "
               "FOR EACH ROW EXECUTE FUNCTION alcs_refuse_version_change()")
    op.execute("CREATE TRIGGER catalog_version_column_no_truncate BEFORE TRUNCATE ON catalog_version_column "
               "FOR EACH STATEMENT EXECUTE FUNCTION alcs_refuse_version_change()")


def downgrade() -> None:
    op.drop_table("catalog_version_column")
