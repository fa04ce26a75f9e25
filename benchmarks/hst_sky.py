"""HST per-visit sky estimators on a simulated field, against the truth (issue 10, background).

Runs the mosaic stage's own HST steps (pedestals, visits, alignment, final drizzle of each
visit: ``pipeline.mosaic.build_mosaics`` up to ``_drizzle_hst``, which this script wraps to keep
each visit's drizzled image instead of subtracting the stage's background) on a mock folder, then
combines the visits of each filter after subtracting each candidate sky and prints the empty-sky
level of the combined mosaic in units of the pixel noise, as ``benchmarks/alignment.py`` scores
the stage's products (``truth_empty``, ``sky_cells``: the mosaic minus the rendered truth over the
pixels where the truth light is below 0.05 sigma; target below 0.1 in absolute value):

- ``none``: no per-visit sky (the exposures' pedestals only);
- ``no models``: ``pipeline.background.smooth_background`` on the visit (the stage's estimator
  until session 8; reproduces alignment.py's figures of then);
- ``stage``: the same on the visit minus the models of the filter's sources brighter than AB 22
  fitted on the stack of its visits (``pipeline.bright_light``, as the stage since session 8);
  ``bright models, rendered over 40"``: the models extrapolated beyond their fitted stamps;
- ``truth-subtracted``: the estimator on the visit minus the truth light of every source, or of
  the sources brighter than F160W = 22 (what a perfect model would give);
- ``low tail``: per mesh ``2 P(15.87%) - P(2.28%)`` of the unmasked pixels;
- ``loo``: the same sep sky, with the sources found on the other visits of the filter
  (leave-one-out: noise independent of the visit's) as the mask, dilated by 0.2", 0.5" or 1";
- ``photutils``: ``Background2D`` (32" boxes, filter 3, sigma-clipped median, meshes up to 90%
  masked allowed) with the stage's mask, dilated 0.2" or 1";

and, for the combined mosaic with pedestals only, where the light is: per distance from the
stage's source mask, the median image level, the mean truth light and the median of image minus
truth (the true sky), all over the pixel noise.

    python benchmarks/hst_sky.py --mock W/mock [--filters f105w f125w f160w f814w] [--estimators NAME ...]

``W/mock`` is a mock folder as ``alcsdb mock`` writes it (``benchmarks/mock_photoz.py --workdir W``
and ``benchmarks/alignment.py --workdir W`` make one).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


class _Captured(Exception):
    pass


def drizzled_visits(mock_dir: Path, grid, params) -> list[dict]:
    """Each HST visit drizzled by the stage's code on its part of the grid, no sky removed:
    dicts with ``filter``, ``layer``, ``slices``, ``mjd``, ``sci``, ``wht``."""
    import pipeline.mosaic as pm

    visits: list[dict] = []
    original = pm._drizzle_hst

    def keep(states, grid_, params_, progress):
        for s in states:
            full = grid_.wcs(s.visit.layer)
            slices = pm.footprint_slices(full, s.wcs)
            if slices is None:
                continue
            chips = [replace(c, wcs=w) for c, w in zip(s.chips, s.wcs)]
            sci, wht = pm.drizzle(chips, pm.cutout_wcs(full, slices), pixfrac=params_.pixfrac_hst,
                                  kernel=params_.kernel)
            visits.append({"filter": s.visit.filter, "layer": s.visit.layer, "slices": slices,
                           "mjd": s.visit.mjd, "sci": sci, "wht": wht})
            progress(f"drizzled {s.visit.name}")
        raise _Captured

    pm._drizzle_hst = keep
    try:
        pm.build_mosaics(mock_dir, grid, params, lambda m: print(f"  {m}", flush=True),
                         output_dir=Path(os.environ.get("TMPDIR", "/tmp")) / "alcsdb_hst_sky")
    except _Captured:
        pass
    finally:
        pm._drizzle_hst = original
    return visits


def combine(visits: list[dict], shape, skies=None, skip: int | None = None):
    num, den = np.zeros(shape), np.zeros(shape)
    for k, v in enumerate(visits):
        if k == skip:
            continue
        sky = 0.0 if skies is None else skies[k]
        num[v["slices"]] += v["wht"] * (v["sci"] - sky)
        den[v["slices"]] += v["wht"]
    return np.divide(num, den, out=np.zeros(shape), where=den > 0).astype(np.float32), den.astype(np.float32)


def _data(sci, wht):
    from pipeline.photometry import error_and_mask

    err, nocov = error_and_mask(sci, wht)
    return np.ascontiguousarray(np.where(nocov, 0.0, sci), dtype=np.float32), err, nocov


def stage_mask(sci, wht, scale, bp):
    from pipeline import background as B

    data, err, nocov = _data(sci, wht)
    return B._sources(data, err, nocov, scale, bp)


def sep_sky(sci, wht, scale, mask, bp):
    from pipeline import background as B

    data, _, nocov = _data(sci, wht)
    back = B._masked_sky(data, nocov | mask, int(round(bp.back_size_arcsec / scale)), bp.filter_size)
    return np.where(nocov, 0.0, back)


def photutils_sky(sci, wht, scale, mask, bp):
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, MedianBackground

    data, _, nocov = _data(sci, wht)
    box = int(round(bp.back_size_arcsec / scale))
    bk = Background2D(data, box, filter_size=bp.filter_size, mask=mask & ~nocov, coverage_mask=nocov, fill_value=0.0,
                      exclude_percentile=90.0, sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
                      bkg_estimator=MedianBackground())
    return np.where(nocov, 0.0, bk.background)


def quantile_sky(sci, wht, scale, mask, bp, q_low=0.0228, q_mid=0.1587):
    """Sky per ``back_size_arcsec`` mesh from the low tail of the unmasked pixels: for noise
    alone the ``q_mid`` and ``q_low`` quantiles lie 1 and 2 sigma below the sky, so ``sky = 2
    P(q_mid) - P(q_low)``; positive source light outside the mask moves the low tail less than
    the median. Meshes median-filtered (``filter_size``) and interpolated bilinearly."""
    from scipy import ndimage

    data, _, nocov = _data(sci, wht)
    use = ~(nocov | mask)
    box = int(round(bp.back_size_arcsec / scale))
    ny, nx = data.shape
    my, mx = max(1, int(np.ceil(ny / box))), max(1, int(np.ceil(nx / box)))
    grid = np.full((my, mx), np.nan)
    for j in range(my):
        for i in range(mx):
            sl = np.s_[j * box:(j + 1) * box, i * box:(i + 1) * box]
            vals = data[sl][use[sl]]
            if vals.size >= 0.1 * box * box:
                lo, mid = np.quantile(vals, [q_low, q_mid])
                grid[j, i] = 2 * mid - lo
    if np.all(np.isnan(grid)):
        return np.zeros_like(data)
    fill = np.nanmedian(grid)
    grid = np.where(np.isnan(grid), fill, grid)
    if bp.filter_size > 1 and min(grid.shape) >= bp.filter_size:
        grid = ndimage.median_filter(grid, size=bp.filter_size, mode="nearest")
    yy = (np.arange(ny) + 0.5) / box - 0.5
    xx = (np.arange(nx) + 0.5) / box - 0.5
    back = ndimage.map_coordinates(grid, np.meshgrid(yy, xx, indexing="ij"), order=1, mode="nearest")
    return np.where(nocov, 0.0, back)


def bright_models(bp, mag_limit=22.0, **kw):
    """The stage's estimator on each visit minus PSF-convolved Sersic models of the filter's
    sources brighter than ``mag_limit`` (``pipeline.bright_light``), fitted on the stack of the
    filter's visits (pedestals only)."""
    from pipeline.background import smooth_background
    from pipeline.bright_light import bright_light_model
    from pipeline.sim_bands import BANDS, ujy_to_counts
    from pipeline.sim_psf import mosaic_psf

    cache = {}

    def sky(k, vs, shape, scale):
        key = id(vs[0])
        if vs[0]["layer"] not in bp.bright_model_layers:
            return smooth_background(vs[k]["sci"], vs[k]["wht"], pixscale=scale, params=bp)
        if key not in cache:
            stack, swht = combine(vs, shape)
            band = vs[0]["filter"]
            t0 = time.perf_counter()
            cache[key], fits_ = bright_light_model(stack, swht, mosaic_psf(band, scale), pixscale=scale,
                                                   to_ujy=1.0 / float(ujy_to_counts(1.0, BANDS[band])),
                                                   mag_limit=mag_limit, **kw)
            print(f"    ({len(fits_)} bright sources modelled in {time.perf_counter() - t0:.0f} s)")
        v = vs[k]
        return smooth_background(v["sci"] - cache[key][v["slices"]], v["wht"], pixscale=scale, params=bp)
    return sky


