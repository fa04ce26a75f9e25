"""Alignment: proper-motion projection, WCS corrections, exposure / visit / joint fits, IRAC
reference selection; and (slow) the whole mosaic stage on the mock field, checked against
the injected pointing errors of ``truth.fits[OFFSETS]`` (used only here, never by the code).
"""
from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from pipeline.align import (
    AlignParams,
    VisitCatalog,
    align_exposures,
    bright_sources,
    catalog_radec,
    combined_reference,
    fit_to_reference,
    isolated,
    isolated_from,
    joint_fine_alignment,
    project_refcat,
    transform_wcs,
    wcs_offset,
)
from pipeline.mosaic import MosaicParams, build_mosaics, read_bcd, read_flt, release_grid
from pipeline.photometry import error_and_mask
from tests.test_mosaic import (
    DEC0,
    RA0,
    max_corner_error,
    offset_point,
    offset_wcs,
    render,
    tan_wcs,
)


def test_project_refcat_matches_astropy_space_motion():
    rng = np.random.default_rng(0)
    n = 50
    refcat = Table({"ra": rng.uniform(0, 360, n), "dec": rng.uniform(-80, 80, n),
                    "pmra": rng.normal(0, 50, n), "pmdec": rng.normal(0, 50, n)})
    refcat["pmra"][0] = np.nan  # missing proper motion: the star does not move
    for mjd in (Time(2010.0, format="jyear").mjd, Time(2021.3, format="jyear").mjd):
        out = project_refcat(refcat, mjd)
        pm = np.nan_to_num(np.asarray(refcat["pmra"]))
        c = SkyCoord(ra=refcat["ra"] * u.deg, dec=refcat["dec"] * u.deg, pm_ra_cosdec=pm * u.mas / u.yr,
                     pm_dec=refcat["pmdec"] * u.mas / u.yr, distance=1 * u.kpc, obstime=Time(2015.5, format="jyear"))
        moved = c.apply_space_motion(new_obstime=Time(mjd, format="mjd"))
        sep = SkyCoord(out["RA"], out["DEC"], unit="deg").separation(moved).arcsec
        assert np.max(sep) < 1e-3
        still = SkyCoord(refcat["ra"][0], refcat["dec"][0], unit="deg")
        assert still.separation(SkyCoord(out["RA"][0], out["DEC"][0], unit="deg")).arcsec < abs(refcat["pmdec"][0]) * 6e-3
    assert set(refcat.colnames) <= set(out.colnames)


def test_transform_wcs_and_wcs_offset_agree_with_an_independent_offset():
    w = tan_wcs(RA0, DEC0, 0.128, (300, 300), 40.0)
    true = offset_wcs(w, 0.3, -0.2, 0.05)
    moved = transform_wcs(w, 0.3, -0.2, 0.05, SkyCoord(*w.wcs.crval, unit="deg"))
    assert max_corner_error(true, moved) < 1e-6
    off = wcs_offset(w, true)
    assert (off.dx, off.dy, off.rotation, off.scale) == pytest.approx((0.3, -0.2, 0.05, 1.0), abs=1e-6)
    # a rotation about another point leaves that point where it was
    c = offset_point(10.0, -5.0)
    x, y = w.all_world2pix(c.ra.deg, c.dec.deg, 0)
    spun = transform_wcs(w, 0.0, 0.0, 1.0, c)
    assert SkyCoord(*spun.all_pix2world(x, y, 0), unit="deg").separation(c).arcsec < 1e-4


def _star_field(n=40, seed=0):
    rng = np.random.default_rng(seed)
    pos = offset_point(*rng.uniform(-15, 15, (2, n)))
    return pos, 10 ** rng.uniform(0.7, 1.7, n)


def _catalog(true_wcs, shape, pos, flux, scale=0.128, fwhm=0.15, seed=0):
    rng = np.random.default_rng(seed)
    sci = render(true_wcs, shape, pos.ra.deg, pos.dec.deg, flux, fwhm / 2.3548 / scale) + rng.normal(0, 0.05, shape)
    err = np.full(shape, 0.05)
    return bright_sources(sci, err, np.zeros(shape, bool), pixscale=scale)


