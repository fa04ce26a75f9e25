"""aperture_flux.samp_corr: the drizzle-sampling factor the photometry stage applies

Revision ID: 0008_aperture_samp_corr
Revises: 0007_irac_model_norm

A drizzled WFC3/IR mosaic (pixfrac 0.33, few exposures) samples a compact source's core at the
input pixels' centres, so its aperture flux depends on the source's sub-pixel position by several
per cent. The photometry stage drizzles a model of each source through the filter's exposures
(`pipeline.drizzle_psf`) and multiplies the aperture flux by exact / drizzled model flux before
the aperture and total corrections: `corr = flux * samp_corr * apcorr`. `flux` stays the measured
sum. Rows written before this migration, detection-image rows and runs with
`sampling_correction=false` have NULL.
"""
from alembic import op
import sqlalchemy as sa

revision = "0008_aperture_samp_corr"
down_revision = "0007_irac_model_norm"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("aperture_flux", sa.Column(
        "samp_corr", sa.Double(), nullable=True,
        comment="drizzle-sampling factor in corr and tot (corr = flux * samp_corr * apcorr); NULL: none"))


def downgrade() -> None:
    op.drop_column("aperture_flux", "samp_corr")
