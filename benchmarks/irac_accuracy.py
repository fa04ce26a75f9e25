"""Accuracy of the `irac` stage on a simulated field (issue 6): measured against the mock's truth.

Simulates a field (`pipeline.mock`, reused when the work folder has it), runs mosaic -> detect ->
photometry -> irac through `pipeline.runner.run_stage` on a private embedded PostgreSQL schema,
and prints per channel, for sources with IRAC S/N > 10 (all of them, and those with a detected
neighbour within 2"):

- the median of (measured - true) / true (target: within +-3%);
- the scatter of (measured - true) / error: NMAD (1.4826 x median absolute deviation; target
  0.8-1.3), the plain standard deviation and the fraction beyond 5 sigma;
- the same for the fluxes on the HST totals' scale, as the photoz stage takes them with
  ``irac_scale=hst_total``: flux x (``flux_auto`` x the reddest filter's ``tot_corr``) / ``model_norm``
  (the latest photometry run of the same detections): the models hold only the light inside the
  segments, which misses a larger share of a faint galaxy's wings;
- the residual rms in units of the pixel noise (1/sqrt(wht)) over the fitted pixels of patches
  without bright (`IracFlag.BRIGHT`) sources (target <= 1.2), and the same over the pixels at
  least ``RESIDUAL_EDGE_ARCSEC`` (6") inside the HST coverage ("interior"): nearer its edge the
  IRAC light of sources beyond the HST map (stars just outside the 2' mock: 90% of a PSF's
  light lies within 5") has no model, whatever the method; and the residual rms split by the
  pixels' source-model S/N (below 1, 1-10, above 10);

and, as the baseline, the same numbers for a 3"-diameter aperture on the IRAC mosaic (local sky
from a 6-9" annulus, PSF aperture correction), which shows what the model photometry buys for
blended sources. The irac stage is timed as a separate `alcsdb run irac` process (wall time, CPU
time and peak resident memory of its process tree) for each `--n-proc` value given.

"True" flux of a detection: each truth source is given to the segment (of the watershed-grown
segmentation the fit used) under its position; a detection's true flux is the sum over the truth
sources it was given. Only "clean" detections are scored: one truth source carries >= 90% of the
segment's true HST F160W flux, i.e. of the light of the truth sources' intrinsic profiles that
falls in the segment (others are HST blends that one model cannot split, whatever the IRAC
method; a faint galaxy whose segment mostly holds a cluster galaxy's halo is one), at least
``EDGE_ARCSEC`` (3") inside the HST coverage: nearer the edge, the IRAC light of sources beyond
the HST map (which no model carries) falls on them.

    python benchmarks/irac_accuracy.py --size-arcmin 2 --seed 1 --n-proc 1 2
    python benchmarks/irac_accuracy.py --schema bench2 --param galfit_flux_limit=null   # irac only, again
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SN_MIN = 10.0
SN_BINS = (("10-30", 10.0, 30.0), ("30-100", 30.0, 100.0), (">100", 100.0, np.inf))
NEIGHBOUR_ARCSEC = 2.0
PURITY_MIN = 0.9
EDGE_ARCSEC = 3.0
RESIDUAL_EDGE_ARCSEC = 6.0
APERTURE_DIAMETER = 3.0
ANNULUS_ARCSEC = (6.0, 9.0)


# ----------------------------------------------------------------------------- pure metrics
def truth_labels(x: np.ndarray, y: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Segment id under each (zero-indexed) pixel position; 0 off the map or on sky."""
    xi, yi = np.round(np.asarray(x)).astype(int), np.round(np.asarray(y)).astype(int)
    inside = (xi >= 0) & (xi < seg.shape[1]) & (yi >= 0) & (yi < seg.shape[0])
    out = np.zeros(len(xi), dtype=np.int64)
    out[inside] = seg[yi[inside], xi[inside]]
    return out


def true_fluxes(ids: np.ndarray, labels: np.ndarray, flux: np.ndarray) -> np.ndarray:
    """Per detection id: the summed ``flux`` of the truth sources labelled with it."""
    ids = np.asarray(ids)
    size = int(max(ids.max(initial=0), labels.max(initial=0))) + 1
    return np.bincount(labels, weights=flux, minlength=size)[ids]


