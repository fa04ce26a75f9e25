"""Accuracy of the HST half of the pipeline (mosaic -> detect -> photometry) on a simulated field
(issue 5, item 6), measured against the mock's truth, with each stage's cost.

Simulates a field (`pipeline.mock`, reused when the work folder has it), runs the three stages as
`alcsdb run STAGE` child processes on a private embedded PostgreSQL schema (so each run's
`peak_rss_mb` in the `run` table is that stage's own), and prints:

- the measured 5-sigma point-source depth of F160W (total magnitude of a point source whose 0.7"
  aperture flux is 5x the NMAD of empty apertures: outside the segments of the pipeline's and of
  the release's extraction), next to the mock's nominal depth;
- detection completeness for truth sources brighter than (depth - 1) inside the field (a truth
  source is found when a detection lies within `--match-arcsec`), the fraction of spurious
  detections (no truth source of any magnitude within that radius) and the median offset of the
  matched detections from truth (targets: >= 95%, < 2%, < 0.02");
- for isolated point sources (truth stars without a neighbour brighter than 1% of them and than
  28.5 mag within 1.5", matched) and every filter: the median of `{f}_tot_2 / true - 1` (0.7" aperture, corrected;
  target within +-2%); the scatter of (measured - true) / error, NMAD and standard deviation, of
  the noise-limited ones (true S/N < 20; target 0.8-1.2); and the NMAD of measured / true - 1 for
  S/N > 100, the per-source systematic floor (drizzle sampling of the undersampled PSF) that
  weight-map and Poisson errors do not hold;
- injection-recovery (``--no-injection`` skips it): 300 point sources per filter of the filter's
  PSF, S/N 5-20, added to each mosaic at least 1.5" from every detection segment and measured as
  the photometry stage measures: the same median and pull scatter on hundreds of isolated point
  sources where the mock has 13-15 noise-limited stars per filter;
- galaxy colours: per filter, the median of (tot_2 / true) / (F160W tot_2 / true) over matched
  galaxies (1 = right colour; the release's unmatched apertures make ACS too blue, see
  ``photometry --param psf_match``);
- baseline, same run: the same point sources measured in a 0.7" aperture at their TRUE positions
  on each mosaic, corrected with the release's encircled energy (what the mosaics alone give,
  without detection and the Kron/aperture corrections); and the detection with the error scale
  of 0.4" block sums (the photometry's) instead of the release's mesh rms (grizli);
- each stage's wall time, CPU time and peak resident memory;
- the mosaic stage's alignment, absolute astrometry and empty-sky background against the truth
  (issue 10; ``benchmarks/alignment.py``, which also reads a kept schema on its own).

    python benchmarks/hst_accuracy.py --size-arcmin 2 --seed 1
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MATCH_ARCSEC = 0.3
EDGE_ARCSEC = 1.0
BLEND_ARCSEC = 1.0
STAGES = ("mosaic", "detect", "photometry")
DEPTH_APERTURE = 2  # index of the 0.7" aperture
SATURATED_UJY = 1e4  # no saturation in the mock; kept to exclude absurd values only
FAINT_SN = 20.0
BRIGHT_SN = 100.0
GALAXY_SN = 20.0  # galaxy colours: true S/N of both filters above this
INJECT_N = 300  # injected point sources per filter


# ----------------------------------------------------------------------------- pure metrics
def nmad(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation (NaN for no values)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else float("nan")


def truth_pixels(truth: Table, wcs, mjd: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero-indexed pixel positions of the truth sources on ``wcs``, stars moved by their proper
    motions to ``mjd`` (the mean epoch of the exposures)."""
    from pipeline.sim_sources import position_at_epoch

    ra, dec = position_at_epoch(np.asarray(truth["ra"]), np.asarray(truth["dec"]), np.asarray(truth["pmra"]),
                                np.asarray(truth["pmdec"]), mjd)
    x, y = wcs.all_world2pix(ra, dec, 0)
    return np.asarray(x), np.asarray(y)


def inside(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], margin: float) -> np.ndarray:
    return (x >= margin) & (x <= shape[1] - 1 - margin) & (y >= margin) & (y <= shape[0] - 1 - margin)


def nearest(x_from: np.ndarray, y_from: np.ndarray, x_to: np.ndarray, y_to: np.ndarray,
            radius: float) -> tuple[np.ndarray, np.ndarray]:
    """For each `from` point: distance to the nearest `to` point and its index (inf, -1 beyond
    ``radius`` or without `to` points)."""
    n = len(x_from)
    if len(x_to) == 0 or n == 0:
        return np.full(n, np.inf), np.full(n, -1)
    dist, idx = cKDTree(np.c_[x_to, y_to]).query(np.c_[x_from, y_from], distance_upper_bound=radius)
    found = np.isfinite(dist)
    return dist, np.where(found, idx, -1)


@dataclass
class Detection:
    depth: float
    n_bright: int
    completeness: float
    n_detected: int
    spurious: float
    median_offset_arcsec: float
    median_offset_unblended_arcsec: float
    missed: list


