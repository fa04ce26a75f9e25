"""The wide matched-aperture catalog `{root}_irac_phot_apcorr.fits` (and `_phot`, `_irac_phot`).

`read_catalog(path)` validates and turns the release's columns into arrays per table
(`source`, `aperture_flux`, `total_correction`, `irac_flux`); `write_catalog(run, cat, field_id)`
COPYs them in the run's transaction. -99 becomes NULL. Filters are discovered from the column
names (`{filt}_flux_aper_{i}`), never assumed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alcsdb import columns as rc
from alcsdb.errors import InputError
from alcsdb.healpix import hpx29
from alcsdb.measurements import present, write_apertures, write_irac, write_sources, write_total_corrections
from alcsdb.provenance import RunContext
from alcsdb.schema import SOURCE_FLOAT_COLUMNS, SOURCE_INT_COLUMNS

from .fitsio import FLUX_UNITS, as_float, as_int, column, read_table

APERTURE_QUANTITIES = ("flux", "fluxerr", "flag", "bkg", "mask")
CORRECTED_QUANTITIES = ("corr", "ecorr", "tot", "etot")
IRAC_QUANTITIES = ("flux", "err", "nexp", "exptime", "patch", "bright")


@dataclass
class Catalog:
    path: Path
    n: int
    ids: np.ndarray
    source: dict[str, np.ndarray]
    filters: list[str]
    #: {filter: {quantity: (n, 7) array}} including "det" for the detection image
    apertures: dict[str, dict[str, np.ndarray]]
    tot_corr: dict[str, np.ndarray]
    irac: dict[int, dict[str, np.ndarray]]
    extra: list[str] = field(default_factory=list)

    def row_counts(self) -> dict[str, int]:
        ap_rows = sum(present(q).sum() for q in self.apertures.values())
        return {"source": self.n, "aperture_flux": int(ap_rows),
                "total_correction": int(sum(np.isfinite(v).sum() for v in self.tot_corr.values())),
                "irac_flux": int(sum(present(q).sum() for q in self.irac.values()))}


#: quantities stored in microJansky: a TUNIT other than uJy (or none) is a units error
FLUX_QUANTITIES = {"flux", "fluxerr", "bkg", "corr", "ecorr", "tot", "etot", "err"}


class _Reader:
    """Column access for one file: shape, dtype and unit checks with messages naming the file."""

    def __init__(self, path: Path, data, units: dict[str, str]):
        self.path, self.data, self.units = path, data, units
        self.names = set(data.columns.names)

    def float(self, name: str, *, flux: bool = False) -> np.ndarray:
        if flux and self.units.get(name, "") not in FLUX_UNITS:
            raise InputError(f"{self.path}: column {name!r} has unit {self.units[name]!r}; fluxes must be microJansky")
        return as_float(column(self.data, name, self.path))

    def int(self, name: str) -> np.ma.MaskedArray:
        return as_int(column(self.data, name, self.path))

    def stack(self, names: list[str], *, flux: bool) -> np.ndarray | None:
        """(n, len(names)) floats, NaN for absent columns; None if none is present."""
        if not any(c in self.names for c in names):
            return None
        n = len(self.data)
        return np.column_stack([self.float(c, flux=flux) if c in self.names else np.full(n, np.nan) for c in names])


def _positions(path: Path, rd: _Reader) -> dict[str, np.ndarray]:
    for col in ("ra", "dec"):
        if rd.units.get(col) not in ("", "deg", "degree", "degrees"):
            raise InputError(f"{path}: column {col!r} has unit {rd.units[col]!r}, expected deg")
    ids = np.asarray(column(rd.data, "id", path))
    if ids.dtype.kind == "f" and (not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids))):
        raise InputError(f"{path}: column 'id' has non-integer values")
    ids = ids.astype(np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise InputError(f"{path}: {len(dup)} duplicate id(s), e.g. {dup[:5].tolist()}")
    ra = np.asarray(column(rd.data, "ra", path), dtype=np.float64)
    dec = np.asarray(column(rd.data, "dec", path), dtype=np.float64)
    bad = ~np.isfinite(ra) | ~np.isfinite(dec) | (dec < -90) | (dec > 90) | (ra < 0) | (ra >= 360)
    if bad.any():
        raise InputError(f"{path}: {bad.sum()} source(s) with NaN or out-of-range coordinates, e.g. id "
                         f"{ids[bad][0]} at ({ra[bad][0]}, {dec[bad][0]})")
    return {"id": ids, "ra": ra, "dec": dec, "hpx29": hpx29(ra, dec)}


def read_catalog(path: Path) -> Catalog:
    data, _header, units = read_table(path)
    names = list(data.columns.names)
    layout = rc.parse_phot_columns(names)
    missing = layout.required_missing()
    if missing:
        raise InputError(f"{path}: missing required column(s) {', '.join(missing)}")
    rd = _Reader(path, data, units)
    source = _positions(path, rd)
    for name in ("x", "y", *SOURCE_FLOAT_COLUMNS):
        if name in rd.names:
            source[name] = rd.float(name, flux=name in ("flux_auto", "fluxerr_auto", "flux_iso", "fluxerr_iso"))
    release_name = {v: k for k, v in rc.PHOT_SQL_RENAMES.items()}
    for name in SOURCE_INT_COLUMNS:
        if release_name.get(name, name) in rd.names:
            source[name] = rd.int(release_name.get(name, name))

    aps = range(len(rc.APERTURES))
    apertures: dict[str, dict[str, np.ndarray]] = {}
    for filt in ["det", *layout.filters]:
        prefix = "" if filt == "det" else f"{filt}_"
        block = {q: rd.stack([f"{prefix}{q}_aper_{i}" for i in aps], flux=q in FLUX_QUANTITIES)
                 for q in APERTURE_QUANTITIES}
        if filt == "det":
            block["apcorr"] = rd.stack([f"apcorr_{i}" for i in aps], flux=False)
        else:
            block.update({q: rd.stack([f"{filt}_{q}_{i}" for i in aps], flux=True) for q in CORRECTED_QUANTITIES})
        block = {q: v for q, v in block.items() if v is not None}
        if block:
            apertures[filt] = block
    tot_corr = {f: rd.float(f"{f}_tot_corr") for f in layout.filters if f"{f}_tot_corr" in rd.names}
    irac: dict[int, dict[str, np.ndarray]] = {}
    for ch in (1, 2):
        block = {}
        for q in IRAC_QUANTITIES:
            name = f"irac_ch{ch}_{q}"
            if name in rd.names:
                block[q] = rd.int(name) if q in ("nexp", "patch", "bright") else rd.float(name, flux=q in FLUX_QUANTITIES)
        if block:
            irac[ch] = block
    return Catalog(path=path, n=len(data), ids=source["id"], source=source, filters=list(layout.filters),
                   apertures=apertures, tot_corr=tot_corr, irac=irac, extra=list(layout.extra))


def write_catalog(run: RunContext, cat: Catalog, field_id: int) -> np.ndarray:
    """COPY the catalog's rows in the run; returns the new source ids (catalog order)."""
    source_ids = write_sources(run, field_id, cat.source)
    write_apertures(run, source_ids, cat.apertures)
    write_total_corrections(run, source_ids, cat.tot_corr)
    write_irac(run, source_ids, cat.irac)
    return source_ids