def segment_purity(truth: Table, wcs, seg: np.ndarray, band: str = "f160w") -> np.ndarray:
    """Per segment id (array index): the share of the segment's true ``band`` light that its
    largest contributor carries (NaN where no truth light falls). Light: each truth source's
    intrinsic profile (``pipeline.sim_render``, as the mock draws it; stars a point) with its true
    flux, drawn on the 0.1" grid of ``seg`` (``wcs``) at its position."""
    from pipeline.images import pixscale_arcsec
    from pipeline.sim_bands import BANDS
    from pipeline.sim_render import IRAC_SCENE_SCALE, intrinsic_stamp, splat, stamp_scale

    if abs(pixscale_arcsec(wcs) - IRAC_SCENE_SCALE) > 1e-3:
        raise ValueError("segment_purity draws on a 0.1\" grid")
    size = int(seg.max()) + 1
    total, best = np.zeros(size), np.zeros(size)
    x, y = wcs.all_world2pix(np.asarray(truth["ra"]), np.asarray(truth["dec"]), 0)
    native = BANDS["f160w"].pixscale
    for i, row in enumerate(truth):
        stamp = intrinsic_stamp(str(row["kind"]), float(row["sersic_n"]), float(row["r_half_arcsec"]),
                                float(row["trunc_arcsec"]), float(row["q"]), float(row["pa_deg"]),
                                stamp_scale(native, float(row["r_half_arcsec"])))
        reach = int(np.ceil(stamp.half * stamp.scale / IRAC_SCENE_SCALE)) + 2
        x0, y0 = int(np.floor(x[i])) - reach, int(np.floor(y[i])) - reach
        xa, xb = max(x0, 0), min(x0 + 2 * reach + 2, seg.shape[1])
        ya, yb = max(y0, 0), min(y0 + 2 * reach + 2, seg.shape[0])
        if xa >= xb or ya >= yb:
            continue
        local = np.zeros((2 * reach + 2, 2 * reach + 2))
        splat(local, stamp, x[i] - x0, y[i] - y0, float(row[f"flux_{band}"]))
        light = np.bincount(seg[ya:yb, xa:xb].ravel(), weights=local[ya - y0:yb - y0, xa - x0:xb - x0].ravel(),
                            minlength=size)
        total += light
        np.maximum(best, light, out=best)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, best / total, np.nan)


def inside_coverage(x: np.ndarray, y: np.ndarray, weight: np.ndarray, margin_pix: float) -> np.ndarray:
    """True where the (zero-indexed) pixel position lies at least ``margin_pix`` from any pixel
    without coverage (``weight`` <= 0) and from the image border."""
    from scipy import ndimage

    covered = np.pad(weight > 0, 1, constant_values=False)
    dist = ndimage.distance_transform_edt(covered)[1:-1, 1:-1]
    xi = np.clip(np.round(np.asarray(x)).astype(int), 0, weight.shape[1] - 1)
    yi = np.clip(np.round(np.asarray(y)).astype(int), 0, weight.shape[0] - 1)
    return dist[yi, xi] >= margin_pix


