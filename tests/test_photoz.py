"""Tests of pipeline.photoz on the real HDF-N catalog, against plain eazy-py run from the
catalog file (sharing one template grid, built once per session)."""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from matplotlib.image import imread

from alcsdb import config
from alcsdb.errors import ConfigError, InputError
from pipeline import photoz
from pipeline.photoz import (
    EAZY_BAD_VALUE,
    EAZY_NAMES,
    ZOUT_COLUMNS,
    PhotozParams,
    filter_numbers,
    metrics,
    read_eazy_catalog,
    run_photoz,
    sed_data,
)
from pipeline.plots import sed_pz_png, zphot_vs_zspec_png

# eazy's HDF-N demo settings (fluxes with AB zeropoint 25, K band = filter 28), on a redshift grid
# of step 0.02 in ln(1+z) instead of 0.01: building the template grid is most of these tests' time
# (288 s for the 0.01-step grid measured at load average 9 on 2 cores) and the comparison with plain eazy-py is exact on
# any grid; benchmarks/hdfn_photoz.py runs the release's 0.01
Z_STEP = 0.02
HDFN = dict(mw_ebv=0.0103, cat_has_extcorr=True, sys_err=0.01, prior_abzp=25.0, prior_filter=28,
            prior_file="templates/prior_K_TAO.dat", apply_prior=False, beta_prior=False, n_proc=2, z_step=Z_STEP)
PERCENTILE_COLUMNS = {"massp", "SFRp", "sSFRp", "LIRp"}


@pytest.fixture(scope="session")
def eazy_folder() -> Path:
    try:
        return config.eazy_dir()
    except ConfigError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def hdfn(eazy_folder):
    return read_eazy_catalog(eazy_folder / "hdfn" / "hdfn_fs99_eazy.cat",
                             eazy_folder / "hdfn" / "zphot.translate")


@pytest.fixture(scope="session")
def hdfn_run(hdfn, eazy_folder):
    """Config (a): no prior, no zeropoint iteration; builds the session's template grid."""
    return run_photoz(hdfn.fluxes, hdfn.errors, hdfn.filter_numbers, hdfn.ids, z_spec=hdfn.z_spec,
                      params=PhotozParams(**HDFN), eazy_dir=eazy_folder)


def plain_eazy_zout(eazy_folder: Path, catalog_file: Path, tempfilt, workdir: Path) -> Table:
    """eazy-py as a user runs it on an EAZY catalog file, config (a), in ``workdir``."""
    import eazy.photoz
    import eazy.utils

    params = {
        "CATALOG_FILE": str(catalog_file),
        "FILTERS_RES": str(eazy_folder / "FILTER.RES.latest"),
        "TEMPLATES_FILE": "templates/fsps_full/tweak_fsps_QSF_12_v3.param",
        "TEMP_ERR_FILE": str(eazy_folder / "templates" / "TEMPLATE_ERROR.eazy_v1.0"),
        "TEMP_ERR_A2": 0.2, "SYS_ERR": 0.01, "MW_EBV": 0.0103, "CAT_HAS_EXTCORR": True,
        "Z_MIN": 0.01, "Z_MAX": 12.0, "Z_STEP": Z_STEP, "PRIOR_ABZP": 25, "PRIOR_FILTER": 28,
    }
    old_cwd, old_path = os.getcwd(), eazy.utils.DATA_PATH
    os.chdir(workdir)
    eazy.utils.DATA_PATH = str(eazy_folder)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            pz = eazy.photoz.PhotoZ(param_file=None, params=params, load_prior=False, tempfilt=tempfilt,
                                    translate_file=str(eazy_folder / "hdfn" / "zphot.translate"))
            pz.fit_catalog(n_proc=2)
            zout, _ = pz.standard_output(prior=False, beta_prior=False, extra_rf_filters=[],
                                         absmag_filters=[], save_fits=False, run_find_peaks=True)
    finally:
        os.chdir(old_cwd)
        eazy.utils.DATA_PATH = old_path
    return zout


@pytest.fixture(scope="session")
def plain_zout(hdfn_run, eazy_folder, tmp_path_factory) -> Table:
    return plain_eazy_zout(eazy_folder, eazy_folder / "hdfn" / "hdfn_fs99_eazy.cat",
                           hdfn_run.tempfilt, tmp_path_factory.mktemp("plain"))


