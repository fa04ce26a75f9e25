"""ingest.fixtures: release-format files that astropy reads, with physically consistent values."""
from __future__ import annotations

import hashlib

import astropy.units as u
import numpy as np
import pytest
import sep
from astropy.coordinates import SkyCoord
from astropy.cosmology import FlatLambdaCDM
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from alcsdb import columns as C
from ingest import fixtures as F

RA, DEC = 3.588333, -30.39725  # Abell 2744
FILTERS = ["f435w", "f814w", "f350lpu", "f098m", "f160w"]
N = 400


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    path = tmp_path_factory.mktemp("cat") / "j001408m3023_irac_phot_apcorr.fits"
    F.write_phot_apcorr(path, "j001408m3023", RA, DEC, N, FILTERS, seed=11)
    with fits.open(path) as hdul:
        hdul.verify("exception")
        header = hdul[1].header
    return path, Table.read(path), header


def test_sep_flag_bits_are_seps():
    assert (F.OBJ_MERGED, F.OBJ_TRUNC, F.APER_HASMASKED, F.APER_ALLMASKED) == (
        sep.OBJ_MERGED, sep.OBJ_TRUNC, sep.APER_HASMASKED, sep.APER_ALLMASKED)


def test_catalog_has_the_release_columns_dtypes_and_units(catalog):
    _, tab, header = catalog
    assert tab.colnames == C.phot_apcorr_columns(FILTERS)
    assert len(tab) == N
    for name in tab.colnames:
        spec = C.phot_column_spec(name)
        assert tab[name].dtype.kind == np.dtype(spec.dtype).kind, name
        assert tab[name].dtype.itemsize == np.dtype(spec.dtype).itemsize, name
        assert tab[name].unit == (u.Unit(spec.unit, format="fits") if spec.unit else None), name
    assert header["F160W_ZP"] > 20 and header["APER_6"] == pytest.approx(3.0 / F.DET_PIXSCALE)


def test_round_trip_discovers_the_layout(catalog):
    _, tab, _ = catalog
    layout = C.parse_phot_columns(tab.colnames)
    assert layout.filters == tuple(FILTERS)
    assert layout.apertures == tuple(range(7)) and layout.irac_channels == (1, 2) and layout.has_corr
    assert layout.extra == () and layout.required_missing() == []


def test_sources_are_unique_and_near_the_field_centre(catalog):
    _, tab, _ = catalog
    assert sorted(tab["id"]) == list(range(1, N + 1))
    sky = SkyCoord(tab["ra"], tab["dec"], unit="deg")
    assert sky.separation(SkyCoord(RA, DEC, unit="deg")).arcsec.max() <= F.FIELD_RADIUS + 0.01
    np.testing.assert_array_equal(tab["x_image"], tab["x"] + 1)
    np.testing.assert_array_equal(tab["x_world"], tab["ra"])
    # nearest neighbours, recomputed on the sky
    idx, sep2d, _ = sky.match_to_catalog_sky(sky, nthneighbor=2)
    np.testing.assert_allclose(tab["dr_nn"], sep2d.arcsec, rtol=1e-4)
    np.testing.assert_array_equal(tab["id_nn"], tab["id"][idx])
    assert tab["dr_nn"].min() >= F.MIN_SEPARATION


def test_sky_positions_follow_the_detection_wcs(catalog):
    _, tab, _ = catalog
    wcs = F.detection_wcs(RA, DEC)
    ra, dec = wcs.all_pix2world(tab["x"], tab["y"], 0)
    np.testing.assert_allclose(ra, tab["ra"], atol=1e-10)
    np.testing.assert_allclose(dec, tab["dec"], atol=1e-10)


def test_corrections_follow_the_release_formulas(catalog):
    _, tab, header = catalog
    for i in range(7):
        np.testing.assert_allclose(tab[f"apcorr_{i}"], tab["flux_auto"] / tab[f"flux_aper_{i}"])
        area = np.pi * (header[f"APER_{i}"] / 2) ** 2
        for f in FILTERS:
            bad = tab[f"{f}_mask_aper_{i}"] > 0.2 * area
            corr = tab[f"{f}_flux_aper_{i}"] * tab[f"apcorr_{i}"]
            ecorr = tab[f"{f}_fluxerr_aper_{i}"] * tab[f"apcorr_{i}"]
            for name, value in (("corr", corr), ("ecorr", ecorr), ("tot", corr * tab[f"{f}_tot_corr"]),
                                ("etot", ecorr * tab[f"{f}_tot_corr"])):
                np.testing.assert_allclose(tab[f"{f}_{name}_{i}"], np.where(bad, -99, value))
    assert all(0 < np.mean(tab[f"{f}_corr_2"] == -99) < 0.7 for f in FILTERS)
    with np.errstate(invalid="ignore"):
        mag = 23.9 - 2.5 * np.log10(tab["flux_auto"] * tab["tot_corr"])
    np.testing.assert_allclose(tab["mag_auto"], mag)
    assert (tab["tot_corr"] >= 1).all() and (tab["f160w_tot_corr"] >= 1).all()


