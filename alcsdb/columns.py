"""The ALCS v1.0 release's file formats: column names, order, dtypes, units and file names.

This module is the single place that knows how the release spells things. Ingest, export
and the fixture generator (`ingest.fixtures`) all speak these names. Sources:
`alcs-docs/phot_apcorr_columns.md`, `master_columns.md`, `zout_columns.md`, `fields.md` and
`all_files.v0.1.txt` of the release, and the code that wrote the files (grizli
`prep.make_SEP_catalog` / `auto_script.multiband_catalog` / `pipeline.photoz.
apply_catalog_corrections`, golfir, eazy-py), read with the search tool.

Conventions: fluxes in microJansky (AB zeropoint 23.9); -99 marks missing values in the FITS
files; `x`, `y` zero-indexed pixels and `x_image = x + 1`; aperture *diameters* `APERTURES`
indexed 0..6; HST filter names lower case (`f160w`, `f350lpu`), IRAC channels 1 and 2.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple, Sequence

APERTURES: tuple[float, ...] = (0.36, 0.5, 0.7, 1.0, 1.2, 1.5, 3.0)
"""Circular aperture diameters in arcsec; column suffix `_{i}` is the index into this tuple."""

MISSING = -99.0
"""Value of a missing flux/error in the release's FITS files (NULL in SQL, NaN in Python)."""

AB_ZEROPOINT_UJY = 23.9
"""mag_AB = 23.9 - 2.5 log10(flux / uJy)."""

FITS_MAX_COLUMNS = 999
"""FITS limits a binary table to TFIELDS <= 999 columns (so at most 13 filters with IRAC)."""