def has_neighbour(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """True where another position lies within ``radius`` (same units as x, y)."""
    pts = np.column_stack([x, y])
    dist, _ = cKDTree(pts).query(pts, k=2)
    return dist[:, 1] <= radius


def nmad(values: np.ndarray) -> float:
    values = np.asarray(values, float)
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else float("nan")


@dataclass
class Accuracy:
    n: int
    median_rel: float
    pull_nmad: float
    pull_std: float
    frac_beyond_5sigma: float


def flux_accuracy(flux: np.ndarray, err: np.ndarray, true: np.ndarray, select: np.ndarray) -> Accuracy:
    """Median relative deviation and pull scatter of the selected, measured sources."""
    ok = select & np.isfinite(flux) & np.isfinite(err) & (err > 0) & (true > 0)
    rel = (flux[ok] - true[ok]) / true[ok]
    pull = (flux[ok] - true[ok]) / err[ok]
    n = int(ok.sum())
    return Accuracy(n, float(np.median(rel)) if n else float("nan"), nmad(pull),
                    float(np.std(pull)) if n else float("nan"),
                    float(np.mean(np.abs(pull) > 5)) if n else float("nan"))


def residual_noise_ratio(residual: np.ndarray, weight: np.ndarray, pixels: np.ndarray) -> float:
    """rms of residual * sqrt(weight) over ``pixels`` with weight > 0 (1 = the residual is noise)."""
    use = pixels & (weight > 0) & np.isfinite(residual)
    return float(np.sqrt(np.mean(residual[use] ** 2 * weight[use]))) if use.any() else float("nan")


def aperture_fluxes(image: np.ndarray, weight: np.ndarray, x: np.ndarray, y: np.ndarray, psf: np.ndarray,
                    pixscale: float, psf_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Baseline (flux, err): sum in a ``APERTURE_DIAMETER`` circle minus the median of an annulus,
    divided by the PSF's encircled energy in the same aperture (net of its annulus level)."""
    import sep

    r_ap = APERTURE_DIAMETER / 2 / pixscale
    data = np.ascontiguousarray(image, dtype=np.float64)
    noise = np.where(weight > 0, 1.0 / np.sqrt(np.where(weight > 0, weight, 1.0)), 0.0)
    flux, ferr, _ = sep.sum_circle(data, x, y, r_ap, err=noise, subpix=5)
    sky = np.array([np.median(data[_annulus(data.shape, xi, yi, pixscale)]) for xi, yi in zip(x, y)])
    c = np.array(psf.shape) // 2
    yy, xx = np.indices(psf.shape)
    r = np.hypot(xx - c[1], yy - c[0]) * psf_scale
    ring = (r >= ANNULUS_ARCSEC[0]) & (r < ANNULUS_ARCSEC[1])
    inner = r < APERTURE_DIAMETER / 2
    ee = psf[inner].sum() - np.median(psf[ring]) * inner.sum()
    return (flux - sky * np.pi * r_ap ** 2) / ee, ferr / ee


def _annulus(shape: tuple[int, int], x: float, y: float, pixscale: float) -> np.ndarray:
    r1 = ANNULUS_ARCSEC[1] / pixscale
    y0, y1 = max(0, int(y - r1)), min(shape[0], int(y + r1) + 2)
    x0, x1 = max(0, int(x - r1)), min(shape[1], int(x + r1) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    r = np.hypot(xx - x, yy - y) * pixscale
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = (r >= ANNULUS_ARCSEC[0]) & (r < ANNULUS_ARCSEC[1])
    return mask


# ----------------------------------------------------------------------------- the run
def evaluate(engine, field: str, truth: Table, irac_run: int) -> dict[str, dict]:
    """Scores of an irac run against the mock truth, per channel (see the module docstring)."""
    from sqlalchemy import text

    from alcsdb.copyload import fetch_columns
    from pipeline.images import load_image, pixscale_arcsec
    from pipeline.irac import patch_grid
    from pipeline.irac_patches import assign_sources
    from pipeline.stages import irac as stage
    from pipeline.stages import photoz as photoz_stage

    with engine.connect() as conn:
        params = conn.execute(text("SELECT params FROM run WHERE run_id = :r"), {"r": irac_run}).scalar_one()
        inputs = dict(conn.execute(text(
            "SELECT ri.role, p.path FROM run_input ri JOIN product p USING (product_id) WHERE ri.run_id = :r"),
            {"r": irac_run}).all())
        outputs = {(k, f): p for k, f, p in conn.execute(text(
            "SELECT p.kind, f.name, p.path FROM product p JOIN filter f USING (filter_id) WHERE p.run_id = :r"),
            {"r": irac_run}).all()}
        det_run = conn.execute(text("SELECT run_id FROM product WHERE path = :p"), {"p": inputs["seg"]}).scalar_one()
        src = fetch_columns(conn, [("source_id", "source_id", "i8"), ("id", "id", "i8"), ("x", "x", "f8"),
                                   ("y", "y", "f8"), ("xpeak", "coalesce(xpeak, round(x))", "i8"),
                                   ("ypeak", "coalesce(ypeak, round(y))", "i8")],
                            "FROM source WHERE run_id = :r ORDER BY id", {"r": det_run})
        # the photometry run of the same detections, for the photoz stage's HST-totals scale
        phot_run = conn.execute(text(
            "SELECT max(r.run_id) FROM run r WHERE r.stage = 'photometry' AND r.status = 'succeeded' AND EXISTS "
            "(SELECT 1 FROM aperture_flux a JOIN source s USING (source_id) WHERE a.run_id = r.run_id AND s.run_id = :d)"),
            {"d": det_run}).scalar()
        rows = fetch_columns(conn, [("source_id", "i.source_id", "i8"), ("channel", "i.channel", "i4"),
                                    ("flux", "i.flux", "f8"), ("err", "i.err", "f8"), ("bright", "i.bright", "i4"),
                                    ("patch", "i.patch", "i4"), ("model_norm", "i.model_norm", "f8"),
                                    ("hst_total", "s.flux_auto * t.tot_corr", "f8")],
                             "FROM irac_flux i JOIN source s USING (source_id) LEFT JOIN total_correction t ON "
                             "t.source_id = i.source_id AND t.run_id = :p AND t.filter_id = "
                             f"({photoz_stage._REDDEST_TOT_CORR}) WHERE i.run_id = :r", {"r": irac_run, "p": phot_run})
    image, _, hst_wcs = load_image(Path(inputs["det_sci"]))
    weight, _, _ = load_image(Path(inputs["det_wht"]))
    seg, _, _ = load_image(Path(inputs["seg"]))
    scale = pixscale_arcsec(hst_wcs)
    _, model_seg = stage.hst_model_inputs(
        image, weight, seg.astype(np.int32), src["id"], src["xpeak"], src["ypeak"], pixscale=scale,
        box_arcsec=params["hst_background_box_arcsec"], watershed=params["watershed"],
        smooth_pix=params["watershed_smooth_pix"], min_sn=params["watershed_min_sn"])
    tx, ty = hst_wcs.all_world2pix(np.asarray(truth["ra"]), np.asarray(truth["dec"]), 0)
    labels = truth_labels(tx, ty, model_seg)
    purity = segment_purity(truth, hst_wcs, model_seg)[src["id"]]
    inside = inside_coverage(src["x"], src["y"], weight, EDGE_ARCSEC / scale)
    neighbour = has_neighbour(src["x"], src["y"], NEIGHBOUR_ARCSEC / scale)
    row_of = {int(s): i for i, s in enumerate(src["source_id"])}
    out = {}
    for ch in stage.channels(params):
        number = int(ch[2:])
        sel = rows["channel"] == number
        idx = np.array([row_of[int(s)] for s in rows["source_id"][sel]], dtype=int)
        n = len(src["id"])
        flux, err, bright, patch = (np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, int), np.full(n, -1))
        flux[idx], err[idx], bright[idx], patch[idx] = (rows["flux"][sel], rows["err"][sel], rows["bright"][sel],
                                                        rows["patch"][sel])
        # x HST total / model_norm: the IRAC flux on the HST totals' scale (photoz irac_scale=hst_total)
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = rows["hst_total"][sel] / rows["model_norm"][sel]
        to_total = np.full(n, np.nan)
        to_total[idx] = np.where(np.isfinite(factor) & (factor > 0), factor, np.nan)
        true = true_fluxes(src["id"], labels, np.asarray(truth[f"flux_{ch}"], float))
        clean = (purity >= PURITY_MIN) & inside
        strong = clean & (flux / err > SN_MIN)
        irac, _, irac_wcs = load_image(Path(inputs[f"irac_sci_{ch}"]))
        wht, _, _ = load_image(Path(inputs[f"irac_wht_{ch}"]))
        with fits.open(outputs[("irac_model", ch)]) as hdul:
            residual = np.asarray(hdul["RESIDUAL"].data, float)
        irac_scale = pixscale_arcsec(irac_wcs)
        grid = patch_grid(irac.shape, irac_scale, patch_arcmin=params["patch_arcmin"],
                          overlap_arcmin=params["patch_overlap"], border_arcsec=params["border_arcsec"])
        py, px = np.indices(irac.shape)
        owner = assign_sources(px.ravel(), py.ravel(), grid).reshape(irac.shape)
        bright_patches = np.unique(patch[bright > 0])
        quiet = ~np.isin(owner, bright_patches)
        geometry = stage.compute.IracGeometry.from_wcs(hst_wcs, irac_wcs)
        hx, hy = geometry.irac_to_hst(px.ravel(), py.ravel())
        interior = inside_coverage(hx, hy, weight, RESIDUAL_EDGE_ARCSEC / scale).reshape(irac.shape)
        with fits.open(outputs[("irac_model", ch)]) as hdul:
            source_sn = (np.asarray(hdul["MODEL"].data, float) - np.asarray(hdul["BACKGROUND"].data, float)) \
                * np.sqrt(np.clip(wht, 0, None))
        xi, yi = geometry.hst_to_irac(src["x"], src["y"])
        psf = stage.load_irac_psf(stage.config.shared_path("psf", f"irac_{ch}_warm_psf.fits"))
        aper, aper_err = aperture_fluxes(irac, wht, xi, yi, psf, irac_scale, stage.IRAC_PSF_SCALE)
        out[ch] = {
            "n_sources": n, "n_measured": int(np.isfinite(flux).sum()), "n_clean": int(clean.sum()),
            "n_bright_flagged": int((bright > 0).sum()),
            "model": flux_accuracy(flux, err, true, strong),
            "model_neighbour": flux_accuracy(flux, err, true, strong & neighbour),
            "model_hst_total": flux_accuracy(flux * to_total, err * to_total, true, strong),
            "model_by_sn": {label: flux_accuracy(flux, err, true, strong & (flux / err >= lo) & (flux / err < hi))
                            for label, lo, hi in SN_BINS},
            "aperture": flux_accuracy(aper, aper_err, true, strong),
            "aperture_neighbour": flux_accuracy(aper, aper_err, true, strong & neighbour),
            "residual_ratio": residual_noise_ratio(residual, wht, quiet),
            "residual_ratio_interior": residual_noise_ratio(residual, wht, quiet & interior),
            "residual_ratio_by_sn": {label: residual_noise_ratio(residual, wht, quiet & interior & sel)
                                     for label, sel in (("<1", source_sn < 1),
                                                        ("1-10", (source_sn >= 1) & (source_sn < 10)),
                                                        (">10", source_sn >= 10))},
            "n_patches": len(grid.boxes), "n_bright_patches": int(len(bright_patches)),
        }
    return out


def run_irac_process(url: str, field: str, overrides: list[str]) -> tuple[float, float, float, int]:
    """`alcsdb run irac` in a child process: (wall s, CPU s of the child and its workers, peak resident
    memory MB of that process tree sampled every 0.1 s, run id). The child's own rusage maximum
    cannot be used: Linux carries the forking parent's high-water mark (this script, after the
    mosaic stage) over into the child."""
    import psutil

    cmd = [sys.executable, "-m", "alcsdb", "--db", url, "run", "irac", "--field", field, "--force"]
    for item in overrides:
        cmd += ["--param", item]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watched = psutil.Process(proc.pid)
    peak = 0.0
    while proc.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree) / 2 ** 20)
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"alcsdb run irac failed:\n{output}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu, peak, _run_id(url)


