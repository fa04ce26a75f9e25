"""IRAC AOR logs `r{AORKEY}-ch{N}.log.fits` (written by golfir: one row per BCD) -> `aor` + `bcd` rows."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alcsdb.copyload import copy_columns
from alcsdb.errors import InputError
from alcsdb.provenance import RunContext
from sqlalchemy import text

from .fitsio import column, read_table

AOR_LOG = re.compile(r"^r(?P<aorkey>\d+)-ch(?P<channel>\d)\.log\.fits$")
REQUIRED = ("file", "aor", "exptime", "mjd_obs", "crval", "corners", "theta")


@dataclass
class AorLog:
    path: Path
    aorkey: int
    channel: int
    files: list[str]
    exptime: np.ndarray
    mjd: np.ndarray
    theta: np.ndarray
    crval: np.ndarray  # (n, 2)
    corners: np.ndarray  # (n, 4, 2)
    footprint: list | None = None  # convex hull of the corners, set by read_aor_log

    @property
    def centre(self) -> tuple[float, float]:
        ra, dec = np.radians(self.crval[:, 0]), np.radians(self.crval[:, 1])
        v = np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]).sum(axis=1)
        return float(np.degrees(np.arctan2(v[1], v[0])) % 360), float(np.degrees(np.arcsin(v[2] / np.linalg.norm(v))))

    def row_counts(self) -> dict[str, int]:
        return {"aor": 1, "bcd": len(self.files)}


def read_aor_log(path: Path) -> AorLog:
    match = AOR_LOG.match(path.name)
    if not match:
        raise InputError(f"{path}: not an AOR log name (r{{AORKEY}}-ch{{N}}.log.fits)")
    channel = int(match["channel"])
    if channel not in (1, 2):
        raise InputError(f"{path}: IRAC channel {channel} is not used by ALCS (ch1, ch2 only)")
    data, _header, _units = read_table(path)
    missing = [c for c in REQUIRED if c not in data.columns.names]
    if missing:
        raise InputError(f"{path}: missing required column(s) {', '.join(missing)}")
    aorkey = int(match["aorkey"])
    aors = np.unique([str(a).strip().lstrip("r") for a in data["aor"]])  # golfir writes 'r{AORKEY}'
    if aors.size != 1 or aors[0] != str(aorkey):
        raise InputError(f"{path}: column 'aor' holds {aors.tolist()[:5]}, the file name says {aorkey}")
    crval = np.asarray(column(data, "crval", path, ndim=2, width=2), dtype=float)
    corners = np.asarray(data["corners"], dtype=float)
    if corners.shape[1:] not in ((4, 2), (8,)):
        raise InputError(f"{path}: column 'corners' has shape {corners.shape[1:]}, expected 4x2 (inconsistent shape)")
    corners = corners.reshape(len(data), 4, 2)
    if not (np.isfinite(crval).all() and np.isfinite(corners).all()):
        raise InputError(f"{path}: NaN in crval or corners")
    for name, values in (("crval", crval), ("corners", corners.reshape(-1, 2))):
        if (np.abs(values[:, 1]) > 90).any() or (values[:, 0] < -360).any() or (values[:, 0] > 720).any():
            raise InputError(f"{path}: column {name!r} holds positions that are not on the sky (|dec| > 90)")
    log = AorLog(path=path, aorkey=aorkey, channel=channel, files=[str(f).strip() for f in data["file"]],
                 exptime=np.asarray(column(data, "exptime", path), dtype=float),
                 mjd=np.asarray(column(data, "mjd_obs", path), dtype=float),
                 theta=np.asarray(column(data, "theta", path), dtype=float), crval=crval, corners=corners)
    from scipy.spatial import QhullError

    try:  # the footprint is computed here, before any write, so a bad geometry is a clean error
        log.footprint = sky_hull(corners.reshape(-1, 2), log.centre)
    except (ValueError, ArithmeticError, QhullError) as exc:  # QhullError: flat or coincident corners
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: column 'corners' does not describe a footprint around the AOR ({reason})") from None
    return log


def nearest_field(conn, ra: float, dec: float, max_deg: float = 0.5) -> int | None:
    """The field whose centre is nearest (within max_deg) to a position: AOR logs carry no field root."""
    row = conn.execute(text(
        "SELECT field_id, degrees(2 * asin(sqrt(power(sin(radians(dec - :dec) / 2), 2) + cos(radians(dec)) * "
        "cos(radians(:dec)) * power(sin(radians(ra - :ra) / 2), 2)))) AS d FROM field ORDER BY d LIMIT 1"),
        {"ra": ra, "dec": dec}).first()
    return int(row[0]) if row is not None and row[1] <= max_deg else None


def write_aor_log(run: RunContext, log: AorLog, field_id: int, product_id: int) -> None:
    theta = np.radians(log.theta)
    pa = float(np.degrees(np.arctan2(np.sin(theta).mean(), np.cos(theta).mean())) % 360)
    footprint = log.footprint
    aor_id = run.conn.execute(text(
        "INSERT INTO aor (run_id, field_id, product_id, aorkey, channel, n_bcd, exptime, mjd_start, mjd_end, pa_deg, "
        "footprint) VALUES (:run, :f, :p, :k, :ch, :n, :t, :m0, :m1, :pa, :fp) RETURNING aor_id"),
        {"run": run.run_id, "f": field_id, "p": product_id, "k": log.aorkey, "ch": log.channel, "n": len(log.files),
         "t": float(log.exptime.sum()), "m0": float(log.mjd.min()), "m1": float(log.mjd.max()), "pa": pa,
         "fp": footprint}).scalar_one()
    run.count("aor", 1)
    n = len(log.files)
    run.count("bcd", copy_columns(run.conn, "bcd", {
        "aor_id": np.full(n, aor_id), "seq": np.arange(n), "run_id": np.full(n, run.run_id),
        "file": np.array(log.files, dtype=object), "exptime": log.exptime, "mjd_obs": log.mjd, "theta": log.theta,
        "crval": log.crval, "corners": log.corners}))


def sky_hull(points: np.ndarray, centre: tuple[float, float]) -> list[list[float]]:
    """Convex hull [[ra, dec], ...] of sky points, computed in the tangent plane at `centre` (safe at RA = 0)."""
    from astropy.wcs import WCS
    from scipy.spatial import ConvexHull

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(centre)
    xy = np.column_stack(wcs.wcs_world2pix(points[:, 0], points[:, 1], 0))
    hull = points[ConvexHull(xy).vertices]
    return [[float(r), float(d)] for r, d in hull]