def detection_scores(det_x: np.ndarray, det_y: np.ndarray, true_x: np.ndarray, true_y: np.ndarray,
                     true_mag: np.ndarray, shape: tuple[int, int], depth: float, *, pixscale: float,
                     edge_arcsec: float = EDGE_ARCSEC, match_arcsec: float = MATCH_ARCSEC) -> Detection:
    """Scores of a detection catalog (zero-indexed pixel positions) against the truth on a grid
    of ``shape``, both counted more than ``edge_arcsec`` inside the grid:

    - completeness: fraction of truth sources with ``true_mag < depth - 1`` that have a
      detection within ``match_arcsec``;
    - spurious: fraction of the detections with no truth source (any magnitude, anywhere)
      within ``match_arcsec``;
    - median offset (arcsec) of the found bright sources from their nearest detection, and of
      those without a brighter truth source within ``BLEND_ARCSEC`` (whose centroids other
      sources' light does not pull).
    """
    radius, margin = match_arcsec / pixscale, edge_arcsec / pixscale
    bright = inside(true_x, true_y, shape, margin) & (true_mag < depth - 1.0)
    dist, _ = nearest(true_x[bright], true_y[bright], det_x, det_y, radius)
    found = np.isfinite(dist)
    alone = unblended(true_x, true_y, true_mag, BLEND_ARCSEC / pixscale)[bright] & found
    det_in = inside(det_x, det_y, shape, margin)
    back, _ = nearest(det_x[det_in], det_y[det_in], true_x, true_y, radius)
    missed = [(float(a), float(b), float(m)) for a, b, m in
              zip(true_x[bright][~found], true_y[bright][~found], true_mag[bright][~found])]
    return Detection(
        depth=depth, n_bright=int(bright.sum()), completeness=float(found.mean()) if found.size else float("nan"),
        n_detected=int(det_in.sum()), spurious=float(np.mean(~np.isfinite(back))) if back.size else float("nan"),
        median_offset_arcsec=float(np.median(dist[found]) * pixscale) if found.any() else float("nan"),
        median_offset_unblended_arcsec=float(np.median(dist[alone]) * pixscale) if alone.any() else float("nan"),
        missed=missed)


SEGMENT_AREA_BINS_ARCSEC2 = (0.0, 5.0, 20.0, np.inf)


def completeness_by_segment_area(det_x: np.ndarray, det_y: np.ndarray, true_x: np.ndarray, true_y: np.ndarray,
                                 true_mag: np.ndarray, seg: np.ndarray, depth: float, *, pixscale: float,
                                 edge_arcsec: float = EDGE_ARCSEC, match_arcsec: float = MATCH_ARCSEC
                                 ) -> list[tuple[float, float, int, float]]:
    """Completeness of the truth sources brighter than ``depth - 1`` split by the area
    (arcsec^2) of the detection segment under their true position (0: on no segment):
    [(lo, hi, n, completeness)] for SEGMENT_AREA_BINS_ARCSEC2. Sources on large segments are
    inside the light of bright galaxies, where deblending (DEBLEND_CONT x the segment's flux)
    limits what can be split."""
    bright = inside(true_x, true_y, seg.shape, edge_arcsec / pixscale) & (true_mag < depth - 1.0)
    dist, _ = nearest(true_x, true_y, det_x, det_y, match_arcsec / pixscale)
    xi = np.clip(np.round(true_x).astype(int), 0, seg.shape[1] - 1)
    yi = np.clip(np.round(true_y).astype(int), 0, seg.shape[0] - 1)
    label = seg[yi, xi]
    area = np.bincount(seg.ravel())[label] * pixscale**2 * (label > 0)
    out = []
    for lo, hi in zip(SEGMENT_AREA_BINS_ARCSEC2[:-1], SEGMENT_AREA_BINS_ARCSEC2[1:]):
        sel = bright & (area >= lo) & (area < hi)
        out.append((lo, hi, int(sel.sum()), float(np.isfinite(dist[sel]).mean()) if sel.any() else float("nan")))
    return out


def classify_missed(missed: list, true_x: np.ndarray, true_y: np.ndarray, true_flux: np.ndarray, seg: np.ndarray,
                    pixscale: float, blend_arcsec: float = BLEND_ARCSEC) -> dict[str, int]:
    """Why the missed truth sources (``(x, y, mag)`` of :class:`Detection`) were missed: a brighter
    truth source within ``blend_arcsec`` (a blend); else inside another detection's segment (its
    light joined to a neighbour's, which deblending did not split); else on no segment (below
    the isophote)."""
    out = {"brighter truth source within 1\"": 0, "inside another source's segment": 0, "on no segment": 0}
    tree = cKDTree(np.c_[true_x, true_y])
    for x, y, mag in missed:
        flux = 10 ** (-0.4 * (mag - 23.9))
        near = tree.query_ball_point([x, y], blend_arcsec / pixscale)
        if any(true_flux[j] > flux * 1.0001 for j in near):
            out["brighter truth source within 1\""] += 1
        elif seg[int(np.clip(round(y), 0, seg.shape[0] - 1)), int(np.clip(round(x), 0, seg.shape[1] - 1))] > 0:
            out["inside another source's segment"] += 1
        else:
            out["on no segment"] += 1
    return out


