"""The alcsdb schema, declared once (SQLAlchemy 2.0 typed declarative models).

The table and column names are the public SQL interface; `docs/schema.md` documents every
column with its unit. Alembic migrations in `migrations/` are generated from these models and
a test checks they agree (autogenerate finds no difference).

Conventions:
- every measurement row (`source`, `aperture_flux`, `total_correction`, `irac_flux`, `zout`,
  `exposure`, `aor`, `bcd`, `product`, external rows) carries the `run_id` that wrote it;
- fluxes are microJansky (AB zeropoint 23.9); a missing value is SQL NULL (-99 in FITS files);
- positions are ICRS degrees; `hpx29` is the NESTED HEALPix index at order 29 of (ra, dec);
- pixel coordinates `x`, `y` are zero-indexed; `x_image`, `y_image` (= x+1, y+1) are generated.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    REAL,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES = ("running", "succeeded", "failed", "abandoned")
STAGES = ("ingest", "mosaic", "detect", "photometry", "irac", "photoz", "export", "external", "crossmatch")

Float8 = Double
FloatArray = ARRAY(Double)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def run_fk(**kw: Any) -> Mapped[int]:
    """The run that wrote a row: NOT NULL, and a run cannot be deleted while rows point at it."""
    return mapped_column(BigInteger, ForeignKey("run.run_id", ondelete="RESTRICT"), nullable=False, **kw)


class Field(Base):
    """An ALCS field (cluster). The 33 release fields are loaded by `alcsdb db upgrade`."""

    __tablename__ = "field"
    field_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True, comment="field name, e.g. j001408m3023")
    hst_root: Mapped[str] = mapped_column(Text, unique=True, comment="HST product root, e.g. hff-j001408m3023")
    irac_root: Mapped[Optional[str]] = mapped_column(Text, comment="IRAC product root, e.g. A2744_hff-j001408m3023")
    cluster: Mapped[str] = mapped_column(Text, comment="cluster name, e.g. Abell 2744")
    survey: Mapped[Optional[str]] = mapped_column(Text, comment="HFF, CLASH, RELICS or other")
    ra: Mapped[float] = mapped_column(Float8, comment="field centre RA, deg ICRS")
    dec: Mapped[float] = mapped_column(Float8, comment="field centre Dec, deg ICRS")
    z_cluster: Mapped[Optional[float]] = mapped_column(Float8, comment="cluster redshift")
    ebv: Mapped[Optional[float]] = mapped_column(Float8, comment="Galactic E(B-V), mag")
    __table_args__ = (
        CheckConstraint("dec BETWEEN -90 AND 90 AND ra >= 0 AND ra < 360", name="position"),
    )


class Filter(Base):
    """An HST filter, an IRAC channel, or the detection image (`det`)."""

    __tablename__ = "filter"
    filter_id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True, comment="lower case: f160w, f814w, ch1, det")
    instrument: Mapped[Optional[str]] = mapped_column(Text, comment="ACS, WFC3, IRAC or detection")
    detector: Mapped[Optional[str]] = mapped_column(Text, comment="WFC, IR, UVIS")
    pivot_angstrom: Mapped[Optional[float]] = mapped_column(Float8, comment="pivot wavelength, Angstrom")
    eazy_id: Mapped[Optional[int]] = mapped_column(Integer, comment="filter number in EAZY's FILTER.RES.latest")


class Run(Base):
    """One execution of a stage: the provenance of every row it wrote.

    The run row is committed (status `running`) before the stage writes; the stage's rows
    and the status change to `succeeded` commit together; a failure marks it `failed`; a
    process that died leaves `running` and `alcsdb audit` / `db status` report it `abandoned`.
    """

    __tablename__ = "run"
    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    stage: Mapped[str] = mapped_column(Text)
    field_id: Mapped[Optional[int]] = mapped_column(SmallInteger, ForeignKey("field.field_id"))
    status: Mapped[str] = mapped_column(Text, server_default="running")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime(timezone=True))
    software_version: Mapped[str] = mapped_column(Text, comment="alcsdb version")
    git_commit: Mapped[Optional[str]] = mapped_column(Text, comment="alcsdb git commit (+dirty)")
    package_versions: Mapped[dict] = mapped_column(JSONB, comment="sep, drizzlepac, eazy, numpy, astropy ...")
    params: Mapped[dict] = mapped_column(JSONB, comment="every parameter of the stage")
    params_hash: Mapped[str] = mapped_column(Text, comment="sha256 of the canonical JSON of params")
    host: Mapped[str] = mapped_column(Text)
    username: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    wall_time_s: Mapped[Optional[float]] = mapped_column(Float8)
    peak_rss_mb: Mapped[Optional[float]] = mapped_column(Float8)
    n_rows: Mapped[Optional[dict]] = mapped_column(JSONB, comment="rows written per table")
    message: Mapped[Optional[str]] = mapped_column(Text, comment="error message of a failed run, or a note")
    __table_args__ = (
        CheckConstraint(f"status IN {RUN_STATUSES!r}", name="status"),
        Index(None, "stage", "field_id", "status"),
    )


class Product(Base):
    """A file: made by a run (mosaic, model, export) or registered by an ingest run."""

    __tablename__ = "product"
    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = run_fk(index=True)
    kind: Mapped[str] = mapped_column(Text, comment="e.g. phot_apcorr, zout, aor_log, hst_sci, hst_wht, seg, irac_sci, irac_model, export_phot")
    field_id: Mapped[Optional[int]] = mapped_column(SmallInteger, ForeignKey("field.field_id"))
    filter_id: Mapped[Optional[int]] = mapped_column(SmallInteger, ForeignKey("filter.filter_id"))
    path: Mapped[str] = mapped_column(Text, comment="absolute path when registered")
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    ingested: Mapped[bool] = mapped_column(
        Boolean, server_default=text("false"), comment="true for release files whose rows an ingest loaded"
    )
    footprint: Mapped[Optional[list]] = mapped_column(
        ARRAY(Double, dimensions=2), comment="sky footprint polygon [[ra, dec], ...], deg"
    )
    meta: Mapped[Optional[dict]] = mapped_column(JSONB, comment="header keywords of interest (WCS, PHOTFNU ...)")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    __table_args__ = (
        # an identical release file is ingested once, even by two concurrent ingests
        Index("uq_product_ingested_sha256", "sha256", unique=True, postgresql_where=text("ingested")),
        Index(None, "sha256"),
    )


class RunInput(Base):
    """What a run read: a product in a role (catalog, exposure, mosaic, psf, ...)."""

    __tablename__ = "run_input"
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("run.run_id", ondelete="CASCADE"), primary_key=True)
    product_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("product.product_id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(Text, primary_key=True)


class Exposure(Base):
    """An HST exposure (FLT) that went into a mosaic, with its alignment solution."""

    __tablename__ = "exposure"
    exposure_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = run_fk()
    field_id: Mapped[int] = mapped_column(SmallInteger, ForeignKey("field.field_id"))
    filter_id: Mapped[Optional[int]] = mapped_column(SmallInteger, ForeignKey("filter.filter_id"))
    product_id: Mapped[Optional[int]] = mapped_column(BigInteger, ForeignKey("product.product_id"), comment="the FLT file")
    rootname: Mapped[str] = mapped_column(Text)
    instrument: Mapped[Optional[str]] = mapped_column(Text)
    detector: Mapped[Optional[str]] = mapped_column(Text)
    visit: Mapped[Optional[str]] = mapped_column(Text)
    exptime: Mapped[Optional[float]] = mapped_column(Float8, comment="s")
    expstart_mjd: Mapped[Optional[float]] = mapped_column(Float8, comment="MJD")
    pa_v3: Mapped[Optional[float]] = mapped_column(Float8, comment="deg")
    align_dx_arcsec: Mapped[Optional[float]] = mapped_column(Float8, comment="applied correction, arcsec (RA*cos dec)")
    align_dy_arcsec: Mapped[Optional[float]] = mapped_column(Float8, comment="applied correction, arcsec (Dec)")
    align_rot_deg: Mapped[Optional[float]] = mapped_column(Float8)
    align_scale: Mapped[Optional[float]] = mapped_column(Float8)
    align_rms_arcsec: Mapped[Optional[float]] = mapped_column(Float8)
    align_nmatch: Mapped[Optional[int]] = mapped_column(Integer)
    __table_args__ = (UniqueConstraint("run_id", "rootname"),)


class Aor(Base):
    """An IRAC AOR in one channel (one row per AOR and channel)."""

    __tablename__ = "aor"
    aor_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = run_fk()
    field_id: Mapped[int] = mapped_column(SmallInteger, ForeignKey("field.field_id"))
    product_id: Mapped[Optional[int]] = mapped_column(BigInteger, ForeignKey("product.product_id"), comment="AOR log file")
    aorkey: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[int] = mapped_column(SmallInteger, comment="1 = 3.6 um, 2 = 4.5 um")
    n_bcd: Mapped[int] = mapped_column(Integer)
    exptime: Mapped[Optional[float]] = mapped_column(Float8, comment="total exposure time, s")
    mjd_start: Mapped[Optional[float]] = mapped_column(Float8)
    mjd_end: Mapped[Optional[float]] = mapped_column(Float8)
    pa_deg: Mapped[Optional[float]] = mapped_column(Float8, comment="mean position angle, deg")
    footprint: Mapped[Optional[list]] = mapped_column(ARRAY(Double, dimensions=2))
    align_dx_arcsec: Mapped[Optional[float]] = mapped_column(Float8)
    align_dy_arcsec: Mapped[Optional[float]] = mapped_column(Float8)
    align_rms_arcsec: Mapped[Optional[float]] = mapped_column(Float8)
    background: Mapped[Optional[float]] = mapped_column(Float8, comment="master background level, MJy/sr")
    __table_args__ = (UniqueConstraint("run_id", "aorkey", "channel"),)


class Bcd(Base):
    """One IRAC BCD frame of an AOR (from the AOR log), for per-source coverage."""

    __tablename__ = "bcd"
    aor_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("aor.aor_id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, comment="row in the AOR log")
    run_id: Mapped[int] = run_fk()
    file: Mapped[str] = mapped_column(Text)
    exptime: Mapped[Optional[float]] = mapped_column(Float8)
    mjd_obs: Mapped[Optional[float]] = mapped_column(Float8)
    theta: Mapped[Optional[float]] = mapped_column(Float8, comment="position angle, deg")
    crval: Mapped[Optional[list]] = mapped_column(FloatArray)
    corners: Mapped[Optional[list]] = mapped_column(ARRAY(Double, dimensions=2), comment="[[ra, dec] x 4]")


class Source(Base):
    """One detected object of a detection (or ingest) run. Columns follow the release."""

    __tablename__ = "source"
    source_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = run_fk()
    field_id: Mapped[int] = mapped_column(SmallInteger, ForeignKey("field.field_id"))
    id: Mapped[int] = mapped_column(Integer, comment="catalog id within the run")
    ra: Mapped[float] = mapped_column(Float8, comment="deg ICRS")
    dec: Mapped[float] = mapped_column(Float8, comment="deg ICRS")
    hpx29: Mapped[int] = mapped_column(BigInteger, comment="HEALPix NESTED index, order 29")
    x: Mapped[Optional[float]] = mapped_column(Float8, comment="zero-indexed pixel")
    y: Mapped[Optional[float]] = mapped_column(Float8, comment="zero-indexed pixel")
    x_image: Mapped[Optional[float]] = mapped_column(Float8, Computed("x + 1", persisted=True), comment="one-indexed")
    y_image: Mapped[Optional[float]] = mapped_column(Float8, Computed("y + 1", persisted=True), comment="one-indexed")
    __table_args__ = (
        UniqueConstraint("run_id", "id"),
        Index(None, "hpx29"),
        Index(None, "field_id"),
        CheckConstraint("dec BETWEEN -90 AND 90 AND ra >= 0 AND ra < 360", name="position"),
    )


# The sep detection columns of the release stored on `source` (all nullable doubles unless listed).
# xmin/xmax are PostgreSQL system column names, so the bounding box is x_min, x_max, y_min, y_max.
SOURCE_INT_COLUMNS = ("npix", "tnpix", "x_min", "x_max", "y_min", "y_max", "xcpeak", "ycpeak", "xpeak", "ypeak",
                      "flag", "flag_auto", "flux_radius_flag", "id_nn")
SOURCE_FLOAT_COLUMNS = (
    "thresh", "x2_image", "y2_image", "xy_image", "errx2", "erry2", "errxy", "a_image", "b_image",
    "theta_image", "cxx_image", "cyy_image", "cxy_image", "cflux", "flux", "cpeak", "peak",
    "flux_iso", "fluxerr_iso", "area_iso", "mag_iso", "kron_radius", "kron_rcirc", "flux_auto",
    "fluxerr_auto", "bkg_auto", "area_auto", "flux_radius_20", "flux_radius", "flux_radius_90",
    "tot_corr", "mag_auto", "magerr_auto", "dr_nn", "dmag_nn", "z_spec",
)


def _add_columns(model: type[Base], names: tuple[str, ...], type_: Any, comment: str | None = None) -> None:
    """Append the release's many same-typed columns to a table (nullable; SQL NULL = missing)."""
    for name in names:
        model.__table__.append_column(Column(name, type_, nullable=True, comment=comment))