def test_align_exposures_recovers_relative_shifts():
    pos, flux = _star_field()
    shape = (256, 256)
    pointings = [offset_point(dx, dy) for dx, dy in [(0, 0), (0.4, 0.3), (-0.3, 0.5)]]
    true = [tan_wcs(c.ra.deg, c.dec.deg, 0.128, shape, 30.0) for c in pointings]
    shifts = [(0.0, 0.0), (0.06, -0.04), (-0.05, 0.07)]
    header = [offset_wcs(t, dx, dy, 0.0) for t, (dx, dy) in zip(true, shifts)]
    cats = [_catalog(t, shape, pos, flux, seed=k) for k, t in enumerate(true)]
    fits_ = align_exposures(header, cats, ["a", "b", "c"])
    assert [f.status for f in fits_] == ["REFERENCE", "SUCCESS", "SUCCESS"]
    assert all(f.n_matched >= 20 and f.rms < 0.05 for f in fits_[1:])
    # relative to the reference exposure, every exposure now agrees with the truth
    ref_error = wcs_offset(true[0], fits_[0].wcs)
    for t, f in zip(true[1:], fits_[1:]):
        e = wcs_offset(t, f.wcs)
        assert np.hypot(e.dx - ref_error.dx, e.dy - ref_error.dy) < 0.01
    assert np.hypot(*np.subtract(shifts[1], shifts[0])) > 0.05  # there was something to fix


def test_fit_to_reference_rscale_needs_enough_matches_then_shift_works():
    pos, flux = _star_field(n=30, seed=1)
    shape = (256, 256)
    true = tan_wcs(RA0, DEC0, 0.128, shape, 10.0)
    header = offset_wcs(true, -0.35, 0.25, 0.015)
    cat = _catalog(true, shape, pos, flux)
    reference = Table({"RA": pos.ra.deg, "DEC": pos.dec.deg})
    fit = fit_to_reference(header, cat, reference, fitgeom="rscale", searchrad_arcsec=1.0)
    assert fit.ok and fit.n_matched >= 25
    assert max_corner_error(true, fit.wcs) < 0.02 < max_corner_error(true, header)
    few = fit_to_reference(header, cat, reference[:3], fitgeom="rscale", searchrad_arcsec=1.0)
    assert not few.ok and max_corner_error(few.wcs, header) == 0.0
    shift = fit_to_reference(header, cat, reference[:3], fitgeom="shift", searchrad_arcsec=1.0)
    assert shift.ok and shift.n_matched == 3


def test_joint_fine_alignment_ties_a_visit_without_stars_to_the_others():
    """Visit A sees the reference stars; visit B sees only galaxies and its WCS is off by
    0.07": the joint fit moves B onto A through the source pairs and leaves A in place."""
    rng = np.random.default_rng(2)
    stars = offset_point(*rng.uniform(-12, 12, (2, 8)))
    gals = offset_point(*rng.uniform(-12, 12, (2, 40)))
    refcat = Table({"ra": stars.ra.deg, "dec": stars.dec.deg, "pmra": np.zeros(8), "pmdec": np.zeros(8)})
    grid = release_grid(RA0, DEC0, 0.5).wcs("ir")
    noise = lambda n: rng.normal(0, 0.1, n)  # noqa: E731  centroid noise, pixels
    xa, ya = grid.all_world2pix(np.r_[stars.ra.deg, gals.ra.deg], np.r_[stars.dec.deg, gals.dec.deg], 0)
    cat_a = Table({"x": xa + noise(48), "y": ya + noise(48)})
    true_b = offset_wcs(grid, 0.06, -0.04, 0.0)  # B's sources measured through this, B claims ``grid``
    xb, yb = true_b.all_world2pix(gals.ra.deg, gals.dec.deg, 0)
    cat_b = Table({"x": xb + noise(40), "y": yb + noise(40)})
    mjd = Time(2015.5, format="jyear").mjd
    joint = joint_fine_alignment(
        [VisitCatalog("A", grid, cat_a, mjd), VisitCatalog("B", grid, cat_b, mjd)], refcat,
        params=AlignParams(joint_fitgeom="shift"))
    a, b = joint["A"], joint["B"]
    assert a.n_stars == 8 and b.n_stars == 0 and b.n_pairs >= 35
    assert np.hypot(a.dx, a.dy) < 0.01
    assert (b.dx, b.dy) == pytest.approx((0.06, -0.04), abs=0.01)
    assert max_corner_error(b.apply(grid), true_b) < 0.01 < max_corner_error(grid, true_b)


