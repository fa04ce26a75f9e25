"""Mosaics and model images -> `product` rows (with WCS footprint), and the HST exposures a mosaic
header lists -> `exposure` rows.

Exposures are read from the keywords AstroDrizzle writes in a drizzled product's header:
`NDRIZIM` (number of inputs) and, per input k = 001, 002, ..., `D{k}DATA` (input file and
extension, e.g. `jdkq01abq_flt.fits[sci,1]`) and `D{k}DEXP` (its exposure time, s). The
rootname is the file name before `_flt`/`_flc`; the visit is its first six characters
(ipppss); the instrument follows from its first letter (j = ACS, i = WFC3).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.wcs import WCS, FITSFixedWarning

from alcsdb.copyload import copy_columns
from alcsdb.provenance import RunContext

from .fitsio import read_image_header

_DATA_KEY = re.compile(r"^D(\d{3})DATA$")
_INSTRUMENT = {"j": "ACS", "i": "WFC3", "u": "WFPC2", "o": "STIS", "l": "COS"}


@dataclass
class Image:
    path: Path
    kind: str
    filter: str | None
    footprint: list[list[float]] | None
    meta: dict
    exposures: list[dict] = field(default_factory=list)

    def row_counts(self) -> dict[str, int]:
        return {"product": 1, "exposure": len(self.exposures)}


META_KEYS = ("TELESCOP", "INSTRUME", "DETECTOR", "FILTER", "FILTER1", "FILTER2", "EXPTIME", "NDRIZIM", "PHOTFNU",
             "PHOTFLAM", "PHOTPLAM", "BUNIT", "CRVAL1", "CRVAL2", "NAXIS1", "NAXIS2")


def read_image(path: Path, kind: str, filt: str | None) -> Image:
    primary, header, shape = read_image_header(path)
    merged = primary.copy()
    merged.update(header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header, naxis=2)
    footprint = None
    if wcs.has_celestial:
        corners = wcs.calc_footprint(axes=(shape[-1], shape[-2]))
        footprint = [[float(r) % 360.0, float(d)] for r, d in corners]
    meta = {k: merged[k] for k in META_KEYS if k in merged and isinstance(merged[k], (int, float, str))}
    meta["shape"] = list(shape)
    image = Image(path=path, kind=kind, filter=filt, footprint=footprint, meta=meta)
    if kind.endswith("_sci"):
        image.exposures = drizzle_inputs(merged)
    return image


def drizzle_inputs(header) -> list[dict]:
    """The exposures AstroDrizzle recorded (`D###DATA`, `D###EXPT`), one per rootname."""
    seen: dict[str, dict] = {}
    for key in header:
        match = _DATA_KEY.match(key)
        if not match:
            continue
        entry = str(header[key]).strip()
        name = Path(entry.split("[")[0]).name
        root = re.split(r"_(flt|flc|c0m|drz|drc)", name)[0].lower()
        if not root or root in seen:
            continue
        exptime = header.get(f"D{match[1]}DEXP")
        seen[root] = {"rootname": root, "visit": root[:6] if len(root) >= 6 else None,
                      "instrument": _INSTRUMENT.get(root[0]), "exptime": float(exptime) if exptime is not None else None}
    return list(seen.values())


def write_image(run: RunContext, image: Image, field_id: int, filter_id: int | None) -> None:
    if not image.exposures:
        return
    n = len(image.exposures)
    col = lambda k: np.array([e[k] for e in image.exposures], dtype=object)  # noqa: E731
    run.count("exposure", copy_columns(run.conn, "exposure", {
        "run_id": np.full(n, run.run_id), "field_id": np.full(n, field_id),
        "filter_id": np.array([filter_id] * n, dtype=object), "rootname": col("rootname"),
        "instrument": col("instrument"), "detector": np.array([image.meta.get("DETECTOR")] * n, dtype=object),
        "visit": col("visit"), "exptime": np.array([np.nan if e["exptime"] is None else e["exptime"]
                                                    for e in image.exposures])}))