_add_columns(Source, SOURCE_INT_COLUMNS, Integer)
_add_columns(Source, SOURCE_FLOAT_COLUMNS, Double)


class ApertureFlux(Base):
    """Circular-aperture photometry: one row per source x filter x aperture.

    `filter` `det` holds the detection-image apertures (`flux_aper_{i}`) and `apcorr`
    (= flux_auto / flux_aper_i); other filters hold `{f}_flux_aper_{i}` ... `{f}_etot_{i}`.
    """

    __tablename__ = "aperture_flux"
    source_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("source.source_id"), primary_key=True)
    filter_id: Mapped[int] = mapped_column(SmallInteger, ForeignKey("filter.filter_id"), primary_key=True)
    aperture: Mapped[int] = mapped_column(SmallInteger, primary_key=True, comment="0..6: D = 0.36, 0.5, 0.7, 1.0, 1.2, 1.5, 3.0 arcsec")
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("run.run_id", ondelete="RESTRICT"), primary_key=True)
    flux: Mapped[Optional[float]] = mapped_column(Float8, comment="uJy")
    fluxerr: Mapped[Optional[float]] = mapped_column(Float8, comment="uJy")
    flag: Mapped[Optional[int]] = mapped_column(Integer, comment="sep aperture flag")
    bkg: Mapped[Optional[float]] = mapped_column(Float8, comment="background removed in the aperture, uJy")
    mask: Mapped[Optional[float]] = mapped_column(Float8, comment="masked pixels in the aperture")
    apcorr: Mapped[Optional[float]] = mapped_column(Float8, comment="det rows only: flux_auto / flux_aper")
    corr: Mapped[Optional[float]] = mapped_column(Float8, comment="aperture-corrected flux, uJy")
    ecorr: Mapped[Optional[float]] = mapped_column(Float8, comment="uJy")
    tot: Mapped[Optional[float]] = mapped_column(Float8, comment="total flux = corr * tot_corr, uJy")
    etot: Mapped[Optional[float]] = mapped_column(Float8, comment="uJy")
    samp_corr: Mapped[Optional[float]] = mapped_column(
        Float8, comment="drizzle-sampling factor in corr and tot (corr = flux * samp_corr * apcorr); NULL: none")
    __table_args__ = (
        CheckConstraint("aperture BETWEEN 0 AND 6", name="aperture"),
        Index(None, "run_id"),
    )