def test_irac_reference_selection():
    base = offset_point(0.0, 0.0)
    near = offset_point(2.0, 0.0)
    far = offset_point(10.0, 0.0)
    hst = Table({"RA": [base.ra.deg, near.ra.deg, far.ra.deg], "DEC": [base.dec.deg, near.dec.deg, far.dec.deg],
                 "flux": [10.0, 0.5, 3.0]})
    keep = isolated(hst, radius_arcsec=4.0, flux_ratio=0.1)
    assert keep.tolist() == [True, False, True]  # the faint neighbour spoils only itself
    stars = Table({"RA": [base.ra.deg, far.ra.deg], "DEC": [base.dec.deg, far.dec.deg]})
    assert isolated_from(stars, hst, radius_arcsec=4.0, exclusion_arcsec=0.5).tolist() == [False, True]
    ref = combined_reference(stars[1:], [hst[keep]], exclusion_arcsec=0.5)
    assert len(ref) == 2  # the star, plus the HST source away from it (its own detection dropped)


def test_irac_channel_whose_fit_failed_takes_the_shift_of_its_aor_sibling():
    """ch1 and ch2 of one AOR share the spacecraft pointing: a failed ch2 fit takes ch1's
    shift (the frames move by it and the record says so); a lone failed channel stays put."""
    from types import SimpleNamespace

    from pipeline.align import Fit, apply_fit
    from pipeline.mosaic import _sibling_shift

    grid = release_grid(RA0, DEC0, 2.0).wcs("irac")
    sub1, sub2 = grid.deepcopy(), grid.deepcopy()
    sub2.wcs.crpix = sub2.wcs.crpix - np.array([7.0, 3.0])  # another cutout of the same grid
    frame = tan_wcs(RA0, DEC0, 1.2, (256, 256), 30.0)
    good = Fit("r1-ch1", "SUCCESS", sub1, sub1, np.eye(2), np.array([0.2, -0.1]), 0.05, 40, "shift")
    good = Fit(good.name, good.status, sub1, apply_fit([sub1], good)[0], good.matrix, good.shift, 0.05, 40, "shift")
    failed = Fit("r1-ch2", "FAILED: not enough matches", sub2, sub2, np.eye(2), np.zeros(2), float("nan"), 0, "shift")
    frames = [SimpleNamespace(info=SimpleNamespace(visit_key="1"), wcs=frame)]
    ch1 = (SimpleNamespace(name="r1-ch1"), frames, apply_fit([frame], good), None, good, sub1)
    ch2 = (SimpleNamespace(name="r1-ch2"), frames, [frame], None, failed, sub2)
    logs = {"r1-ch2": ""}
    out = _sibling_shift(ch2, [ch1, ch2], logs)
    assert max_corner_error(out[2][0], ch1[2][0]) < 1e-6 and max_corner_error(frame, out[2][0]) > 0.05
    assert "shift of r1-ch1" in out[4].status and out[4].ref_wcs is sub2
    off1, off2 = wcs_offset(sub1, good.wcs), wcs_offset(sub2, out[4].wcs)
    assert (off2.dx, off2.dy) == pytest.approx((off1.dx, off1.dy), abs=1e-4)
    assert "r1-ch2" in logs["r1-ch2"]
    lone = (SimpleNamespace(name="r2-ch2"), [SimpleNamespace(info=SimpleNamespace(visit_key="2"), wcs=frame)],
            [frame], None, failed, sub2)
    assert _sibling_shift(lone, [ch1, lone], {"r2-ch2": ""}) is lone


# --------------------------------------------------------------------------- benchmark metrics
def test_wcs_error_and_the_recorded_correction_round_trip():
    from benchmarks.alignment import corrected_wcs, wcs_error

    header = tan_wcs(RA0, DEC0, 0.128, (400, 300), 25.0)
    true = offset_wcs(header, 0.3, -0.2, 0.01)
    centre, worst = wcs_error(true, header)
    assert worst == pytest.approx(max_corner_error(true, header), abs=1e-6)
    assert centre == pytest.approx(np.hypot(0.3, -0.2), abs=1e-3) and worst > centre  # the rotation adds at corners
    off = wcs_offset(header, true)
    assert wcs_error(true, corrected_wcs(header, off.dx, off.dy, off.rotation))[1] < 1e-4