# A WFC3/ACS filter as grizli names it: f160w, f098m, f850lp, fq232n, and the WFC3/UVIS
# twins of ACS filters with a "u" suffix (f606wu, f350lpu).
FILTER_PATTERN = r"fq?\d{3}[a-z]{1,3}"
_FILTER_RE = re.compile(rf"^{FILTER_PATTERN}$")


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a release table.

    `dtype` is a numpy dtype string (written as the matching FITS TFORM); `unit` the FITS
    TUNIT (a valid FITS unit string), None when dimensionless; `shape` the per-row shape of vector
    columns (zout percentiles, AOR-log corners), () for scalars.
    """

    name: str
    dtype: str
    unit: str | None = None
    shape: tuple[int, ...] = ()


# --- {root}_irac_phot_apcorr.fits -------------------------------------------------------
#
# dtypes follow what grizli writes. `sep.extract` returns float64 moments, int64 pixel
# bounds/peaks and an int16 (C short) `flag`; `sep.sum_circle` / `kron_radius` /
# `flux_radius` return float64 values with int16 flags; grizli makes `number` (renamed `id`)
# int32 and converts the detection-image sums (cflux, flux, cpeak, peak, *_iso, *_auto,
# *_aper) to uJy as float64. `mask_aper_{i}` is sep.sum_circle over a float mask image, so a
# float64 (fractional) count of masked pixels. IRAC (golfir) counts are int32, `bright` a
# small int16 flag. Units: uJy fluxes, pix positions/radii, pix2 second moments and areas,
# rad for sep's theta, deg for sky positions, arcsec for dr_nn.
_F8, _I2, _I4, _I8 = "f8", "i2", "i4", "i8"

_SEP_DETECTION_SPECS: tuple[ColumnSpec, ...] = tuple(
    ColumnSpec(name, dtype, unit)
    for name, dtype, unit in (
        # phot_apcorr_columns.md order == grizli's: sep.extract's record, a/b/theta/cxx/cyy/
        # cxy/x2/y2/xy renamed in place to *_image, then the columns grizli appends.
        ("thresh", _F8, None),  # detection image units (e-/s), not converted by grizli
        ("npix", _I8, "pix2"),
        ("tnpix", _I8, "pix2"),
        ("xmin", _I8, "pix"),
        ("xmax", _I8, "pix"),
        ("ymin", _I8, "pix"),
        ("ymax", _I8, "pix"),
        ("x", _F8, "pix"),
        ("y", _F8, "pix"),
        ("x2_image", _F8, "pix2"),
        ("y2_image", _F8, "pix2"),
        ("xy_image", _F8, "pix2"),
        ("errx2", _F8, "pix2"),
        ("erry2", _F8, "pix2"),
        ("errxy", _F8, "pix2"),
        ("a_image", _F8, "pix"),
        ("b_image", _F8, "pix"),
        ("theta_image", _F8, "rad"),
        ("cxx_image", _F8, "pix-2"),
        ("cyy_image", _F8, "pix-2"),
        ("cxy_image", _F8, "pix-2"),
        ("cflux", _F8, "uJy"),
        ("flux", _F8, "uJy"),
        ("cpeak", _F8, "uJy"),
        ("peak", _F8, "uJy"),
        ("xcpeak", _I8, "pix"),
        ("ycpeak", _I8, "pix"),
        ("xpeak", _I8, "pix"),
        ("ypeak", _I8, "pix"),
        ("flag", _I2, None),
        ("x_image", _F8, "pix"),
        ("y_image", _F8, "pix"),
        ("id", _I4, None),
        ("ra", _F8, "deg"),
        ("dec", _F8, "deg"),
        ("x_world", _F8, "deg"),
        ("y_world", _F8, "deg"),
        ("flux_iso", _F8, "uJy"),
        ("fluxerr_iso", _F8, "uJy"),
        ("area_iso", _F8, "pix2"),
        ("mag_iso", _F8, "mag"),
        ("kron_radius", _F8, None),  # in units of the semi-major axis
        ("kron_rcirc", _F8, "pix"),
        ("flux_auto", _F8, "uJy"),
        ("fluxerr_auto", _F8, "uJy"),
        ("bkg_auto", _F8, "uJy"),
        ("flag_auto", _I2, None),
        ("area_auto", _F8, "pix2"),
        ("flux_radius_flag", _I2, None),
        ("flux_radius_20", _F8, "pix"),
        ("flux_radius", _F8, "pix"),
        ("flux_radius_90", _F8, "pix"),
        ("tot_corr", _F8, None),
        ("mag_auto", _F8, "mag"),
        ("magerr_auto", _F8, "mag"),
    )
)

APERTURE_QUANTITIES: tuple[str, ...] = ("flux", "fluxerr", "flag", "bkg", "mask")
_APERTURE_QUANTITY_SPEC = {"flux": (_F8, "uJy"), "fluxerr": (_F8, "uJy"), "flag": (_I2, None),
                           "bkg": (_F8, "uJy"), "mask": (_F8, None)}

# Per-aperture grouping. phot_apcorr_columns.md only gives the templates `flux_aper_{ap}` ...
# `mask_aper_{ap}`; master_columns.md spells the detection-image columns out and they run
# flux_aper_0, fluxerr_aper_0, flag_aper_0, bkg_aper_0, mask_aper_0, flux_aper_1, ... i.e.
# all five quantities of aperture 0, then aperture 1, ... This is also how grizli's
# make_SEP_catalog appends them (one loop over apertures, five columns per pass), and
# multiband_catalog copies each filter's table in that order with the `{filt}_` prefix,
# then appends `{filt}_tot_corr`. We use the same grouping for every filter.


def aperture_columns(prefix: str = "") -> list[str]:
    """`{prefix}flux_aper_0, {prefix}fluxerr_aper_0, ... {prefix}mask_aper_6` (aperture-major)."""
    return [f"{prefix}{q}_aper_{i}" for i in range(len(APERTURES)) for q in APERTURE_QUANTITIES]


DETECTION_COLUMNS: tuple[str, ...] = tuple(s.name for s in _SEP_DETECTION_SPECS) + tuple(aperture_columns())
"""The detection-image columns of the phot_apcorr catalog, in file order (thresh ... mask_aper_6)."""

CORR_QUANTITIES: tuple[str, ...] = ("corr", "ecorr", "tot", "etot")
# Aperture-corrected and total fluxes. The doc lists `apcorr_{ap}` then `{filt}_corr{ap}`,
# `{filt}_ecorr_{ap}`, `{filt}_tot_{ap}`, `{filt}_etot_{ap}`: grizli's
# apply_catalog_corrections loops over apertures, writes `apcorr_{i}`, then for each filter
# `{f}_corr_{i}`, `{f}_ecorr_{i}`, `{f}_tot_{i}`, `{f}_etot_{i}`. So the block is
# aperture-major: apcorr_0, f1_corr_0, f1_ecorr_0, f1_tot_0, f1_etot_0, f2_corr_0, ...,
# apcorr_1, ... The doc's `{filt}_corr{ap}` (no underscore) is a typo: its own formula
# column, every sibling and grizli's code say `{filt}_corr_{ap}`, which is what we use; a
# file with `f160w_corr0` would show that name in `PhotLayout.extra` and the real name in
# `required_missing()`.
#
# Where the IRAC columns go: the doc puts irac_ch{1,2}_* after the corr/tot block, and so do
# we. (grizli ran the corrections on golfir's `_irac_phot.fits`, which would put the IRAC
# columns before apcorr_0 in a file written by that code; readers must look columns up by
# name, never by position.)

IRAC_CHANNELS: tuple[int, ...] = (1, 2)
IRAC_QUANTITIES: tuple[str, ...] = ("nexp", "exptime", "flux", "err", "patch", "bright")
_IRAC_QUANTITY_SPEC = {"nexp": (_I4, None), "exptime": (_F8, "s"), "flux": (_F8, "uJy"),
                       "err": (_F8, "uJy"), "patch": (_I4, None), "bright": (_I2, None)}

_OTHER_SPECS: tuple[ColumnSpec, ...] = (
    ColumnSpec("dr_nn", _F8, "arcsec"),
    ColumnSpec("dmag_nn", _F8, "mag"),
    ColumnSpec("id_nn", _I4, None),
    ColumnSpec("z_spec", _F8, None),
    ColumnSpec("dummy_err", _F8, "uJy"),
    ColumnSpec("dummy_flux", _F8, "uJy"),
)
OTHER_COLUMNS: tuple[str, ...] = tuple(s.name for s in _OTHER_SPECS)

PHOT_SQL_RENAMES: dict[str, str] = {"xmin": "x_min", "xmax": "x_max", "ymin": "y_min", "ymax": "y_max"}
"""Release name -> SQL column where they differ: xmin and xmax are PostgreSQL system columns."""

REQUIRED_COLUMNS: tuple[str, ...] = ("id", "ra", "dec")
"""Columns without which a phot catalog cannot be ingested."""


def irac_columns(channel: int) -> list[str]:
    """`irac_ch{channel}_nexp` ... `irac_ch{channel}_bright` in file order."""
    return [f"irac_ch{channel}_{q}" for q in IRAC_QUANTITIES]


def filter_block_columns(filt: str) -> list[str]:
    """One filter's aperture block and its `{filt}_tot_corr`, in file order."""
    return aperture_columns(f"{filt}_") + [f"{filt}_tot_corr"]