class TotalCorrection(Base):
    """`{filt}_tot_corr`: per source and filter, the point-source correction to total flux."""

    __tablename__ = "total_correction"
    source_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("source.source_id"), primary_key=True)
    filter_id: Mapped[int] = mapped_column(SmallInteger, ForeignKey("filter.filter_id"), primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("run.run_id", ondelete="RESTRICT"), primary_key=True)
    tot_corr: Mapped[Optional[float]] = mapped_column(Float8)
    __table_args__ = (Index(None, "run_id"),)


class IracFlux(Base):
    """IRAC model photometry (golfir's method): one row per source x channel."""

    __tablename__ = "irac_flux"
    source_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("source.source_id"), primary_key=True)
    channel: Mapped[int] = mapped_column(SmallInteger, primary_key=True, comment="1 or 2")
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("run.run_id", ondelete="RESTRICT"), primary_key=True)
    flux: Mapped[Optional[float]] = mapped_column(Float8, comment="total flux density, uJy")
    err: Mapped[Optional[float]] = mapped_column(Float8, comment="uJy")
    nexp: Mapped[Optional[int]] = mapped_column(Integer, comment="BCDs covering the source")
    exptime: Mapped[Optional[float]] = mapped_column(Float8, comment="s")
    patch: Mapped[Optional[int]] = mapped_column(Integer, comment="golfir patch id")
    bright: Mapped[Optional[int]] = mapped_column(SmallInteger, comment="golfir bright-object flag")
    flag: Mapped[Optional[int]] = mapped_column(Integer, comment="fit flags: 1 unconstrained, 2 below -2 sigma")
    model_norm: Mapped[Optional[float]] = mapped_column(
        Float8, comment="uJy: HST flux of the source's model (detection image over its segment); "
                        "flux / model_norm is its IRAC-to-HST colour")
    __table_args__ = (CheckConstraint("channel IN (1, 2)", name="channel"), Index(None, "run_id"))