def unblended(x: np.ndarray, y: np.ndarray, mag: np.ndarray, radius: float) -> np.ndarray:
    """Sources with no brighter source within ``radius`` (same units as x, y)."""
    out = np.ones(len(x), bool)
    tree = cKDTree(np.c_[x, y])
    for i, near in enumerate(tree.query_ball_point(np.c_[x, y], radius)):
        out[i] = not any(mag[j] < mag[i] for j in near if j != i)
    return out


def isolated_stars(truth: Table, x: np.ndarray, y: np.ndarray, *, pixscale: float,
                   radius_arcsec: float = 1.5, flux_ratio: float = 0.01, floor_mag: float = 28.5) -> np.ndarray:
    """Truth stars with no other truth source within ``radius_arcsec`` brighter (F160W) than
    ``flux_ratio`` x the star and than ``floor_mag`` (a source below half the nominal 5-sigma
    depth adds well under the noise to a 0.7" aperture; the truth's ``is_isolated`` counts
    sources of any brightness, which leaves few stars isolated among a deep field's faint
    galaxies)."""
    flux = np.asarray(truth["flux_f160w"], float)
    floor = 10 ** (-0.4 * (floor_mag - 23.9))
    stars = np.flatnonzero(np.asarray(truth["kind"]).astype(str) == "star")
    out = np.zeros(len(truth), bool)
    tree = cKDTree(np.c_[x, y])
    for i in stars:
        near = [j for j in tree.query_ball_point([x[i], y[i]], radius_arcsec / pixscale) if j != i]
        out[i] = not any(flux[j] > max(flux_ratio * flux[i], floor) for j in near)
    return out


def empty_aperture_depth(sci: np.ndarray, wht: np.ndarray, seg: np.ndarray, *, pixscale: float,
                         ujy_per_count: float, ee: float, n: int = 3000, seed: int = 0) -> tuple[float, int]:
    """5-sigma depth (AB, total flux of a point source) of an image from 0.7"-aperture sums at
    random positions whose aperture (plus 2 pixels) holds no segment and no uncovered pixel:
    ``23.9 - 2.5 log10(5 NMAD(sums) / ee)`` with the image's smooth background subtracted.
    ``seg`` is on the same grid. Returns (depth, number of apertures used)."""
    import sep

    from pipeline.photometry import error_and_mask, estimate_background

    err, nocov = error_and_mask(sci, wht)
    bkg = estimate_background(sci, err, nocov, pixscale=pixscale)
    data = np.ascontiguousarray(np.where(nocov, 0.0, sci - bkg.level), dtype=np.float64)
    r = 0.35 / pixscale
    rng = np.random.default_rng(seed)
    x = rng.uniform(r + 2, sci.shape[1] - r - 3, n)
    y = rng.uniform(r + 2, sci.shape[0] - r - 3, n)
    blocked = ((seg > 0) | nocov).astype(np.float64)
    hit = sep.sum_circle(blocked, x, y, r + 2, subpix=1)[0]
    flux = sep.sum_circle(data, x[hit == 0], y[hit == 0], r)[0] * ujy_per_count
    if flux.size < 20:
        return float("nan"), int(flux.size)
    return float(23.9 - 2.5 * np.log10(5 * nmad(flux) / ee)), int(flux.size)


@dataclass
class PointSources:
    n: int
    median_rel: float
    n_faint: int
    pull_nmad: float
    pull_std: float
    bright_rel_nmad: float
    median_rel_err: float = float("nan")
    pull_nmad_err: float = float("nan")
    pulls: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0), repr=False)
    rel: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0), repr=False)


def bootstrap_error(values: np.ndarray, statistic, *, n: int = 1000, seed: int = 0) -> float:
    """Standard deviation of ``statistic`` over ``n`` bootstrap resamples of ``values`` (fixed
    seed; NaN for fewer than 3 values): the sampling error of a median or an NMAD of a few
    dozen sources."""
    v = np.asarray(values, float)
    if v.size < 3:
        return float("nan")
    rng = np.random.default_rng(seed)
    return float(np.std([statistic(v[rng.integers(0, v.size, v.size)]) for _ in range(n)]))


def point_source_scores(flux: np.ndarray, err: np.ndarray, true: np.ndarray, *,
                        faint_sn: float = FAINT_SN, bright_sn: float = BRIGHT_SN) -> PointSources:
    """Median of flux / true - 1 over all finite values; the scatter (NMAD and standard
    deviation) of (flux - true) / err over the noise-limited ones (true S/N = true / err below
    ``faint_sn``); the NMAD of flux / true - 1 over those above ``bright_sn``, whose errors the
    photon noise no longer dominates (the per-source systematic floor: PSF sampling); the
    bootstrap errors of the median and of the pull NMAD."""
    ok = np.isfinite(flux) & np.isfinite(err) & (err > 0) & (true > 0)
    rel = flux[ok] / true[ok] - 1
    sn = true[ok] / err[ok]
    pull = ((flux[ok] - true[ok]) / err[ok])[sn < faint_sn]
    return PointSources(int(ok.sum()), float(np.median(rel)) if ok.any() else float("nan"), int(pull.size),
                        nmad(pull), float(np.std(pull)) if pull.size else float("nan"), nmad(rel[sn > bright_sn]),
                        bootstrap_error(rel, np.median), bootstrap_error(pull, nmad), pull, rel)