ORACLE_MAG = 22.0
"""Sources brighter than this (F160W) make the partial truth-subtracted oracle."""


def oracle(light, bp):
    """The stage's estimator on each visit minus ``light`` (truth sources rendered on the filter
    grid): what a perfect model of that light, subtracted before the sky, would give."""
    from pipeline.background import smooth_background

    def sky(k, vs, shape, scale):
        v = vs[k]
        return smooth_background(v["sci"] - light[v["slices"]], v["wht"], pixscale=scale, params=bp)
    return sky


def estimators(bp):
    from pipeline.background import smooth_background

    def stage(k, vs, shape, scale):
        return smooth_background(vs[k]["sci"], vs[k]["wht"], pixscale=scale, params=bp)

    def loo(dilate):
        p = replace(bp, dilate_arcsec=dilate)

        def sky(k, vs, shape, scale):
            v = vs[k]
            if len(vs) < 2:
                return smooth_background(v["sci"], v["wht"], pixscale=scale, params=p)
            others, owht = combine(vs, shape, skip=k)
            mask = stage_mask(others, owht, scale, p)[v["slices"]]
            covered = (owht > 0)[v["slices"]]
            mask = np.where(covered, mask, stage_mask(v["sci"], v["wht"], scale, p))
            return sep_sky(v["sci"], v["wht"], scale, mask, p)
        return sky

    def masked(estimate, dilate):
        """``estimate(sci, wht, scale, mask, params)`` with the stage's source mask dilated by ``dilate``."""
        p = replace(bp, dilate_arcsec=dilate)

        def sky(k, vs, shape, scale):
            v = vs[k]
            return estimate(v["sci"], v["wht"], scale, stage_mask(v["sci"], v["wht"], scale, p), p)
        return sky

    return {"none": lambda k, vs, shape, scale: 0.0, "no models": stage, "stage": bright_models(bp),
            "bright models, rendered over 40\"": bright_models(bp, render_arcsec=40.0),
            "low tail 0.2\"": masked(quantile_sky, 0.2),
            "low tail 0.5\"": masked(quantile_sky, 0.5), "loo 0.2\"": loo(0.2), "loo 0.5\"": loo(0.5),
            "loo 1.0\"": loo(1.0), "photutils 0.2\"": masked(photutils_sky, 0.2),
            "photutils 1.0\"": masked(photutils_sky, 1.0)}