class Zout(Base):
    """EAZY photometric redshifts: one row per source per photo-z run (zout_columns.md).

    SQL names are the release names in lower case (restU -> restu, SFRp -> sfrp).
    `pz` is p(z) on the run's redshift grid (the run's `photoz_zgrid` product). `coeffs` are the
    best-fit template coefficients at z_phot (not a release column): with the run's parameters
    (template set, MW E(B-V), zeropoints in the product's meta) they rebuild the template SED
    (`alcsdb plot sed`).
    """

    __tablename__ = "zout"
    source_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("source.source_id"), primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("run.run_id", ondelete="RESTRICT"), primary_key=True)
    pz: Mapped[Optional[list]] = mapped_column(ARRAY(REAL), comment="p(z) on the run's z grid")
    coeffs: Mapped[Optional[list]] = mapped_column(
        ARRAY(REAL), comment="best-fit coefficients of the run's templates (template file flux units) at z_phot")
    __table_args__ = (Index(None, "run_id"),)


ZOUT_INT_COLUMNS = ("nusefilt", "numpeaks")
ZOUT_FLOAT_COLUMNS = (
    "z_spec", "lc_min", "lc_max", "z_phot", "z_phot_chi2", "z_phot_risk", "z_min_risk", "min_risk",
    "z_chi2_noprior", "chi2_noprior", "z025", "z160", "z500", "z840", "z975",
    "restu", "restu_err", "restb", "restb_err", "restv", "restv_err", "restj", "restj_err",
    "dl", "lv", "mlv", "av", "mass", "sfr", "lir", "energy_abs",
    "line_flux_ha", "line_ew_ha", "line_flux_o3", "line_ew_o3", "line_flux_hb", "line_ew_hb",
    "line_flux_o2", "line_ew_o2", "line_flux_lya", "line_ew_lya",
)
ZOUT_ARRAY_COLUMNS = ("massp", "sfrp", "ssfrp", "lirp")
_add_columns(Zout, ZOUT_INT_COLUMNS, Integer)
_add_columns(Zout, ZOUT_FLOAT_COLUMNS, Double)
_add_columns(Zout, ZOUT_ARRAY_COLUMNS, FloatArray, comment="percentiles 2.5, 16, 50, 84, 97.5")