def test_uncovered_sources_look_like_grizlis(catalog):
    _, tab, _ = catalog
    for f in FILTERS:
        fm = F.filter_model(f)
        full = np.pi * (3.0 / 2 / fm.pixscale) ** 2
        out = np.isclose(tab[f"{f}_mask_aper_6"], full)
        assert out.any() and (~out).any()
        assert (tab[f"{f}_flux_aper_6"][out] == 0).all() and (tab[f"{f}_fluxerr_aper_6"][out] == 0).all()
        assert (tab[f"{f}_flag_aper_6"][out] & sep.APER_ALLMASKED).all()
        assert (tab[f"{f}_tot_6"][out] == -99).all()


def test_fluxes_follow_magnitudes_and_apertures(catalog):
    _, tab, _ = catalog
    bright = tab["flux_aper_2"] / tab["fluxerr_aper_2"] > 100
    assert bright.sum() > 20
    flux = np.array([tab[f"flux_aper_{i}"][bright] for i in range(7)])
    assert (np.diff(flux, axis=0) > 0).mean() > 0.95  # larger apertures hold more flux
    covered = (tab["f160w_mask_aper_2"] == 0) & bright
    ratio = tab["f160w_flux_aper_2"][covered] / tab["flux_aper_2"][covered]
    assert 0.1 < np.median(ratio) < 10  # same source, similar brightness
    # fluxerr grows with the aperture like its diameter
    np.testing.assert_allclose(np.median(tab["fluxerr_aper_6"] / tab["fluxerr_aper_2"]), 3.0 / 0.7, rtol=0.05)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    digests = []
    for seed, name in ((5, "a"), (5, "b"), (6, "c")):
        path = tmp_path / f"{name}.fits"
        F.write_phot_apcorr(path, "j001408m3023", RA, DEC, 50, ["f160w"], seed)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_variations_for_bad_input_tests(tmp_path):
    path = tmp_path / "bad.fits"
    F.write_phot_apcorr(path, "j001408m3023", RA, DEC, 30, ["f814w", "f160w"], 1, with_irac=False,
                        extra_columns={"class_valid": 0.9, "note": np.array(["x"] * 30)},
                        drop_columns=["f160w_fluxerr_aper_3"], rename_columns={"id": "number"},
                        dtypes={"ra": "f4"})
    tab = Table.read(path)
    layout = C.parse_phot_columns(tab.colnames)
    assert layout.extra == ("number", "class_valid", "note")
    assert layout.required_missing() == ["id", "f160w_fluxerr_aper_3"]
    assert tab.colnames.index("number") == C.phot_apcorr_columns(["f814w"]).index("id")
    assert tab["ra"].dtype == np.dtype(">f4") and tab["ra"].unit == u.deg
    assert (tab["class_valid"] == 0.9).all() and not layout.has_irac


def test_too_many_filters_for_one_fits_table(tmp_path):
    many = [f"f{100 + 10 * k}w" for k in range(14)]
    assert len(C.phot_apcorr_columns(many)) > C.FITS_MAX_COLUMNS
    with pytest.raises(ValueError, match="999"):
        F.write_phot_apcorr(tmp_path / "x.fits", "j001408m3023", RA, DEC, 5, many, 1)


def test_zout_is_consistent(tmp_path):
    ids = np.arange(1, 201, dtype=np.int32)
    ra, dec = np.full(200, RA), np.full(200, DEC)
    F.write_zout(tmp_path / "z.fits", ids, ra, dec, 3)
    tab = Table.read(tmp_path / "z.fits")
    assert tab.colnames == list(C.ZOUT_COLUMNS)
    np.testing.assert_array_equal(tab["id"], ids)
    for name in C.ZOUT_VECTOR_COLUMNS:
        assert tab[name].shape == (200, 5)
        assert (np.diff(tab[name], axis=1) > 0).all()
    zq = np.array([tab[c] for c in ("z025", "z160", "z500", "z840", "z975")])
    assert (np.diff(zq, axis=0) >= 0).all()
    dl = FlatLambdaCDM(H0=70, Om0=0.3).luminosity_distance(tab["z_phot"]).to_value("Mpc")
    np.testing.assert_allclose(tab["dL"], dl, rtol=1e-6)
    np.testing.assert_allclose(tab["mass"], tab["MLv"] * tab["Lv"])
    np.testing.assert_allclose(tab["massp"][:, 2], tab["mass"])
    assert tab["dL"].unit == u.Mpc and tab["SFRp"].unit == u.Unit("solMass/yr")