@pytest.mark.slow
def test_reproduces_plain_eazy_on_hdfn(hdfn_run, plain_zout, hdfn):
    ours = hdfn_run.zout
    assert np.array_equal(ours["z_phot"], plain_zout["z_phot"])
    # every column taken from eazy is eazy's, under the release's name
    for name in ZOUT_COLUMNS:
        if name in ("ra", "dec", "z_spec") or name.startswith("line_"):
            continue
        theirs = np.asarray(plain_zout[EAZY_NAMES.get(name, name)])
        if theirs.dtype.kind == "f":
            theirs = np.where(theirs == np.asarray(EAZY_BAD_VALUE, theirs.dtype), np.nan, theirs)
        assert np.array_equal(np.asarray(ours[name]), theirs, equal_nan=theirs.dtype.kind == "f"), name
    assert np.array_equal(ours["z_spec"], hdfn.z_spec, equal_nan=True)


@pytest.mark.slow
def test_hdfn_quality_and_zmin_sources_kept(hdfn_run, hdfn):
    result = metrics(hdfn_run.zout["z_phot"], hdfn.z_spec)
    assert result["N"] == 114
    assert 0.02 < result["sigma_nmad"] < 0.06
    assert result["outlier_frac"] < 0.2
    assert len(hdfn_run.zout) == len(hdfn.ids)
    assert hdfn_run.n_at_zmin == np.sum(hdfn_run.zout["z_phot"] == -1) > 0


@pytest.mark.slow
def test_zout_has_every_documented_column(hdfn_run):
    doc = config.shared_path("alcs-docs", "zout_columns.md").read_text()
    documented = re.findall(r"^\|\s*``(\w+)``\s*\|", doc, flags=re.M)
    assert documented == list(ZOUT_COLUMNS) == hdfn_run.zout.colnames
    n = len(hdfn_run.zout)
    for name in documented:
        expected = (n, 5) if name in PERCENTILE_COLUMNS else (n,)
        assert hdfn_run.zout[name].shape == expected, name
    fitted = hdfn_run.zout["z_phot"] > 0
    for name in ("mass", "SFR", "restV", "line_EW_Ha", "z160"):
        assert np.isfinite(hdfn_run.zout[name][fitted]).mean() > 0.95, name
    assert np.all(np.diff(hdfn_run.zout["massp"][fitted], axis=1) >= 0)


@pytest.mark.slow
def test_pz_is_normalized_and_peaks_at_z_phot(hdfn_run):
    pz, zgrid = hdfn_run.pz, hdfn_run.zgrid
    assert pz.dtype == np.float32 and pz.shape == (len(hdfn_run.zout), len(zgrid))
    fitted = np.isfinite(pz).all(axis=1)
    assert fitted.sum() > 1000
    assert np.allclose(np.trapezoid(pz[fitted], zgrid, axis=1), 1, atol=1e-4)
    z_phot = np.asarray(hdfn_run.zout["z_phot"])
    peaked = fitted & (z_phot > 0)
    z_peak = zgrid[np.argmax(pz[peaked], axis=1)]
    step = np.gradient(zgrid)[np.argmax(pz[peaked], axis=1)]
    assert np.all(np.abs(z_peak - z_phot[peaked]) <= step)


