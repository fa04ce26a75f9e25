"""Verification report: a catalog version against an external catalog (like the release's test_report).

`compare(engine, NAME, version=V, field=F, mapping={"f160w_tot_1": "F160W", ...}, out_dir=D)`
matches the version's sources with external catalog NAME (reusing a stored crossmatch run of
the same radius and sources, else running one), pairs each object with at most one
counterpart (mutual nearest within the radius), and writes to D:

- `report.json`: every number below;
- `index.html` and PNG figures.

The numbers (pure functions, numpy in, dicts out):

- matched fraction vs magnitude, both ways: of our sources (by our magnitude) and of theirs
  inside our footprint (the order-`FOOTPRINT_ORDER` HEALPix cells holding our sources, by
  their magnitude);
- per mapped flux column (ours is a release column in uJy): flux ratio ours / theirs vs our
  magnitude, per bin the median and robust scatter ``1.4826 median(|x - median x|)``;
  theirs is converted to uJy from its unit (AB magnitudes, any flux density unit; no unit
  means uJy);
- position offsets theirs - ours, ``(dRA cos(dec), dDec)`` in arcsec: median and scatter;
- z_phot vs z_spec (a mapped redshift column, else our `z_phot` vs their `z_spec`):
  `pipeline.photoz.metrics` (sigma_NMAD, outliers |dz|/(1+z_spec) > 0.15, bias);
- any other mapped pair: median and scatter of theirs - ours.

"ours" names are the release's column names (`phot_apcorr_columns.md`, `zout_columns.md`),
read through `alcsdb.export`; "theirs" are the external catalog's column names, `z_spec`,
`ra` or `dec`.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import astropy.units as u
import numpy as np
from sqlalchemy import Connection, Engine, text

from . import columns as rc
from .copyload import fetch_columns
from .crossmatch import check_radius, copy_fixed, crossmatch, find_crossmatch, select_fields
from .errors import InputError
from .export import phot_table, zout_table
from .external import CatalogInfo, catalog_info
from .healpix import ORDER

FOOTPRINT_ORDER = 14  # cells of ~13 arcsec
MAG_BINS = tuple(np.arange(14.0, 32.01, 0.5))
OUTLIER_DZ = 0.15
REDSHIFT_COLUMNS = ("z_phot", "z_min_risk", "z_chi2_noprior", "z025", "z160", "z500", "z840", "z975")
"""Our (zout) columns that are redshifts: compared with sigma_NMAD and outliers."""
MIN_PER_BIN = 3


# --- pure statistics -------------------------------------------------------------------

def robust_sigma(x: np.ndarray) -> float:
    """1.4826 x the median absolute deviation (the standard deviation for Gaussian data); NaN if empty."""
    x = np.asarray(x, dtype=float)
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else math.nan


def ujy_to_mag(flux: np.ndarray) -> np.ndarray:
    """AB magnitude of fluxes in uJy (NaN where flux <= 0 or missing)."""
    flux = np.asarray(flux, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, rc.AB_ZEROPOINT_UJY - 2.5 * np.log10(flux), np.nan)


def to_ujy(values: np.ndarray, unit: str | None) -> np.ndarray:
    """Fluxes in uJy from a column in `unit`: AB magnitudes ('mag', 'ABmag', 'mag(AB)'), any flux
    density unit, or no unit (taken as uJy)."""
    values = np.asarray(values, dtype=float)
    if unit is None or unit.strip() == "":
        return values
    if unit.strip().lower() in ("mag", "abmag", "mag(ab)", "mag_ab"):
        return 10 ** (-0.4 * (values - rc.AB_ZEROPOINT_UJY))
    try:
        return (values * u.Unit(unit)).to_value(u.uJy)
    except (ValueError, u.UnitConversionError) as exc:
        raise InputError(f"cannot read external column unit {unit!r} as a flux density or AB magnitude") from exc


def binned(x: np.ndarray, y: np.ndarray, edges: Sequence[float]) -> list[dict]:
    """Per bin of x (bins with at least MIN_PER_BIN points): n, median and robust sigma of y."""
    out = []
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (x >= lo) & (x < hi) & np.isfinite(y)
        if sel.sum() >= MIN_PER_BIN:
            out.append({"lo": float(lo), "hi": float(hi), "n": int(sel.sum()), "median": float(np.median(y[sel])),
                        "sigma": robust_sigma(y[sel])})
    return out


def matched_fraction(mag: np.ndarray, matched: np.ndarray, edges: Sequence[float]) -> dict:
    """Overall and per-magnitude-bin fraction of objects with a counterpart."""
    mag = np.asarray(mag, dtype=float)
    matched = np.asarray(matched, dtype=bool)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (mag >= lo) & (mag < hi)
        if sel.any():
            bins.append({"lo": float(lo), "hi": float(hi), "n": int(sel.sum()), "n_matched": int(matched[sel].sum()),
                         "fraction": float(matched[sel].mean())})
    return {"n": int(matched.size), "n_matched": int(matched.sum()),
            "fraction": float(matched.mean()) if matched.size else math.nan, "bins": bins,
            "n_without_mag": int((~np.isfinite(mag)).sum())}


def ratio_stats(ours: np.ndarray, theirs: np.ndarray, mag: np.ndarray, edges: Sequence[float]) -> dict:
    """Flux ratio ours / theirs where both are positive: overall and per bin of our magnitude."""
    ours = np.asarray(ours, dtype=float)
    theirs = np.asarray(theirs, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(ours) & np.isfinite(theirs) & (ours > 0) & (theirs > 0)
    ratio = ours[ok] / theirs[ok]
    return {"n": int(ok.sum()), "median": float(np.median(ratio)) if ratio.size else math.nan,
            "sigma": robust_sigma(ratio), "median_dmag": float(-2.5 * np.log10(np.median(ratio))) if ratio.size
            else math.nan, "bins": binned(np.asarray(mag, dtype=float)[ok], ratio, edges)}


def offset_stats(ra: np.ndarray, dec: np.ndarray, ra_theirs: np.ndarray, dec_theirs: np.ndarray) -> dict:
    """Offsets theirs - ours in arcsec: dRA cos(dec) (RA wrapped to +-180 deg) and dDec."""
    dra = ((np.asarray(ra_theirs) - np.asarray(ra) + 180.0) % 360.0 - 180.0) * np.cos(np.radians(dec)) * 3600.0
    ddec = (np.asarray(dec_theirs) - np.asarray(dec)) * 3600.0
    return {"n": int(len(dra)),
            "dra_cosdec_median": float(np.median(dra)) if len(dra) else math.nan, "dra_cosdec_sigma": robust_sigma(dra),
            "ddec_median": float(np.median(ddec)) if len(dra) else math.nan, "ddec_sigma": robust_sigma(ddec),
            "separation_median": float(np.median(np.hypot(dra, ddec))) if len(dra) else math.nan}


def redshift_stats(z_phot: np.ndarray, z_spec: np.ndarray) -> dict:
    """`pipeline.photoz.metrics` over pairs with z_spec > 0 and a finite z_phot."""
    from pipeline.photoz import metrics

    z_phot = np.asarray(z_phot, dtype=float)
    z_spec = np.asarray(z_spec, dtype=float)
    with np.errstate(invalid="ignore"):
        use = np.isfinite(z_phot) & np.isfinite(z_spec) & (z_spec > 0)
    return {**metrics(z_phot[use], z_spec[use]), "outlier_dz": OUTLIER_DZ,
            "n_without_z_phot": int((np.isfinite(z_spec) & (z_spec > 0) & ~np.isfinite(z_phot)).sum())}


def mutual_nearest(source_id: np.ndarray, ext_id: np.ndarray, sep: np.ndarray) -> np.ndarray:
    """Indices of the pairs that are nearest for both their source and their external object."""
    source_id, ext_id, sep = (np.asarray(a) for a in (source_id, ext_id, sep))
    if source_id.size == 0:
        return np.zeros(0, dtype=np.int64)

    def nearest(key: np.ndarray, other: np.ndarray) -> np.ndarray:
        order = np.lexsort((other, sep, key))
        first = np.ones(order.size, dtype=bool)
        first[1:] = key[order][1:] != key[order][:-1]
        keep = np.zeros(order.size, dtype=bool)
        keep[order[first]] = True
        return keep

    return np.flatnonzero(nearest(source_id, ext_id) & nearest(ext_id, source_id))


# --- gathering --------------------------------------------------------------------------

@dataclass
class Inputs:
    """What the report is computed from: our columns, theirs, and the one-to-one pairs."""

    ours: dict[str, np.ndarray]  # per our source: source_id, ra, dec and the mapped release columns
    theirs: dict[str, np.ndarray]  # per external object in our footprint: ext_source_id, ra, dec, z_spec, mapped
    units: dict[str, str | None]  # unit of each mapped external column
    pair_ours: np.ndarray  # row in `ours` of each pair
    pair_theirs: np.ndarray  # row in `theirs` of each pair
    crossmatch_run: int


def parse_map(spec: str | Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """`"ours=theirs,ours2=theirs2"` (or several such strings) as {ours: theirs}."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return dict(spec)
    items = [spec] if isinstance(spec, str) else list(spec)
    out: dict[str, str] = {}
    for item in ",".join(items).split(","):
        if not item.strip():
            continue
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise InputError(f"--map entry {item!r} is not ours=theirs")
        out[ours.strip()] = theirs.strip()
    return out


