"""Photo-z accuracy on a simulated field (issue 7, item 6) and photo-z speed (item 7).

Accuracy (default): runs the pipeline on a mock field (`pipeline.mock`, reused when the work
folder has it) as `alcsdb run STAGE` child processes on a private embedded PostgreSQL schema,
or reuses a kept schema (`--schema`, e.g. from `benchmarks/hst_accuracy.py --keep`, with
`--stages` naming what to (re)run there). The mock's truth table is loaded as an external
catalog, so the photoz run's QA product (`photoz_qa`) is z_phot against the true redshift.
Detections are matched to the nearest truth source within `--match-arcsec`; galaxies (truth
z > 0) with F160W S/N > `--min-sn` (the 0.7" total flux over its error) are scored:
N, sigma_NMAD = 1.48 median(|dz - median(dz)| / (1 + z)), outliers |dz| / (1 + z) > 0.15,
bias = median(dz / (1 + z)), also split by redshift, magnitude, IRAC coverage and blending (clean: one truth
source carries >= 90% of the detection segment's true F160W light). Baselines, same run, same
sources and code (`pipeline.photoz.run_photoz`): the sources' TRUE fluxes with the measured
errors (the limit of templates, filters and method), the true fluxes plus noise of the
measured errors (ideal photometry at this depth), the measured HST fluxes without IRAC, and
with ideal IRAC fluxes. Time per 1000 sources from the run's timings.

    python benchmarks/mock_photoz.py --workdir /tmp/hst2 --schema bench_fb138ac4 --stages photoz

Speed (`--speed N`): N synthetic sources (`pipeline.photoz_synthetic`: the mock's SEDs,
depths and number counts, 8 filters) fitted with the release settings: the template grid
build (n_proc 2), then all N with n_proc 2 and, as the same-run baseline, a subset with
n_proc 1; time per 1000 sources for the fit and the zout table, with the load average.

    python benchmarks/mock_photoz.py --speed 30000
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.hst_accuracy import latest_run  # noqa: E402

FIELD = "j001408m3023"
MATCH_ARCSEC = 0.3
MIN_SN = 10.0
TRUTH_CATALOG = "mock_truth"
STAGES = ("mosaic", "detect", "photometry", "irac", "photoz")
Z_BINS = (0.0, 1.0, 2.0, 3.0, 4.0, 8.0)
MAG_BINS = (16.0, 22.0, 23.0, 24.0, 25.0, 26.0, 30.0)
PURITY_MIN = 0.9  # a "clean" detection: one truth source carries >= 90% of its segment's true F160W light


# ----------------------------------------------------------------------------- matching and scores
def match_truth(ra: np.ndarray, dec: np.ndarray, truth: Table, radius_arcsec: float) -> np.ndarray:
    """Row of the nearest truth source within ``radius_arcsec`` of each detection, -1 if none
    (tangent-plane distances about the detections' mean position)."""
    ra0, dec0 = float(np.mean(ra)), float(np.mean(dec))
    cosd = np.cos(np.radians(dec0))

    def plane(r, d):
        return np.c_[(np.asarray(r) - ra0) * cosd * 3600.0, (np.asarray(d) - dec0) * 3600.0]

    dist, idx = cKDTree(plane(truth["ra"], truth["dec"])).query(plane(ra, dec), distance_upper_bound=radius_arcsec)
    return np.where(np.isfinite(dist), idx, -1)


def scores(z_phot: np.ndarray, z_true: np.ndarray) -> dict:
    from pipeline.photoz import metrics

    out = metrics(z_phot, z_true)
    out["n_at_zmin"] = int(np.sum(z_phot[z_true > 0] == -1))
    return out


def _line(label: str, s: dict) -> str:
    if s["N"] == 0:
        return f"  {label:<34} {0:>5}"
    return (f"  {label:<34} {s['N']:>5} {s['sigma_nmad']:>8.4f} {100 * s['outlier_frac']:>8.1f}% "
            f"{s['bias']:>+8.4f} {s['n_at_zmin']:>6}")


# ----------------------------------------------------------------------------- accuracy on a mock
def run_stage_process(url: str, stage: str, field: str, input_dir: Path | None, extra: list[str]) -> tuple[float, float]:
    """`alcsdb run STAGE --force` as a child process: (wall s, the child's CPU s)."""
    import resource
    import subprocess

    cmd = [sys.executable, "-m", "alcsdb", "--db", url, "run", stage, "--field", field, "--force", *extra]
    cmd += ["--input", str(input_dir)] if input_dir is not None else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"alcsdb run {stage} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def stage_params(pairs: list[str], stage: str) -> list[str]:
    """The ``KEY=VALUE`` pairs of ``stage`` among ``--param`` values: ``STAGE.KEY=VALUE`` names its
    stage (e.g. ``photometry.psf_match=f160w``); a plain ``KEY=VALUE`` is a photoz parameter."""
    out = []
    for pair in pairs:
        key = pair.split("=", 1)[0]
        prefix, _, rest = key.partition(".")
        if rest and prefix in STAGES:
            if prefix == stage:
                out.append(pair.split(".", 1)[1])
        elif stage == "photoz":
            out.append(pair)
    return out


def ensure_truth_catalog(url: str, mock_dir: Path, workdir: Path) -> None:
    """Load the mock's truth (id, ra, dec, z, kind, mag) as the external catalog TRUTH_CATALOG."""
    import subprocess

    from sqlalchemy import text

    from alcsdb import db

    engine = db.make_engine(url)
    with engine.connect() as conn:
        have = conn.execute(text("SELECT 1 FROM external_catalog WHERE name = :n"), {"n": TRUTH_CATALOG}).first()
    engine.dispose()
    if have:
        return
    truth = Table.read(mock_dir / "truth.fits", "SOURCES")
    path = workdir / "truth_z.fits"
    Table({"id": truth["id"], "ra": truth["ra"], "dec": truth["dec"], "z": truth["z"],
           "mag_f160w": truth["mag_f160w"]}).write(path, overwrite=True)
    subprocess.run([sys.executable, "-m", "alcsdb", "--db", url, "external", "load", str(path), "--name",
                    TRUTH_CATALOG, "--z-spec", "z"], check=True, capture_output=True, text=True)


def measured(engine, field: str) -> dict:
    """The newest photoz run of ``field``: its zout rows with the sources' positions and the fluxes
    it fitted (re-read through the stage's reader), its parameters and timings."""
    from sqlalchemy import text

    from alcsdb.copyload import fetch_columns
    from pipeline.stages.photoz import _fluxes

    with engine.connect() as conn:
        run = latest_run(conn, field, "photoz")
        params = conn.execute(text("SELECT params FROM run WHERE run_id = :r"), {"r": run["run_id"]}).scalar_one()
        meta = conn.execute(text("SELECT meta FROM product WHERE run_id = :r AND kind = 'photoz_zgrid'"),
                            {"r": run["run_id"]}).scalar_one()
        qa = conn.execute(text("SELECT path FROM product WHERE run_id = :r AND kind = 'photoz_qa'"),
                          {"r": run["run_id"]}).scalar()
        zout = fetch_columns(conn, [("source_id", "source_id", "i8"), ("z_phot", "z_phot", "f8")],
                             "FROM zout WHERE run_id = :r ORDER BY source_id", {"r": run["run_id"]})
        src, flux, err, numbers = _fluxes(conn, field, params)
    order = np.argsort(src["source_id"])
    assert np.array_equal(src["source_id"][order], zout["source_id"])
    return {"run": run, "params": params, "meta": meta, "qa": qa, "z_phot": zout["z_phot"],
            "source_id": zout["source_id"],
            "ra": src["ra"][order], "dec": src["dec"][order], "flux": flux[order], "err": err[order],
            "numbers": numbers}


def segment_purity_of(engine, m: dict, truth: Table) -> np.ndarray:
    """Per scored detection (``m``'s order): the share of its segment's true F160W light that the
    largest truth contributor carries (``benchmarks.irac_accuracy.segment_purity`` on the
    detection run's segmentation map); NaN where no truth light falls."""
    from sqlalchemy import text

    from benchmarks.irac_accuracy import segment_purity
    from pipeline.images import load_image

    with engine.connect() as conn:
        det = conn.execute(text("SELECT s.run_id FROM aperture_flux a JOIN source s USING (source_id) "
                                "WHERE a.run_id = :p LIMIT 1"), {"p": m["params"]["photometry_run"]}).scalar_one()
        seg_path = conn.execute(text("SELECT path FROM product WHERE run_id = :r AND kind = 'seg'"),
                                {"r": det}).scalar_one()
        seg_id = dict(conn.execute(text("SELECT source_id, id FROM source WHERE run_id = :r"), {"r": det}).all())
    seg, _, wcs = load_image(Path(seg_path))
    purity = segment_purity(truth, wcs, seg.astype(np.int64))
    ids = np.array([seg_id[int(s)] for s in m["source_id"]], dtype=np.int64)
    return purity[ids]


def baselines(m: dict, truth: Table, rows: np.ndarray, use: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """z_phot of the scored sources, same settings and cached template grid, from: their true
    fluxes (noise-free, the measured errors as uncertainties: the templates/filters/method limit);
    the true fluxes plus Gaussian noise of the measured errors (ideal photometry at this depth);
    the measured HST fluxes without IRAC; the measured HST fluxes with ideal IRAC fluxes, as they
    are and scaled by each source's measured / true F160W total (IRAC on the HST totals' scale)."""
    from pipeline import photoz
    from pipeline.sim_bands import BANDS
    from pipeline.stages.photoz import _load_grid, grid_cache_path, photoz_params

    params = photoz_params({**m["params"], "n_proc": 2})
    by_number = {b.eazy_id: name for name, b in BANDS.items()}
    true = np.array([np.asarray(truth[f"flux_{by_number[n]}"], float)[rows[use]] for n in m["numbers"]]).T
    flux, err = m["flux"][use], m["err"][use]
    true = np.where(np.isfinite(err), true, np.nan)
    ideal = true + np.random.default_rng(seed).normal(size=err.shape) * np.nan_to_num(err)
    irac = np.isin(m["numbers"], (18, 19))
    grid = _load_grid(grid_cache_path(params, m["numbers"]))
    ids = np.arange(int(use.sum()))
    # ideal IRAC fluxes on the HST totals' scale: times the measured / true F160W total, so the
    # HST-to-IRAC step of the total-flux definitions (Kron-based HST, model-normalised IRAC) is gone
    f160 = m["numbers"].index(205)
    with np.errstate(invalid="ignore", divide="ignore"):
        hst_scale = (flux[:, f160] / true[:, f160])[:, None]
    cases = {"true fluxes, noise-free": true,
             "true fluxes + noise of the errors": ideal,
             "measured HST, no IRAC": np.where(irac, np.nan, flux),
             "measured HST, IRAC true + noise": np.where(irac, ideal, flux),
             "measured HST, IRAC (true + noise) x HST F160W scale": np.where(irac, ideal * hst_scale, flux)}
    out = {}
    for label, values in cases.items():
        result = photoz.run_photoz(values, err, m["numbers"], ids, params=params, tempfilt=grid)
        grid = result.tempfilt
        out[label] = np.asarray(result.zout["z_phot"], float)
    return out


def accuracy(args) -> int:
    from alcsdb import db
    from pipeline.mock import _field_defaults, simulate_field

    work = args.workdir or Path(f"/tmp/alcsdb-photoz-bench-{args.size_arcmin:g}-{args.seed}")
    work.mkdir(parents=True, exist_ok=True)
    os.environ["ALCSDB_HOME"] = str(work / "home")
    mock_dir = work / "mock"
    if not (mock_dir / "mock.json").exists():
        simulate_field(mock_dir, field=args.field, size_arcmin=args.size_arcmin, seed=args.seed,
                       **_field_defaults(args.field))
    stages = args.stages or (["photoz"] if args.schema else list(STAGES))
    with db.scratch_schema(db.embedded_url(), "bench", name=args.schema, keep=args.keep) as url:
        if args.keep or args.schema:
            print(f"schema kept: {db.schema_of(url)}", flush=True)
        ensure_truth_catalog(url, mock_dir, work)
        costs = {}
        for stage in stages:
            extra = [x for p in stage_params(args.param, stage) for x in ("--param", p)]
            if stage == "photoz":
                extra = ["--param", f"zspec_catalog={TRUTH_CATALOG}", "--param", f"zspec_radius_arcsec={args.match_arcsec}",
                         "--param", f"n_proc={args.n_proc}", *extra]
            costs[stage] = run_stage_process(url, stage, args.field, mock_dir if stage == "mosaic" else None, extra)
        truth = Table.read(mock_dir / "truth.fits", "SOURCES")
        engine = db.make_engine(url)
        m = measured(engine, args.field)
        purity = segment_purity_of(engine, m, truth)
        engine.dispose()

    rows = match_truth(m["ra"], m["dec"], truth, args.match_arcsec)
    matched = rows >= 0
    z_true = np.where(matched, np.asarray(truth["z"], float)[np.maximum(rows, 0)], np.nan)
    f160 = m["numbers"].index(205)
    with np.errstate(invalid="ignore", divide="ignore"):
        sn = m["flux"][:, f160] / m["err"][:, f160]
        use = matched & (z_true > 0) & (sn > args.min_sn)
    n_irac = np.isfinite(m["flux"][:, [k for k, n in enumerate(m["numbers"]) if n in (18, 19)]]).all(axis=1) \
        if 18 in m["numbers"] else np.zeros(len(sn), bool)
    mag = np.asarray(truth["mag_f160w"], float)[np.maximum(rows, 0)]

    p, t = m["params"], m["meta"]["timings"]
    n_all = len(m["z_phot"])
    print(f"\nphoto-z on a {args.size_arcmin:g}' mock (seed {args.seed}), photoz run {m['run']['run_id']} "
          f"(photometry run {p['photometry_run']}, irac run {p['irac_run']}), aperture index {p['aperture_index']}, "
          f"filters {m['numbers']}")
    print(f"{n_all} detections, {matched.sum()} matched to truth within {args.match_arcsec}\", "
          f"{int(np.sum(matched & (z_true > 0)))} of them galaxies; F160W S/N > {args.min_sn:g}: {int(use.sum())} "
          f"({int(np.sum(use & n_irac))} with both IRAC fluxes)")
    print(f"\n  {'sample':<34} {'N':>5} {'s_NMAD':>8} {'outliers':>9} {'bias':>8} {'z=-1':>6}")
    print(_line("pipeline (targets <= 0.04, < 10%)", scores(m["z_phot"][use], z_true[use])))
    for lo, hi in itertools.pairwise(Z_BINS):
        sel = use & (z_true >= lo) & (z_true < hi)
        print(_line(f"  true z {lo:g}-{hi:g}", scores(m["z_phot"][sel], z_true[sel])))
    for lo, hi in itertools.pairwise(MAG_BINS):
        sel = use & (mag >= lo) & (mag < hi)
        print(_line(f"  F160W {lo:g}-{hi:g}", scores(m["z_phot"][sel], z_true[sel])))
    print(_line("  with both IRAC fluxes", scores(m["z_phot"][use & n_irac], z_true[use & n_irac])))
    print(_line("  without (one or both missing)", scores(m["z_phot"][use & ~n_irac], z_true[use & ~n_irac])))
    with np.errstate(invalid="ignore"):
        clean = purity >= PURITY_MIN
    print(_line(f"  clean (purity >= {PURITY_MIN:g})", scores(m["z_phot"][use & clean], z_true[use & clean])))
    print(_line("  blended (purity < 0.9)", scores(m["z_phot"][use & ~clean], z_true[use & ~clean])))
    if not args.no_baselines and use.any():
        for label, z in baselines(m, truth, rows, use, args.seed).items():
            print(_line(f"baseline: {label}", scores(z, z_true[use])))
    if m["qa"]:
        print(f"\nQA figure (z_phot vs truth, all matched galaxies): {m['qa']}")
    fit = t["fit"] + t["zout"]
    print(f"\nphotoz run: {m['run']['wall_time_s']:.1f} s wall, {n_all} sources; template grid "
          f"{t['grid']:.1f} s ({'built' if t['grid'] else 'cached'}), fit {t['fit']:.1f} s, zout {t['zout']:.1f} s: "
          f"{1000 * fit / n_all:.1f} s per 1000 sources (fit + zout, n_proc {p['n_proc']}); load average "
          f"{os.getloadavg()[0]:.2f}")
    for stage, (wall, cpu) in costs.items():
        print(f"  alcsdb run {stage}: {wall:.1f} s wall, {cpu:.1f} s CPU")
    return 0


# ----------------------------------------------------------------------------- speed
def speed(args) -> int:
    from pipeline import photoz
    from pipeline.photoz_synthetic import synthetic_catalog
    from pipeline.sim_bands import BANDS

    work = args.workdir or Path("/tmp/alcsdb-photoz-speed")
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"synthetic_{args.speed}_{args.seed}.fits"
    if path.exists():
        cat = Table.read(path)
    else:
        t0 = time.perf_counter()
        cat = synthetic_catalog(args.speed, seed=args.seed)
        cat.write(path)
        print(f"synthetic catalog of {args.speed} sources: {time.perf_counter() - t0:.0f} s ({path})")
    bands = list(BANDS)
    numbers = [BANDS[b].eazy_id for b in bands]
    flux = np.array([cat[f"flux_{b}"] for b in bands], float).T
    err = np.array([cat[f"err_{b}"] for b in bands], float).T
    ids = np.asarray(cat["id"])
    load = [os.getloadavg()[0]]

    def timed(n: int, n_proc: int, grid=None):
        params = photoz.PhotozParams(mw_ebv=0.013, n_proc=n_proc)
        t0 = time.perf_counter()
        r = photoz.run_photoz(flux[:n], err[:n], numbers, ids[:n], params=params, tempfilt=grid)
        load.append(os.getloadavg()[0])
        return r, time.perf_counter() - t0

    build, _ = timed(10, 2)
    grid = build.tempfilt
    n_sub = min(args.speed, args.baseline_n)
    sub, _ = timed(n_sub, 1, grid)
    full, wall = timed(args.speed, 2, grid)
    print(f"\nphoto-z speed, {args.speed} synthetic sources, {len(numbers)} filters, release settings "
          f"(grid {len(full.zgrid)} redshifts, {full.coeffs.shape[1]} templates); {os.cpu_count()} cores; "
          f"load average {min(load):.2f}-{max(load):.2f} during the runs")
    print(f"  template grid build (n_proc 2, once per filters/E(B-V), then cached): {build.timings['grid']:.1f} s")
    for label, r, n in ((f"{n_sub} sources, n_proc 1 (baseline)", sub, n_sub), (f"{args.speed} sources, n_proc 2", full, args.speed)):
        t = r.timings
        print(f"  {label:<34} fit {t['fit']:7.1f} s  zout {t['zout']:7.1f} s  -> "
              f"{1000 * (t['fit'] + t['zout']) / n:6.2f} s per 1000 sources")
    ratio = ((sub.timings["fit"] + sub.timings["zout"]) / n_sub) / ((full.timings["fit"] + full.timings["zout"]) / args.speed)
    print(f"  n_proc 2 / n_proc 1 speed-up per source: {ratio:.2f}x; {args.speed} sources in {wall:.0f} s wall "
          f"(plus the grid when not cached)")
    good = np.asarray(cat["flux_f160w"] / cat["err_f160w"]) > MIN_SN
    s = scores(np.asarray(full.zout["z_phot"], float)[good], np.asarray(cat["z"], float)[good])
    print(f"  (accuracy, F160W S/N > {MIN_SN:g}, point-source errors: N {s['N']}, sigma_NMAD {s['sigma_nmad']:.4f}, "
          f"outliers {100 * s['outlier_frac']:.1f}%)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--size-arcmin", type=float, default=2.0, help="side of the simulated field (default 2)")
    p.add_argument("--seed", type=int, default=1, help="mock / synthetic catalog seed (default 1)")
    p.add_argument("--field", default=FIELD, help="field simulated (its centre, redshift and E(B-V))")
    p.add_argument("--workdir", type=Path, default=None, help="folder of the mock and its database (reused)")
    p.add_argument("--schema", default=None, help="reuse this kept schema (and keep it)")
    p.add_argument("--keep", action="store_true", help="keep the database schema (its name is printed)")
    p.add_argument("--stages", nargs="*", choices=STAGES, default=None,
                   help="stages to (re)run (default: all five; with --schema only photoz)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="extra photoz parameter; STAGE.KEY=VALUE for another stage (photometry.psf_match=f160w)")
    p.add_argument("--n-proc", type=int, default=2, help="photoz processes (default 2)")
    p.add_argument("--match-arcsec", type=float, default=MATCH_ARCSEC, help=f"truth match radius ({MATCH_ARCSEC})")
    p.add_argument("--min-sn", type=float, default=MIN_SN, help=f"F160W S/N cut ({MIN_SN:g})")
    p.add_argument("--no-baselines", action="store_true", help="skip the true-flux and HST-only fits")
    p.add_argument("--speed", type=int, default=None, metavar="N", help="speed mode: N synthetic sources")
    p.add_argument("--baseline-n", type=int, default=3000, help="speed mode: sources of the n_proc 1 baseline")
    args = p.parse_args(argv)
    return speed(args) if args.speed else accuracy(args)


if __name__ == "__main__":
    sys.exit(main())
