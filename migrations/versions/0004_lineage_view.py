"""lineage in SQL: alcs_lineage(run ids) and the views run_lineage, product_lineage

Revision ID: 0004_lineage_view
Revises: 0003_version_immutability

A run's inputs are its `run_input` products; a product was made by `product.run_id`; so the
lineage of a run is its inputs, the inputs of the runs that made them, and so on. An ingest run
registers its release file and lists it as its own input: such a self-made input is a raw input
and the walk stops there (as it does at products nobody made from other products: exposures'
FLT files, AOR logs). `alcsdb/lineage.py` documents the objects and builds its trees on them.

- ``alcs_lineage(start_runs bigint[])``: TABLE (reader_run_id, product_id, role,
  producer_run_id, depth): every product read, directly (depth 1) or through the runs that made
  the inputs (depth 2, 3, ...), by the runs `start_runs`; `reader_run_id` read it in `role`,
  `producer_run_id` made it; the smallest depth at which each edge is reached.
- view ``run_lineage`` (run_id, reader_run_id, input_product_id, role, producer_run_id, depth):
  the same for every run.
- view ``product_lineage`` (product_id, ancestor_product_id, run_id, role, depth): every product
  a product was derived from; `run_id` read the ancestor (depth 1: the product's own run).
"""
from alembic import op

revision = "0004_lineage_view"
down_revision = "0003_version_immutability"
branch_labels = None
depends_on = None

#: a recursion bound that no real chain of stages reaches; it only stops a forged cycle
MAX_DEPTH = 64


def upgrade() -> None:
    op.execute(f"""
        CREATE FUNCTION alcs_lineage(start_runs bigint[])
        RETURNS TABLE (reader_run_id bigint, product_id bigint, role text, producer_run_id bigint, depth integer)
        LANGUAGE sql STABLE AS $$
            WITH RECURSIVE walk(reader_run_id, product_id, role, producer_run_id, depth) AS (
                SELECT ri.run_id, ri.product_id, ri.role, p.run_id, 1
                FROM run_input ri JOIN product p ON p.product_id = ri.product_id
                WHERE ri.run_id = ANY(start_runs)
              UNION
                SELECT ri.run_id, ri.product_id, ri.role, p.run_id, w.depth + 1
                FROM walk w
                JOIN run_input ri ON ri.run_id = w.producer_run_id
                JOIN product p ON p.product_id = ri.product_id
                WHERE w.producer_run_id <> w.reader_run_id AND w.depth < {MAX_DEPTH}
            )
            SELECT w.reader_run_id, w.product_id, w.role, w.producer_run_id, min(w.depth)::integer
            FROM walk w GROUP BY w.reader_run_id, w.product_id, w.role, w.producer_run_id
        $$""")
    op.execute("""
        CREATE VIEW run_lineage AS
        SELECT r.run_id, l.reader_run_id, l.product_id AS input_product_id, l.role, l.producer_run_id, l.depth
        FROM run r CROSS JOIN LATERAL alcs_lineage(ARRAY[r.run_id]) l""")
    op.execute("""
        CREATE VIEW product_lineage AS
        SELECT p.product_id, l.product_id AS ancestor_product_id, l.reader_run_id AS run_id, l.role, l.depth
        FROM product p CROSS JOIN LATERAL alcs_lineage(ARRAY[p.run_id]) l
        WHERE l.product_id <> p.product_id""")
    op.execute("COMMENT ON VIEW product_lineage IS 'every product a product derives from (alcsdb/lineage.py)'")
    op.execute("COMMENT ON VIEW run_lineage IS 'every product a run read, directly or through earlier runs'")


def downgrade() -> None:
    op.execute("DROP VIEW product_lineage")
    op.execute("DROP VIEW run_lineage")
    op.execute("DROP FUNCTION alcs_lineage(bigint[])")
