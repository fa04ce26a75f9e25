"""`alcsdb version diff A B`: what changed between two catalog versions, per field.

Sources are matched by catalog id when both versions pin the same detection run, else by
position: pairs of mutual nearest neighbours closer than `match_radius_arcsec` (0.1").
For matched sources the compared quantities are, per HST filter, the total flux in aperture
`aperture` (`{f}_tot_{aperture}`, uJy), the IRAC fluxes (`irac_ch1_flux`, `irac_ch2_flux`,
uJy) and `z_phot`. A flux changed when |b - a| > flux_rtol * max(|a|, |b|); a redshift when
|b - a| > z_tol * (1 + a); a value present in one version and missing in the other changed
too. Quantities measured in only one version (a filter added) are listed, not compared.
Quantities whose runs are the same in both versions are identical and are not read.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from sqlalchemy import Connection, text

from .copyload import fetch_columns
from .errors import InputError
from .fields import resolve_field
from .versions import FieldRuns, version_runs

ARCSEC = np.pi / 180 / 3600


@dataclass
class Tolerances:
    flux_rtol: float = 0.01
    z_tol: float = 0.01
    match_radius_arcsec: float = 0.1
    aperture: int = 1


@dataclass
class Change:
    quantity: str
    id_a: int
    id_b: int
    a: float | None  # None = missing
    b: float | None
    change: float | None  # relative change (flux) or |dz| / (1 + z_a); None when a value is missing


@dataclass
class FieldDiff:
    field: str
    runs_a: dict[str, int]
    runs_b: dict[str, int]
    match: str  # "id" (same detection run), "position", or "none" (field in one version only)
    n_a: int
    n_b: int
    only_a: int
    only_b: int
    matched: int
    flux_changed: int = 0  # matched sources with at least one flux changed
    zphot_changed: int = 0
    quantities_only_a: list[str] = field(default_factory=list)
    quantities_only_b: list[str] = field(default_factory=list)
    largest: list[Change] = field(default_factory=list)


@dataclass
class VersionDiff:
    a: str
    b: str
    tolerances: Tolerances
    fields: list[FieldDiff]

    def totals(self) -> dict[str, int]:
        keys = ("n_a", "n_b", "only_a", "only_b", "matched", "flux_changed", "zphot_changed")
        return {k: sum(getattr(f, k) for f in self.fields) for k in keys}

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "tolerances": asdict(self.tolerances), "totals": self.totals(),
                "fields": [asdict(f) for f in self.fields]}


def match_positions(ra_a: np.ndarray, dec_a: np.ndarray, ra_b: np.ndarray, dec_b: np.ndarray,
                    radius_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (ia, ib) of mutual nearest neighbours closer than `radius_arcsec` (deg in)."""
    def unit(ra, dec):
        ra, dec = np.radians(ra), np.radians(dec)
        return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])

    if len(ra_a) == 0 or len(ra_b) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ua, ub = unit(ra_a, dec_a), unit(ra_b, dec_b)
    chord = 2 * np.sin(radius_arcsec * ARCSEC / 2)
    da, nb = cKDTree(ub).query(ua, distance_upper_bound=chord)
    _, na = cKDTree(ua).query(ub, distance_upper_bound=chord)
    ia = np.flatnonzero(np.isfinite(da))
    ib = nb[ia]
    mutual = na[ib] == ia
    return ia[mutual], ib[mutual]


def _sources(conn: Connection, det: int) -> dict[str, np.ndarray]:
    return fetch_columns(conn, [("id", "s.id", "i8"), ("ra", "s.ra", "f8"), ("dec", "s.dec", "f8")],
                         "FROM source s WHERE s.run_id = :d ORDER BY s.id", {"d": det})


def _quantities(conn: Connection, fr: FieldRuns, ids: np.ndarray, roles: set[str], aperture: int
                ) -> dict[str, np.ndarray]:
    """{quantity: values aligned with `ids`} for the roles asked (NaN = missing)."""
    det = fr.runs["detect"]
    out: dict[str, np.ndarray] = {}

    def scatter(name: str, row_ids: np.ndarray, values: np.ndarray) -> None:
        col = out.setdefault(name, np.full(len(ids), np.nan))
        col[np.searchsorted(ids, row_ids)] = values

    if "photometry" in roles and "photometry" in fr.runs:
        names = dict(conn.execute(text("SELECT filter_id, name FROM filter")).all())
        got = fetch_columns(conn, [("id", "s.id", "i8"), ("filt", "a.filter_id", "i4"), ("tot", "a.tot", "f8")],
                            "FROM aperture_flux a JOIN source s USING (source_id) WHERE a.run_id = :p AND "
                            "s.run_id = :d AND a.aperture = :k", {"p": fr.runs["photometry"], "d": det, "k": aperture})
        for fid in np.unique(got["filt"]):
            if names[int(fid)] != "det":
                m = got["filt"] == fid
                scatter(f"{names[int(fid)]}_tot_{aperture}", got["id"][m], got["tot"][m])
    if "irac" in roles and "irac" in fr.runs:
        got = fetch_columns(conn, [("id", "s.id", "i8"), ("ch", "i.channel", "i4"), ("flux", "i.flux", "f8")],
                            "FROM irac_flux i JOIN source s USING (source_id) WHERE i.run_id = :r AND s.run_id = :d",
                            {"r": fr.runs["irac"], "d": det})
        for ch in np.unique(got["ch"]):
            m = got["ch"] == ch
            scatter(f"irac_ch{ch}_flux", got["id"][m], got["flux"][m])
    if "photoz" in roles and "photoz" in fr.runs:
        got = fetch_columns(conn, [("id", "s.id", "i8"), ("z", "z.z_phot", "f8")],
                            "FROM zout z JOIN source s USING (source_id) WHERE z.run_id = :r AND s.run_id = :d",
                            {"r": fr.runs["photoz"], "d": det})
        scatter("z_phot", got["id"], got["z"])
    return out