def corr_block_columns(filters: Sequence[str], aperture: int) -> list[str]:
    """`apcorr_{i}` then each filter's corr/ecorr/tot/etot for aperture `i`."""
    return [f"apcorr_{aperture}"] + [f"{f}_{q}_{aperture}" for f in filters for q in CORR_QUANTITIES]


def check_filters(filters: Iterable[str]) -> tuple[str, ...]:
    """Validate HST filter names (lower case, grizli style, unique); return them as a tuple."""
    out = tuple(filters)
    bad = [f for f in out if not _FILTER_RE.match(f)]
    if bad:
        raise ValueError(f"not HST filter names (lower case like f160w, f350lpu): {bad}")
    dup = sorted({f for f in out if out.count(f) > 1})
    if dup:
        raise ValueError(f"filters listed twice: {dup}")
    return out


def phot_apcorr_columns(filters: Sequence[str], with_irac: bool = True) -> list[str]:
    """The ordered columns of `{root}_irac_phot_apcorr.fits` for these HST filters.

    Detection columns; per filter (in the given order) the aperture block and
    `{f}_tot_corr`; per aperture `apcorr_{i}` and every filter's corr/ecorr/tot/etot; the
    IRAC ch1 and ch2 columns (if `with_irac`); dr_nn ... dummy_flux.
    """
    filters = check_filters(filters)
    cols = list(DETECTION_COLUMNS)
    for f in filters:
        cols += filter_block_columns(f)
    for i in range(len(APERTURES)):
        cols += corr_block_columns(filters, i)
    if with_irac:
        for ch in IRAC_CHANNELS:
            cols += irac_columns(ch)
    return cols + list(OTHER_COLUMNS)