def _ours(conn: Connection, fields, wanted: Sequence[str]) -> dict[str, np.ndarray]:
    """source_id, ra, dec and the wanted release columns of the fields (-99 -> NaN)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("source_id", "ra", "dec", *wanted)}
    for fr in fields:
        phot, _ = phot_table(conn, fr)
        zout = zout_table(conn, fr) or {}
        ids = fetch_columns(conn, [("id", "id", "i8"), ("source_id", "source_id", "i8")],
                            "FROM source WHERE run_id = :d ORDER BY id", {"d": fr.runs["detect"]})
        if not np.array_equal(ids["id"], phot["id"]):
            raise InputError(f"field {fr.field}: export rows do not line up with the sources")  # export sorts by id
        parts["source_id"].append(ids["source_id"])
        parts["ra"].append(phot["ra"])
        parts["dec"].append(phot["dec"])
        for name in wanted:
            spec = next((sp for sp in rc.ZOUT_SPECS if sp.name == name), None)
            if name in phot:
                values = phot[name].astype(float)
            elif spec is not None and spec.shape:
                raise InputError(f"{name!r} is a vector column: map scalar columns only")
            elif name in zout:
                values = np.full(len(ids["id"]), np.nan)
                values[np.searchsorted(ids["id"], zout["id"])] = zout[name].astype(float)
            elif spec is not None:  # a zout column of a field without photo-z
                values = np.full(len(ids["id"]), np.nan)
            else:
                raise InputError(f"{name!r} is not a column of the release's catalogs (phot_apcorr or zout)")
            values[values == rc.MISSING] = np.nan
            parts[name].append(values)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _sql_string(value: str) -> str:
    """A SQL string literal (standard_conforming_strings: only quotes need doubling)."""
    return "'" + value.replace("'", "''") + "'"


def _theirs(conn: Connection, info: CatalogInfo, wanted: Sequence[str], cells: np.ndarray) -> dict[str, np.ndarray]:
    """External objects in the footprint cells: ext_source_id, ra, dec, z_spec and wanted columns."""
    known = set(info.columns.get("data", {}))
    select = [("ext_source_id", "e.ext_source_id", "i8"), ("ra", "e.ra", "f8"), ("dec", "e.dec", "f8"),
              ("z_spec", "e.z_spec", "f8")]
    for name in wanted:
        if name in ("z_spec", "ra", "dec"):
            continue
        if name not in known:
            raise InputError(f"external catalog {info.name} has no column {name!r} "
                             f"(columns: {', '.join(sorted(known)) or 'none'}, z_spec, ra, dec)")
        key = _sql_string(name)
        select.append((name, f"CASE WHEN jsonb_typeof(e.data -> {key}) = 'number' THEN (e.data ->> {key})::float8 END",
                       "f8"))
    conn.execute(text("DROP TABLE IF EXISTS cmp_cells"))
    conn.execute(text("CREATE TEMP TABLE cmp_cells (cell bigint PRIMARY KEY) ON COMMIT DROP"))
    copy_fixed(conn, "cmp_cells", {"cell": ("int8", cells)})
    conn.execute(text("ANALYZE cmp_cells"))
    got = fetch_columns(conn, select, "FROM external_source e JOIN cmp_cells c ON (e.hpx29 >> :shift) = c.cell "
                                      "WHERE e.catalog_id = :cat ORDER BY e.ext_source_id",
                        {"shift": 2 * (ORDER - FOOTPRINT_ORDER), "cat": info.catalog_id})
    conn.execute(text("DROP TABLE cmp_cells"))
    return got


def gather(engine: Engine, catalog: str, mapping: Mapping[str, str], *, version: str | None, field: str | None,
           radius_arcsec: float) -> Inputs:
    """Our columns, theirs (in our footprint) and the mutual-nearest pairs of a (stored) crossmatch."""
    radius = check_radius(radius_arcsec)
    with engine.connect() as conn:
        info = catalog_info(conn, catalog)
        fields = select_fields(conn, version, field)
        runs = sorted(fr.runs["detect"] for fr in fields)
        run_id = find_crossmatch(conn, info.catalog_id, radius, runs)
    if run_id is None:
        run_id = crossmatch(engine, catalog, radius, version=version, field=field).run_id
    shift = 2 * (ORDER - FOOTPRINT_ORDER)
    with engine.connect() as conn:
        ours = _ours(conn, fields, list(mapping))
        pairs = fetch_columns(conn, [("source_id", "x.source_id", "i8"), ("ext_source_id", "x.ext_source_id", "i8"),
                                     ("sep", "x.separation_arcsec", "f8"), ("hpx29", "e.hpx29", "i8")],
                              "FROM crossmatch x JOIN external_source e USING (ext_source_id) WHERE x.run_id = :r",
                              {"r": run_id})
        ours_hpx = fetch_columns(conn, [("hpx29", "hpx29", "i8")], "FROM source WHERE run_id = ANY(:r)", {"r": runs})
        # the footprint: cells holding our sources, and those of every matched object (near the edges)
        cells = np.unique(np.concatenate([ours_hpx["hpx29"], pairs["hpx29"]]) >> shift)
        theirs = _theirs(conn, info, list(dict.fromkeys(mapping.values())), cells)
    keep = mutual_nearest(pairs["source_id"], pairs["ext_source_id"], pairs["sep"])
    src_order = np.argsort(ours["source_id"])
    pair_ours = src_order[np.searchsorted(ours["source_id"], pairs["source_id"][keep], sorter=src_order)]
    pair_theirs = np.searchsorted(theirs["ext_source_id"], pairs["ext_source_id"][keep])
    units = {name: info.columns.get("data", {}).get(name, {}).get("unit") for name in mapping.values()}
    return Inputs(ours=ours, theirs=theirs, units=units, pair_ours=pair_ours, pair_theirs=pair_theirs,
                  crossmatch_run=run_id)


# --- the report -------------------------------------------------------------------------

def _kind(ours: str) -> str:
    if ours in REDSHIFT_COLUMNS:
        return "redshift"
    try:
        return "flux" if rc.phot_column_spec(ours).unit == "uJy" else "value"
    except KeyError:
        return "value"


def reference_flux(mapping: Mapping[str, str]) -> str | None:
    """The first mapped flux column: its magnitudes are the x axis of the matched fractions."""
    return next((o for o in mapping if _kind(o) == "flux"), None)


def report_numbers(data: Inputs, mapping: Mapping[str, str], edges: Sequence[float] = MAG_BINS) -> dict:
    """Every number of the report (see the module docstring)."""
    ours, theirs = data.ours, data.theirs
    po, pt = data.pair_ours, data.pair_theirs
    ref = reference_flux(mapping)
    if ref is not None:
        mag_ours = ujy_to_mag(ours[ref])
        mag_theirs = ujy_to_mag(to_ujy(theirs[mapping[ref]], data.units.get(mapping[ref])))
    else:
        mag_ours = np.full(len(ours["source_id"]), np.nan)
        mag_theirs = np.full(len(theirs["ext_source_id"]), np.nan)
    matched_ours = np.zeros(len(ours["source_id"]), dtype=bool)
    matched_ours[po] = True
    matched_theirs = np.zeros(len(theirs["ext_source_id"]), dtype=bool)
    matched_theirs[pt] = True
    out = {
        "n_ours": int(len(ours["source_id"])), "n_theirs_in_footprint": int(len(theirs["ext_source_id"])),
        "n_pairs": int(len(po)), "magnitude_from": ref,
        "matched_fraction": {"ours": matched_fraction(mag_ours, matched_ours, edges),
                             "theirs": matched_fraction(mag_theirs, matched_theirs, edges)},
        "offsets_arcsec": offset_stats(ours["ra"][po], ours["dec"][po], theirs["ra"][pt], theirs["dec"][pt]),
        "flux_ratio": {}, "redshift": {}, "difference": {},
    }
    for o, t in mapping.items():
        kind = _kind(o)
        if kind == "flux":
            stats = ratio_stats(ours[o][po], to_ujy(theirs[t][pt], data.units.get(t)), ujy_to_mag(ours[o][po]), edges)
            out["flux_ratio"][f"{o}/{t}"] = {"ours": o, "theirs": t, "their_unit": data.units.get(t) or "uJy (assumed)",
                                             **stats}
        elif kind == "redshift":
            out["redshift"][f"{o}-{t}"] = {"ours": o, "theirs": t, **redshift_stats(ours[o][po], theirs[t][pt])}
        else:
            diff = theirs[t][pt] - ours[o][po]
            diff = diff[np.isfinite(diff)]
            out["difference"][f"{t}-{o}"] = {"ours": o, "theirs": t, "n": int(diff.size),
                                            "median": float(np.median(diff)) if diff.size else math.nan,
                                            "sigma": robust_sigma(diff)}
    if not out["redshift"] and "z_phot" in ours and np.isfinite(theirs["z_spec"]).any():
        out["redshift"]["z_phot-z_spec"] = {"ours": "z_phot", "theirs": "z_spec",
                                            **redshift_stats(ours["z_phot"][po], theirs["z_spec"][pt])}
    return out


def _figures(data: Inputs, mapping: Mapping[str, str], numbers: dict, out_dir: Path) -> dict[str, str]:
    """PNG figures of the report; returns {title: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours, theirs, po, pt = data.ours, data.theirs, data.pair_ours, data.pair_theirs
    figs: dict[str, str] = {}

    def save(fig, name: str, title: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        figs[title] = name

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, mf in numbers["matched_fraction"].items():
        bins = mf["bins"]
        if bins:
            ax.step([b["lo"] for b in bins] + [bins[-1]["hi"]], [b["fraction"] for b in bins] + [bins[-1]["fraction"]],
                    where="post", label=f"{label} ({mf['n_matched']}/{mf['n']})")
    ax.set_xlabel(f"AB mag ({numbers['magnitude_from'] or 'no flux mapped'})")
    ax.set_ylabel("matched fraction")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower left")
    save(fig, "matched_fraction.png", "Matched fraction vs magnitude")

    for key, stats in numbers["flux_ratio"].items():
        o, t = stats["ours"], stats["theirs"]
        ratio = ours[o][po] / to_ujy(theirs[t][pt], data.units.get(t))
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(ujy_to_mag(ours[o][po]), ratio, s=2, alpha=0.4, color="0.4")
        if stats["bins"]:
            mid = [(b["lo"] + b["hi"]) / 2 for b in stats["bins"]]
            med = np.array([b["median"] for b in stats["bins"]])
            sig = np.array([b["sigma"] for b in stats["bins"]])
            ax.plot(mid, med, "o-", color="C3", label="median")
            ax.fill_between(mid, med - sig, med + sig, color="C3", alpha=0.2, label="robust scatter")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylim(0, 2)
        ax.set_xlabel(f"AB mag ({o})")
        ax.set_ylabel(f"{o} / {t}")
        ax.set_title(f"median {stats['median']:.4f}, scatter {stats['sigma']:.4f}, N = {stats['n']}")
        ax.legend(loc="upper left")
        save(fig, f"flux_ratio_{o}.png", f"Flux ratio {key}")

    off = numbers["offsets_arcsec"]
    fig, ax = plt.subplots(figsize=(5, 5))
    dra = ((theirs["ra"][pt] - ours["ra"][po] + 180) % 360 - 180) * np.cos(np.radians(ours["dec"][po])) * 3600
    ax.scatter(dra, (theirs["dec"][pt] - ours["dec"][po]) * 3600, s=2, alpha=0.4, color="0.4")
    ax.plot(off["dra_cosdec_median"], off["ddec_median"], "+", color="C3", ms=20)
    ax.set_xlabel("dRA cos(dec) [arcsec] (theirs - ours)")
    ax.set_ylabel("dDec [arcsec]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"median ({off['dra_cosdec_median']:.3f}, {off['ddec_median']:.3f})\"")
    save(fig, "offsets.png", "Position offsets")

    for key, stats in numbers["redshift"].items():
        o, t = stats["ours"], stats["theirs"]
        zp = ours[o][po]
        zs = theirs[t][pt]
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(zs, zp, s=4, alpha=0.6)
        top = float(np.nanmax(np.concatenate([zs[np.isfinite(zs)], zp[np.isfinite(zp)], [1.0]])))
        grid = np.array([0, top])
        ax.plot(grid, grid, "k-", lw=0.8)
        for sign in (-1, 1):
            ax.plot(grid, grid + sign * OUTLIER_DZ * (1 + grid), "k:", lw=0.8)
        ax.set_xlabel(t)
        ax.set_ylabel(o)
        ax.set_title(f"sigma_NMAD {stats['sigma_nmad']:.4f}, outliers {stats['outlier_frac']:.3f}, N = {stats['N']}")
        save(fig, f"redshift_{o}.png", f"{o} vs {t}")
    return figs


def _html(numbers: dict, figures: Mapping[str, str], meta: dict) -> str:
    esc = html.escape

    def fmt(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else esc(str(v))

    rows = [f"<tr><th>{esc(k)}</th><td>{fmt(v)}</td></tr>" for k, v in meta.items()]
    summary = [("matched fraction (ours)", numbers["matched_fraction"]["ours"]["fraction"]),
               ("matched fraction (theirs, in footprint)", numbers["matched_fraction"]["theirs"]["fraction"]),
               ("pairs", numbers["n_pairs"])]
    summary += [(f"offset {k}", v) for k, v in numbers["offsets_arcsec"].items()]
    for key, s in numbers["flux_ratio"].items():
        summary += [(f"flux ratio {key}: median", s["median"]), (f"flux ratio {key}: scatter", s["sigma"])]
    for key, s in numbers["redshift"].items():
        summary += [(f"{key}: sigma_NMAD", s["sigma_nmad"]), (f"{key}: outlier fraction", s["outlier_frac"]),
                    (f"{key}: N", s["N"])]
    for key, s in numbers["difference"].items():
        summary += [(f"{key}: median", s["median"]), (f"{key}: scatter", s["sigma"])]
    rows += [f"<tr><th>{esc(k)}</th><td>{fmt(v)}</td></tr>" for k, v in summary]
    images = "".join(f"<figure><img src=\"{esc(name)}\" alt=\"{esc(title)}\"><figcaption>{esc(title)}</figcaption>"
                     f"</figure>" for title, name in figures.items())
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>alcsdb comparison</title>"
            "<style>body{font-family:sans-serif} td,th{text-align:left;padding:2px 8px} "
            "figure{display:inline-block;margin:8px}</style></head><body>"
            f"<h1>{esc(meta['version'] or 'latest runs')} vs {esc(meta['catalog'])}</h1>"
            f"<table>{''.join(rows)}</table>{images}"
            "<p>All numbers, per magnitude bin too, are in <a href=\"report.json\">report.json</a>.</p></body></html>")


def _finite(obj):
    """The report with NaN and infinities as None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def compare(engine: Engine, catalog: str, *, mapping: Mapping[str, str], out_dir: str | Path,
            version: str | None = None, field: str | None = None, radius_arcsec: float = 1.0,
            mag_bins: Sequence[float] = MAG_BINS) -> dict:
    """Write the verification report (report.json, index.html, PNGs) into `out_dir`; return its JSON."""
    mapping = dict(mapping)
    out = Path(out_dir)
    data = gather(engine, catalog, mapping, version=version, field=field, radius_arcsec=radius_arcsec)
    numbers = report_numbers(data, mapping, mag_bins)
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(data, mapping, numbers, out)
    meta = {"catalog": catalog, "version": version, "field": field, "radius_arcsec": float(radius_arcsec),
            "crossmatch_run": data.crossmatch_run, "map": mapping}
    report = {**meta, **numbers, "figures": figures}
    (out / "report.json").write_text(json.dumps(_finite(report), indent=1, allow_nan=False))
    (out / "index.html").write_text(_html(numbers, figures, {k: v for k, v in meta.items() if k != "map"}
                                          | {"map": ", ".join(f"{o}={t}" for o, t in mapping.items())}))
    return report