def test_aor_log_matches_astropy_footprints(tmp_path):
    path = tmp_path / "r51869952-ch1.log.fits"
    F.write_aor_log(path, 51869952, 1, RA, DEC, 12, 4)
    tab = Table.read(path)
    assert tab.colnames == list(C.AOR_LOG_COLUMNS)
    assert tab["corners"].shape == (12, 4, 2) and tab["cd"].shape == (12, 2, 2)
    for row in tab:
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval, w.wcs.crpix, w.wcs.cd = row["crval"], row["crpix"], row["cd"]
        w.pixel_shape = (256, 256)
        np.testing.assert_allclose(row["corners"], w.calc_footprint(), atol=1e-9)
        assert row["theta"] == pytest.approx(np.degrees(np.arctan2(row["cd"][1, 0], row["cd"][1, 1])))
        assert np.sqrt(abs(np.linalg.det(row["cd"]))) * 3600 == pytest.approx(F.IRAC_PIXSCALE[1])
    assert set(tab["aor"]) == {"r51869952"} and set(tab["object"]) == {"ALCS-CLUSTER"}
    assert [f.split("/")[0] for f in tab["file"]] == ["r51869952"] * 12
    assert (np.diff(tab["mjd_obs"]) > 0).all() and tab["mjd_obs"].min() > 55000  # warm mission
    centre = SkyCoord(RA, DEC, unit="deg")
    assert SkyCoord(tab["crval"][:, 0], tab["crval"][:, 1], unit="deg").separation(centre).arcmin.max() < 4


def test_aor_logs_of_one_aor_agree_across_channels(tmp_path):
    ch = {c: F.make_aor_log(12655872, c, RA, DEC, 5, 9) for c in (1, 2, 3)}
    for c in (2, 3):
        for name in ("exptime", "progid", "obsrvr"):
            np.testing.assert_array_equal(ch[1][name], ch[c][name])
        assert abs(ch[1]["mjd_obs"][0] - ch[c]["mjd_obs"][0]) < 0.01
    assert ch[1]["mjd_obs"].max() < 54944  # cold mission: channels 3 and 4 existed
    assert len(set(ch[1]["bcd"]) | set(ch[2]["bcd"])) == 10


def test_hst_mosaics_carry_wcs_photometry_and_drizzle_records(tmp_path):
    shape = (48, 60)
    images = {}
    for kind in ("sci", "wht", "seg"):
        path = F.write_mosaic(tmp_path / f"hff-j001408m3023-f814w_drc_{kind}.fits.gz", kind, "hff-j001408m3023",
                              "f814w", RA, DEC, shape, 0.05, 2, input_exposures=3)
        with fits.open(path) as hdul:
            images[kind] = (hdul[0].data, hdul[0].header)
    sci, h = images["sci"]
    wht, seg = images["wht"][0], images["seg"][0]
    assert sci.shape == wht.shape == seg.shape == shape
    assert sci.dtype.kind == "f" and seg.dtype.kind == "i"
    w = WCS(h)
    assert w.proj_plane_pixel_scales()[0].to_value(u.arcsec) == pytest.approx(0.05)
    assert w.pixel_to_world(shape[1] / 2 - 0.5, shape[0] / 2 - 0.5).separation(
        SkyCoord(RA, DEC, unit="deg")).arcsec < 1e-6
    zp_fnu = -2.5 * np.log10(h["PHOTFNU"]) + 8.90
    zp_flam = -2.5 * np.log10(h["PHOTFLAM"]) - 21.10 - 5 * np.log10(h["PHOTPLAM"]) + 18.6921
    assert zp_fnu == pytest.approx(zp_flam) == pytest.approx(F.filter_model("f814w").zeropoint)
    assert h["INSTRUME"] == "ACS" and h["FILTER2"] == "F814W" and h["FILTER1"].startswith("CLEAR")
    assert h["NDRIZIM"] == 6  # 3 exposures x 2 ACS chips
    assert h["D001DATA"].endswith("_flc.fits[sci,1]") and h["D002DATA"].endswith("[sci,2]")
    assert h["D006DEXP"] > 0 and h["D001PIXF"] == 0.33 and h["D001OUDA"] == "hff-j001408m3023-f814w_drc_sci.fits"
    assert h["EXPTIME"] == pytest.approx(sum(h[f"D{k:03d}DEXP"] for k in (1, 3, 5)))
    assert h["EXPEND"] > h["EXPSTART"] > 50000
    empty = wht == 0
    assert empty.any() and (sci[empty] == 0).all() and (seg[empty] == 0).all()
    noise = np.std(sci[(seg == 0) & ~empty])
    assert np.median(sci[seg > 0]) > 2 * noise  # segments sit on the sources