_FIXED_SPECS: dict[str, ColumnSpec] = {s.name: s for s in _SEP_DETECTION_SPECS + _OTHER_SPECS}
_DET_APER_RE = re.compile(rf"^(?P<q>{'|'.join(APERTURE_QUANTITIES)})_aper_(?P<ap>\d+)$")
_FILT_APER_RE = re.compile(rf"^(?P<f>{FILTER_PATTERN})_(?P<q>{'|'.join(APERTURE_QUANTITIES)})_aper_(?P<ap>\d+)$")
_FILT_TOTCORR_RE = re.compile(rf"^(?P<f>{FILTER_PATTERN})_tot_corr$")
_FILT_CORR_RE = re.compile(rf"^(?P<f>{FILTER_PATTERN})_(?P<q>{'|'.join(CORR_QUANTITIES)})_(?P<ap>\d+)$")
_APCORR_RE = re.compile(r"^apcorr_(?P<ap>\d+)$")
_IRAC_RE = re.compile(rf"^irac_ch(?P<ch>\d)_(?P<q>{'|'.join(IRAC_QUANTITIES)})$")


def phot_column_spec(name: str) -> ColumnSpec:
    """dtype and unit of any phot_apcorr column name; KeyError for a name the release lacks."""
    if name in _FIXED_SPECS:
        return _FIXED_SPECS[name]
    for regex in (_DET_APER_RE, _FILT_APER_RE):
        m = regex.match(name)
        if m and int(m["ap"]) < len(APERTURES):
            return ColumnSpec(name, *_APERTURE_QUANTITY_SPEC[m["q"]])
    if _FILT_TOTCORR_RE.match(name):
        return ColumnSpec(name, _F8)
    m = _FILT_CORR_RE.match(name) or _APCORR_RE.match(name)
    if m and int(m["ap"]) < len(APERTURES):
        return ColumnSpec(name, _F8, None if name.startswith("apcorr_") else "uJy")
    m = _IRAC_RE.match(name)
    if m and int(m["ch"]) in IRAC_CHANNELS:
        return ColumnSpec(name, *_IRAC_QUANTITY_SPEC[m["q"]])
    raise KeyError(f"{name!r} is not a column of the release's phot_apcorr catalog")