def pooled(scores: list[PointSources]) -> PointSources:
    """The pulls of several filters together (their noise is independent): NMAD, standard
    deviation and bootstrap error of the NMAD; the median of all relative errors."""
    pulls = np.concatenate([s.pulls for s in scores]) if scores else np.zeros(0)
    rel = np.concatenate([s.rel for s in scores]) if scores else np.zeros(0)
    return PointSources(int(rel.size), float(np.median(rel)) if rel.size else float("nan"), int(pulls.size),
                        nmad(pulls), float(np.std(pulls)) if pulls.size else float("nan"), float("nan"),
                        bootstrap_error(rel, np.median), bootstrap_error(pulls, nmad), pulls, rel)


def galaxy_colours(truth: Table, rows: np.ndarray, tot: dict[str, np.ndarray], etot: dict[str, np.ndarray], *,
                   reference: str = "f160w", min_sn: float = GALAXY_SN) -> dict[str, tuple[int, float, float]]:
    """Colour accuracy of galaxies: per filter, the median over galaxies of
    ``(tot_f / true_f) / (tot_ref / true_ref)`` (1 when the measured colour is the true one) and its
    bootstrap error. ``rows`` are the galaxies' truth rows, ``tot``/``etot`` their measured 0.7"
    totals per filter; a galaxy counts where the TRUE S/N (true flux over the measured error) of
    both the filter and ``reference`` exceeds ``min_sn`` (selecting on measured S/N would favour
    upward scatter). Returns ``{filter: (n, median, error)}``."""
    out = {}
    true_ref = np.asarray(truth[f"flux_{reference}"], float)[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = tot[reference] / true_ref
        ref_ok = true_ref / etot[reference] > min_sn
        for f in tot:
            true = np.asarray(truth[f"flux_{f}"], float)[rows]
            ratio = tot[f] / true / ref
            ok = ref_ok & (true / etot[f] > min_sn) & np.isfinite(ratio)
            out[f] = (int(ok.sum()), float(np.median(ratio[ok])) if ok.any() else float("nan"),
                      bootstrap_error(ratio[ok], np.median))
    return out


def injected_point_sources(mosaic: dict, seg: np.ndarray, *, n: int = INJECT_N, sn_range: tuple = (5.0, 20.0),
                           isolation_arcsec: float = 1.5, seed: int = 0) -> PointSources:
    """Injection-recovery of isolated point sources in one filter mosaic, measured as the
    photometry stage measures (``pipeline.stages.photometry``: background with the segments
    masked, empty-aperture error scales, 0.7" aperture, neighbours masked, Poisson term).

    ``n`` stars of the filter's effective PSF as the mosaic records it (``pipeline.psfmatch``,
    cut at 2") are added, with Poisson noise at the mosaic's EXPTIME, at random positions at
    least ``isolation_arcsec`` from every detection segment (``seg``, on the mosaic's grid) and
    3" from each other, with 0.7"-aperture S/N drawn uniformly in ``sn_range``; they join the
    segmentation as 0.35" discs, as a detection would add them. Scored like the mock's stars
    (:func:`point_source_scores`) on ``flux / EE(0.35")``, so all are noise-limited when
    ``sn_range`` stays below ``FAINT_SN``: hundreds of pulls where the mock has 13-15 per filter.
    """
    from scipy import ndimage

    from pipeline import photometry as P
    from pipeline.irac_kernel import resample_psf
    from pipeline.psfmatch import PSF_SCALE_ARCSEC, mosaic_psf

    rng = np.random.default_rng(seed)
    scale, sci, wht = mosaic["pixscale"], mosaic["sci"], mosaic["wht"]
    exptime = float(mosaic["header"].get("EXPTIME") or 0) or None
    psf = resample_psf(mosaic_psf(mosaic["filter"], scale), PSF_SCALE_ARCSEC, scale)
    c, h = psf.shape[0] // 2, int(round(2.0 / scale))
    psf = psf[c - h:c + h + 1, c - h:c + h + 1]
    _, bad = P.error_and_mask(sci, wht)
    blocked = ndimage.binary_dilation(seg > 0, iterations=int(round(isolation_arcsec / scale))) | bad
    blocked[:h + 2], blocked[-h - 2:], blocked[:, :h + 2], blocked[:, -h - 2:] = True, True, True, True
    free = np.argwhere(~blocked)
    picks: list[tuple[float, float]] = []
    for k in rng.permutation(len(free))[: 50 * n]:
        y, x = free[k] + rng.uniform(-0.5, 0.5, 2)
        if all(np.hypot(x - a, y - b) > 3.0 / scale for a, b in picks):
            picks.append((x, y))
            if len(picks) == n:
                break
    xy = np.array(picks).reshape(-1, 2)
    ee = 1.0 / float(P.total_correction(mosaic["filter"], np.array([0.35]))[0])

    def measure(image, seg_map, ids):
        return P.measure_filter(image, wht, xy[:, 0], xy[:, 1], seg_map, ids, pixscale=scale,
                                ujy_per_count=mosaic["ujy"], gain=exptime)

    labels = np.arange(int(seg.max()) + 1, int(seg.max()) + 1 + len(xy), dtype=np.int32)
    seg_inj = np.array(seg, dtype=np.int32)
    yy, xx = np.indices(seg.shape)
    r = 0.35 / scale
    for (x, y), label in zip(xy, labels):
        y0, y1, x0, x1 = int(y - r - 1), int(y + r + 2), int(x - r - 1), int(x + r + 2)
        disc = np.hypot(xx[y0:y1, x0:x1] - x, yy[y0:y1, x0:x1] - y) <= r
        seg_inj[y0:y1, x0:x1][disc & (seg_inj[y0:y1, x0:x1] == 0)] = label
    noise = np.nanmedian(measure(sci, seg_inj, labels)["fluxerr"][:, DEPTH_APERTURE])
    true = rng.uniform(*sn_range, len(xy)) * noise / ee
    image = np.array(sci, dtype=np.float64)
    for (x, y), flux in zip(xy, true):
        ix, iy = int(np.floor(x)), int(np.floor(y))
        star = ndimage.shift(psf, (y - iy, x - ix), order=3) * flux / mosaic["ujy"]
        if exptime:
            star = rng.poisson(np.clip(star, 0, None) * exptime) / exptime
        image[iy - h:iy + h + 1, ix - h:ix + h + 1] += star
    out = measure(image.astype(np.float32), seg_inj, labels)
    return point_source_scores(out["flux"][:, DEPTH_APERTURE] / ee, out["fluxerr"][:, DEPTH_APERTURE] / ee, true)


# ----------------------------------------------------------------------------- reading the runs
def latest_run(conn, field: str, stage: str) -> dict:
    from sqlalchemy import text

    row = conn.execute(text(
        "SELECT r.run_id, r.wall_time_s, r.peak_rss_mb FROM run r JOIN field f USING (field_id) "
        "WHERE f.name = :f AND r.stage = :s AND r.status = 'succeeded' ORDER BY r.run_id DESC LIMIT 1"),
        {"f": field, "s": stage}).mappings().one()
    return dict(row)


def evaluate(engine, field: str, mock_dir: Path, *, match_arcsec: float = MATCH_ARCSEC, inject: bool = False) -> dict:
    """Scores of the newest detect and photometry runs of ``field`` against the mock's truth."""
    from sqlalchemy import text

    from alcsdb.copyload import fetch_columns
    from pipeline.images import load_image, pixscale_arcsec
    from pipeline.photometry import APERTURE_DIAMETERS_ARCSEC, total_correction
    from pipeline.runner import run_products
    from pipeline.stages.detect import load_mosaics

    truth = Table.read(mock_dir / "truth.fits", "SOURCES")
    offsets = Table.read(mock_dir / "truth.fits", "OFFSETS")
    hst = np.array([not str(f).startswith("irac") for f in offsets["file"]])
    mjd = float(np.mean(offsets["mjd"][hst]))
    with engine.connect() as conn:
        det_run = latest_run(conn, field, "detect")["run_id"]
        phot_run = latest_run(conn, field, "photometry")["run_id"]
        det_products = {p.kind: p for p in run_products(conn, det_run)}
        used = conn.execute(text("SELECT product_id FROM run_input WHERE run_id = :r"), {"r": det_run}).scalars().all()
        mosaic_run = conn.execute(text("SELECT DISTINCT run_id FROM product WHERE product_id = ANY(:p)"),
                                  {"p": list(used)}).scalar_one()
        mosaics = load_mosaics([dataclasses.replace(p, role=p.kind.removeprefix("hst_"))
                                for p in run_products(conn, mosaic_run, ("hst_sci", "hst_wht"))])
        src = fetch_columns(conn, [("source_id", "source_id", "i8"), ("x", "x", "f8"), ("y", "y", "f8")],
                            "FROM source WHERE run_id = :r ORDER BY id", {"r": det_run})
        rows = conn.execute(text(
            "SELECT a.source_id, f.name, a.tot, a.etot FROM aperture_flux a JOIN filter f USING (filter_id) "
            "WHERE a.run_id = :r AND a.aperture = :ap AND f.name <> 'det'"),
            {"r": phot_run, "ap": DEPTH_APERTURE}).all()
    seg, _, det_wcs = load_image(det_products["seg"].path)
    seg = seg.astype(np.int32)
    scale = pixscale_arcsec(det_wcs)
    tx, ty = truth_pixels(truth, det_wcs, mjd)
    usable = inside(tx, ty, seg.shape, EDGE_ARCSEC / scale)
    f160 = next(m for m in mosaics if m["filter"] == "f160w")
    factor = int(round(scale / f160["pixscale"]))
    ee = 1.0 / float(total_correction("f160w", np.array([APERTURE_DIAMETERS_ARCSEC[DEPTH_APERTURE] / 2]))[0])
    # empty sky: outside the segments of the pipeline's detection AND of the release's extraction
    # (the high-pass keeps only the cores of large galaxies as segments, which would count their
    # envelopes as sky and make the depth, a property of the images, depend on the detection)
    _, release_seg = _extract(det_products, det_wcs, scale, highpass_arcsec=None)
    occupied = ((seg > 0) | (release_seg > 0)).astype(np.int32)
    depth, n_empty = empty_aperture_depth(f160["sci"], f160["wht"], np.kron(occupied, np.ones((factor, factor), np.int32)),
                                          pixscale=f160["pixscale"], ujy_per_count=f160["ujy"], ee=ee)
    det = detection_scores(src["x"], src["y"], tx, ty, np.asarray(truth["mag_f160w"], float), seg.shape, depth,
                           pixscale=scale, match_arcsec=match_arcsec)
    by_area = completeness_by_segment_area(src["x"], src["y"], tx, ty, np.asarray(truth["mag_f160w"], float), seg,
                                           depth, pixscale=scale, match_arcsec=match_arcsec)

    # isolated point sources, matched one to one
    stars = usable & isolated_stars(truth, tx, ty, pixscale=scale)
    dist, idx = nearest(tx[stars], ty[stars], src["x"], src["y"], match_arcsec / scale)
    star_rows, star_src = np.flatnonzero(stars)[idx >= 0], src["source_id"][idx[idx >= 0]]
    by_key = {(int(s), name): (tot, etot) for s, name, tot, etot in rows}
    filters = [m["filter"] for m in mosaics]
    points, baseline = {}, {}
    for m in mosaics:
        f = m["filter"]
        true = np.asarray(truth[f"flux_{f}"], float)[star_rows]
        vals = np.array([by_key.get((int(s), f), (np.nan, np.nan)) for s in star_src], float).reshape(-1, 2)
        vals[vals[:, 0] > SATURATED_UJY] = np.nan
        points[f] = point_source_scores(vals[:, 0], vals[:, 1], true)
        baseline[f] = point_source_scores(*_truth_position_apertures(m, truth, star_rows, mjd), true)
    injected = {}
    if inject:
        for m in mosaics:
            factor = int(round(scale / m["pixscale"]))
            seg_map = np.kron(seg, np.ones((factor, factor), np.int32))[:m["sci"].shape[0], :m["sci"].shape[1]]
            injected[m["filter"]] = injected_point_sources(m, seg_map, seed=len(injected))
    # galaxies, matched one to one, for their colours
    gals = usable & (np.asarray(truth["z"], float) > 0)
    _, idx = nearest(tx[gals], ty[gals], src["x"], src["y"], match_arcsec / scale)
    gal_rows, gal_src = np.flatnonzero(gals)[idx >= 0], src["source_id"][idx[idx >= 0]]
    gal_vals = {f: np.array([by_key.get((int(s), f), (np.nan, np.nan)) for s in gal_src], float).reshape(-1, 2)
                for f in filters}
    colours = galaxy_colours(truth, gal_rows, {f: v[:, 0] for f, v in gal_vals.items()},
                             {f: v[:, 1] for f, v in gal_vals.items()})
    args = (det_products, det_wcs, tx, ty, truth, depth, scale, match_arcsec)
    variants = {"pipeline": det, "release (no high-pass)": _redetect(*args, highpass_arcsec=None),
                "block scale": _redetect(*args, block_scale=True),
                "DEBLEND_CONT 1e-4": _redetect(*args, deblend_cont=1e-4),
                "high-pass 1.5\"": _redetect(*args, highpass_arcsec=1.5),
                "high-pass 1\"": _redetect(*args, highpass_arcsec=1.0)}
    why_missed = classify_missed(det.missed, tx, ty, np.asarray(truth["flux_f160w"], float), seg, scale)
    return {"detect_run": det_run, "photometry_run": phot_run, "depth": depth, "n_empty": n_empty,
            "detection": det, "detection_variants": variants, "by_segment_area": by_area, "why_missed": why_missed,
            "n_stars": int(stars.sum()),
            "n_stars_matched": int(len(star_rows)), "points": points, "baseline": baseline, "filters": filters,
            "colours": colours, "injected": injected,
            "pixels": seg.shape}


def _truth_position_apertures(mosaic: dict, truth: Table, rows: np.ndarray, mjd: float
                              ) -> tuple[np.ndarray, np.ndarray]:
    """0.7" aperture at the true positions on a filter mosaic, background subtracted, divided by
    the release's EE(0.35"); errors from the weight map with the noise scale, plus Poisson."""
    from pipeline.photometry import aperture_photometry, error_and_mask, estimate_background, total_correction

    x, y = truth_pixels(truth[rows], mosaic["wcs"], mjd)
    err, mask = error_and_mask(mosaic["sci"], mosaic["wht"])
    bkg = estimate_background(mosaic["sci"], err, mask, pixscale=mosaic["pixscale"], err_scale="blocks")
    out = aperture_photometry(mosaic["sci"], mosaic["wht"], x, y, pixscale=mosaic["pixscale"],
                              ujy_per_count=mosaic["ujy"], background=bkg, gain=mosaic["header"].get("EXPTIME"))
    corr = total_correction(mosaic["filter"], np.full(len(rows), 0.35))
    return out["flux"][:, DEPTH_APERTURE] * corr, out["fluxerr"][:, DEPTH_APERTURE] * corr


def _extract(det_products, det_wcs, scale, *, block_scale: bool = False, **overrides):
    """The detect stage's extraction on its own detection image with other settings (see
    :func:`_redetect`): (catalog, segmentation)."""
    from pipeline import detect as compute
    from pipeline.images import load_image
    from pipeline.photometry import error_and_mask, estimate_background
    from pipeline.stages.detect import DEFAULTS, detect_params

    image, _, _ = load_image(det_products["det_sci"].path)
    weight, _, _ = load_image(det_products["det_wht"].path)
    params = {**DEFAULTS, **overrides}
    if block_scale:
        err, mask = error_and_mask(image, weight)
        blocks = estimate_background(image, err, mask, pixscale=scale, err_scale="blocks").err_scale
        # detect() rescales by the mesh rms when asked: give it the block-scaled weight instead
        weight = np.where(mask, 0.0, weight / blocks**2)
        params["rescale_weight"] = False
    return compute.detect(image, weight, det_wcs, params=detect_params(params, scale))


def _redetect(det_products, det_wcs, tx, ty, truth, depth, scale, match_arcsec, *, block_scale: bool = False,
              **overrides) -> Detection:
    """Detection on the same detection image with other settings: ``block_scale`` uses the error
    scale of 0.4" block sums (the photometry's, `noise_scale`) instead of the release's mesh
    rms; ``overrides`` replace release parameters (e.g. ``deblend_cont``, ``highpass_arcsec``)."""
    cat, seg = _extract(det_products, det_wcs, scale, block_scale=block_scale, **overrides)
    return detection_scores(np.asarray(cat["x"]), np.asarray(cat["y"]), tx, ty, np.asarray(truth["mag_f160w"], float),
                            seg.shape, depth, pixscale=scale, match_arcsec=match_arcsec)


# ----------------------------------------------------------------------------- driver
def run_cli_stage(url: str, stage: str, field: str, input_dir: Path | None, params: list[str] = ()
                  ) -> tuple[float, float]:
    """`alcsdb run STAGE [--param KEY=VALUE ...]` in a child process: (wall s, CPU s of the child)."""
    cmd = [sys.executable, "-m", "alcsdb", "--db", url, "run", stage, "--field", field, "--force"]
    cmd += [x for kv in params for x in ("--param", kv)]
    if input_dir is not None:
        cmd += ["--input", str(input_dir)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"alcsdb run {stage} failed:\n{stdout}\n{stderr}")
    return wall, usage.ru_utime + usage.ru_stime


def print_report(size: float, seed: int, nominal: float, scores: dict, costs: dict, match_arcsec: float) -> None:
    d, variants = scores["detection"], scores["detection_variants"]
    print(f"\nHST accuracy on a {size:g}' mock (seed {seed}); detection grid {scores['pixels'][1]}x"
          f"{scores['pixels'][0]} px; match radius {match_arcsec:g}\"")
    print(f"F160W 5-sigma point-source depth (0.7\" aperture, {scores['n_empty']} empty apertures): "
          f"{d.depth:.2f} measured, {nominal:.2f} nominal")
    names = list(variants)
    print(f"\n{'detection':<34}" + "".join(f"{n:>23}" for n in names) + "  target")
    rows = [("truth sources < depth - 1", lambda v: f"{v.n_bright:>23}", ""),
            ("completeness", lambda v: f"{100 * v.completeness:>22.1f}%", ">= 95%"),
            ("detections", lambda v: f"{v.n_detected:>23}", ""),
            ("spurious", lambda v: f"{100 * v.spurious:>22.1f}%", "< 2%"),
            ("median offset (arcsec)", lambda v: f"{v.median_offset_arcsec:>23.4f}", "< 0.02"),
            ("  no brighter source within 1\"", lambda v: f"{v.median_offset_unblended_arcsec:>23.4f}", "")]
    for label, cell, target in rows:
        print(f"  {label:<32}" + "".join(cell(variants[n]) for n in names) + f"  {target}")
    print("  completeness by the area of the segment under the true position:")
    for lo, hi, n, frac in scores["by_segment_area"]:
        print(f"    {lo:>5g}-{hi:<5g} arcsec2 {n:>5} sources {100 * frac:>6.1f}%")
    print("  missed sources: " + ", ".join(f"{n} {why}" for why, n in scores["why_missed"].items()))
    print(f"\nisolated point sources: {scores['n_stars']} in the field, {scores['n_stars_matched']} matched")
    print(f"  {'filter':<7} {'n':>3} {'median-1':>15} {'n(S/N<20)':>10} {'pull NMAD':>12} {'pull std':>9} "
          f"{'S/N>100 NMAD':>13}   baseline: {'median-1':>8} {'pull NMAD':>10}")
    rows = [(f, scores["points"][f], scores["baseline"][f]) for f in scores["filters"]]
    rows.append(("all", pooled([p for _, p, _ in rows]), pooled([b for _, _, b in rows])))
    for f, p, b in rows:
        bright = f"{100 * p.bright_rel_nmad:>12.2f}%" if np.isfinite(p.bright_rel_nmad) else f"{'':>13}"
        print(f"  {f:<7} {p.n:>3} {100 * p.median_rel:>+7.2f}+-{100 * p.median_rel_err:4.2f}% {p.n_faint:>10} "
              f"{p.pull_nmad:>6.2f}+-{p.pull_nmad_err:4.2f} {p.pull_std:>9.2f} {bright}   "
              f"{'':>9} {100 * b.median_rel:>+7.2f}% {b.pull_nmad:>10.2f}")
    print("  targets: median within +-2%, pull scatter 0.8-1.2 (+-: bootstrap errors; 'all' pools the filters)")
    if scores["injected"]:
        print(f"\ninjected isolated point sources ({INJECT_N} per filter, S/N 5-20, >= 1.5\" from every segment), "
              "measured as the photometry stage does")
        rows = list(scores["injected"].items()) + [("all", pooled(list(scores["injected"].values())))]
        for f, p in rows:
            print(f"  {f:<7} {p.n:>4} median-1 {100 * p.median_rel:>+6.2f}+-{100 * p.median_rel_err:4.2f}%  pull NMAD "
                  f"{p.pull_nmad:.2f}+-{p.pull_nmad_err:.2f}  pull std {p.pull_std:5.2f}  |pull| > 3: "
                  f"{100 * np.mean(np.abs(p.pulls) > 3):.1f}%")
    print(f"\ngalaxy colours: median of (tot_2 / true) / (F160W tot_2 / true), galaxies with true S/N > {GALAXY_SN:g} "
          "in both filters (1 = right colour)")
    for f, (n, med, err) in scores["colours"].items():
        print(f"  {f:<7} {n:>4} {med:>7.3f} +- {err:.3f}")
    print(f"\n{'stage':<11} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}")
    for stage, c in costs.items():
        print(f"  {stage:<9} {c['wall_time_s']:>8.1f} {c['cpu_s']:>8.1f} {c['peak_rss_mb']:>12.0f}")
    if d.missed:
        print("\nmissed truth sources (x, y, F160W):", ", ".join(f"({x:.0f}, {y:.0f}, {m:.2f})" for x, y, m in d.missed))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--size-arcmin", type=float, default=2.0, help="side of the simulated field (default 2)")
    p.add_argument("--seed", type=int, default=1, help="mock seed (default 1)")
    p.add_argument("--field", default="j001408m3023", help="field simulated (its centre and redshift)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="folder for the mock and the database (default /tmp/alcsdb-hst-bench-SIZE-SEED); "
                        "an existing mock there is reused")
    p.add_argument("--match-arcsec", type=float, default=MATCH_ARCSEC,
                   help=f"truth-detection match radius (default {MATCH_ARCSEC})")
    p.add_argument("--keep", action="store_true", help="keep the database schema (its name is printed)")
    p.add_argument("--schema", default=None,
                   help="reuse this kept schema (and keep it): with --stages, re-run only later stages")
    p.add_argument("--stages", nargs="*", choices=STAGES, default=list(STAGES),
                   help="stages to (re)run before scoring (default all three)")
    p.add_argument("--param", action="append", default=[], metavar="STAGE.KEY=VALUE",
                   help="a stage parameter, e.g. photometry.psf_match=f160w (repeatable)")
    p.add_argument("--no-injection", action="store_true", help="skip the injected point sources")
    p.add_argument("--no-alignment", action="store_true",
                   help="skip the alignment, astrometry and background figures (benchmarks/alignment.py)")
    args = p.parse_args(argv)
    work = args.workdir or Path(f"/tmp/alcsdb-hst-bench-{args.size_arcmin:g}-{args.seed}")
    work.mkdir(parents=True, exist_ok=True)
    os.environ["ALCSDB_HOME"] = str(work / "home")

    import json

    from alcsdb import db
    from pipeline.mock import _field_defaults, simulate_field

    mock_dir = work / "mock"
    if not (mock_dir / "mock.json").exists():
        simulate_field(mock_dir, field=args.field, size_arcmin=args.size_arcmin, seed=args.seed,
                       **_field_defaults(args.field))
    nominal = json.loads((mock_dir / "mock.json").read_text())["parameters"]["depth"]["f160w"]
    with db.scratch_schema(db.embedded_url(), "bench", name=args.schema, keep=args.keep) as url:
        if args.keep or args.schema:
            print(f"schema kept: {db.schema_of(url)}", flush=True)
        engine = db.make_engine(url)
        try:
            costs = {}
            for stage in args.stages:
                params = [kv.split(".", 1)[1] for kv in args.param if kv.split(".", 1)[0] == stage]
                wall, cpu = run_cli_stage(url, stage, args.field, mock_dir if stage == "mosaic" else None, params)
                with engine.connect() as conn:
                    costs[stage] = {**latest_run(conn, args.field, stage), "cpu_s": cpu, "process_wall_s": wall}
            scores = evaluate(engine, args.field, mock_dir, match_arcsec=args.match_arcsec, inject=not args.no_injection)
            aligned = None
            if not args.no_alignment:
                from benchmarks import alignment

                aligned = alignment.evaluate(engine, args.field, mock_dir)
        finally:
            engine.dispose()
    print_report(args.size_arcmin, args.seed, nominal, scores, costs, args.match_arcsec)
    if aligned is not None:
        alignment.print_report(aligned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
