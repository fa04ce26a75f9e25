"""Photo-z on the real HDF-N catalog: pipeline.photoz against plain eazy-py, same run.

The catalog (Fernandez-Soto et al. 1999, fluxes with AB zeropoint 25, 114 spectroscopic
redshifts) is fitted twice per configuration: by ``pipeline.photoz.run_photoz`` from
arrays, and by eazy-py as a user runs it from the catalog file, its translate file and a
parameter dict (eazy's HDF-N demo settings: MW E(B-V) 0.0103 with CAT_HAS_EXTCORR, K-band
prior filter 28). Configurations: (a) no prior, no zeropoint iteration; (b) the K-band
magnitude prior (``prior_K_TAO.dat``) and three zeropoint iterations. The two z_phot
arrays must be identical (asserted). Printed: N, sigma_NMAD, outlier fraction and bias over
z_spec > 0, the number of z_phot = -1, the template-grid build time and the fit (with
zeropoint iterations) and zout times per 1000 sources, for each n_proc.

Run: ``python benchmarks/hdfn_photoz.py [--n-proc 1 2] [--configs a b]``
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # 2 cores: BLAS threads fight the processes

import numpy as np  # noqa: E402

from alcsdb import config  # noqa: E402
from pipeline.photoz import PhotozParams, metrics, read_eazy_catalog, run_photoz  # noqa: E402

CONFIGS = {"a": {"prior": False, "zeropoint_iterations": 0},
           "b": {"prior": True, "zeropoint_iterations": 3}}


def plain_eazy(eazy_dir: Path, config_name: str, n_proc: int, sys_err: float, mw_ebv: float,
               tempfilt=None):
    """eazy-py as its HDF-N demo runs it; returns (z_phot, grid s, fit s, zout s, tempfilt)."""
    import eazy.photoz
    import eazy.utils

    setup = CONFIGS[config_name]
    eazy.utils.DATA_PATH = str(eazy_dir)
    params = {
        "CATALOG_FILE": str(eazy_dir / "hdfn" / "hdfn_fs99_eazy.cat"),
        "FILTERS_RES": str(eazy_dir / "FILTER.RES.latest"),
        "TEMPLATES_FILE": "templates/fsps_full/tweak_fsps_QSF_12_v3.param",
        "TEMP_ERR_FILE": str(eazy_dir / "templates" / "TEMPLATE_ERROR.eazy_v1.0"),
        "TEMP_ERR_A2": 0.2,
        "SYS_ERR": sys_err,
        "MW_EBV": mw_ebv,
        "CAT_HAS_EXTCORR": True,
        "Z_MIN": 0.01, "Z_MAX": 12.0, "Z_STEP": 0.01,
        "PRIOR_ABZP": 25,
        "PRIOR_FILTER": 28,
        "PRIOR_FILE": str(eazy_dir / "templates" / "prior_K_TAO.dat"),
        "MAIN_OUTPUT_FILE": "hdfn.eazypy",
    }
    start = time.perf_counter()
    pz = eazy.photoz.PhotoZ(param_file=None, translate_file=str(eazy_dir / "hdfn" / "zphot.translate"),
                            zeropoint_file=None, params=params, load_prior=True, n_proc=n_proc,
                            tempfilt=tempfilt)
    built = time.perf_counter()
    for iteration in range(setup["zeropoint_iterations"]):
        clip = (pz.fnu / pz.efnu > 1).sum(axis=1) > 4
        pz.iterate_zp_templates(idx=pz.idx[clip], update_templates=False, update_zeropoints=True,
                                iter=iteration, n_proc=n_proc, save_templates=False,
                                error_residuals=False, get_spatial_offset=False)
    if setup["zeropoint_iterations"]:
        pz.set_sys_err(positive=True)
    pz.fit_catalog(n_proc=n_proc, prior=setup["prior"])
    fitted = time.perf_counter()
    zout, _ = pz.standard_output(prior=setup["prior"], beta_prior=False, extra_rf_filters=[],
                                 absmag_filters=[], save_fits=False, n_proc=n_proc)
    done = time.perf_counter()
    grid_s = built - start if tempfilt is None else 0.0
    return np.asarray(zout["z_phot"]), grid_s, fitted - built, done - fitted, pz.tempfilt


def ours(eazy_dir: Path, config_name: str, n_proc: int, sys_err: float, mw_ebv: float, tempfilt=None):
    setup = CONFIGS[config_name]
    catalog = read_eazy_catalog(eazy_dir / "hdfn" / "hdfn_fs99_eazy.cat", eazy_dir / "hdfn" / "zphot.translate")
    params = PhotozParams(mw_ebv=mw_ebv, cat_has_extcorr=True, sys_err=sys_err, prior_abzp=25,
                          prior_filter=28, prior_file="templates/prior_K_TAO.dat",
                          apply_prior=setup["prior"], beta_prior=False,
                          zeropoint_iterations=setup["zeropoint_iterations"], n_proc=n_proc)
    result = run_photoz(catalog.fluxes, catalog.errors, catalog.filter_numbers, catalog.ids,
                        z_spec=catalog.z_spec, params=params, eazy_dir=eazy_dir, tempfilt=tempfilt)
    t = result.timings
    return (np.asarray(result.zout["z_phot"]), t["grid"], t["fit"], t["zout"], result.tempfilt,
            catalog.z_spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-proc", type=int, nargs="+", default=[1, 2],
                        help="process counts to time (default: 1 2)")
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=sorted(CONFIGS),
                        help="a: no prior, no zeropoints; b: K prior + 3 zeropoint iterations")
    parser.add_argument("--eazy-dir", type=Path, default=None,
                        help="EAZY data folder with hdfn/ (default: ALCSDB_EAZY_DIR / shared data)")
    parser.add_argument("--sys-err", type=float, default=0.01,
                        help="SYS_ERR (default 0.01, eazy's default, as in NOTES.md)")
    parser.add_argument("--mw-ebv", type=float, default=0.0103,
                        help="Milky Way E(B-V) of the HDF-N (eazy demo value 0.0103)")
    parser.add_argument("--verbose", action="store_true", help="show eazy's printout")
    args = parser.parse_args(argv)
    eazy_dir = args.eazy_dir.resolve() if args.eazy_dir else config.eazy_dir()

    header = (f"{'cfg':>3} {'impl':>6} {'n_proc':>6} {'N':>4} {'sigma_nmad':>10} {'outliers':>8} "
              f"{'bias':>7} {'z=-1':>5} {'grid s':>7} {'fit s/1k':>8} {'zout s/1k':>9} identical")
    print(header)
    work = tempfile.TemporaryDirectory(prefix="hdfn-photoz-")
    os.chdir(work.name)  # plain eazy writes zeropoint figures to the working directory
    for n_proc in args.n_proc:
        grids: dict[str, object] = {"plain": None, "ours": None}
        for name in args.configs:
            with contextlib.ExitStack() as quiet:
                if not args.verbose:
                    quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
                    quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
                plain = plain_eazy(eazy_dir, name, n_proc, args.sys_err, args.mw_ebv, grids["plain"])
            mine = ours(eazy_dir, name, n_proc, args.sys_err, args.mw_ebv, grids["ours"])
            grids["plain"], grids["ours"] = plain[4], mine[4]
            z_spec = mine[5]
            identical = bool(np.array_equal(plain[0], mine[0]))
            nsrc = len(z_spec) / 1000
            for impl, run in (("plain", plain), ("ours", mine)):
                m = metrics(run[0], z_spec)
                print(f"{name:>3} {impl:>6} {n_proc:>6} {m['N']:>4} {m['sigma_nmad']:>10.4f} "
                      f"{m['outlier_frac']:>8.3f} {m['bias']:>7.4f} {int(np.sum(run[0] == -1)):>5} "
                      f"{run[1]:>7.1f} {run[2] / nsrc:>8.2f} {run[3] / nsrc:>9.2f} {identical}",
                      flush=True)
            assert identical, f"config {name}, n_proc {n_proc}: z_phot differs from plain eazy-py"
    print(f"({len(z_spec)} sources; grid s = template grid build, 0 when reused from config a; "
          "n_proc 1 is serial for ours, a 1-process pool for plain eazy-py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