@dataclass(frozen=True)
class PhotLayout:
    """What a phot catalog's column names say about it (see `parse_phot_columns`).

    `filters`: HST filters in order of first appearance; `apertures`: aperture indices seen
    for any image; `irac_channels`: IRAC channels with at least one column; `has_corr`:
    whether apcorr/corr/tot columns exist; `extra`: names the release does not define (in
    file order); `names`: canonical (lower-case) name -> name as spelled in the file.
    """

    columns: tuple[str, ...]
    filters: tuple[str, ...]
    apertures: tuple[int, ...]
    irac_channels: tuple[int, ...]
    has_corr: bool
    extra: tuple[str, ...]
    names: Mapping[str, str] = field(repr=False)

    @property
    def has_irac(self) -> bool:
        return bool(self.irac_channels)

    def column(self, canonical: str) -> str:
        """The file's spelling of a canonical column name (KeyError if absent)."""
        return self.names[canonical]

    def expected_columns(self) -> list[str]:
        """The canonical columns this layout implies must all be present.

        id, ra, dec; for every aperture seen, the detection-image aperture block and each
        filter's block (flux, fluxerr, flag, bkg, mask) plus `{f}_tot_corr`; when any
        corr/tot column exists, `apcorr_{i}` and every filter's corr/ecorr/tot/etot; all six
        columns of an IRAC channel that has any.
        """
        cols = list(REQUIRED_COLUMNS)
        cols += [f"{q}_aper_{i}" for i in self.apertures for q in APERTURE_QUANTITIES]
        for f in self.filters:
            cols += [f"{f}_{q}_aper_{i}" for i in self.apertures for q in APERTURE_QUANTITIES]
            cols.append(f"{f}_tot_corr")
        if self.has_corr:
            for i in self.apertures:
                cols += corr_block_columns(self.filters, i)
        for ch in self.irac_channels:
            cols += irac_columns(ch)
        return cols

    def required_missing(self) -> list[str]:
        """Canonical names of required or partially present columns that are missing."""
        return [c for c in self.expected_columns() if c not in self.names]


def parse_phot_columns(colnames: Iterable[str]) -> PhotLayout:
    """Discover filters, apertures and IRAC channels from a phot catalog's column names.

    Matching is case-insensitive (grizli writes lower case; an upper-cased file still
    parses and `layout.column()` gives its spelling). Names the release does not define,
    and a second spelling of the same name, go to `extra`; check `required_missing()`.
    """
    columns = tuple(colnames)
    names: dict[str, str] = {}
    filters: list[str] = []
    apertures: set[int] = set()
    channels: set[int] = set()
    has_corr = False
    extra: list[str] = []
    for col in columns:
        canon = col.lower()
        try:
            phot_column_spec(canon)
        except KeyError:
            extra.append(col)
            continue
        if canon in names:
            extra.append(col)
            continue
        names[canon] = col
        m = (_DET_APER_RE.match(canon) or _FILT_APER_RE.match(canon) or _FILT_CORR_RE.match(canon)
             or _APCORR_RE.match(canon))
        if m:
            apertures.add(int(m["ap"]))
            has_corr |= m.re in (_FILT_CORR_RE, _APCORR_RE)
        m = _FILT_APER_RE.match(canon) or _FILT_TOTCORR_RE.match(canon) or _FILT_CORR_RE.match(canon)
        if m and m["f"] not in filters:
            filters.append(m["f"])
        m = _IRAC_RE.match(canon)
        if m:
            channels.add(int(m["ch"]))
    return PhotLayout(columns=columns, filters=tuple(filters), apertures=tuple(sorted(apertures)),
                      irac_channels=tuple(sorted(channels)), has_corr=has_corr, extra=tuple(extra),
                      names=names)


# --- {root}_irac.eazypy.zout.fits -----------------------------------------------------------

ZOUT_PERCENTILES: tuple[float, ...] = (2.5, 16, 50, 84, 97.5)
"""Percentiles held by the vector columns massp, SFRp, sSFRp, LIRp (shape (5,) per row)."""

