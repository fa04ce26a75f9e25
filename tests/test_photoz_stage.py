"""The photoz stage against a real database: synthetic photometry with known redshifts
(`pipeline.photoz_synthetic`, the mock's SEDs and depths) written as detect/photometry/irac
runs, the stage run with the truth as an external z_spec catalog, its rows, products and the
template-grid cache, and `alcsdb plot sed`.

The redshift grid is coarse (step 0.1 in ln(1+z)) so the template grid builds in seconds; the
release grid (0.01) is validated on HDF-N (tests/test_photoz.py) and the mock
(benchmarks/mock_photoz.py)."""
from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from matplotlib.image import imread
from sqlalchemy import text

from alcsdb import config
from alcsdb.copyload import copy_columns
from alcsdb.errors import ConfigError
from alcsdb.healpix import hpx29
from alcsdb.provenance import stage_run
from pipeline.photoz_synthetic import synthetic_catalog
from pipeline.runner import get_field, run_stage
from pipeline.sim_bands import BANDS, HST_BANDS
from pipeline.stages.photoz import source_sed

FIELD = "j001408m3023"
N = 60
COARSE = {"z_step": 0.1, "z_max": 7.0}


@pytest.fixture(scope="module")
def catalog() -> Table:
    try:
        config.eazy_dir()
    except ConfigError as exc:
        pytest.skip(str(exc))
    cat = synthetic_catalog(N, seed=4, mag_range=(19.0, 24.0))
    rng = np.random.default_rng(4)
    cat["dra"], cat["ddec"] = rng.uniform(-60, 60, (2, N)) / 3600.0
    for band in BANDS:  # the last source has no valid measurement at all
        cat[f"err_{band}"][-1] = np.nan
    return cat


def write_photometry(engine, cat: Table) -> dict[str, np.ndarray]:
    """detect, photometry (aperture 2 = 0.7" total fluxes) and irac runs holding ``cat``."""
    with engine.connect() as conn:
        field = get_field(conn, FIELD)
        filters = dict(conn.execute(text("SELECT name, filter_id FROM filter")).all())
    ra = field.ra + np.asarray(cat["dra"]) / np.cos(np.radians(field.dec))
    dec = field.dec + np.asarray(cat["ddec"])
    n = len(cat)
    with stage_run(engine, "detect", field_id=field.field_id, params={"synthetic": True}) as run:
        copy_columns(run.conn, "source", {"run_id": np.full(n, run.run_id), "field_id": np.full(n, field.field_id),
                                          "id": np.asarray(cat["id"]), "ra": ra, "dec": dec, "hpx29": hpx29(ra, dec)})
        source_id = np.array(run.conn.execute(text("SELECT source_id FROM source WHERE run_id = :r ORDER BY id"),
                                              {"r": run.run_id}).scalars().all())
    with stage_run(engine, "photometry", field_id=field.field_id, params={"synthetic": True}) as run:
        for band in HST_BANDS:
            copy_columns(run.conn, "aperture_flux", {
                "source_id": source_id, "filter_id": np.full(n, filters[band]), "aperture": np.full(n, 2),
                "run_id": np.full(n, run.run_id), "tot": np.asarray(cat[f"flux_{band}"]),
                "etot": np.asarray(cat[f"err_{band}"])})
    with stage_run(engine, "irac", field_id=field.field_id, params={"synthetic": True}) as run:
        for channel in (1, 2):
            copy_columns(run.conn, "irac_flux", {
                "source_id": source_id, "channel": np.full(n, channel), "run_id": np.full(n, run.run_id),
                "flux": np.asarray(cat[f"flux_ch{channel}"]), "err": np.asarray(cat[f"err_ch{channel}"])})
    return {"source_id": source_id, "ra": ra, "dec": dec}


