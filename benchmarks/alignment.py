"""Alignment, absolute astrometry and background of the mosaic stage (issue 10, item 5) on a
simulated field, measured against the mock's truth (``truth.fits[OFFSETS]``, ``refcat.fits``,
``truth.fits[SOURCES]``), which the stage never reads.

Simulates the field (``WORKDIR/mock``, reused when there), runs ``alcsdb run mosaic`` on it in a
child process on a fresh schema of the embedded server, and prints, for that run:

- per HST visit and IRAC AOR: the largest error over the image (centre and corners) of the
  final WCS of each of its exposures (the header WCS with the correction recorded on its
  ``exposure`` / ``aor`` row) against the true WCS the mock rendered it with (targets < 0.02"
  HST, < 0.1" IRAC), next to the same error of the header WCS: the same mock without the
  alignment step, i.e. the injected pointing error;
- absolute astrometry of each final mosaic: rms offset of the reference stars found in it from
  their catalogue positions projected to the mosaic's mean epoch (target < 0.05" rms, HST);
  baseline: the same HST exposures drizzled with their header WCSs (no alignment step);
- background residual in empty sky of each HST mosaic: the mosaic minus the truth sources'
  light rendered on its grid, over the pixels where that light is below 0.05 of the pixel noise
  (empty sky from the truth, not from detections on the noisy image, which would drop positive
  noise); as a fraction of the pixel noise (NMAD of the residual, i.e. the per-pixel rms of the
  drizzled image, whose neighbouring pixels are correlated), over the whole mosaic and in cells
  of ``--cell-arcsec`` (target < 0.1), with the noise floor of a cell mean measured from the
  scatter of 0.4" block means (so the correlation is counted, not sigma / sqrt(N)); and two
  baselines from the truth: the injected sky gradients the per-visit smooth background removes,
  and the source light the stage's estimator takes for sky on an image of the sources alone.

    python benchmarks/alignment.py --size-arcmin 2 --seed 1

``--schema S --workdir W --home W/home`` scores the newest mosaic run of a kept schema instead
(``benchmarks/hst_accuracy.py --keep`` prints one and also runs this report).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402
from astropy.wcs import WCS, FITSFixedWarning  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HST_TARGET_ARCSEC = 0.02
IRAC_TARGET_ARCSEC = 0.1
ASTROMETRY_TARGET_ARCSEC = 0.05
BACKGROUND_TARGET = 0.1
CELL_ARCSEC = 12.0
EMPTY_LIMIT = 0.05
STAR_MATCH_ARCSEC = 0.3


# ----------------------------------------------------------------------------- pure metrics
def wcs_error(true: WCS, wcs: WCS) -> tuple[float, float]:
    """Sky separation (arcsec) of the same pixel through ``wcs`` and through ``true``, at the
    image centre and the largest over the centre and the four corners (``true.pixel_shape``)."""
    nx, ny = true.pixel_shape
    x = np.array([(nx - 1) / 2, 0, nx - 1, 0, nx - 1], float)
    y = np.array([(ny - 1) / 2, 0, 0, ny - 1, ny - 1], float)
    a = SkyCoord(*true.all_pix2world(x, y, 0), unit="deg")
    b = SkyCoord(*wcs.all_pix2world(x, y, 0), unit="deg")
    sep = a.separation(b).arcsec
    return float(sep[0]), float(sep.max())


def corrected_wcs(header_wcs: WCS, dx: float, dy: float, rotation: float) -> WCS:
    """The header WCS with a recorded correction (``exposure.align_*``: shift East/North in
    arcsec and rotation in degrees at the image centre) applied."""
    from pipeline.align import transform_wcs

    nx, ny = header_wcs.pixel_shape
    centre = SkyCoord(*header_wcs.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0), unit="deg")
    return transform_wcs(header_wcs, dx, dy, rotation, centre)


def star_offsets(sci: np.ndarray, wht: np.ndarray, wcs: WCS, refcat: Table, mjd: float, *,
                 radius_arcsec: float = STAR_MATCH_ARCSEC) -> np.ndarray:
    """Offsets (arcsec) of the reference stars (projected to ``mjd``) from the nearest bright
    source found in a mosaic (``pipeline.align.bright_sources``), for the stars matched
    within ``radius_arcsec``."""
    from pipeline.align import bright_sources, catalog_radec, project_refcat
    from pipeline.images import pixscale_arcsec
    from pipeline.photometry import error_and_mask

    err, nocov = error_and_mask(sci, wht)
    found = catalog_radec(bright_sources(sci, err, nocov, pixscale=pixscale_arcsec(wcs)), wcs)
    stars = project_refcat(refcat, mjd)
    if not len(found) or not len(stars):
        return np.zeros(0)
    _, d2d, _ = SkyCoord(stars["RA"], stars["DEC"], unit="deg").match_to_catalog_sky(
        SkyCoord(found["RA"], found["DEC"], unit="deg"))
    return d2d.arcsec[d2d.arcsec < radius_arcsec]


def rms(values: np.ndarray) -> float:
    v = np.asarray(values, float)
    return float(np.sqrt(np.mean(v**2))) if v.size else float("nan")


def truth_empty(model: np.ndarray, covered: np.ndarray, sigma: float, *, limit: float = EMPTY_LIMIT) -> np.ndarray:
    """Empty sky from the truth, independent of the noise: covered pixels where the light of
    all truth sources (``model``, the noiseless image) is below ``limit`` x the pixel noise
    ``sigma``. (Selecting empty pixels on the noisy image itself, e.g. outside segments,
    drops positive noise and biases their mean low.)"""
    return covered & (model < limit * sigma)


@dataclass
class SkyCells:
    """Empty-sky level of a mosaic in square cells (arrays over the cell grid, NaN where a cell
    has too little empty sky): ``level`` (clipped mean of the empty pixels over ``sigma``),
    ``sigma`` (pixel noise: NMAD of the empty pixels, image units), ``floor`` (the noise of
    the cell mean, from the scatter of 0.4" block means, in units of ``sigma``)."""

    level: np.ndarray
    sigma: np.ndarray
    floor: np.ndarray

    @property
    def n(self) -> int:
        return int(np.isfinite(self.level).sum())

    @property
    def rms(self) -> float:
        return rms(self.level[np.isfinite(self.level)])

    @property
    def worst(self) -> float:
        return float(np.nanmax(np.abs(self.level))) if self.n else float("nan")


def sky_cells(residual: np.ndarray, empty: np.ndarray, *, pixscale: float, cell_arcsec: float = CELL_ARCSEC,
              min_fraction: float = 0.1) -> SkyCells:
    """Empty-sky level per ``cell_arcsec`` cell of ``residual`` (the mosaic minus the truth
    sources' light; cells with at least ``min_fraction`` of their pixels empty): the
    3-sigma-clipped mean of the empty pixels divided by their NMAD
    (the pixel noise), and the noise of that mean (the NMAD of the means of the cell's fully
    empty 0.4" blocks over the square root of their number: pixel-to-pixel correlation
    included), in the same units. Cells tile the image from pixel (0, 0); a partial last
    row/column is left out."""
    from astropy.stats import sigma_clipped_stats

    n = max(1, int(round(cell_arcsec / pixscale)))
    k = max(1, int(round(0.4 / pixscale)))
    sci = residual
    shape = (sci.shape[0] // n, sci.shape[1] // n)
    level, sigma, floor = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for j in range(shape[0]):
        for i in range(shape[1]):
            m = empty[j * n:(j + 1) * n, i * n:(i + 1) * n]
            v = sci[j * n:(j + 1) * n, i * n:(i + 1) * n]
            if m.sum() < 10:
                continue
            sigma[j, i] = 1.4826 * np.median(np.abs(v[m] - np.median(v[m])))
            if m.mean() < min_fraction or not sigma[j, i] > 0:
                continue
            mean, _, _ = sigma_clipped_stats(v[m], sigma=3.0, maxiters=5)
            level[j, i] = mean / sigma[j, i]
            nb = n // k
            full = m[:nb * k, :nb * k].reshape(nb, k, nb, k).all(axis=(1, 3))
            means = v[:nb * k, :nb * k].reshape(nb, k, nb, k).mean(axis=(1, 3))[full]
            if means.size >= 5:
                floor[j, i] = 1.4826 * np.median(np.abs(means - np.median(means))) / np.sqrt(means.size) / sigma[j, i]
    return SkyCells(level, sigma, floor)


def injected_gradient_cells(exposures: list[dict], out_wcs: WCS, shape: tuple[int, int], sigma: np.ndarray,
                            *, pixscale: float, cell_arcsec: float = CELL_ARCSEC) -> np.ndarray:
    """Baseline: per cell (the cells of :func:`sky_cells`), the injected sky
    gradient left after each exposure's pedestal, in units of the pixel noise ``sigma`` (the
    cell grid of :attr:`SkyCells.sigma`; NaN where unknown): the weighted mean over the exposures covering the cell
    centre of ``sky (gx (x - xc) / nx + gy (y - yc) / ny)`` (the mock's sky model, e/s per
    native pixel) times (output / native pixel)^2, with each exposure's drizzle weight.

    ``exposures``: dicts with ``wcs`` (header WCS, ``pixel_shape`` set), ``sky``, ``sky_gx``,
    ``sky_gy``, ``weight`` and ``pixscale`` (native)."""
    n = max(1, int(round(cell_arcsec / pixscale)))
    ys, xs = np.mgrid[0:shape[0] // n, 0:shape[1] // n] * n
    cx, cy = (xs + (n - 1) / 2).ravel(), (ys + (n - 1) / 2).ravel()
    ra, dec = out_wcs.all_pix2world(cx, cy, 0)
    num, den = np.zeros(cx.size), np.zeros(cx.size)
    for e in exposures:
        nx, ny = e["wcs"].pixel_shape
        x, y = e["wcs"].all_world2pix(ra, dec, 0)
        inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
        grad = e["sky"] * (e["sky_gx"] * (x - (nx - 1) / 2) / nx + e["sky_gy"] * (y - (ny - 1) / 2) / ny)
        grad *= (pixscale / e["pixscale"]) ** 2
        num += np.where(inside, e["weight"] * grad, 0.0)
        den += np.where(inside, e["weight"], 0.0)
    level = np.divide(num, den, out=np.full(cx.size, np.nan), where=den > 0)
    return level / np.asarray(sigma, float).ravel()


# ----------------------------------------------------------------------------- reading
def _header_wcs(path: Path, ext) -> WCS:
    with fits.open(path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        header = hdul[ext].header
        wcs = WCS(header, hdul)
        wcs.pixel_shape = (header["NAXIS1"], header["NAXIS2"])
    return wcs


def _newest_mosaic_run(conn, field: str) -> int:
    from sqlalchemy import text

    return conn.execute(text(
        "SELECT r.run_id FROM run r JOIN field f USING (field_id) WHERE f.name = :f AND r.stage = 'mosaic' "
        "AND r.status = 'succeeded' ORDER BY r.run_id DESC LIMIT 1"), {"f": field}).scalar_one()


def visit_residuals(conn, run_id: int, mock_dir: Path) -> list[dict]:
    """Per HST exposure of the mosaic run: visit, filter, injected error and residual
    (arcsec, the larger of centre and corners), and per IRAC frame of each AOR and channel."""
    from sqlalchemy import text

    from pipeline.sim_observe import apply_offset

    offsets = Table.read(mock_dir / "truth.fits", "OFFSETS")
    truth = {str(r["exposure"]): r for r in offsets if not str(r["file"]).startswith("irac/")}
    by_file = {str(r["file"]): r for r in offsets}
    out = []
    rows = conn.execute(text(
        "SELECT e.rootname, e.visit, f.name AS filter, e.align_dx_arcsec, e.align_dy_arcsec, e.align_rot_deg "
        "FROM exposure e JOIN filter f USING (filter_id) WHERE e.run_id = :r ORDER BY e.visit, e.rootname"),
        {"r": run_id}).mappings().all()
    for r in rows:
        t = truth[r["rootname"]]
        header = _header_wcs(mock_dir / str(t["file"]), ("SCI", 1))
        true = apply_offset(header, float(t["dx"]), float(t["dy"]), float(t["rot"]))
        final = corrected_wcs(header, r["align_dx_arcsec"], r["align_dy_arcsec"], r["align_rot_deg"])
        out.append({"group": r["visit"], "filter": r["filter"], "kind": "hst", "name": r["rootname"],
                    "injected": wcs_error(true, header)[1], "residual": wcs_error(true, final)[1],
                    "mjd": float(t["mjd"])})
    aors = conn.execute(text("SELECT aorkey, channel, align_dx_arcsec, align_dy_arcsec FROM aor WHERE run_id = :r "
                             "ORDER BY aorkey, channel"), {"r": run_id}).mappings().all()
    for a in aors:
        prefix = f"irac/r{a['aorkey']}/ch{a['channel']}/"
        for file, t in sorted(by_file.items()):
            if not file.startswith(prefix):
                continue
            header = _header_wcs(mock_dir / file, 0)
            true = apply_offset(header, float(t["dx"]), float(t["dy"]), float(t["rot"]))
            final = corrected_wcs(header, a["align_dx_arcsec"], a["align_dy_arcsec"], 0.0)
            out.append({"group": f"r{a['aorkey']}-ch{a['channel']}", "filter": f"ch{a['channel']}", "kind": "irac",
                        "name": Path(file).name, "injected": wcs_error(true, header)[1],
                        "residual": wcs_error(true, final)[1], "mjd": float(t["mjd"])})
    return out


def by_group(rows: list[dict]) -> list[dict]:
    """Per visit / AOR: number of exposures, largest injected error and largest residual."""
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.setdefault(r["group"], {"group": r["group"], "filter": r["filter"], "kind": r["kind"], "n": 0,
                                           "injected": 0.0, "residual": 0.0})
        g["n"] += 1
        g["injected"] = max(g["injected"], r["injected"])
        g["residual"] = max(g["residual"], r["residual"])
    return list(groups.values())


def sky_estimator_light(model: np.ndarray, wht: np.ndarray, *, pixscale: float, params, seed: int = 0) -> np.ndarray:
    """What the mosaic stage's smooth background (``pipeline.background.smooth_background``
    with the run's parameters) takes for sky on an image holding only the truth sources' light
    plus Gaussian noise of the weight map (no sky at all): the share of the sources' light that
    the estimate subtracts."""
    from pipeline.background import smooth_background

    rng = np.random.default_rng(seed)
    covered = wht > 0
    noise = np.where(covered, rng.standard_normal(wht.shape) / np.sqrt(np.where(covered, wht, 1.0)), 0.0)
    return smooth_background(np.where(covered, model + noise, 0.0), wht, pixscale=pixscale, params=params)


def evaluate(engine, field: str, mock_dir: Path, *, baseline: bool = True, cell_arcsec: float = CELL_ARCSEC,
             background_filters: tuple[str, ...] | None = None) -> dict:
    """All figures of the newest mosaic run of ``field`` (see the module docstring);
    ``background_filters`` limits the (slower, truth-rendering) background figures."""
    from sqlalchemy import text

    from pipeline.background import BackgroundParams
    from pipeline.images import load_image, pixscale_arcsec
    from pipeline.mock import render_truth
    from pipeline.mosaic import MosaicParams, background_error, drizzle, read_flt
    from pipeline.runner import run_products

    refcat = Table.read(mock_dir / "refcat.fits")
    offsets = Table.read(mock_dir / "truth.fits", "OFFSETS")
    truth = Table.read(mock_dir / "truth.fits", "SOURCES")
    with engine.connect() as conn:
        run_id = _newest_mosaic_run(conn, field)
        exposures = visit_residuals(conn, run_id, mock_dir)
        products = run_products(conn, run_id, ("hst_sci", "hst_wht", "irac_sci", "irac_wht"))
        run_params = conn.execute(text("SELECT params FROM run WHERE run_id = :r"), {"r": run_id}).scalar() or {}
    bkg_params = BackgroundParams(**run_params["background"]) if "background" in run_params else BackgroundParams()
    epochs: dict[str, list[float]] = {}
    for e in exposures:
        epochs.setdefault(e["filter"], []).append(e["mjd"])
    pixfrac = MosaicParams().pixfrac_hst
    astrometry, background = [], []
    for filt in sorted({p.filter for p in products}):
        sci_p = next(p for p in products if p.filter == filt and p.kind.endswith("_sci"))
        wht_p = next(p for p in products if p.filter == filt and p.kind.endswith("_wht"))
        sci, _, wcs = load_image(sci_p.path)
        wht, _, _ = load_image(wht_p.path)
        wcs.pixel_shape = (sci.shape[1], sci.shape[0])
        mjd = float(np.mean(epochs[filt]))
        offs = star_offsets(sci, wht, wcs, refcat, mjd)
        entry = {"filter": filt, "hst": sci_p.kind.startswith("hst"), "n": int(offs.size), "rms": rms(offs),
                 "median": float(np.median(offs)) if offs.size else float("nan"), "n_raw": 0, "rms_raw": float("nan")}
        astrometry.append(entry)
        if not entry["hst"]:
            continue
        scale = pixscale_arcsec(wcs)
        chips = [c for r in offsets if str(r["band"]) == filt for c in read_flt(mock_dir / str(r["file"]))]
        if baseline:
            raw_sci, raw_wht = drizzle(chips, wcs, pixfrac=pixfrac)
            raw = star_offsets(raw_sci, raw_wht, wcs, refcat, mjd, radius_arcsec=1.0)
            entry.update(n_raw=int(raw.size), rms_raw=rms(raw))
        if background_filters is not None and filt not in background_filters:
            continue
        model = render_truth(truth, filt, wcs, sci.shape, mjd)
        covered = wht > 0
        residual = np.where(covered, sci - model, 0.0)
        sigma = float(1.4826 * np.median(np.abs(residual[covered] - np.median(residual[covered]))))
        empty = truth_empty(model, covered, sigma)
        cells = sky_cells(residual, empty, pixscale=scale, cell_arcsec=cell_arcsec)
        info = {str(r["exposure"]): r for r in offsets}
        exp = [{"wcs": c.wcs, "sky": float(info[c.name]["sky"]), "sky_gx": float(info[c.name]["sky_gx"]),
                "sky_gy": float(info[c.name]["sky_gy"]), "weight": background_error(c.err, c.mask) ** -2,
                "pixscale": c.pixscale} for c in chips if c.extver == 1]
        grad = injected_gradient_cells(exp, wcs, sci.shape, cells.sigma, pixscale=scale, cell_arcsec=cell_arcsec)
        light = sky_estimator_light(model, wht, pixscale=scale, params=bkg_params)
        background.append({
            "filter": filt, "cells": cells, "empty_fraction": float(empty.sum() / covered.sum()),
            "level": float(np.mean(residual[empty]) / sigma), "model_light": float(np.mean(model[empty]) / sigma),
            "estimator_light": float(np.mean(light[empty]) / sigma),
            "gradient_rms": rms(grad[np.isfinite(grad)]), "gradient_max": float(np.nanmax(np.abs(grad)))})
    return {"run_id": run_id, "exposures": exposures, "groups": by_group(exposures), "astrometry": astrometry,
            "background": background, "cell_arcsec": cell_arcsec}


def print_report(s: dict) -> None:
    groups = s["groups"]
    print(f"\nalignment of mosaic run {s['run_id']} against the injected pointing errors "
          "(largest error over each exposure's centre and corners, arcsec)")
    print(f"  {'visit / AOR':<26} {'filter':<6} {'n':>3} {'injected':>9} {'residual':>9}  target")
    for g in groups:
        target = HST_TARGET_ARCSEC if g["kind"] == "hst" else IRAC_TARGET_ARCSEC
        print(f"  {g['group']:<26} {g['filter']:<6} {g['n']:>3} {g['injected']:>9.3f} {g['residual']:>9.4f}  < {target:g}")
    for kind, target in (("hst", HST_TARGET_ARCSEC), ("irac", IRAC_TARGET_ARCSEC)):
        mine = [g for g in groups if g["kind"] == kind]
        if mine:
            print(f"  {kind.upper()}: {len(mine)} groups, worst residual {max(g['residual'] for g in mine):.4f}\" "
                  f"(target < {target:g}\"), injected {min(g['injected'] for g in mine):.3f}-"
                  f"{max(g['injected'] for g in mine):.3f}\"")
    print("\nabsolute astrometry of the final mosaics: reference stars at the mosaic's mean epoch (arcsec)")
    print(f"  {'mosaic':<7} {'stars':>5} {'rms':>8} {'median':>8}   header WCS: {'stars':>5} {'rms':>7}")
    for a in s["astrometry"]:
        raw = f"{a['n_raw']:>5} {a['rms_raw']:>7.3f}" if a["hst"] else f"{'':>5} {'':>7}"
        print(f"  {a['filter']:<7} {a['n']:>5} {a['rms']:>8.4f} {a['median']:>8.4f}   {'':>11}{raw}")
    print(f"  target (HST): < {ASTROMETRY_TARGET_ARCSEC:g}\" rms")
    print(f"\nbackground in empty sky (pixels where the truth sources' light is < {EMPTY_LIMIT:g} of the pixel noise):")
    print("  mosaic minus the truth sources, in units of the pixel noise; cells of "
          f"{s['cell_arcsec']:g}\" with >= 10% empty pixels")
    print(f"  {'mosaic':<7} {'empty':>6} {'level':>7} {'cells':>5} {'cell rms':>8} {'worst':>6} {'floor':>6}"
          f"   {'source light':>15} {'in sky estimate':>16}   {'injected gradient rms / max':>27}")
    for b in s["background"]:
        c = b["cells"]
        print(f"  {b['filter']:<7} {100 * b['empty_fraction']:>5.1f}% {b['level']:>+7.3f} {c.n:>5} {c.rms:>8.3f} "
              f"{c.worst:>6.2f} {np.nanmedian(c.floor):>6.3f}   {b['model_light']:>15.3f} {b['estimator_light']:>+16.3f}"
              f"   {b['gradient_rms']:>13.2f} / {b['gradient_max']:.2f}")
    print(f"  target: |level| below {BACKGROUND_TARGET:g}; 'in sky estimate': the smooth background the stage's "
          "estimator finds on the sources' light alone (no sky)")


def run_mosaic_stage(url: str, field: str, mock_dir: Path) -> float:
    """`alcsdb run mosaic` on the mock in a child process (as a user runs it); wall seconds."""
    import subprocess
    import time

    cmd = [sys.executable, "-m", "alcsdb", "--db", url, "run", "mosaic", "--field", field, "--input", str(mock_dir),
           "--force"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"alcsdb run mosaic failed:\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--size-arcmin", type=float, default=2.0, help="side of the simulated field (default 2)")
    p.add_argument("--seed", type=int, default=1, help="mock seed (default 1)")
    p.add_argument("--field", default="j001408m3023")
    p.add_argument("--workdir", type=Path, default=None,
                   help="folder of the mock (WORKDIR/mock, simulated when missing; default "
                        "/tmp/alcsdb-align-bench-SIZE-SEED)")
    p.add_argument("--home", type=Path, default=None,
                   help="embedded server home (default $ALCSDB_HOME, else WORKDIR/home)")
    p.add_argument("--schema", default=None,
                   help="score this kept schema's newest mosaic run instead of running the stage "
                        "(e.g. from hst_accuracy.py --keep, with its --workdir and --home WORKDIR/home)")
    p.add_argument("--keep", action="store_true", help="keep the new schema (its name is printed)")
    p.add_argument("--cell-arcsec", type=float, default=CELL_ARCSEC, help=f"sky cell size (default {CELL_ARCSEC:g})")
    p.add_argument("--no-baseline", action="store_true", help="skip drizzling the exposures with their header WCSs")
    p.add_argument("--background-filters", nargs="*", default=None,
                   help="HST filters of the background figures (default all; each renders the truth)")
    args = p.parse_args(argv)
    work = args.workdir or Path(f"/tmp/alcsdb-align-bench-{args.size_arcmin:g}-{args.seed}")
    work.mkdir(parents=True, exist_ok=True)
    home = args.home or (Path(os.environ["ALCSDB_HOME"]) if os.environ.get("ALCSDB_HOME") else work / "home")
    os.environ["ALCSDB_HOME"] = str(home)
    from alcsdb import db
    from pipeline.mock import _field_defaults, simulate_field

    mock_dir = work / "mock"
    if args.schema is None and not (mock_dir / "mock.json").exists():
        print(f"simulating a {args.size_arcmin:g}' mock (seed {args.seed}) in {mock_dir}", flush=True)
        simulate_field(mock_dir, field=args.field, size_arcmin=args.size_arcmin, seed=args.seed,
                       **_field_defaults(args.field))
    wall = None
    with db.scratch_schema(db.embedded_url(), "align", name=args.schema, keep=args.keep) as url:
        if args.keep or args.schema:
            print(f"schema kept: {db.schema_of(url)}", flush=True)
        if args.schema is None:
            print(f"alcsdb run mosaic --input {mock_dir} (schema {db.schema_of(url)})", flush=True)
            wall = run_mosaic_stage(url, args.field, mock_dir)
        engine = db.make_engine(url)
        try:
            scores = evaluate(engine, args.field, mock_dir, baseline=not args.no_baseline,
                              cell_arcsec=args.cell_arcsec,
                              background_filters=tuple(args.background_filters) if args.background_filters else None)
        finally:
            engine.dispose()
    if wall is not None:
        print(f"mosaic stage: {wall:.0f} s wall")
    print_report(scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