class CatalogVersion(Base):
    """A named, immutable catalog: per field, the runs that make it up."""

    __tablename__ = "catalog_version"
    version_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(Text, server_default=func.current_user())
    note: Mapped[Optional[str]] = mapped_column(Text)
    software_version: Mapped[Optional[str]] = mapped_column(Text)
    content_hash: Mapped[Optional[str]] = mapped_column(String(64), comment="sha256 over the canonical rows")


class CatalogVersionRun(Base):
    """The runs a version pins, per field and stage."""

    __tablename__ = "catalog_version_run"
    version_id: Mapped[int] = mapped_column(Integer, ForeignKey("catalog_version.version_id"), primary_key=True)
    field_id: Mapped[int] = mapped_column(SmallInteger, ForeignKey("field.field_id"), primary_key=True)
    stage: Mapped[str] = mapped_column(Text, primary_key=True)
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("run.run_id", ondelete="RESTRICT"), index=True)


class CatalogVersionColumn(Base):
    """A version's release-format tables, written once with the version: one row per file column.

    `kind` `phot` is `{root}_irac_phot_apcorr.fits`, `zout` `{root}_irac.eazypy.zout.fits`. `data`
    holds the column's values as the file holds them (big-endian `dtype`, `repeat` values per
    row, rows in catalog id order, -99 for missing); export reads these instead of rebuilding
    the tables from the measurement rows, and `audit` checks them against those rows. Refuses
    UPDATE and DELETE like the version (migration 0006).
    """

    __tablename__ = "catalog_version_column"
    version_id: Mapped[int] = mapped_column(Integer, ForeignKey("catalog_version.version_id"), primary_key=True)
    field_id: Mapped[int] = mapped_column(SmallInteger, ForeignKey("field.field_id"), primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True, comment="phot or zout")
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True, comment="column number in the file, from 1")
    name: Mapped[str] = mapped_column(Text, comment="FITS TTYPE")
    dtype: Mapped[str] = mapped_column(Text, comment="numpy dtype of the values, big-endian: >f8, >i4, >i2, ...")
    repeat: Mapped[int] = mapped_column(SmallInteger, comment="values per row: 1, or the length of a vector column")
    unit: Mapped[Optional[str]] = mapped_column(Text, comment="FITS TUNIT")
    data: Mapped[bytes] = mapped_column(LargeBinary, comment="rows x repeat values, big-endian, -99 for missing")
    __table_args__ = (
        UniqueConstraint("version_id", "field_id", "kind", "name"),
        CheckConstraint("kind IN ('phot', 'zout')", name="kind"),
        CheckConstraint("repeat >= 1", name="repeat"),
        CheckConstraint("dtype IN ('>f8', '>f4', '>i8', '>i4', '>i2')", name="dtype"),
    )