@pytest.mark.slow
def test_photoz_stage_rows_products_and_sed_plot(engine, invoke, catalog, tmp_path, monkeypatch):
    import pipeline.stages.photoz as stage

    # a private grid cache: the session's ALCSDB_HOME is shared with the other server's run of
    # this test (pytest-xdist), which may have cached this grid already
    monkeypatch.setattr(stage, "grid_cache_path", lambda pz_params, numbers: tmp_path / "cache" / "tempfilt.pkl")
    written = write_photometry(engine, catalog)
    truth = Table({"id": catalog["id"], "ra": written["ra"], "dec": written["dec"], "z": catalog["z"]})
    truth.write(tmp_path / "truth.csv")
    assert invoke("external", "load", tmp_path / "truth.csv", "--name", "truth", "--z-spec", "z").exit_code == 0

    overrides = {**COARSE, "zspec_catalog": "truth", "zspec_radius_arcsec": 0.2}
    first = run_stage(engine, "photoz", FIELD, overrides=overrides)
    assert first.rows == {"zout": N, "product": 2}
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT z.source_id, z.z_phot, z.z_spec, z.coeffs, z.pz, z.nusefilt FROM zout z WHERE run_id = :r "
            "ORDER BY source_id"), {"r": first.run_id}).mappings().all()
        products = {p.kind: p for p in conn.execute(text(
            "SELECT kind, path, meta FROM product WHERE run_id = :r"), {"r": first.run_id})}
        params = conn.execute(text("SELECT params FROM run WHERE run_id = :r"), {"r": first.run_id}).scalar_one()
    assert [r["source_id"] for r in rows] == list(written["source_id"])
    # the truth catalog's redshift is each source's z_spec; the fit finds it for these bright galaxies
    assert np.allclose([r["z_spec"] for r in rows], catalog["z"])
    z_phot = np.array([r["z_phot"] for r in rows])
    fitted = z_phot[:-1]
    dz = np.abs(fitted - catalog["z"][:-1]) / (1 + catalog["z"][:-1])
    assert np.median(dz) < 0.05 and np.mean(dz > 0.15) < 0.15
    # every fitted source has its template coefficients; the unmeasured one has neither fit nor p(z)
    assert all(len(r["coeffs"]) == 12 and np.isfinite(r["coeffs"]).all() for r in rows[:-1])
    assert rows[-1]["nusefilt"] == 0 and z_phot[-1] == -1 and rows[-1]["pz"] is None and rows[-1]["coeffs"] is None
    assert params["mw_ebv"] == pytest.approx(0.0113, abs=0.002)  # the field's, recorded
    meta = products["photoz_zgrid"].meta
    assert meta["filters"] == [202, 203, 205, 233, 236, 239, 18, 19] and meta["zeropoints"] is None
    assert meta["timings"]["grid"] > 0 and (tmp_path / "cache" / "tempfilt.pkl").is_file()
    qa = imread(products["photoz_qa"].path)
    assert qa.ndim == 3 and qa.shape[0] > 300 and qa.std() > 0.01
    assert products["photoz_qa"].meta["n_zspec"] == N

    # a second run reuses the cached template grid
    again = run_stage(engine, "photoz", FIELD, overrides=overrides, force=True)
    with engine.connect() as conn:
        meta2 = conn.execute(text("SELECT meta FROM product WHERE run_id = :r AND kind = 'photoz_zgrid'"),
                             {"r": again.run_id}).scalar_one()
        again_z = conn.execute(text("SELECT z_phot FROM zout WHERE run_id = :r ORDER BY source_id"),
                               {"r": again.run_id}).scalars().all()
    assert meta2["timings"]["grid"] == 0.0 and np.array_equal(again_z, z_phot)

    # the SED rebuilt from the database: observed fluxes (MW-dereddened: bluer bands more) and
    # a template whose photometry fits them
    bright = int(np.argmin(catalog["mag_f160w"][:-1]))
    with engine.connect() as conn:
        sed, title = source_sed(conn, int(written["source_id"][bright]))
    assert f"photoz run {again.run_id}" in title and sed.z_phot == pytest.approx(z_phot[bright])
    observed = np.array([catalog[f"flux_{b}"][bright] for b in ("f105w", "f125w", "f160w", "f435w", "f606w",
                                                                   "f814w", "ch1", "ch2")])
    ratio = sed.flux / observed  # eazy applies no correction to filters reaching past 6 um (ch2)
    assert np.all((ratio > 1 - 1e-6) & (ratio < 1.06)) and ratio[3] > ratio[5] > ratio[2] > ratio[7]
    assert np.all(np.abs(sed.model_flux - sed.flux) < 4 * sed.error)
    inside = (sed.template_wave > 4000) & (sed.template_wave < 50000)
    assert np.all(sed.template_flux[inside] > 0)

    out = tmp_path / "sed.png"
    result = invoke("plot", "sed", int(written["source_id"][bright]), "--out", out)
    assert result.exit_code == 0, result.output
    image = imread(out)
    assert image.ndim == 3 and image.shape[1] > 800 and image.std() > 0.01
    unfit = invoke("plot", "sed", int(written["source_id"][-1]), "--out", tmp_path / "unfit.png")
    assert unfit.exit_code == 0 and imread(tmp_path / "unfit.png").ndim == 3


def test_plot_sed_of_unknown_source_is_one_line_error(run_cli, tmp_path):
    out = tmp_path / "none.png"
    proc = run_cli("plot", "sed", "987654321", "--out", out, check=False)
    assert proc.returncode != 0 and not out.exists()
    assert proc.stderr.strip().count("\n") == 0 and "987654321" in proc.stderr and "no such source" in proc.stderr