def compare_values(quantity: str, a: np.ndarray, b: np.ndarray, tol: Tolerances) -> tuple[np.ndarray, np.ndarray]:
    """(changed mask, change measure) of matched values: relative for fluxes, dz/(1+z) for z_phot;
    a value missing in one version only counts as changed (measure NaN)."""
    present_a, present_b = np.isfinite(a), np.isfinite(b)
    both = present_a & present_b
    measure = np.full(len(a), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        if quantity == "z_phot":
            measure[both] = np.abs(b[both] - a[both]) / (1 + a[both])
            limit = tol.z_tol
        else:
            scale = np.maximum(np.abs(a[both]), np.abs(b[both]))
            measure[both] = np.where(scale > 0, np.abs(b[both] - a[both]) / np.where(scale > 0, scale, 1), 0.0)
            limit = tol.flux_rtol
    changed = (present_a != present_b) | (both & (measure > limit))
    return changed, measure


def _field_diff(conn: Connection, name: str, fa: FieldRuns | None, fb: FieldRuns | None, tol: Tolerances,
                top: int) -> FieldDiff:
    src_a = _sources(conn, fa.runs["detect"]) if fa else None
    src_b = _sources(conn, fb.runs["detect"]) if fb else None
    n_a = len(src_a["id"]) if src_a else 0
    n_b = len(src_b["id"]) if src_b else 0
    runs_a, runs_b = (fa.runs if fa else {}), (fb.runs if fb else {})
    if not (fa and fb):
        return FieldDiff(name, runs_a, runs_b, "none", n_a, n_b, n_a, n_b, 0)
    if runs_a["detect"] == runs_b["detect"]:
        match = "id"
        ia = ib = np.arange(n_a)
    else:
        match = "position"
        ia, ib = match_positions(src_a["ra"], src_a["dec"], src_b["ra"], src_b["dec"], tol.match_radius_arcsec)
    diff = FieldDiff(name, runs_a, runs_b, match, n_a, n_b, n_a - len(ia), n_b - len(ib), len(ia))
    roles = {r for r in ("photometry", "irac", "photoz")
             if match == "position" or runs_a.get(r) != runs_b.get(r)}
    qa = _quantities(conn, fa, src_a["id"], roles, tol.aperture)
    qb = _quantities(conn, fb, src_b["id"], roles, tol.aperture)
    diff.quantities_only_a = sorted(set(qa) - set(qb))
    diff.quantities_only_b = sorted(set(qb) - set(qa))
    flux_changed = np.zeros(len(ia), dtype=bool)
    z_changed = np.zeros(len(ia), dtype=bool)
    changes: list[Change] = []
    for quantity in sorted(set(qa) & set(qb)):
        a, b = qa[quantity][ia], qb[quantity][ib]
        changed, measure = compare_values(quantity, a, b, tol)
        (z_changed if quantity == "z_phot" else flux_changed)[:] |= changed
        rows = np.flatnonzero(changed)
        order = rows[np.argsort(-np.nan_to_num(measure[rows], nan=np.inf), kind="stable")][:top]
        changes += [Change(quantity, int(src_a["id"][ia[k]]), int(src_b["id"][ib[k]]), _num(a[k]), _num(b[k]),
                           _num(measure[k])) for k in order]
    diff.flux_changed = int(flux_changed.sum())
    diff.zphot_changed = int(z_changed.sum())
    changes.sort(key=lambda c: -(np.inf if c.change is None else c.change))
    diff.largest = changes[:top]
    return diff


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def diff_versions(conn: Connection, a: str, b: str, *, field: str | None = None,
                  tolerances: Tolerances | None = None, top: int = 10) -> VersionDiff:
    """Compare versions `a` and `b` (all fields of either, or one); `top` largest changes per field."""
    tol = tolerances or Tolerances()
    if tol.match_radius_arcsec <= 0 or tol.flux_rtol < 0 or tol.z_tol < 0:
        raise InputError("tolerances must be non-negative and the match radius positive")
    _, fields_a = version_runs(conn, a)
    _, fields_b = version_runs(conn, b)
    by_a = {fr.field: fr for fr in fields_a}
    by_b = {fr.field: fr for fr in fields_b}
    names = sorted(set(by_a) | set(by_b))
    if field is not None:
        _, fname = resolve_field(conn, field)
        if fname not in names:
            raise InputError(f"neither {a} nor {b} has field {fname}")
        names = [fname]
    return VersionDiff(a, b, tol, [_field_diff(conn, n, by_a.get(n), by_b.get(n), tol, top) for n in names])