class ExternalCatalog(Base):
    """An external catalog loaded with `alcsdb external load` (spectroscopic redshifts, published photometry)."""

    __tablename__ = "external_catalog"
    catalog_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    run_id: Mapped[int] = run_fk()
    product_id: Mapped[Optional[int]] = mapped_column(BigInteger, ForeignKey("product.product_id"))
    columns: Mapped[Optional[dict]] = mapped_column(JSONB, comment="column names, units and types")


class ExternalSource(Base):
    """A row of an external catalog, HEALPix-indexed like `source`."""

    __tablename__ = "external_source"
    ext_source_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    catalog_id: Mapped[int] = mapped_column(Integer, ForeignKey("external_catalog.catalog_id"))
    run_id: Mapped[int] = run_fk()
    ext_id: Mapped[Optional[str]] = mapped_column(Text, comment="the external catalog's own id")
    ra: Mapped[float] = mapped_column(Float8)
    dec: Mapped[float] = mapped_column(Float8)
    hpx29: Mapped[int] = mapped_column(BigInteger)
    z_spec: Mapped[Optional[float]] = mapped_column(Float8)
    data: Mapped[Optional[dict]] = mapped_column(JSONB, comment="the other columns")
    __table_args__ = (Index(None, "hpx29"), Index(None, "catalog_id"))


class Crossmatch(Base):
    """Matches between `source` and an external catalog made by a crossmatch run."""

    __tablename__ = "crossmatch"
    run_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("run.run_id", ondelete="RESTRICT"), primary_key=True)
    source_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("source.source_id"), primary_key=True)
    ext_source_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("external_source.ext_source_id"), primary_key=True)
    separation_arcsec: Mapped[float] = mapped_column(Float8)
    is_nearest: Mapped[bool] = mapped_column(Boolean, comment="nearest external source of this source")


MEASUREMENT_TABLES = (
    "source", "aperture_flux", "total_correction", "irac_flux", "zout", "exposure", "aor", "bcd", "product",
    "external_source", "crossmatch",
)
