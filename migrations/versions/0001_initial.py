"""initial schema: fields, filters, runs, products, exposures, AORs, sources, photometry, zout, versions, external catalogs

Revision ID: 0001_initial
Revises: 
Create Date: 2026-11-24 08:26:08.635212
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001_initial'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('catalog_version',
    sa.Column('version_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('created_by', sa.Text(), server_default=sa.text('CURRENT_USER'), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('software_version', sa.Text(), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=True, comment='sha256 over the canonical rows'),
    sa.PrimaryKeyConstraint('version_id', name=op.f('pk_catalog_version')),
    sa.UniqueConstraint('name', name=op.f('uq_catalog_version_name'))
    )
    op.create_table('field',
    sa.Column('field_id', sa.SmallInteger(), autoincrement=True, nullable=False),
    sa.Column('name', sa.Text(), nullable=False, comment='field name, e.g. j001408m3023'),
    sa.Column('hst_root', sa.Text(), nullable=False, comment='HST product root, e.g. hff-j001408m3023'),
    sa.Column('irac_root', sa.Text(), nullable=True, comment='IRAC product root, e.g. A2744_hff-j001408m3023'),
    sa.Column('cluster', sa.Text(), nullable=False, comment='cluster name, e.g. Abell 2744'),
    sa.Column('survey', sa.Text(), nullable=True, comment='HFF, CLASH, RELICS or other'),
    sa.Column('ra', sa.Double(), nullable=False, comment='field centre RA, deg ICRS'),
    sa.Column('dec', sa.Double(), nullable=False, comment='field centre Dec, deg ICRS'),
    sa.Column('z_cluster', sa.Double(), nullable=True, comment='cluster redshift'),
    sa.Column('ebv', sa.Double(), nullable=True, comment='Galactic E(B-V), mag'),
    sa.CheckConstraint('dec BETWEEN -90 AND 90 AND ra >= 0 AND ra < 360', name=op.f('ck_field_position')),
    sa.PrimaryKeyConstraint('field_id', name=op.f('pk_field')),
    sa.UniqueConstraint('hst_root', name=op.f('uq_field_hst_root')),
    sa.UniqueConstraint('name', name=op.f('uq_field_name'))
    )
    op.create_table('filter',
    sa.Column('filter_id', sa.SmallInteger(), autoincrement=True, nullable=False),
    sa.Column('name', sa.Text(), nullable=False, comment='lower case: f160w, f814w, ch1, det'),
    sa.Column('instrument', sa.Text(), nullable=True, comment='ACS, WFC3, IRAC or detection'),
    sa.Column('detector', sa.Text(), nullable=True, comment='WFC, IR, UVIS'),
    sa.Column('pivot_angstrom', sa.Double(), nullable=True, comment='pivot wavelength, Angstrom'),
    sa.Column('eazy_id', sa.Integer(), nullable=True, comment="filter number in EAZY's FILTER.RES.latest"),
    sa.PrimaryKeyConstraint('filter_id', name=op.f('pk_filter')),
    sa.UniqueConstraint('name', name=op.f('uq_filter_name'))
    )
    op.create_table('run',
    sa.Column('run_id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('stage', sa.Text(), nullable=False),
    sa.Column('field_id', sa.SmallInteger(), nullable=True),
    sa.Column('status', sa.Text(), server_default='running', nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('software_version', sa.Text(), nullable=False, comment='alcsdb version'),
    sa.Column('git_commit', sa.Text(), nullable=True, comment='alcsdb git commit (+dirty)'),
    sa.Column('package_versions', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='sep, drizzlepac, eazy, numpy, astropy ...'),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='every parameter of the stage'),
    sa.Column('params_hash', sa.Text(), nullable=False, comment='sha256 of the canonical JSON of params'),
    sa.Column('host', sa.Text(), nullable=False),
    sa.Column('username', sa.Text(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('wall_time_s', sa.Double(), nullable=True),
    sa.Column('peak_rss_mb', sa.Double(), nullable=True),
    sa.Column('n_rows', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment='rows written per table'),
    sa.Column('message', sa.Text(), nullable=True, comment='error message of a failed run, or a note'),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'abandoned')", name=op.f('ck_run_status')),
    sa.ForeignKeyConstraint(['field_id'], ['field.field_id'], name=op.f('fk_run_field_id_field')),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_run'))
    )
    op.create_index(op.f('ix_run_stage_field_id_status'), 'run', ['stage', 'field_id', 'status'], unique=False)
    op.create_table('catalog_version_run',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('field_id', sa.SmallInteger(), nullable=False),
    sa.Column('stage', sa.Text(), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['field_id'], ['field.field_id'], name=op.f('fk_catalog_version_run_field_id_field')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_catalog_version_run_run_id_run'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['version_id'], ['catalog_version.version_id'], name=op.f('fk_catalog_version_run_version_id_catalog_version')),
    sa.PrimaryKeyConstraint('version_id', 'field_id', 'stage', name=op.f('pk_catalog_version_run'))
    )
    op.create_index(op.f('ix_catalog_version_run_run_id'), 'catalog_version_run', ['run_id'], unique=False)
    op.create_table('product',
    sa.Column('product_id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False, comment='e.g. phot_apcorr, zout, aor_log, hst_sci, hst_wht, seg, irac_sci, irac_model, export_phot'),
    sa.Column('field_id', sa.SmallInteger(), nullable=True),
    sa.Column('filter_id', sa.SmallInteger(), nullable=True),
    sa.Column('path', sa.Text(), nullable=False, comment='absolute path when registered'),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('ingested', sa.Boolean(), server_default=sa.text('false'), nullable=False, comment='true for release files whose rows an ingest loaded'),
    sa.Column('footprint', postgresql.ARRAY(sa.Double(), dimensions=2), nullable=True, comment='sky footprint polygon [[ra, dec], ...], deg'),
    sa.Column('meta', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment='header keywords of interest (WCS, PHOTFNU ...)'),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['field_id'], ['field.field_id'], name=op.f('fk_product_field_id_field')),
    sa.ForeignKeyConstraint(['filter_id'], ['filter.filter_id'], name=op.f('fk_product_filter_id_filter')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_product_run_id_run'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('product_id', name=op.f('pk_product'))
    )
    op.create_index(op.f('ix_product_run_id'), 'product', ['run_id'], unique=False)
    op.create_index(op.f('ix_product_sha256'), 'product', ['sha256'], unique=False)
    op.create_index('uq_product_ingested_sha256', 'product', ['sha256'], unique=True, postgresql_where=sa.text('ingested'))
    op.create_table('source',
    sa.Column('source_id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('field_id', sa.SmallInteger(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False, comment='catalog id within the run'),
    sa.Column('ra', sa.Double(), nullable=False, comment='deg ICRS'),
    sa.Column('dec', sa.Double(), nullable=False, comment='deg ICRS'),
    sa.Column('hpx29', sa.BigInteger(), nullable=False, comment='HEALPix NESTED index, order 29'),
    sa.Column('x', sa.Double(), nullable=True, comment='zero-indexed pixel'),
    sa.Column('y', sa.Double(), nullable=True, comment='zero-indexed pixel'),
    sa.Column('x_image', sa.Double(), sa.Computed('x + 1', persisted=True), nullable=True, comment='one-indexed'),
    sa.Column('y_image', sa.Double(), sa.Computed('y + 1', persisted=True), nullable=True, comment='one-indexed'),
    sa.Column('npix', sa.Integer(), nullable=True),
    sa.Column('tnpix', sa.Integer(), nullable=True),
    sa.Column('x_min', sa.Integer(), nullable=True),
    sa.Column('x_max', sa.Integer(), nullable=True),
    sa.Column('y_min', sa.Integer(), nullable=True),
    sa.Column('y_max', sa.Integer(), nullable=True),
    sa.Column('xcpeak', sa.Integer(), nullable=True),
    sa.Column('ycpeak', sa.Integer(), nullable=True),
    sa.Column('xpeak', sa.Integer(), nullable=True),
    sa.Column('ypeak', sa.Integer(), nullable=True),
    sa.Column('flag', sa.Integer(), nullable=True),
    sa.Column('flag_auto', sa.Integer(), nullable=True),
    sa.Column('flux_radius_flag', sa.Integer(), nullable=True),
    sa.Column('id_nn', sa.Integer(), nullable=True),
    sa.Column('thresh', sa.Double(), nullable=True),
    sa.Column('x2_image', sa.Double(), nullable=True),
    sa.Column('y2_image', sa.Double(), nullable=True),
    sa.Column('xy_image', sa.Double(), nullable=True),
    sa.Column('errx2', sa.Double(), nullable=True),
    sa.Column('erry2', sa.Double(), nullable=True),
    sa.Column('errxy', sa.Double(), nullable=True),
    sa.Column('a_image', sa.Double(), nullable=True),
    sa.Column('b_image', sa.Double(), nullable=True),
    sa.Column('theta_image', sa.Double(), nullable=True),
    sa.Column('cxx_image', sa.Double(), nullable=True),
    sa.Column('cyy_image', sa.Double(), nullable=True),
    sa.Column('cxy_image', sa.Double(), nullable=True),
    sa.Column('cflux', sa.Double(), nullable=True),
    sa.Column('flux', sa.Double(), nullable=True),
    sa.Column('cpeak', sa.Double(), nullable=True),
    sa.Column('peak', sa.Double(), nullable=True),
    sa.Column('flux_iso', sa.Double(), nullable=True),
    sa.Column('fluxerr_iso', sa.Double(), nullable=True),
    sa.Column('area_iso', sa.Double(), nullable=True),
    sa.Column('mag_iso', sa.Double(), nullable=True),
    sa.Column('kron_radius', sa.Double(), nullable=True),
    sa.Column('kron_rcirc', sa.Double(), nullable=True),
    sa.Column('flux_auto', sa.Double(), nullable=True),
    sa.Column('fluxerr_auto', sa.Double(), nullable=True),
    sa.Column('bkg_auto', sa.Double(), nullable=True),
    sa.Column('area_auto', sa.Double(), nullable=True),
    sa.Column('flux_radius_20', sa.Double(), nullable=True),
    sa.Column('flux_radius', sa.Double(), nullable=True),
    sa.Column('flux_radius_90', sa.Double(), nullable=True),
    sa.Column('tot_corr', sa.Double(), nullable=True),
    sa.Column('mag_auto', sa.Double(), nullable=True),
    sa.Column('magerr_auto', sa.Double(), nullable=True),
    sa.Column('dr_nn', sa.Double(), nullable=True),
    sa.Column('dmag_nn', sa.Double(), nullable=True),
    sa.Column('z_spec', sa.Double(), nullable=True),
    sa.CheckConstraint('dec BETWEEN -90 AND 90 AND ra >= 0 AND ra < 360', name=op.f('ck_source_position')),
    sa.ForeignKeyConstraint(['field_id'], ['field.field_id'], name=op.f('fk_source_field_id_field')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_source_run_id_run'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('source_id', name=op.f('pk_source')),
    sa.UniqueConstraint('run_id', 'id', name=op.f('uq_source_run_id_id'))
    )
    op.create_index(op.f('ix_source_field_id'), 'source', ['field_id'], unique=False)
    op.create_index(op.f('ix_source_hpx29'), 'source', ['hpx29'], unique=False)
    op.create_table('aor',
    sa.Column('aor_id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('field_id', sa.SmallInteger(), nullable=False),
    sa.Column('product_id', sa.BigInteger(), nullable=True, comment='AOR log file'),
    sa.Column('aorkey', sa.BigInteger(), nullable=False),
    sa.Column('channel', sa.SmallInteger(), nullable=False, comment='1 = 3.6 um, 2 = 4.5 um'),
    sa.Column('n_bcd', sa.Integer(), nullable=False),
    sa.Column('exptime', sa.Double(), nullable=True, comment='total exposure time, s'),
    sa.Column('mjd_start', sa.Double(), nullable=True),
    sa.Column('mjd_end', sa.Double(), nullable=True),
    sa.Column('pa_deg', sa.Double(), nullable=True, comment='mean position angle, deg'),
    sa.Column('footprint', postgresql.ARRAY(sa.Double(), dimensions=2), nullable=True),
    sa.Column('align_dx_arcsec', sa.Double(), nullable=True),
    sa.Column('align_dy_arcsec', sa.Double(), nullable=True),
    sa.Column('align_rms_arcsec', sa.Double(), nullable=True),
    sa.Column('background', sa.Double(), nullable=True, comment='master background level, MJy/sr'),
    sa.ForeignKeyConstraint(['field_id'], ['field.field_id'], name=op.f('fk_aor_field_id_field')),
    sa.ForeignKeyConstraint(['product_id'], ['product.product_id'], name=op.f('fk_aor_product_id_product')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_aor_run_id_run'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('aor_id', name=op.f('pk_aor')),
    sa.UniqueConstraint('run_id', 'aorkey', 'channel', name=op.f('uq_aor_run_id_aorkey_channel'))
    )
    op.create_table('aperture_flux',
    sa.Column('source_id', sa.BigInteger(), nullable=False),
    sa.Column('filter_id', sa.SmallInteger(), nullable=False),
    sa.Column('aperture', sa.SmallInteger(), nullable=False, comment='0..6: D = 0.36, 0.5, 0.7, 1.0, 1.2, 1.5, 3.0 arcsec'),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('flux', sa.Double(), nullable=True, comment='uJy'),
    sa.Column('fluxerr', sa.Double(), nullable=True, comment='uJy'),
    sa.Column('flag', sa.Integer(), nullable=True, comment='sep aperture flag'),
    sa.Column('bkg', sa.Double(), nullable=True, comment='background removed in the aperture, uJy'),
    sa.Column('mask', sa.Double(), nullable=True, comment='masked pixels in the aperture'),
    sa.Column('apcorr', sa.Double(), nullable=True, comment='det rows only: flux_auto / flux_aper'),
    sa.Column('corr', sa.Double(), nullable=True, comment='aperture-corrected flux, uJy'),
    sa.Column('ecorr', sa.Double(), nullable=True, comment='uJy'),
    sa.Column('tot', sa.Double(), nullable=True, comment='total flux = corr * tot_corr, uJy'),
    sa.Column('etot', sa.Double(), nullable=True, comment='uJy'),
    sa.CheckConstraint('aperture BETWEEN 0 AND 6', name=op.f('ck_aperture_flux_aperture')),
    sa.ForeignKeyConstraint(['filter_id'], ['filter.filter_id'], name=op.f('fk_aperture_flux_filter_id_filter')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_aperture_flux_run_id_run'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['source_id'], ['source.source_id'], name=op.f('fk_aperture_flux_source_id_source')),
    sa.PrimaryKeyConstraint('source_id', 'filter_id', 'aperture', 'run_id', name=op.f('pk_aperture_flux'))
    )
    op.create_index(op.f('ix_aperture_flux_run_id'), 'aperture_flux', ['run_id'], unique=False)
    op.create_table('exposure',
    sa.Column('exposure_id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('field_id', sa.SmallInteger(), nullable=False),
    sa.Column('filter_id', sa.SmallInteger(), nullable=True),
    sa.Column('product_id', sa.BigInteger(), nullable=True, comment='the FLT file'),
    sa.Column('rootname', sa.Text(), nullable=False),
    sa.Column('instrument', sa.Text(), nullable=True),
    sa.Column('detector', sa.Text(), nullable=True),
    sa.Column('visit', sa.Text(), nullable=True),
    sa.Column('exptime', sa.Double(), nullable=True, comment='s'),
    sa.Column('expstart_mjd', sa.Double(), nullable=True, comment='MJD'),
    sa.Column('pa_v3', sa.Double(), nullable=True, comment='deg'),
    sa.Column('align_dx_arcsec', sa.Double(), nullable=True, comment='applied correction, arcsec (RA*cos dec)'),
    sa.Column('align_dy_arcsec', sa.Double(), nullable=True, comment='applied correction, arcsec (Dec)'),
    sa.Column('align_rot_deg', sa.Double(), nullable=True),
    sa.Column('align_scale', sa.Double(), nullable=True),
    sa.Column('align_rms_arcsec', sa.Double(), nullable=True),
    sa.Column('align_nmatch', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['field_id'], ['field.field_id'], name=op.f('fk_exposure_field_id_field')),
    sa.ForeignKeyConstraint(['filter_id'], ['filter.filter_id'], name=op.f('fk_exposure_filter_id_filter')),
    sa.ForeignKeyConstraint(['product_id'], ['product.product_id'], name=op.f('fk_exposure_product_id_product')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_exposure_run_id_run'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('exposure_id', name=op.f('pk_exposure')),
    sa.UniqueConstraint('run_id', 'rootname', name=op.f('uq_exposure_run_id_rootname'))
    )
    op.create_table('external_catalog',
    sa.Column('catalog_id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('product_id', sa.BigInteger(), nullable=True),
    sa.Column('columns', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment='column names, units and types'),
    sa.ForeignKeyConstraint(['product_id'], ['product.product_id'], name=op.f('fk_external_catalog_product_id_product')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_external_catalog_run_id_run'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('catalog_id', name=op.f('pk_external_catalog')),
    sa.UniqueConstraint('name', name=op.f('uq_external_catalog_name'))
    )
    op.create_table('irac_flux',
    sa.Column('source_id', sa.BigInteger(), nullable=False),
    sa.Column('channel', sa.SmallInteger(), nullable=False, comment='1 or 2'),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('flux', sa.Double(), nullable=True, comment='total flux density, uJy'),
    sa.Column('err', sa.Double(), nullable=True, comment='uJy'),
    sa.Column('nexp', sa.Integer(), nullable=True, comment='BCDs covering the source'),
    sa.Column('exptime', sa.Double(), nullable=True, comment='s'),
    sa.Column('patch', sa.Integer(), nullable=True, comment='golfir patch id'),
    sa.Column('bright', sa.SmallInteger(), nullable=True, comment='golfir bright-object flag'),
    sa.Column('flag', sa.Integer(), nullable=True, comment='fit flags: 1 unconstrained, 2 below -2 sigma'),
    sa.CheckConstraint('channel IN (1, 2)', name=op.f('ck_irac_flux_channel')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_irac_flux_run_id_run'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['source_id'], ['source.source_id'], name=op.f('fk_irac_flux_source_id_source')),
    sa.PrimaryKeyConstraint('source_id', 'channel', 'run_id', name=op.f('pk_irac_flux'))
    )
    op.create_index(op.f('ix_irac_flux_run_id'), 'irac_flux', ['run_id'], unique=False)
    op.create_table('run_input',
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('product_id', sa.BigInteger(), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['product.product_id'], name=op.f('fk_run_input_product_id_product')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_run_input_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'product_id', 'role', name=op.f('pk_run_input'))
    )
    op.create_index(op.f('ix_run_input_product_id'), 'run_input', ['product_id'], unique=False)
    op.create_table('total_correction',
    sa.Column('source_id', sa.BigInteger(), nullable=False),
    sa.Column('filter_id', sa.SmallInteger(), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('tot_corr', sa.Double(), nullable=True),
    sa.ForeignKeyConstraint(['filter_id'], ['filter.filter_id'], name=op.f('fk_total_correction_filter_id_filter')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_total_correction_run_id_run'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['source_id'], ['source.source_id'], name=op.f('fk_total_correction_source_id_source')),
    sa.PrimaryKeyConstraint('source_id', 'filter_id', 'run_id', name=op.f('pk_total_correction'))
    )
    op.create_index(op.f('ix_total_correction_run_id'), 'total_correction', ['run_id'], unique=False)
    op.create_table('zout',
    sa.Column('source_id', sa.BigInteger(), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('pz', postgresql.ARRAY(sa.REAL()), nullable=True, comment="p(z) on the run's z grid"),
    sa.Column('nusefilt', sa.Integer(), nullable=True),
    sa.Column('numpeaks', sa.Integer(), nullable=True),
    sa.Column('z_spec', sa.Double(), nullable=True),
    sa.Column('lc_min', sa.Double(), nullable=True),
    sa.Column('lc_max', sa.Double(), nullable=True),
    sa.Column('z_phot', sa.Double(), nullable=True),
    sa.Column('z_phot_chi2', sa.Double(), nullable=True),
    sa.Column('z_phot_risk', sa.Double(), nullable=True),
    sa.Column('z_min_risk', sa.Double(), nullable=True),
    sa.Column('min_risk', sa.Double(), nullable=True),
    sa.Column('z_chi2_noprior', sa.Double(), nullable=True),
    sa.Column('chi2_noprior', sa.Double(), nullable=True),
    sa.Column('z025', sa.Double(), nullable=True),
    sa.Column('z160', sa.Double(), nullable=True),
    sa.Column('z500', sa.Double(), nullable=True),
    sa.Column('z840', sa.Double(), nullable=True),
    sa.Column('z975', sa.Double(), nullable=True),
    sa.Column('restu', sa.Double(), nullable=True),
    sa.Column('restu_err', sa.Double(), nullable=True),
    sa.Column('restb', sa.Double(), nullable=True),
    sa.Column('restb_err', sa.Double(), nullable=True),
    sa.Column('restv', sa.Double(), nullable=True),
    sa.Column('restv_err', sa.Double(), nullable=True),
    sa.Column('restj', sa.Double(), nullable=True),
    sa.Column('restj_err', sa.Double(), nullable=True),
    sa.Column('dl', sa.Double(), nullable=True),
    sa.Column('lv', sa.Double(), nullable=True),
    sa.Column('mlv', sa.Double(), nullable=True),
    sa.Column('av', sa.Double(), nullable=True),
    sa.Column('mass', sa.Double(), nullable=True),
    sa.Column('sfr', sa.Double(), nullable=True),
    sa.Column('lir', sa.Double(), nullable=True),
    sa.Column('energy_abs', sa.Double(), nullable=True),
    sa.Column('line_flux_ha', sa.Double(), nullable=True),
    sa.Column('line_ew_ha', sa.Double(), nullable=True),
    sa.Column('line_flux_o3', sa.Double(), nullable=True),
    sa.Column('line_ew_o3', sa.Double(), nullable=True),
    sa.Column('line_flux_hb', sa.Double(), nullable=True),
    sa.Column('line_ew_hb', sa.Double(), nullable=True),
    sa.Column('line_flux_o2', sa.Double(), nullable=True),
    sa.Column('line_ew_o2', sa.Double(), nullable=True),
    sa.Column('line_flux_lya', sa.Double(), nullable=True),
    sa.Column('line_ew_lya', sa.Double(), nullable=True),
    sa.Column('massp', postgresql.ARRAY(sa.Double()), nullable=True, comment='percentiles 2.5, 16, 50, 84, 97.5'),
    sa.Column('sfrp', postgresql.ARRAY(sa.Double()), nullable=True, comment='percentiles 2.5, 16, 50, 84, 97.5'),
    sa.Column('ssfrp', postgresql.ARRAY(sa.Double()), nullable=True, comment='percentiles 2.5, 16, 50, 84, 97.5'),
    sa.Column('lirp', postgresql.ARRAY(sa.Double()), nullable=True, comment='percentiles 2.5, 16, 50, 84, 97.5'),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_zout_run_id_run'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['source_id'], ['source.source_id'], name=op.f('fk_zout_source_id_source')),
    sa.PrimaryKeyConstraint('source_id', 'run_id', name=op.f('pk_zout'))
    )
    op.create_index(op.f('ix_zout_run_id'), 'zout', ['run_id'], unique=False)
    op.create_table('bcd',
    sa.Column('aor_id', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False, comment='row in the AOR log'),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('file', sa.Text(), nullable=False),
    sa.Column('exptime', sa.Double(), nullable=True),
    sa.Column('mjd_obs', sa.Double(), nullable=True),
    sa.Column('theta', sa.Double(), nullable=True, comment='position angle, deg'),
    sa.Column('crval', postgresql.ARRAY(sa.Double()), nullable=True),
    sa.Column('corners', postgresql.ARRAY(sa.Double(), dimensions=2), nullable=True, comment='[[ra, dec] x 4]'),
    sa.ForeignKeyConstraint(['aor_id'], ['aor.aor_id'], name=op.f('fk_bcd_aor_id_aor'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_bcd_run_id_run'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('aor_id', 'seq', name=op.f('pk_bcd'))
    )
    op.create_table('external_source',
    sa.Column('ext_source_id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('catalog_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('ext_id', sa.Text(), nullable=True, comment="the external catalog's own id"),
    sa.Column('ra', sa.Double(), nullable=False),
    sa.Column('dec', sa.Double(), nullable=False),
    sa.Column('hpx29', sa.BigInteger(), nullable=False),
    sa.Column('z_spec', sa.Double(), nullable=True),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment='the other columns'),
    sa.ForeignKeyConstraint(['catalog_id'], ['external_catalog.catalog_id'], name=op.f('fk_external_source_catalog_id_external_catalog')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_external_source_run_id_run'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('ext_source_id', name=op.f('pk_external_source'))
    )
    op.create_index(op.f('ix_external_source_catalog_id'), 'external_source', ['catalog_id'], unique=False)
    op.create_index(op.f('ix_external_source_hpx29'), 'external_source', ['hpx29'], unique=False)
    op.create_table('crossmatch',
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('source_id', sa.BigInteger(), nullable=False),
    sa.Column('ext_source_id', sa.BigInteger(), nullable=False),
    sa.Column('separation_arcsec', sa.Double(), nullable=False),
    sa.Column('is_nearest', sa.Boolean(), nullable=False, comment='nearest external source of this source'),
    sa.ForeignKeyConstraint(['ext_source_id'], ['external_source.ext_source_id'], name=op.f('fk_crossmatch_ext_source_id_external_source')),
    sa.ForeignKeyConstraint(['run_id'], ['run.run_id'], name=op.f('fk_crossmatch_run_id_run'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['source_id'], ['source.source_id'], name=op.f('fk_crossmatch_source_id_source')),
    sa.PrimaryKeyConstraint('run_id', 'source_id', 'ext_source_id', name=op.f('pk_crossmatch'))
    )


def downgrade() -> None:
    op.drop_table('crossmatch')
    op.drop_index(op.f('ix_external_source_hpx29'), table_name='external_source')
    op.drop_index(op.f('ix_external_source_catalog_id'), table_name='external_source')
    op.drop_table('external_source')
    op.drop_table('bcd')
    op.drop_index(op.f('ix_zout_run_id'), table_name='zout')
    op.drop_table('zout')
    op.drop_index(op.f('ix_total_correction_run_id'), table_name='total_correction')
    op.drop_table('total_correction')
    op.drop_index(op.f('ix_run_input_product_id'), table_name='run_input')
    op.drop_table('run_input')
    op.drop_index(op.f('ix_irac_flux_run_id'), table_name='irac_flux')
    op.drop_table('irac_flux')
    op.drop_table('external_catalog')
    op.drop_table('exposure')
    op.drop_index(op.f('ix_aperture_flux_run_id'), table_name='aperture_flux')
    op.drop_table('aperture_flux')
    op.drop_table('aor')
    op.drop_index(op.f('ix_source_hpx29'), table_name='source')
    op.drop_index(op.f('ix_source_field_id'), table_name='source')
    op.drop_table('source')
    op.drop_index('uq_product_ingested_sha256', table_name='product', postgresql_where=sa.text('ingested'))
    op.drop_index(op.f('ix_product_sha256'), table_name='product')
    op.drop_index(op.f('ix_product_run_id'), table_name='product')
    op.drop_table('product')
    op.drop_index(op.f('ix_catalog_version_run_run_id'), table_name='catalog_version_run')
    op.drop_table('catalog_version_run')
    op.drop_index(op.f('ix_run_stage_field_id_status'), table_name='run')
    op.drop_table('run')
    op.drop_table('filter')
    op.drop_table('field')
    op.drop_table('catalog_version')