def test_wfc3_ir_and_irac_mosaics(tmp_path):
    data, h = F.make_mosaic("sci", "j001408m3023", "f160w", RA, DEC, (20, 20), 0.1, 1, input_exposures=2)
    assert h["FILTER"] == "F160W" and h["DETECTOR"] == "IR" and h["NDRIZIM"] == 2
    assert h["D001DATA"].endswith("_flt.fits[sci,1]")
    data, h = F.make_mosaic("wht", "j001408m3023", "ch2", RA, DEC, (20, 20), 0.5, 1)
    assert h["INSTRUME"] == "IRAC" and h["FILTER"] == "ch2" and "NDRIZIM" not in h
    exposures = [F.InputExposure("icxe15wwq", "_flt", 250.0, 57000.0, 1)]
    _, h = F.make_mosaic("sci", "j001408m3023", "f105w", RA, DEC, (8, 8), 0.1, 1, input_exposures=exposures)
    assert h["D001DATA"] == "icxe15wwq_flt.fits[sci,1]" and h["EXPTIME"] == 250.0
    with pytest.raises(ValueError):
        F.make_mosaic("ctx", "j001408m3023", "f160w", RA, DEC, (8, 8), 0.1, 1)


def test_write_release(tmp_path):
    fields = [("j001408m3023", "hff-j001408m3023", RA, DEC), ("j224900m4432", "hff-j224900m4432", 342.185, -44.530139)]
    paths = F.write_release(tmp_path, fields, 60, seed=3, n_aors=2, mosaic_shape=(16, 16))
    assert len(set(paths)) == len(paths) and all(p.exists() for p in paths)
    by_dir: dict[str, list] = {}
    for p in paths:
        by_dir.setdefault(p.parent.name, []).append(C.parse_root(p.name))
    assert set(by_dir) == {"hff-j001408m3023", "hff-j224900m4432"}
    for (name, hst_root, ra, dec), parsed in zip(fields, by_dir.values()):
        kinds = [p.kind for p in parsed]
        assert kinds.count("phot_apcorr") == kinds.count("zout") == 1
        assert kinds.count("aor_log") == 4 and kinds.count(C.IGNORED) == 3  # ch3, ch4, files.txt
        assert {"det_sci", "det_wht", "seg", "hst_sci", "hst_wht", "irac_sci", "irac_wht"} <= set(kinds)
        assert {C.field_key(p.root) for p in parsed if p.root} == {name}
        cat = Table.read(tmp_path / hst_root / f"{name}_irac_phot_apcorr.fits")
        zout = Table.read(tmp_path / hst_root / f"{name}_irac.eazypy.zout.fits")
        np.testing.assert_array_equal(cat["id"], zout["id"])
        np.testing.assert_array_equal(cat["ra"], zout["ra"])
        layout = C.parse_phot_columns(cat.colnames)
        assert {"f160w", "f814w"} <= set(layout.filters) and 5 <= len(layout.filters) <= 9
        listed = (tmp_path / hst_root / "files.txt").read_text().split()
        assert sorted(listed) == sorted(p.name for p in paths if p.parent.name == hst_root and p.name != "files.txt")
    aorkeys = [p.extra["aorkey"] for ps in by_dir.values() for p in ps if p.kind == "aor_log"]
    assert len(set(aorkeys)) == 4  # unique across fields


def test_fits_writer_agrees_with_astropy(tmp_path):
    rng = np.random.default_rng(0)
    cols = {"id": np.arange(5, dtype=np.int32), "flux": rng.normal(size=5), "flag": np.arange(5, dtype=np.int16),
            "npix": np.arange(5, dtype=np.int64), "f4": rng.normal(size=5).astype(np.float32),
            "name": np.array(["a", "bcd", "", "ef", "g"]), "vec": rng.normal(size=(5, 5)),
            "corners": rng.normal(size=(5, 4, 2))}
    units = {"flux": "uJy", "corners": "deg"}
    F.write_fits_table(tmp_path / "ours.fits", cols, units, [("LONGKEYWORD", 1.5, "hierarch"), ("ROOT", "x", "")])
    ref = Table(cols)
    for name, unit in units.items():
        ref[name].unit = unit
    ref.write(tmp_path / "astropy.fits")
    ours, theirs = Table.read(tmp_path / "ours.fits"), Table.read(tmp_path / "astropy.fits")
    assert ours.colnames == theirs.colnames
    for name in ours.colnames:
        assert ours[name].dtype == theirs[name].dtype and ours[name].unit == theirs[name].unit, name
        np.testing.assert_array_equal(ours[name], theirs[name])
    assert ours.meta["LONGKEYWORD"] == 1.5 and ours.meta["ROOT"] == "x"
    with pytest.raises(ValueError, match="lengths"):
        F.write_fits_table(tmp_path / "bad.fits", {"a": np.zeros(2), "b": np.zeros(3)}, {})