def test_sky_cells_measure_a_known_level_against_their_noise_floor():
    from benchmarks.alignment import sky_cells, truth_empty

    rng = np.random.default_rng(7)
    n, sigma = 600, 2.0
    image = rng.normal(0.0, sigma, (n, n))
    image[:, :240] += 0.1 * sigma  # the two left columns of 12" cells sit 0.1 sigma high
    model = np.zeros((n, n))
    model[240:360, 240:360] = 10.0  # a source covering the central cell: not empty sky
    empty = truth_empty(model, np.ones((n, n), bool), sigma)
    cells = sky_cells(image, empty, pixscale=0.1, cell_arcsec=12.0)
    assert cells.level.shape == (5, 5) and np.isnan(cells.level[2, 2]) and cells.n == 24
    floor = np.nanmedian(cells.floor)
    assert floor == pytest.approx(1 / 120, rel=0.3)  # 0.4" blocks of 16 pixels, 900 per cell
    left, right = cells.level[:, :2], cells.level[:, 2:]
    assert np.all(np.abs(left - 0.1) < 4 * floor) and np.nanmax(np.abs(right)) < 4 * floor
    assert cells.worst == pytest.approx(np.nanmax(np.abs(cells.level)))


def test_injected_gradient_cells_is_the_weighted_mean_of_the_exposures_gradients():
    from benchmarks.alignment import injected_gradient_cells

    out = tan_wcs(RA0, DEC0, 0.1, (240, 240))
    native = tan_wcs(RA0, DEC0, 0.2, (120, 120))
    exposures = [{"wcs": native, "sky": 1.0, "sky_gx": 0.04, "sky_gy": 0.0, "weight": 1.0, "pixscale": 0.2},
                 {"wcs": native, "sky": 1.0, "sky_gx": 0.0, "sky_gy": -0.02, "weight": 3.0, "pixscale": 0.2}]
    grad = injected_gradient_cells(exposures, out, (240, 240), np.full((2, 2), 0.5), pixscale=0.1,
                                   cell_arcsec=12.0).reshape(2, 2)
    # cell centres at output pixels 59.5 and 179.5 = native 29.5 and 89.5, i.e. -/+ 30 native pixels
    # from the centre (59.5): gradients -/+ 0.04 * 30 / 120 (x) and +/- 0.02 * 30 / 120 (y), per
    # native pixel; (0.1 / 0.2)^2 of it per output pixel; weights 1 and 3; over sigma 0.5
    gx = np.array([-1.0, 1.0]) * 0.04 * 30 / 120
    gy = -np.array([-1.0, 1.0]) * 0.02 * 30 / 120
    expected = (gx[None, :] * 1.0 + gy[:, None] * 3.0) / 4.0 * 0.25 / 0.5
    assert grad == pytest.approx(expected, rel=1e-3)


# --------------------------------------------------------------------------- the mock field (slow)
@pytest.fixture(scope="module")
def mock_run(tmp_path_factory, mock_core):
    """The session's `mock_core` (0.5', seed 3, injected offsets) mosaicked with alignment."""
    info, path = mock_core, mock_core.outdir
    grid = release_grid(info.ra, info.dec, info.size_arcmin)
    result = build_mosaics(path, grid, MosaicParams(), output_dir=tmp_path_factory.mktemp("mock_mosaic"),
                           root="mock")
    offsets = Table.read(path / "truth.fits", "OFFSETS")
    truth = {Path(r["file"]).name.replace("_flt.fits", "").replace("_bcd.fits", ""): r for r in offsets}
    return path, grid, result, truth


def _true_and_header(record, truth):
    header = (read_bcd(record.path) if record.instrument == "IRAC" else read_flt(record.path)[0]).wcs
    r = truth[record.name]
    return offset_wcs(header, float(r["dx"]), float(r["dy"]), float(r["rot"])), header


def _final_wcs(header, a):
    """The header WCS with the reported correction (at the image centre) applied."""
    nx, ny = header.pixel_shape
    centre = SkyCoord(*header.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0), unit="deg")
    return transform_wcs(header, a.dx, a.dy, a.rotation, centre)


@pytest.mark.slow
def test_mock_hst_alignment_recovers_injected_offsets(mock_run):
    _, _, result, truth = mock_run
    hst = [e for e in result.exposures if e.instrument != "IRAC"]
    assert len({e.visit for e in hst}) >= 10
    for e in hst:
        true, header = _true_and_header(e, truth)
        assert max_corner_error(true, _final_wcs(header, e.alignment)) < 0.02, e.name
        injected = np.hypot(truth[e.name]["dx"], truth[e.name]["dy"])
        assert max_corner_error(true, header) > 0.8 * injected  # without the step: the injected error


