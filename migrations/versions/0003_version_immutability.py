"""catalog versions are immutable: refuse UPDATE/DELETE/TRUNCATE of versions and of rows of pinned runs

Revision ID: 0003_version_immutability
Revises: 0002_cone_search

- `catalog_version` and `catalog_version_run` refuse UPDATE, DELETE and TRUNCATE;
- the measurement tables refuse UPDATE and DELETE of rows whose run a version pins
  (statement-level triggers with transition tables: one check per statement, not per row);
- deleting a pinned run is already refused by the RESTRICT foreign key of catalog_version_run.
"""
from alembic import op

revision = "0003_version_immutability"
down_revision = "0002_cone_search"
branch_labels = None
depends_on = None

PINNED_TABLES = ("source", "aperture_flux", "total_correction", "irac_flux", "zout")


def upgrade() -> None:
    op.execute("""
        CREATE FUNCTION alcs_refuse_version_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'catalog versions are immutable: % on % refused', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END $$""")
    for table in ("catalog_version", "catalog_version_run"):
        op.execute(f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION alcs_refuse_version_change()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION alcs_refuse_version_change()")
    op.execute("""
        CREATE FUNCTION alcs_refuse_pinned_change() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE pinned bigint;
        BEGIN
            SELECT o.run_id INTO pinned FROM old_rows o JOIN catalog_version_run cvr USING (run_id) LIMIT 1;
            IF pinned IS NOT NULL THEN
                RAISE EXCEPTION 'rows of run % belong to a catalog version: % on % refused',
                    pinned, TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NULL;
        END $$""")
    for table in PINNED_TABLES:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_pinned_{op_name.lower()} AFTER {op_name} ON {table} "
                       "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION alcs_refuse_pinned_change()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION alcs_refuse_version_change()")


def downgrade() -> None:
    for table in PINNED_TABLES:
        for op_name in ("update", "delete"):
            op.execute(f"DROP TRIGGER {table}_pinned_{op_name} ON {table}")
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
    for table in ("catalog_version", "catalog_version_run"):
        op.execute(f"DROP TRIGGER {table}_immutable ON {table}")
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION alcs_refuse_pinned_change()")
    op.execute("DROP FUNCTION alcs_refuse_version_change()")
