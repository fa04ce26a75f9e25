"""One realistic 2' x 2' IRAC patch: golfir's approach against ``pipeline.irac``, same run.

The patch: 240 x 240 IRAC pixels (0.5"), an HST grid of 1200 x 1200 (0.1") holding about 1000
exponential-profile sources with a segmentation map (``pipeline.irac_synthetic``), the real
golfir warm-mission IRAC PSF and the real F105W PSF of the shared data (0.06", resampled to
0.1"), their matching kernel (300 x 300 on the HST grid, the full 30" PSF as golfir uses it),
an IRAC image rendered from the scene plus noise and a sloped sky; 16 Hermite background terms.

(a) golfir's approach (``ImageModeler.patch_compute_models`` / ``patch_least_squares`` /
    ``patch_model_err``): every source's segment-masked HST image convolved with the kernel over
    the whole patch by FFT and binned 5 x 5; a dense design matrix; ``numpy.linalg.lstsq`` on the
    weighted masked rows; errors ``sqrt(diag(inv(A^T A)))``.
(b) ``pipeline.irac``: cutout convolution through the binned phase kernels, a sparse design
    matrix, sparse normal equations, Cholesky, exact errors from the factor.

Both use the same column set (golfir's > 5 positive pixels rule applied first) and normalise
each column by its full, unclipped sum so the design matrices are identical; the fluxes and
errors are compared (must agree to 1e-6 of the errors). ``--quick`` convolves only some sources
the golfir way, checks those columns against (b)'s, times them and extrapolates that step
linearly to all sources (the printed figure says so); lstsq and the inverse always run in full.
Also printed for information: the whole ``fit_patch`` (pass 1 + shift fit + pass 2, and with
the Sersic step).

Run: ``python benchmarks/irac_solve.py [--quick 60] [--threads 1] [--sources 1000]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=1000, help="sources in the scene")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the scene")
    parser.add_argument("--channel", choices=["ch1", "ch2"], default="ch1", help="IRAC PSF")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (OPENBLAS_NUM_THREADS, set before numpy loads)")
    parser.add_argument("--quick", type=int, default=0, metavar="N",
                        help="convolve only N sources the golfir way and extrapolate")
    parser.add_argument("--no-fit-patch", action="store_true",
                        help="skip the informational whole fit_patch timings")
    return parser.parse_args()


ARGS = parse_args()
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import scipy  # noqa: E402
from astropy.io import fits  # noqa: E402
from scipy import signal  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alcsdb import config  # noqa: E402
from pipeline.irac import (IracFlag, IracParams, PatchInput, background_terms,  # noqa: E402
                           binned_kernel, fit_patch, matching_kernel, solve, source_models)
from pipeline.irac_kernel import recenter_psf  # noqa: E402
from pipeline.irac_models import moved_kernel  # noqa: E402
from pipeline.irac_patches import PatchBox  # noqa: E402
from pipeline.irac_synthetic import synthetic_scene  # noqa: E402

RATIO, SIZE = 5, 240


def load_psfs(channel: str) -> tuple[np.ndarray, np.ndarray]:
    irac = fits.getdata(config.shared_path("psf", f"irac_{channel}_warm_psf.fits")).astype(float)
    hst = fits.getdata(config.shared_path("hff-cutouts", "f105w_psf.fits.gz")).astype(float)
    hst -= np.median(np.concatenate([hst[0], hst[-1], hst[:, 0], hst[:, -1]]))  # star cutout sky
    return hst, irac


def golfir_column(hst: np.ndarray, seg: np.ndarray, sid: int, kernel: np.ndarray,
                  centre: tuple[int, int]) -> np.ndarray:
    """One column the golfir way: whole-patch FFT convolution, then 5 x 5 binning."""
    full = signal.fftconvolve(np.where(seg == sid, hst, 0.0), kernel, mode="full")
    conv = full[centre[0]:centre[0] + hst.shape[0], centre[1]:centre[1] + hst.shape[1]]
    binned = conv.reshape(SIZE, RATIO, SIZE, RATIO).sum(axis=(1, 3))
    return binned.ravel() / full.sum()


def golfir_solve(a_src: np.ndarray, bkg: np.ndarray, data: np.ndarray, weight: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    rows = weight > 0
    sw = np.sqrt(weight[rows])
    ax = np.hstack([bkg[rows], a_src[rows]]) * sw[:, None]
    coeffs = np.linalg.lstsq(ax, data[rows] * sw, rcond=None)[0]
    return coeffs, ax


def main() -> None:
    hst_psf, irac_psf = load_psfs(ARGS.channel)
    kernel = matching_kernel(hst_psf, 0.06, irac_psf, 0.1, out_scale=0.1)
    scene = synthetic_scene((SIZE, SIZE), ARGS.sources, kernel, seed=ARGS.seed, noise=0.02,
                            mag_range=(18.0, 26.0), background=(0.02, 0.01, -0.005))
    box = PatchBox(0, 0, 0, SIZE, SIZE, (-2 ** 40, 2 ** 40, -2 ** 40, 2 ** 40), 5)
    weight = np.where(box.fit_mask(), scene.irac_weight, 0.0).ravel()
    data = scene.irac.ravel()
    ids = scene.ids[scene.mag < 27]
    bkg = background_terms((SIZE, SIZE))

    # (b) this module
    t0 = time.perf_counter()
    models = source_models(scene.hst_ujy, scene.seg, ids, binned_kernel(kernel, RATIO),
                           scene.geometry, (0, 0, SIZE, SIZE))
    t1 = time.perf_counter()
    ours = solve(models.matrix, data, weight, background=bkg)
    t2 = time.perf_counter()
    fitted = (ours.flag & IracFlag.UNCONSTRAINED) == 0
    nsrc = len(models.ids)

    # (a) golfir's approach on the same columns
    k_arr, centre = moved_kernel(kernel, RATIO)
    n_conv = nsrc if ARGS.quick <= 0 else min(ARGS.quick, nsrc)
    dense = models.matrix.toarray()
    t3 = time.perf_counter()
    cols = [golfir_column(scene.hst_ujy, scene.seg, sid, k_arr, centre)
            for sid in models.ids[:n_conv]]
    t4 = time.perf_counter()
    column_diff = max(np.abs(c - dense[:, i]).max() / np.abs(dense[:, i]).max()
                      for i, c in enumerate(cols))
    if n_conv == nsrc:
        dense = np.array(cols).T
    t_models_golfir = (t4 - t3) * nsrc / n_conv
    a_src = dense[:, fitted]
    t5 = time.perf_counter()
    coeffs, ax = golfir_solve(a_src, bkg, data, weight)
    t6 = time.perf_counter()
    covar = np.linalg.inv(ax.T @ ax)
    err_golfir = np.sqrt(np.diag(covar))[bkg.shape[1]:]
    t7 = time.perf_counter()
    flux_golfir = coeffs[bkg.shape[1]:]

    ok = np.isfinite(ours.flux[fitted])
    dflux = np.abs(ours.flux[fitted][ok] - flux_golfir[ok]) / err_golfir[ok]
    derr = np.abs(ours.err[fitted][ok] / err_golfir[ok] - 1)
    total_golfir = t_models_golfir + (t6 - t5) + (t7 - t6)
    total_ours = t2 - t0

    print(f"# IRAC patch {SIZE}x{SIZE} px (0.5\"), {nsrc} sources modelled "
          f"({int(fitted.sum())} fitted), {bkg.shape[1]} background terms, kernel "
          f"{kernel.shape[0]}x{kernel.shape[1]} ({ARGS.channel}); design nnz "
          f"{models.matrix.nnz / models.matrix.shape[0] / nsrc:.1%}")
    print(f"# BLAS threads {ARGS.threads}; numpy {np.__version__}, scipy {scipy.__version__}")
    star = " *" if n_conv < nsrc else ""
    print(f"{'step':34s} {'golfir':>10s} {'pipeline.irac':>14s} {'speed-up':>9s}")
    print(f"{'models':34s} {t_models_golfir:9.2f}s{star:2s}{t1 - t0:12.2f}s "
          f"{t_models_golfir / (t1 - t0):8.0f}x")
    print(f"{'fluxes (lstsq | normal eq. + Cholesky)':34s} {t6 - t5:9.2f}s "
          f"{t2 - t1:13.2f}s {(t7 - t5) / (t2 - t1):8.1f}x (with errors)")
    print(f"{'errors (dense inverse | from factor)':34s} {t7 - t6:9.2f}s {'(incl.)':>14s}")
    print(f"{'total (models + solve + errors)':34s} {total_golfir:9.2f}s{star:2s}"
          f"{total_ours:12.2f}s {total_golfir / total_ours:8.1f}x")
    if star:
        print(f"  * golfir convolutions timed on {n_conv} of {nsrc} sources "
              f"({(t4 - t3) / n_conv * 1e3:.1f} ms each) and extrapolated linearly")
    print(f"columns: max |golfir - ours| / max = {column_diff:.1e} ({n_conv} compared)")
    print(f"fluxes: max |golfir - ours| / err = {dflux.max():.1e}; errors: max relative "
          f"difference {derr.max():.1e}")
    assert dflux.max() < 1e-6 and derr.max() < 1e-6, "fluxes or errors disagree"
    truth = scene.irac_true[models.ids - 1]
    good = np.isfinite(ours.flux)
    pull = (ours.flux[good] - truth[good]) / ours.err[good]
    bright = truth[good] > 10 * ours.err[good]
    print(f"truth: (flux - true) / err std {np.std(pull):.3f}; median (flux - true) / true "
          f"{np.median((ours.flux[good] - truth[good])[bright] / truth[good][bright]):+.4f} "
          f"over {int(bright.sum())} sources with S/N > 10")

    if not ARGS.no_fit_patch:
        xi, yi = scene.geometry.hst_to_irac(scene.x, scene.y)
        psf_fine = recenter_psf(irac_psf / irac_psf.sum(), 10.0)
        inp = PatchInput(box, scene.irac, scene.irac_weight, scene.hst_ujy, scene.seg,
                         scene.geometry, scene.ids, xi, yi, scene.mag,
                         np.zeros(len(scene.ids), bool), kernel, psf_fine)
        for label, limit in (("fit_patch: 2 passes + shift", None),
                             ("fit_patch: + Sersic (> 20 uJy)", 20.0)):
            t8 = time.perf_counter()
            res = fit_patch(inp, IracParams(galfit_flux_limit=limit))
            t9 = time.perf_counter()
            print(f"{label:34s} {'':10s} {t9 - t8:13.2f}s   ({len(res.sersic)} Sersic models, "
                  f"shift {res.shift[0]:+.3f} {res.shift[1]:+.3f} px)")


if __name__ == "__main__":
    main()