_NP = (len(ZOUT_PERCENTILES),)
ZOUT_SPECS: tuple[ColumnSpec, ...] = tuple(
    ColumnSpec(name, dtype, unit, shape)
    for name, dtype, unit, shape in (
        ("id", _I4, None, ()),
        ("ra", _F8, "deg", ()),
        ("dec", _F8, "deg", ()),
        ("z_spec", _F8, None, ()),
        ("nusefilt", _I4, None, ()),
        ("lc_min", _F8, "Angstrom", ()),
        ("lc_max", _F8, "Angstrom", ()),
        ("numpeaks", _I4, None, ()),
        ("z_phot", _F8, None, ()),
        ("z_phot_chi2", _F8, None, ()),
        ("z_phot_risk", _F8, None, ()),
        ("z_min_risk", _F8, None, ()),
        ("min_risk", _F8, None, ()),
        ("z_chi2_noprior", _F8, None, ()),
        ("chi2_noprior", _F8, None, ()),
        ("z025", _F8, None, ()),
        ("z160", _F8, None, ()),
        ("z500", _F8, None, ()),
        ("z840", _F8, None, ()),
        ("z975", _F8, None, ()),
        ("restU", _F8, "uJy", ()),
        ("restU_err", _F8, "uJy", ()),
        ("restB", _F8, "uJy", ()),
        ("restB_err", _F8, "uJy", ()),
        ("restV", _F8, "uJy", ()),
        ("restV_err", _F8, "uJy", ()),
        ("restJ", _F8, "uJy", ()),
        ("restJ_err", _F8, "uJy", ()),
        ("dL", _F8, "Mpc", ()),
        ("Lv", _F8, "solLum", ()),
        ("MLv", _F8, "solMass/solLum", ()),
        ("Av", _F8, "mag", ()),
        ("mass", _F8, "solMass", ()),
        ("SFR", _F8, "solMass/yr", ()),
        ("LIR", _F8, "solLum", ()),
        ("energy_abs", _F8, "solLum", ()),
        ("massp", _F8, "solMass", _NP),
        ("SFRp", _F8, "solMass/yr", _NP),
        ("sSFRp", _F8, "yr-1", _NP),
        ("LIRp", _F8, "solLum", _NP),
        ("line_flux_Ha", _F8, None, ()),  # template line fluxes in the catalog's flux units
        ("line_EW_Ha", _F8, "Angstrom", ()),
        ("line_flux_O3", _F8, None, ()),
        ("line_EW_O3", _F8, "Angstrom", ()),
        ("line_flux_Hb", _F8, None, ()),
        ("line_EW_Hb", _F8, "Angstrom", ()),
        ("line_flux_O2", _F8, None, ()),
        ("line_EW_O2", _F8, "Angstrom", ()),
        ("line_flux_Lya", _F8, None, ()),
        ("line_EW_Lya", _F8, "Angstrom", ()),
    )
)
ZOUT_COLUMNS: tuple[str, ...] = tuple(s.name for s in ZOUT_SPECS)
"""zout_columns.md, in order, with the release's mixed-case spelling."""
ZOUT_VECTOR_COLUMNS: tuple[str, ...] = tuple(s.name for s in ZOUT_SPECS if s.shape)
"""massp, SFRp, sSFRp, LIRp: one value per `ZOUT_PERCENTILES` entry."""
ZOUT_SQL_NAME: dict[str, str] = {s.name: s.name.lower() for s in ZOUT_SPECS}
"""Release name -> SQL column name (our database is lower case: restU -> restu, SFRp -> sfrp)."""


# --- IRAC AOR logs r{AORKEY}-ch{N}.log.fits (golfir IracAOR.wcs_table) ---------------------