def main(argv: list[str] | None = None) -> int:
    import alignment as al
    from pipeline.background import BackgroundParams
    from pipeline.mock import render_truth
    from pipeline.mosaic import MosaicParams, release_grid
    from scipy import ndimage

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--mock", type=Path, required=True, help="mock folder (hst/, irac/, truth.fits, refcat.fits)")
    p.add_argument("--filters", nargs="+", default=["f105w", "f125w", "f160w", "f814w"])
    p.add_argument("--estimators", nargs="+", default=None, metavar="NAME",
                   help="only these sky estimators (default all; 'none' always runs)")
    args = p.parse_args(argv)
    info = args.mock / "mock.json"
    if not info.exists():
        raise SystemExit(f"{info} not found: --mock must be a folder written by `alcsdb mock`")
    m = json.loads(info.read_text())["parameters"]
    truth = Table.read(args.mock / "truth.fits", "SOURCES")
    grid = release_grid(float(m["ra"]), float(m["dec"]), float(m["size_arcmin"]))
    params = MosaicParams()
    bp: BackgroundParams = params.background
    t0 = time.perf_counter()
    visits = drizzled_visits(args.mock, grid, params)
    print(f"{len(visits)} visits drizzled in {time.perf_counter() - t0:.0f} s\n")
    print("empty-sky level of the combined mosaic / pixel noise (target |level| < 0.1); cell rms, worst cell")
    for filt in args.filters:
        vs = [v for v in visits if v["filter"] == filt]
        if not vs:
            continue
        layer = vs[0]["layer"]
        shape, wcs, scale = grid.shape(layer), grid.wcs(layer), grid.scale(layer)
        mjd = float(np.mean([v["mjd"] for v in vs]))
        model = render_truth(truth, filt, wcs, shape, mjd)
        print(f"{filt} ({len(vs)} visits)")
        oracles = {}
        if not args.estimators or any(n.startswith("truth-subtracted") for n in args.estimators):
            bright = np.asarray(truth["mag_f160w"], float) < ORACLE_MAG
            oracles = {"truth-subtracted, all": model,
                       f"truth-subtracted, < {ORACLE_MAG:g} mag": render_truth(truth[bright], filt, wcs, shape, mjd)}
        for name, sky in {**estimators(bp), **{n: oracle(light, bp) for n, light in oracles.items()}}.items():
            if args.estimators and name != "none" and name not in args.estimators:
                continue
            skies = [sky(k, vs, shape, scale) for k in range(len(vs))]
            sci, wht = combine(vs, shape, skies)
            covered = wht > 0
            residual = np.where(covered, sci - model, 0.0)
            sigma = float(1.4826 * np.median(np.abs(residual[covered] - np.median(residual[covered]))))
            empty = al.truth_empty(model, covered, sigma)
            cells = al.sky_cells(residual, empty, pixscale=scale)
            print(f"  {name:<16} level {np.mean(residual[empty]) / sigma:+.3f}   cells rms {cells.rms:.3f}, "
                  f"worst {cells.worst:.3f}")
            if name == "none":
                mask = stage_mask(sci, wht, scale, bp)
                dist = ndimage.distance_transform_edt(~mask) * scale
                print(f"    pixels outside the stage's mask ({100 * mask[covered].mean():.0f}% masked), by distance "
                      "from it: median image, mean truth light, median image - truth (the sky), / sigma")
                for lo, hi in ((0, 0.2), (0.2, 0.5), (0.5, 1), (1, 2), (2, 3), (3, 99)):
                    sel = covered & ~mask & (dist > lo) & (dist <= hi)
                    if sel.sum() >= 100:
                        print(f"      {lo:>3}-{hi:<2}\": {sel.sum():>7} px  {np.median(sci[sel]) / sigma:+.3f}  "
                              f"{np.mean(model[sel]) / sigma:+.3f}  {np.median((sci - model)[sel]) / sigma:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
