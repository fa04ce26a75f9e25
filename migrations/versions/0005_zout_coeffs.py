"""zout.coeffs: best-fit template coefficients at z_phot (to redraw a source's SED)

Revision ID: 0005_zout_coeffs
Revises: 0004_lineage_view

The photoz stage stores eazy's best-fit coefficients per source (in the flux units of the
template files, i.e. already multiplied by the template grid's scale), so `alcsdb plot sed`
rebuilds the template SED at z_phot from the run's recorded template set without refitting.
Not a release column: the export does not read it.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0005_zout_coeffs"
down_revision = "0004_lineage_view"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("zout", sa.Column(
        "coeffs", postgresql.ARRAY(sa.REAL()), nullable=True,
        comment="best-fit coefficients of the run's templates (template file flux units) at z_phot"))


def downgrade() -> None:
    op.drop_column("zout", "coeffs")