AOR_LOG_SPECS: tuple[ColumnSpec, ...] = (
    ColumnSpec("file", "S", None),  # BCD path, e.g. r12655872/ch1/bcd/SPITZER_I1_..._cbcd.fits
    ColumnSpec("aor", "S", None),  # first path element, "r{AORKEY}"
    ColumnSpec("exptime", _F8, "s"),
    ColumnSpec("mjd_obs", _F8, "d"),
    ColumnSpec("progid", _I8, None),
    ColumnSpec("bcd", _I8, None),  # the BCD's DPID
    ColumnSpec("object", "S", None),
    ColumnSpec("obsrvr", "S", None),
    ColumnSpec("crpix", _F8, "pix", (2,)),
    ColumnSpec("crval", _F8, "deg", (2,)),
    ColumnSpec("cd", _F8, "deg", (2, 2)),  # deg / pix
    ColumnSpec("corners", _F8, "deg", (4, 2)),  # WCS.calc_footprint(): 4 x (ra, dec)
    ColumnSpec("theta", _F8, "deg", ()),  # arctan2(cd[1][0], cd[1][1]) in degrees
)
AOR_LOG_COLUMNS: tuple[str, ...] = tuple(s.name for s in AOR_LOG_SPECS)


# --- file names ---------------------------------------------------------------------------

IGNORED = "ignored"
"""`parse_root` kind of release files that are recognised but not ingested."""

FILE_KINDS: dict[str, str] = {
    "phot_apcorr": "{root}_irac_phot_apcorr.fits: HST + IRAC photometry with corrections",
    "phot": "{root}_phot.fits: grizli multiband catalog",
    "irac_phot": "{root}_irac_phot.fits: grizli catalog + golfir IRAC columns",
    "zout": "{root}_irac.eazypy.zout.fits: EAZY photo-z",
    "cat_combined": "{root}_cat_combined.fits",
    "master": "{root}_master.fits: master table (master_columns.md)",
    "aor_log": "r{AORKEY}-ch{1,2}.log.fits: IRAC BCDs of an AOR (extra: aorkey, channel)",
    "hst_sci": "{root}-{filt}_dr[zc]_sci.fits[.gz] (extra: filter)",
    "hst_wht": "{root}-{filt}_dr[zc]_wht.fits[.gz] (extra: filter)",
    "hst_psf": "{root}-{filt}_psf.fits (extra: filter)",
    "det_sci": "{root}-{ir|det}_drz_sci.fits[.gz]: detection image (extra: filter='det')",
    "det_wht": "{root}-{ir|det}_drz_wht.fits[.gz]",
    "seg": "{root}-{ir|det}_seg.fits[.gz]: segmentation map of the detection image",
    "irac_sci": "{root}-ch{N}_drz_sci.fits (extra: channel)",
    "irac_wht": "{root}-ch{N}_drz_wht.fits",
    "irac_model": "{root}-ch{N}_model.fits: model (hdu 0) and residual (hdu 1)",
    "irac_residual": "{root}_ch{N}_residual.fits",
    "irac_components": "{root}-ch{N}_components.fits (README: {root}_ch{N}_components.fits)",
    IGNORED: "recognised, not ingested (extra: reason)",
}