def _run_id(url: str) -> int:
    from sqlalchemy import text

    from alcsdb import db

    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT max(run_id) FROM run WHERE stage = 'irac' AND status = 'succeeded'")
                                ).scalar_one()
    finally:
        engine.dispose()


def _print_accuracy(label: str, acc: Accuracy) -> None:
    print(f"  {label:<22} {acc.n:>5} {100 * acc.median_rel:>+9.2f}% {acc.pull_nmad:>9.2f} {acc.pull_std:>9.2f} "
          f"{100 * acc.frac_beyond_5sigma:>8.1f}%")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--size-arcmin", type=float, default=2.0, help="side of the simulated field (default 2)")
    p.add_argument("--seed", type=int, default=1, help="mock seed (default 1)")
    p.add_argument("--field", default="j001408m3023", help="field simulated (its centre and redshift)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="folder for the mock and the database (default /tmp/alcsdb-irac-bench-SIZE-SEED); "
                        "an existing mock there is reused")
    p.add_argument("--n-proc", type=int, nargs="+", default=[1],
                   help="run the irac stage once per value (processes for the patches); fluxes must agree")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="extra irac stage parameter (repeatable)")
    p.add_argument("--schema", default=None,
                   help="database schema to use (created if missing); upstream stages already run there with "
                        "the same inputs are skipped, so repeated irac runs skip the mosaic (implies --keep)")
    p.add_argument("--keep", action="store_true", help="keep the database schema")
    args = p.parse_args(argv)
    work = args.workdir or Path(f"/tmp/alcsdb-irac-bench-{args.size_arcmin:g}-{args.seed}")
    work.mkdir(parents=True, exist_ok=True)
    os.environ["ALCSDB_HOME"] = str(work / "home")

    from sqlalchemy import text

    from alcsdb import db
    from pipeline.mock import simulate_field
    from pipeline.runner import run_stage

    mock_dir = work / "mock"
    t0 = time.perf_counter()
    if not (mock_dir / "mock.json").exists():
        simulate_field(mock_dir, field=args.field, size_arcmin=args.size_arcmin, seed=args.seed)
    t_mock = time.perf_counter() - t0
    truth = Table.read(mock_dir / "truth.fits", "SOURCES")
    with db.scratch_schema(db.embedded_url(), "bench", name=args.schema, keep=args.keep) as url:
        if args.keep or args.schema:
            print(f"schema kept: {db.schema_of(url)}", flush=True)
        engine = db.make_engine(url)
        try:
            times = {"mock": t_mock}
            for stage in ("mosaic", "detect", "photometry"):
                t0 = time.perf_counter()
                run_stage(engine, stage, args.field, input_dir=mock_dir if stage == "mosaic" else None)
                times[stage] = time.perf_counter() - t0
            runs = []
            for n_proc in args.n_proc:
                runs.append((n_proc, *run_irac_process(url, args.field, [f"n_proc={n_proc}", *args.param])))
            scores = evaluate(engine, args.field, truth, runs[0][-1])
            with engine.connect() as conn:
                fluxes = [conn.execute(text("SELECT source_id, channel, flux FROM irac_flux WHERE run_id = :r "
                                            "ORDER BY source_id, channel"), {"r": r[-1]}).all() for r in runs]
        finally:
            engine.dispose()

    print(f"\nIRAC stage accuracy on a {args.size_arcmin:g}' mock (seed {args.seed}); S/N > {SN_MIN:g}, clean "
          f"detections (purity >= {PURITY_MIN:g}, >= {EDGE_ARCSEC:g}\" inside the HST coverage); neighbour = "
          f"detection within {NEIGHBOUR_ARCSEC:g}\"")
    for ch, s in scores.items():
        print(f"\n{ch}: {s['n_sources']} sources, {s['n_measured']} measured, {s['n_clean']} clean, "
              f"{s['n_bright_flagged']} bright-flagged, {s['n_patches']} patches ({s['n_bright_patches']} with "
              f"bright sources)")
        print(f"  {'sample':<22} {'n':>5} {'med(d/true)':>10} {'pull NMAD':>9} {'pull std':>9} {'>5 sig':>9}")
        _print_accuracy("model", s["model"])
        _print_accuracy("model, neighbour<2\"", s["model_neighbour"])
        _print_accuracy("model x HST total", s["model_hst_total"])
        for label, acc in s["model_by_sn"].items():
            _print_accuracy(f"model, S/N {label}", acc)
        _print_accuracy("aperture 3\" (baseline)", s["aperture"])
        _print_accuracy("aperture, neighbour", s["aperture_neighbour"])
        by_sn = ", ".join(f"{k} {v:.2f}" for k, v in s["residual_ratio_by_sn"].items())
        print(f"  residual rms / noise (fitted pixels, patches without bright sources): {s['residual_ratio']:.3f}; "
              f">= {RESIDUAL_EDGE_ARCSEC:g}\" inside the HST coverage: {s['residual_ratio_interior']:.3f} "
              f"(by source-model S/N per pixel: {by_sn})")
    print("\nstage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    print(f"{'irac n_proc':>12} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'run':>5}")
    for n_proc, wall, cpu, rss, run_id in runs:
        print(f"{n_proc:>12} {wall:>8.1f} {cpu:>8.1f} {rss:>8.0f} {run_id:>5}")
    same = all(np.allclose(np.array([r[2] for r in f], float), np.array([r[2] for r in fluxes[0]], float),
                           equal_nan=True) for f in fluxes[1:])
    print(f"fluxes identical across n_proc: {same}")
    print(json.dumps(scores, default=lambda v: v.__dict__ if isinstance(v, Accuracy) else float(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