@pytest.mark.slow
def test_missing_fluxes(hdfn_run, hdfn, eazy_folder, tmp_path):
    """NaN fluxes or errors are missing filters, as -99 in an eazy catalog file."""
    n = 40
    fluxes, errors = hdfn.fluxes[:n].copy(), hdfn.errors[:n].copy()
    fluxes[:10, 0] = np.nan           # no F300W
    errors[10:20, 3] = np.nan         # no F814W error
    fluxes[20:25, 4:] = np.nan        # no near-infrared
    fluxes[25] = np.nan               # nothing at all
    result = run_photoz(fluxes, errors, hdfn.filter_numbers, hdfn.ids[:n], z_spec=hdfn.z_spec[:n],
                        params=PhotozParams(**HDFN), eazy_dir=eazy_folder, tempfilt=hdfn_run.tempfilt)
    zout = result.zout
    expected = 7 - (~(np.isfinite(fluxes) & np.isfinite(errors))).sum(axis=1)
    assert np.array_equal(zout["nusefilt"], expected)
    pivots = np.array([f.pivot for f in hdfn_run.photoz.filters])
    assert np.allclose(zout["lc_min"][:10], pivots[1]) and np.allclose(zout["lc_min"][10:25], pivots[0])
    assert np.allclose(zout["lc_max"][20:25], pivots[3])
    assert zout["z_phot"][25] == -1 and np.isnan(result.pz[25]).all()
    assert np.isfinite(result.pz[:25]).all()

    # the same photometry with -99 in an eazy catalog file, fitted by plain eazy-py
    table = Table.read(eazy_folder / "hdfn" / "hdfn_fs99_eazy.cat", format="ascii.commented_header")[:n]
    names = [line.split()[0] for line in (eazy_folder / "hdfn" / "zphot.translate").read_text().splitlines()]
    for j in range(7):
        bad = ~(np.isfinite(fluxes[:, j]) & np.isfinite(errors[:, j]))
        table[names[2 * j]][bad] = -99.0
        table[names[2 * j + 1]][bad] = -99.0
    catalog_file = tmp_path / "missing.cat"
    table.write(catalog_file, format="ascii.commented_header")
    plain = plain_eazy_zout(eazy_folder, catalog_file, hdfn_run.tempfilt, tmp_path)
    assert np.array_equal(zout["z_phot"], plain["z_phot"])
    assert np.array_equal(zout["nusefilt"], plain["nusefilt"])


@pytest.mark.slow
def test_zeropoint_iteration(hdfn, eazy_folder, hdfn_run):
    n = 500
    params = PhotozParams(**{**HDFN, "apply_prior": True, "zeropoint_iterations": 1})
    result = run_photoz(hdfn.fluxes[:n], hdfn.errors[:n], hdfn.filter_numbers, hdfn.ids[:n],
                        z_spec=hdfn.z_spec[:n], params=params, eazy_dir=eazy_folder,
                        tempfilt=hdfn_run.tempfilt)
    zp = result.zeropoints
    assert zp.shape == (7,)
    assert zp[list(hdfn.filter_numbers).index(28)] == 1.0  # the reference filter
    assert np.all(np.abs(zp - 1) < 0.15) and np.any(np.abs(zp - 1) > 0.005)
    assert hdfn_run.zeropoints is None
    assert metrics(result.zout["z_phot"], hdfn.z_spec[:n])["sigma_nmad"] < 0.06