_ROOT = r"(?P<root>[a-z0-9][a-z0-9.+-]*)"  # grizli roots use hyphens, never underscores
_GZ = r"(?:\.gz)?"
_IGNORED_LOG = "IRAC ch3/ch4 and MIPS AOR logs are not used by the release photometry"
_FILE_PATTERNS: tuple[tuple[re.Pattern[str], str, str | None], ...] = tuple(
    (re.compile(rf"^{pattern}$"), kind, reason)
    for pattern, kind, reason in (
        (r"r(?P<aorkey>\d+)-ch(?P<channel>[12])\.log\.fits", "aor_log", None),
        (r"r(?P<aorkey>\d+)-(?P<band>ch[34]|mips\d)\.log\.fits", IGNORED, _IGNORED_LOG),
        (rf"{_ROOT}_irac_phot_apcorr\.fits", "phot_apcorr", None),
        (rf"{_ROOT}_irac_phot\.fits", "irac_phot", None),
        (rf"{_ROOT}_fake_irac_phot\.fits", IGNORED, "simulated-source test catalog"),
        (rf"{_ROOT}_phot\.fits", "phot", None),
        (rf"{_ROOT}_irac\.eazypy\.zout\.fits", "zout", None),
        (rf"{_ROOT}_cat_combined\.fits", "cat_combined", None),
        (rf"{_ROOT}_master\.fits", "master", None),
        (rf"{_ROOT}-ch(?P<channel>[12])_drz_(?P<ext>sci|wht)\.fits{_GZ}", "irac_", None),
        (rf"{_ROOT}-ch(?P<channel>[12])_model\.fits", "irac_model", None),
        (rf"{_ROOT}[-_]ch(?P<channel>[12])_components\.fits", "irac_components", None),
        (rf"{_ROOT}_ch(?P<channel>[12])_residual\.fits", "irac_residual", None),
        (rf"{_ROOT}-(?P<det>ir|det)_drz_(?P<ext>sci|wht)\.fits{_GZ}", "det_", None),
        (rf"{_ROOT}-(?P<det>ir|det)_seg\.fits{_GZ}", "seg", None),
        (rf"{_ROOT}-(?P<filter>{FILTER_PATTERN})_dr[zc]_(?P<ext>sci|wht)\.fits{_GZ}", "hst_", None),
        (rf"{_ROOT}-(?P<filter>{FILTER_PATTERN})_psf\.fits{_GZ}", "hst_psf", None),
        (r"files\.txt", IGNORED, "download listing"),
        (rf"{_ROOT}\.pdf", IGNORED, "diagnostic report"),
    )
)


class ParsedName(NamedTuple):
    """A release file name: `root` as spelled in the name (None for AOR logs), `kind` (a
    key of `FILE_KINDS`), and `extra` (filter, channel, aorkey, reason ...)."""

    root: str | None
    kind: str
    extra: dict


def parse_root(filename: str) -> ParsedName:
    """Recognise a release file name (a path's directory part is ignored).

    Returns (root, kind, extra); kind `IGNORED` for files the release has but ingest skips
    (IRAC ch3/ch4 and MIPS logs, `files.txt`, reports, the fake-source catalog). Raises
    ValueError for a name that is not one of the release's.
    """
    base = filename.rsplit("/", 1)[-1]
    for regex, kind, reason in _FILE_PATTERNS:
        m = regex.match(base)
        if m is None:
            continue
        g = m.groupdict()
        if g.get("ext"):
            kind += g["ext"]
        extra: dict = {}
        for key in ("aorkey", "channel"):
            if g.get(key):
                extra[key] = int(g[key])
        if g.get("filter") or g.get("det"):
            extra["filter"] = g.get("filter") or "det"
        if g.get("band"):
            extra["band"] = g["band"]
        if reason:
            extra["reason"] = reason
        return ParsedName(g.get("root"), kind, extra)
    raise ValueError(f"{base!r} is not a file name of the ALCS release")


_FIELD_KEY_RE = re.compile(r"^j\d{6}[mp]\d{3,4}$")


def field_key(root: str) -> str:
    """A root without the HFF prefix: `hff-j001408m3023` and `j001408m3023` -> `j001408m3023`."""
    return root.removeprefix("hff-")


def match_field(root: str, candidates: Iterable[str]) -> str:
    """The documented field (one of `candidates`, names or HST roots) a product root means.

    Equal `field_key`s match; a truncated root such as the release's `hff-j224900m443`
    matches the one candidate whose key it begins (fields.md: `hff-j224900m4432`).
    Raises ValueError when nothing or more than one candidate matches.
    """
    key = field_key(root)
    cands = list(candidates)
    exact = [c for c in cands if field_key(c) == key]
    if len(exact) == 1:
        return exact[0]
    prefix = [c for c in cands if field_key(c).startswith(key)] if _FIELD_KEY_RE.match(key) else []
    found = exact or prefix
    if len(found) != 1:
        what = "several fields" if found else "no documented field"
        raise ValueError(f"root {root!r} matches {what}{': ' + ', '.join(found) if found else ''}")
    return found[0]