@pytest.mark.slow
def test_mock_irac_alignment_recovers_injected_offsets(mock_run):
    _, _, result, truth = mock_run
    for aor in result.aors:
        frames = [e for e in result.exposures if e.visit == aor.name]
        for e in frames:
            true, header = _true_and_header(e, truth)
            assert max_corner_error(true, _final_wcs(header, e.alignment)) < 0.1, e.name


@pytest.mark.slow
def test_mock_mosaics_absolute_astrometry(mock_run):
    """Reference stars in every HST filter mosaic vs their positions projected to the mean
    epoch of the filter's visits: < 0.05" rms."""
    path, grid, result, _ = mock_run
    refcat = Table.read(path / "refcat.fits")
    epochs: dict[str, list[float]] = {}
    for e in result.exposures:
        epochs.setdefault(e.visit, []).append(e.mjd)
    for p in (q for q in result.products if q.layer != "irac"):
        sci, wht = fits.getdata(p.sci_path), fits.getdata(p.wht_path)
        err, nocov = error_and_mask(sci, wht)
        found = catalog_radec(bright_sources(sci, err, nocov, pixscale=grid.scale(p.layer)), grid.wcs(p.layer))
        stars = project_refcat(refcat, float(np.mean([np.mean(epochs[v]) for v in p.visits])))
        _, d2d, _ = SkyCoord(stars["RA"], stars["DEC"], unit="deg").match_to_catalog_sky(
            SkyCoord(found["RA"], found["DEC"], unit="deg"))
        matched = d2d.arcsec[d2d.arcsec < 0.3]
        assert len(matched) >= 3, p.filter
        assert np.sqrt(np.mean(matched**2)) < 0.05, p.filter


@pytest.mark.slow
def test_mock_exposure_sky_levels(mock_run):
    """Per-exposure pedestal vs the injected sky: exposure-to-exposure differences to < 0.1
    pixel sigma (rms per filter); the common excess (< 1 sigma) is the mock's faint-source
    light (Sersic wings out to 20", galaxies to mag 29), which no sky estimate can remove."""
    _, _, result, truth = mock_run
    by_filter: dict[str, list[float]] = {}
    for e in (x for x in result.exposures if x.instrument != "IRAC"):
        chip = read_flt(e.path)[0]
        sigma = float(np.median(chip.err[~chip.mask]))
        excess = (e.sky - float(truth[e.name]["sky"])) / sigma
        assert abs(excess) < 1.0, e.name
        by_filter.setdefault(e.filter, []).append(excess)
    for filt, excess in by_filter.items():
        assert np.std(excess) < 0.1, filt


@pytest.mark.slow
def test_mock_without_alignment_the_injected_offsets_show(mock_run):
    """The same mock without the alignment step: every IRAC frame's header WCS is off by its
    AOR's injected shift, and the HST exposures drizzled with their header WCSs put the
    reference stars off by the visits' injected errors (the step does something)."""
    from benchmarks.alignment import star_offsets
    from pipeline.mosaic import drizzle

    path, grid, result, truth = mock_run
    for e in (x for x in result.exposures if x.instrument == "IRAC"):
        true, header = _true_and_header(e, truth)
        assert max_corner_error(true, header) > 0.8 * np.hypot(truth[e.name]["dx"], truth[e.name]["dy"]), e.name
    refcat = Table.read(path / "refcat.fits")
    offsets = Table.read(path / "truth.fits", "OFFSETS")
    checked = 0
    for p in (q for q in result.products if q.layer != "irac"):
        rows = offsets[offsets["band"] == p.filter]
        mjd = float(np.mean(rows["mjd"]))
        wcs = grid.wcs(p.layer)
        aligned = star_offsets(fits.getdata(p.sci_path), fits.getdata(p.wht_path), wcs, refcat, mjd)
        chips = [c for f in rows["file"] for c in read_flt(path / str(f))]
        raw = star_offsets(*drizzle(chips, wcs, pixfrac=0.33), wcs, refcat, mjd, radius_arcsec=1.0)
        injected = float(np.median(np.hypot(rows["dx"], rows["dy"])))
        if injected < 0.15 or len(raw) < 3:
            continue
        checked += 1
        assert np.median(raw) > 0.3 * injected, p.filter  # stars blurred over visits off by their errors
        assert np.sqrt(np.mean(aligned**2)) < 0.5 * np.sqrt(np.mean(raw**2)), p.filter
    assert checked >= 2