def test_clear_error_when_eazy_folder_absent(tmp_path, monkeypatch, hdfn):
    args = (hdfn.fluxes[:5], hdfn.errors[:5], hdfn.filter_numbers, hdfn.ids[:5])
    params = PhotozParams(**HDFN)
    monkeypatch.setenv("ALCSDB_EAZY_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="ALCSDB_EAZY_DIR"):
        run_photoz(*args, params=params)
    with pytest.raises(ConfigError, match="FILTER.RES.latest"):
        run_photoz(*args, params=params, eazy_dir=tmp_path)
    (tmp_path / "FILTER.RES.latest").write_text("")
    (tmp_path / "templates" / "fsps_full").mkdir(parents=True)
    (tmp_path / "templates" / "TEMPLATE_ERROR.eazy_v1.0").write_text("")
    (tmp_path / params.templates_file).write_text("1 templates/fsps_full/missing_001.dat 1.0 0 1\n")
    with pytest.raises(ConfigError, match="missing_001.dat"):
        run_photoz(*args, params=params, eazy_dir=tmp_path)


@pytest.mark.slow
def test_template_grid_for_other_inputs_is_refused(hdfn_run, hdfn, eazy_folder):
    args = (hdfn.fluxes[:5], hdfn.errors[:5], hdfn.filter_numbers, hdfn.ids[:5])
    with pytest.raises(InputError, match="E\\(B-V\\)"):
        photoz.build_photoz(*args, params=PhotozParams(**{**HDFN, "mw_ebv": 0.05}),
                            eazy_dir=eazy_folder, tempfilt=hdfn_run.tempfilt)
    with pytest.raises(InputError, match="filters"):
        photoz.build_photoz(hdfn.fluxes[:5, :6], hdfn.errors[:5, :6], hdfn.filter_numbers[:6],
                            hdfn.ids[:5], params=PhotozParams(**HDFN), eazy_dir=eazy_folder,
                            tempfilt=hdfn_run.tempfilt)
    with pytest.raises(InputError, match="grid"):
        photoz.build_photoz(*args, params=PhotozParams(**{**HDFN, "z_max": 6.0}),
                            eazy_dir=eazy_folder, tempfilt=hdfn_run.tempfilt)


def test_input_validation(hdfn, eazy_folder):
    params = PhotozParams(**HDFN)
    with pytest.raises(InputError, match="unique"):
        photoz.build_photoz(hdfn.fluxes[:3], hdfn.errors[:3], hdfn.filter_numbers, [1, 1, 2],
                            params=params, eazy_dir=eazy_folder)
    with pytest.raises(InputError, match="prior_filter"):
        photoz.build_photoz(hdfn.fluxes[:3, :6], hdfn.errors[:3, :6], hdfn.filter_numbers[:6],
                            [1, 2, 3], params=PhotozParams(**{**HDFN, "apply_prior": True}),
                            eazy_dir=eazy_folder)


def test_filter_numbers_name_the_right_curves(eazy_folder):
    info = {int(line.split()[0]): line for line in
            (eazy_folder / "FILTER.RES.latest.info").read_text().splitlines() if line.strip()}
    curves = {
        **{f: f"ACS_update_sep07/wfc_{f}_t81" for f in
           ("f435w", "f475w", "f555w", "f606w", "f625w", "f775w", "f814w", "f850lp")},
        **{f: f"wfc3/UVIS/{f}.dat" for f in ("f225w", "f275w", "f336w", "f390w")},
        "f606wu": "wfc3/UVIS/f606w.dat", "f814wu": "wfc3/UVIS/f814w.dat",
        **{f: f"wfc3/IR/{f}.dat" for f in ("f098m", "f105w", "f110w", "f125w", "f140w", "f160w")},
        "ch1": "IRAC/irac_tr1", "ch2": "IRAC/irac_tr2",
    }
    numbers = filter_numbers(list(curves))
    for (name, curve), number in zip(curves.items(), numbers):
        assert curve in info[number], (name, number, info[number])
    assert filter_numbers(["f160w", "f814w", "ch1", "ch2"]) == [205, 239, 18, 19]
    with pytest.raises(InputError, match="f999w"):
        filter_numbers(["f160w", "f999w"])
    with pytest.raises(InputError, match="det"):
        filter_numbers(["det"])


def test_metrics_by_hand():
    z_spec = np.array([1.0, 1.0, 1.0, 1.0, -1.0, np.nan])
    z_phot = np.array([1.2, 1.0, 0.9, 1.6, 3.0, 2.0])
    # dz = 0.2, 0, -0.1, 0.6; median 0.1; |dz - 0.1| / 2 = 0.05, 0.05, 0.1, 0.25
    result = metrics(z_phot, z_spec)
    assert result["N"] == 4
    assert result["sigma_nmad"] == pytest.approx(1.48 * 0.075)
    assert result["outlier_frac"] == pytest.approx(0.25)
    assert result["bias"] == pytest.approx(0.05)
    assert metrics(np.array([-1.0, 1.0]), np.array([2.0, 1.0]))["outlier_frac"] == 0.5
    assert metrics(np.array([1.0]), np.array([np.nan]))["N"] == 0


def test_params_defaults_are_the_release_settings():
    params = PhotozParams(mw_ebv=0.012)
    d = json.loads(json.dumps(params.to_dict()))
    assert d["templates_file"] == "templates/fsps_full/tweak_fsps_QSF_12_v3.param"
    assert (d["sys_err"], d["z_max"], d["prior_abzp"], d["apply_prior"], d["beta_prior"]) == \
        (0.05, 12.0, 23.9, False, True)
    assert d["aperture_index"] == 2 and d["zeropoint_iterations"] == 0
    grid = params.zgrid()
    assert grid[0] == np.float32(0.01) and grid[-1] < 12 and np.allclose(np.diff(np.log1p(grid)), 0.01, atol=1e-4)
    with pytest.raises(TypeError):
        PhotozParams()  # E(B-V) is never looked up
    for bad in ({"n_proc": 0}, {"z_max": 0.0}, {"aperture_index": 7}, {"mw_ebv": np.nan}):
        with pytest.raises(InputError):
            PhotozParams(**{"mw_ebv": 0.01, **bad})


@pytest.mark.slow
def test_sed_data_and_plots(hdfn_run, hdfn, tmp_path):
    index = int(np.flatnonzero(hdfn.z_spec > 0)[0])
    sed = sed_data(hdfn_run.photoz, index)
    # catalog fluxes (AB zeropoint 25) in microJansky; the catalog is MW-corrected
    assert np.allclose(sed.flux, hdfn.fluxes[index] * 10 ** (-0.4 * (25 - 23.9)), rtol=1e-5)
    assert sed.z_phot == hdfn_run.zout["z_phot"][index] and sed.z_spec == hdfn.z_spec[index]
    assert np.isclose(np.trapezoid(sed.pz, sed.zgrid), 1, atol=1e-4)
    assert sed.template_flux.shape == sed.template_wave.shape

    paths = [
        zphot_vs_zspec_png(hdfn_run.zout["z_phot"], hdfn.z_spec, tmp_path / "zz.png",
                           metrics(hdfn_run.zout["z_phot"], hdfn.z_spec)),
        sed_pz_png(hdfn_run.photoz, index, tmp_path / "sed.png"),
        sed_pz_png(sed, None, tmp_path / "sed_arrays.png"),
        sed_pz_png(hdfn_run.photoz, int(np.flatnonzero(hdfn_run.zout["z_phot"] == -1)[0]),
                   tmp_path / "sed_zmin.png"),
    ]
    for path in paths:
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 300 and image.std() > 0.01
    with pytest.raises(InputError):
        sed_pz_png(sed, 3, tmp_path / "bad.png")


@pytest.mark.slow
def test_sed_rebuilt_from_stored_coefficients_matches_eazy(hdfn_run, hdfn, eazy_folder):
    """The SED rebuilt from a source's coefficients (what the database keeps) is eazy's
    best-fit SED: the template spectrum exactly, the template photometry within 1.5% (eazy
    integrates the grid with the Milky Way extinction inside each band and interpolates it in z)."""
    from pipeline.photoz import sed_from_coeffs

    z_phot = np.asarray(hdfn_run.zout["z_phot"])
    coeffs = hdfn_run.coeffs
    assert coeffs.dtype == np.float32 and coeffs.shape == (len(z_phot), 12)
    fitted = np.isfinite(hdfn_run.pz).all(axis=1)
    assert np.array_equal(np.isfinite(coeffs).all(axis=1), fitted)
    at_zmin = np.flatnonzero(fitted & (z_phot == -1))
    assert len(at_zmin) > 0 and np.all(np.abs(coeffs[at_zmin]).sum(axis=1) > 0)  # fitted at z_min, not eazy's 0
    params = PhotozParams(**HDFN)
    for index in [*np.flatnonzero(hdfn.z_spec > 0)[:8], *at_zmin[:3]]:
        eazy_sed = sed_data(hdfn_run.photoz, index)
        ours = sed_from_coeffs(coeffs[index], z_phot[index], hdfn.fluxes[index], hdfn.errors[index],
                               hdfn.filter_numbers, params=params, zgrid=hdfn_run.zgrid, pz=hdfn_run.pz[index],
                               z_spec=hdfn.z_spec[index], id=hdfn.ids[index], eazy_dir=eazy_folder)
        assert ours.z_plot == eazy_sed.z_plot and np.array_equal(ours.pivot, eazy_sed.pivot)
        assert np.allclose(ours.flux, eazy_sed.flux, rtol=1e-5, equal_nan=True)
        assert np.allclose(ours.error, eazy_sed.error, rtol=1e-5, equal_nan=True)
        assert np.allclose(ours.template_wave, eazy_sed.template_wave)
        peak = np.abs(eazy_sed.template_flux).max()
        assert np.allclose(ours.template_flux, eazy_sed.template_flux, rtol=1e-4, atol=1e-5 * peak)
        # band fluxes: ours integrate the template at z_phot, eazy's interpolate its grid; a band
        # below a Lyman break (1e-4 of the peak) differs by more than 1.5% of itself
        model_peak = np.abs(eazy_sed.model_flux).max()
        assert np.allclose(ours.model_flux, eazy_sed.model_flux, rtol=0.015, atol=1e-3 * model_peak)
    with pytest.raises(InputError, match="12 templates"):
        sed_from_coeffs(coeffs[0][:5], z_phot[0], hdfn.fluxes[0], hdfn.errors[0], hdfn.filter_numbers,
                        params=params, zgrid=hdfn_run.zgrid, pz=hdfn_run.pz[0], eazy_dir=eazy_folder)
