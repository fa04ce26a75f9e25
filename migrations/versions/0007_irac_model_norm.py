"""irac_flux.model_norm: the HST flux of each IRAC model, so IRAC colours can be put on the HST totals

Revision ID: 0007_irac_model_norm
Revises: 0006_version_snapshot

The IRAC stage fits each source's model (its detection-image segment convolved to the IRAC PSF,
normalised to unit sum); `model_norm` is that segment's HST flux in uJy. `flux / model_norm` is
the source's IRAC-to-HST colour, which the photoz stage can scale to the HST total-flux
definition (`irac_scale=hst_total`). Rows written before this migration have NULL.
"""
from alembic import op
import sqlalchemy as sa

revision = "0007_irac_model_norm"
down_revision = "0006_version_snapshot"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("irac_flux", sa.Column(
        "model_norm", sa.Double(), nullable=True,
        comment="uJy: HST flux of the source's model (detection image over its segment); "
                "flux / model_norm is its IRAC-to-HST colour"))


def downgrade() -> None:
    op.drop_column("irac_flux", "model_norm")
