"""The `irac` stage (pipeline/stages/irac.py): its pure helpers, and a small mock field run through
mosaic -> detect -> photometry -> irac on the test database (slow), checked for provenance and
scored against the mock's truth with the issue's targets.

Expected values are computed independently of the code under test: footprints with astropy's WCS,
PSF orientation from the analytic axis of an elongated Gaussian, BCD coverage from each frame's
WCS, the model + residual = data identity from the input mosaic.
"""
from __future__ import annotations

import uuid

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from sqlalchemy import text

from alcsdb import config
from alcsdb.errors import InputError
from alcsdb.provenance import file_sha256
from benchmarks import irac_accuracy as score
from pipeline.irac import IracFlag, IracParams
from pipeline.runner import get_field, run_stage
from pipeline.sim_observe import make_wcs
from pipeline.stages import irac as stage

RA0, DEC0 = 0.002, -30.0   # fields straddle RA = 0 where that matters


def frame_wcs(ra: float, dec: float, orient: float, n: int = 100, scale: float = 1.2) -> WCS:
    wcs = make_wcs((ra, dec), ((n + 1) / 2, (n + 1) / 2), scale, orient)
    wcs.pixel_shape = (n, n)
    return wcs


def inside_by_wcs(wcs: WCS, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Inside the polygon of the frame's corner pixel centres (what calc_footprint returns)."""
    x, y = wcs.all_world2pix(ra, dec, 0)
    n = wcs.pixel_shape[0]
    return (x >= 0) & (x <= n - 1) & (y >= 0) & (y <= n - 1)


# ----------------------------------------------------------------------------- pure helpers
@pytest.mark.parametrize("orient", [0.0, 30.0, -75.0, 181.0])
def test_grid_orientation_is_the_y_axis_angle_east_of_north(orient):
    expected = (orient + 180.0) % 360.0 - 180.0
    assert stage.grid_orientation(frame_wcs(RA0, DEC0, orient)) == pytest.approx(expected, abs=1e-9)


def test_coverage_counts_frames_and_exposure_time_like_the_frames_wcs():
    rng = np.random.default_rng(3)
    frames = [frame_wcs(RA0 + rng.uniform(-0.02, 0.02), DEC0 + rng.uniform(-0.02, 0.02), rng.uniform(0, 360))
              for _ in range(12)]
    exptime = rng.uniform(20, 100, len(frames))
    ra = RA0 + rng.uniform(-0.06, 0.06, 4000)
    dec = DEC0 + rng.uniform(-0.06, 0.06, 4000)
    corners = np.array([w.calc_footprint() for w in frames])
    inside = np.array([inside_by_wcs(w, ra, dec) for w in frames]).T
    nexp, total = stage.coverage(ra % 360.0, dec, corners, exptime)
    assert 0 < inside.sum() < inside.size and (nexp == 0).any() and (nexp >= 3).any()
    np.testing.assert_array_equal(nexp, inside.sum(axis=1))
    np.testing.assert_allclose(total, inside @ exptime)


def test_coverage_ignores_frames_without_corners():
    corners = np.array([frame_wcs(RA0, DEC0, 10.0).calc_footprint(), np.full((4, 2), np.nan)])
    nexp, total = stage.coverage(np.array([RA0]), np.array([DEC0]), corners, np.array([30.0, 50.0]))
    assert nexp.tolist() == [1] and total.tolist() == [30.0]


def elongated_psf(n: int = 61, sx: float = 2.0, sy: float = 7.0) -> np.ndarray:
    """Gaussian elongated along the detector's +y axis, centre (n//2, n//2)."""
    y, x = np.indices((n, n)) - n // 2
    psf = np.exp(-0.5 * ((x / sx) ** 2 + (y / sy) ** 2))
    return psf / psf.sum()


def major_axis(psf: np.ndarray) -> np.ndarray:
    """Unit vector (x, y) of the major axis from second moments, sign fixed to y >= 0."""
    y, x = np.indices(psf.shape) - np.array(psf.shape)[:, None, None] // 2
    m = np.array([[np.sum(psf * x * x), np.sum(psf * x * y)], [np.sum(psf * x * y), np.sum(psf * y * y)]])
    vals, vecs = np.linalg.eigh(m)
    v = vecs[:, np.argmax(vals)]
    return v if v[1] >= 0 else -v


def aor_frames(pas: list[float], footprints: list[WCS], exptime: list[float], aor_index: list[int]) -> stage.AorFrames:
    return stage.AorFrames(np.array(pas, float), np.array(aor_index), np.array([w.calc_footprint() for w in footprints]),
                           np.array(exptime, float))


@pytest.mark.parametrize("pa, grid_orient", [(30.0, 0.0), (110.0, 0.0), (30.0, 50.0)])
def test_position_psf_is_turned_to_the_aor_angle_on_the_mosaic_grid(pa, grid_orient):
    """On a grid whose +y points `grid_orient` east of north, a detector +y pointing `pa` east of
    north appears turned counter-clockwise by pa - grid_orient (east is counter-clockwise from
    north on the sky seen with east to the left)."""
    mosaic = frame_wcs(RA0, DEC0, grid_orient, n=200, scale=0.5)
    frames = aor_frames([pa], [frame_wcs(RA0, DEC0, pa)], [100.0], [0])
    kp = stage.KernelAtPosition(elongated_psf(), elongated_psf(21, 1.0, 1.0), frames, mosaic, out_scale=0.1,
                                irac_psf_scale=0.1, hst_psf_scale=0.1)
    turn = np.radians(pa - grid_orient)
    expected = np.array([-np.sin(turn), np.cos(turn)])
    expected = expected if expected[1] >= 0 else -expected
    np.testing.assert_allclose(major_axis(kp.psf(100.0, 100.0)), expected, atol=2e-3)


def test_position_psf_weights_aors_by_their_exposure_time_at_the_position():
    mosaic = frame_wcs(RA0, DEC0, 0.0, n=400, scale=0.5)
    (ra, dec) = mosaic.all_pix2world([100.0, 170.0, 230.0], [200.0, 200.0, 200.0], 0)
    # 48" frames (96 mosaic pixels): AOR 0 (pa 0) at x = 100 and 170, AOR 1 (pa 90) at x = 230
    foot = [frame_wcs(r, d, 0.0, n=40) for r, d in zip(ra, dec)]
    frames = aor_frames([0.0, 90.0], foot, [30.0, 30.0, 20.0], [0, 0, 1])
    kp = stage.KernelAtPosition(elongated_psf(), elongated_psf(21, 1.0, 1.0), frames, mosaic, out_scale=0.1,
                                irac_psf_scale=0.1, hst_psf_scale=0.1)
    np.testing.assert_allclose(kp.weights(100.0, 200.0), [1.0, 0.0])
    np.testing.assert_allclose(kp.weights(200.0, 200.0), [0.6, 0.4])      # frames 2 and 3 overlap there
    np.testing.assert_allclose(kp.weights(260.0, 200.0), [0.0, 1.0])
    np.testing.assert_allclose(kp.weights(350.0, 200.0), [0.75, 0.25])    # no frame: total exposure times
    assert abs(major_axis(kp.psf(100.0, 200.0))[0]) < 1e-3       # detector +y = north
    assert abs(major_axis(kp.psf(260.0, 200.0))[1]) < 1e-3       # turned by 90 deg
    assert kp.kernel(100.0, 200.0) is kp.kernel(110.0, 200.0)    # same AOR mix: built once


def test_hst_model_inputs_remove_the_sky_pedestal_and_grow_segments():
    rng = np.random.default_rng(5)
    shape, noise, pedestal = (300, 300), 0.002, 0.025
    y, x = np.indices(shape)
    truth = np.zeros(shape)
    pos = [(60, 70), (150, 160), (230, 90), (200, 240)]
    for cx, cy in pos:
        truth += 2.0 * np.exp(-np.hypot(x - cx, y - cy) / 4.0) / (2 * np.pi * 16)
    image = truth + pedestal + rng.normal(0, noise, shape)
    weight = np.full(shape, 36.0 / noise ** 2)   # the noise under-estimated 6x, as in the mock mosaics
    seg = np.zeros(shape, np.int32)
    for i, (cx, cy) in enumerate(pos, 1):
        seg[np.hypot(x - cx, y - cy) < 6] = i
    ids = np.arange(1, len(pos) + 1)
    px, py = np.array(pos).T
    model, grown = stage.hst_model_inputs(image, weight, seg, ids, px, py, pixscale=0.1, box_arcsec=32.0,
                                          watershed=True, smooth_pix=5.0, min_sn=1.0)
    sky = (grown == 0)
    assert abs(np.median(model[sky])) < noise / 5
    for cx, cy in pos:   # source light is kept (the segments are masked from the sky estimate)
        near = np.hypot(x - cx, y - cy) < 25
        assert abs(model[near].sum() - truth[near].sum()) < 4 * noise * np.sqrt(near.sum())
    assert np.all(grown[seg > 0] == seg[seg > 0])
    assert np.all([(grown == i).sum() > (seg == i).sum() for i in ids])
    assert sky.mean() > 0.8          # with the pedestal left in, the watershed would take the whole image
    _, plain = stage.hst_model_inputs(image, weight, seg, ids, px, py, pixscale=0.1, box_arcsec=32.0,
                                      watershed=False, smooth_pix=5.0, min_sn=1.0)
    assert plain is seg


def test_detection_psf_weights_bands_as_the_detection_image():
    from pipeline.photometry import ujy_per_count
    from pipeline.sim_bands import BANDS

    rng = np.random.default_rng(3)
    acs = rng.uniform(90, 110, (40, 40))             # 0.05" pixels: 2x2 blocks sum, weights quarter
    ir = rng.uniform(9, 11, (20, 20))
    weights = stage.detection_weights({"f814w": (acs, BANDS["f814w"].photfnu, 0.05),
                                       "f160w": (ir, BANDS["f160w"].photfnu, 0.1)}, 0.1)
    assert weights["f814w"] == pytest.approx(np.median(acs) / 4 / ujy_per_count(photfnu=BANDS["f814w"].photfnu) ** 2,
                                             rel=0.05)
    assert weights["f160w"] == pytest.approx(np.median(ir) / ujy_per_count(photfnu=BANDS["f160w"].photfnu) ** 2)
    mix = stage.detection_psf({"f814w": 1.0, "f160w": 3.0, "f999w": 5.0}, 0.1)   # no model for f999w: left out
    expected = 0.25 * stage.band_psf("f814w", 0.1) + 0.75 * stage.band_psf("f160w", 0.1)
    np.testing.assert_allclose(mix, expected, atol=1e-12)
    with pytest.raises(InputError, match="no PSF model"):
        stage.detection_psf({"f999w": 1.0}, 0.1)


def test_kernel_from_the_model_image_psf_reproduces_the_irac_psf():
    """A point source in the HST model image (the F160W mosaic PSF) convolved with the kernel
    matched from that PSF is the IRAC PSF on the IRAC grid; the F105W star stand-in is not."""
    from scipy import fft

    from pipeline.irac_kernel import matching_kernel, pad_to, to_centre

    path = config.shared_path("psf", "irac_ch1_warm_psf.fits")
    irac = to_centre(stage.load_irac_psf(path), stage.irac_psf_reference(path))
    f160w = stage.band_psf("f160w", 0.1)
    star = stage.load_hst_psf(config.shared_path(*stage.HST_PSF))

    def binned_model(hst, hst_scale):
        k = matching_kernel(hst, hst_scale, irac, 0.1, out_scale=0.1, recenter_target=False)
        point = pad_to(f160w, k.shape)
        image = np.real(fft.fftshift(fft.ifft2(fft.fft2(fft.ifftshift(point)) * fft.fft2(fft.ifftshift(k)))))
        return image.reshape(60, 5, 60, 5).sum(axis=(1, 3))

    target = pad_to(irac, (300, 300)).reshape(60, 5, 60, 5).sum(axis=(1, 3))
    assert np.abs(binned_model(f160w, 0.1) - target).max() < 0.002 * target.max()
    assert np.abs(binned_model(star, stage.HST_PSF_SCALE) - target).max() > 0.03 * target.max()


def test_channels_and_fit_parameters():
    assert stage.channels({"channel": "both"}) == ("ch1", "ch2")
    assert stage.channels({"channel": "CH2"}) == ("ch2",)
    with pytest.raises(InputError, match="ch1, ch2 or both"):
        stage.channels({"channel": "ch3"})
    assert stage.irac_params(stage.DEFAULTS) == IracParams()
    assert stage.irac_params({**stage.DEFAULTS, "mag_limit": [23.0, 26.0]}).mag_limit == (23.0, 26.0)
    assert stage.DEFAULTS["channel"] == "both" and stage.DEFAULTS["n_proc"] == 1


def test_plan_needs_a_detect_run(engine):
    with engine.connect() as conn:
        field = get_field(conn, "j001408m3023")
        with pytest.raises(InputError, match="needs a succeeded detect run"):
            stage.plan(conn, field, dict(stage.DEFAULTS), None)


def conn_rows(engine, sql: str, run_id: int) -> list:
    with engine.connect() as conn:
        return conn.execute(text(sql), {"r": run_id}).all()


# ----------------------------------------------------------------------------- mock field, end to end
FIELD, SIZE_ARCMIN, SEED = "j001408m3023", 0.5, 1


@pytest.fixture(scope="module")
def chain(server_urls, tmp_path_factory):
    """A 0.5' mock through mosaic, detect, photometry and irac in a private schema."""
    from alcsdb import db
    from pipeline.mock import simulate_field

    mock_dir = tmp_path_factory.mktemp("irac_mock")
    simulate_field(mock_dir, field=FIELD, size_arcmin=SIZE_ARCMIN, seed=SEED)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = db.make_engine(server_urls["embedded"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = db.make_engine(db.with_schema(server_urls["embedded"], schema))
    db.upgrade(engine)
    results = {s: run_stage(engine, s, FIELD, input_dir=mock_dir if s == "mosaic" else None)
               for s in ("mosaic", "detect", "photometry", "irac")}
    yield engine, results, mock_dir
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.mark.slow
def test_irac_rows_and_products_have_provenance(chain):
    engine, results, mock_dir = chain
    irac_run, det_run, mosaic_run = (results[s].run_id for s in ("irac", "detect", "mosaic"))
    with engine.connect() as conn:
        run = conn.execute(text("SELECT status, params FROM run WHERE run_id = :r"), {"r": irac_run}).one()
        n_src = conn.execute(text("SELECT count(*) FROM source WHERE run_id = :r"), {"r": det_run}).scalar_one()
        rows = conn.execute(text(
            "SELECT i.channel, i.run_id, i.nexp, i.exptime, i.patch, i.flux, i.flag, s.ra, s.dec, s.mag_auto "
            "FROM irac_flux i "
            "JOIN source s USING (source_id) WHERE i.run_id = :r"), {"r": irac_run}).all()
        inputs = dict(conn.execute(text(
            "SELECT ri.role, p.run_id FROM run_input ri JOIN product p USING (product_id) WHERE ri.run_id = :r"),
            {"r": irac_run}).all())
        products = conn.execute(text(
            "SELECT p.kind, f.name, p.path, p.sha256, p.size_bytes FROM product p JOIN filter f USING (filter_id) "
            "WHERE p.run_id = :r ORDER BY p.kind, f.name"), {"r": irac_run}).all()
        irac_inputs = dict(conn.execute(text(
            "SELECT ri.role, p.path FROM run_input ri JOIN product p USING (product_id) WHERE ri.run_id = :r "
            "AND ri.role LIKE 'irac_sci_%'"), {"r": irac_run}).all())
    assert run.status == "succeeded"
    assert {k: v for k, v in run.params.items() if k in stage.DEFAULTS} == stage.DEFAULTS
    for role, ref in run.params["reference_files"].items():
        assert ref["sha256"] == file_sha256(config.shared_path(*ref["file"].split("/"))), role
    hst_filters = {f for f, in conn_rows(engine, "SELECT DISTINCT f.name FROM product p JOIN filter f USING (filter_id) "
                                              "WHERE p.run_id = :r AND p.kind = 'hst_wht'", mosaic_run)}
    assert hst_filters and {"f160w", "f814w"} <= hst_filters
    # the detection image's PSF is built from the weights of the HST mosaics the detect run combined
    assert inputs == {"det_sci": det_run, "det_wht": det_run, "seg": det_run, "irac_sci_ch1": mosaic_run,
                      "irac_wht_ch1": mosaic_run, "irac_sci_ch2": mosaic_run, "irac_wht_ch2": mosaic_run,
                      "irac_sampling_ch1": mosaic_run, "irac_sampling_ch2": mosaic_run,
                      **{f"hst_{k}_{f}": mosaic_run for f in hst_filters for k in ("sci", "wht")}}
    assert len(rows) == 2 * n_src and {r.run_id for r in rows} == {irac_run}
    assert {r.channel for r in rows} == {1, 2} and all(r.patch is not None and r.patch >= 0 for r in rows)
    # every source brighter than the first-pass limit (AB 24) is modelled; a flux is missing exactly
    # when a flag other than BRIGHT / SERSIC says why
    bright = [r for r in rows if r.mag_auto is not None and r.mag_auto < IracParams().mag_limit[0]]
    assert bright and not any(r.flag & IracFlag.NOT_MODELLED for r in bright)
    assert sum(r.flux is not None for r in bright) >= 0.8 * len(bright)
    assert all((r.flux is None) == (r.flag & ~int(IracFlag.BRIGHT | IracFlag.SERSIC) != 0) for r in rows)
    # coverage from each BCD's own WCS (the header WCS, as the mosaic stage records footprints)
    for ch in (1, 2):
        headers = [fits.getheader(p) for p in sorted(mock_dir.glob(f"irac/r*/ch{ch}/bcd/*_bcd.fits"))]
        mine = [r for r in rows if r.channel == ch]
        ra, dec = np.array([r.ra for r in mine]), np.array([r.dec for r in mine])
        covering = np.zeros(len(mine), int)
        exptime = np.zeros(len(mine))
        for h in headers:
            wcs = WCS(h)
            wcs.pixel_shape = (h["NAXIS1"], h["NAXIS2"])
            hit = inside_by_wcs(wcs, ra, dec)
            covering += hit
            exptime += hit * h["EXPTIME"]
        assert covering.max() > 0
        np.testing.assert_array_equal([r.nexp for r in mine], covering)
        np.testing.assert_allclose([r.exptime for r in mine], exptime)
    assert [(k, f) for k, f, *_ in products] == [("irac_components", "ch1"), ("irac_components", "ch2"),
                                                  ("irac_model", "ch1"), ("irac_model", "ch2")]
    for kind, ch, path, sha, size in products:
        assert file_sha256(path) == sha
        with fits.open(path) as hdul:
            if kind == "irac_model":
                data = fits.getdata(irac_inputs[f"irac_sci_{ch}"]).astype(float)
                model, resid = hdul["MODEL"].data.astype(float), hdul["RESIDUAL"].data.astype(float)
                np.testing.assert_allclose(model + resid, data, atol=1e-4 * np.abs(data).max())
                assert hdul["BACKGROUND"].data.shape == data.shape and hdul["MODEL"].header["BUNIT"] == "uJy"
                assert np.std(resid) < 0.5 * np.std(data)      # the models carry most of the light
            else:
                assert len(Table(hdul["SOURCES"].data)) == n_src and len(Table(hdul["PATCHES"].data)) >= 1


@pytest.mark.slow
def test_pipeline_ends_with_zout_rows_for_every_source_and_cone_search_joins_redshifts(chain):
    """Issue 7's end state on the mock chain: the pipeline (`runner.run_fields`, what `alcsdb
    pipeline` runs) skips the unchanged HST stages and ends with a photoz run holding one zout row
    per detected source; a cone search joined with zout returns those redshifts for exactly the
    sources in the cone (brute-force angular distances). The redshift grid is coarse (step 0.1 in
    ln(1+z)) so the template grid builds in seconds; accuracy is benchmarks/mock_photoz.py's job."""
    from astropy.coordinates import SkyCoord

    from alcsdb.errors import ConfigError
    from pipeline.runner import STAGES, FieldJob, run_fields

    try:
        config.eazy_dir()
    except ConfigError as exc:
        pytest.skip(str(exc))
    engine, results, mock_dir = chain
    [outcome] = run_fields(engine, [FieldJob(FIELD, mock_dir)], overrides={"photoz": {"z_step": 0.1, "z_max": 7.0}})
    assert outcome.error is None, outcome.error
    by_stage = {r.stage: r for r in outcome.results}
    assert list(by_stage) == list(STAGES)
    for s in ("mosaic", "detect", "photometry"):
        assert by_stage[s].skipped and by_stage[s].run_id == results[s].run_id, s
    photoz = by_stage["photoz"]
    assert not photoz.skipped and photoz.rows["zout"] > 0
    with engine.connect() as conn:
        field = get_field(conn, FIELD)
        sources = conn.execute(text("SELECT source_id, ra, dec FROM source WHERE run_id = :d ORDER BY source_id"),
                               {"d": results["detect"].run_id}).all()
        rows = conn.execute(text("SELECT source_id, z_phot, nusefilt, pz IS NOT NULL AS has_pz FROM zout "
                                 "WHERE run_id = :r"), {"r": photoz.run_id}).all()
        params = conn.execute(text("SELECT params FROM run WHERE run_id = :r"), {"r": photoz.run_id}).scalar_one()
        radius = 10.0
        cone = conn.execute(text(
            "SELECT c.source_id, c.distance_arcsec, z.z_phot FROM alcs_cone_search(:ra, :dec, :r) c "
            "JOIN zout z ON z.source_id = c.source_id AND z.run_id = :p"),
            {"ra": field.ra, "dec": field.dec, "r": radius, "p": photoz.run_id}).all()
    assert params["photometry_run"] == results["photometry"].run_id and params["irac_run"] is not None
    zout = {r.source_id: r.z_phot for r in rows}
    assert sorted(zout) == [s.source_id for s in sources]  # one row per source, no other
    # every source measured in three or more filters was fitted (has p(z)); z_phot = -1 where p(z)
    # peaks at Z_MIN, as eazy reports it
    assert all(r.has_pz for r in rows if r.nusefilt >= 3) and sum(r.nusefilt >= 3 for r in rows) > 0.8 * len(rows)
    z_phot = np.array(list(zout.values()), dtype=float)
    assert np.all(np.isfinite(z_phot)) and np.all((z_phot == -1) | (z_phot > 0)) and np.mean(z_phot > 0) > 0.5
    centre = SkyCoord(field.ra, field.dec, unit="deg")
    sep = SkyCoord([s.ra for s in sources], [s.dec for s in sources], unit="deg").separation(centre).arcsec
    inside = {s.source_id for s, d in zip(sources, sep) if d <= radius}
    assert len(inside) >= 5 and {r.source_id for r in cone} == inside
    assert all(r.z_phot == zout[r.source_id] for r in cone)


@pytest.mark.slow
def test_unchanged_irac_run_is_skipped(chain):
    engine, results, _ = chain
    again = run_stage(engine, "irac", FIELD)
    assert again.skipped and again.run_id == results["irac"].run_id
    changed = run_stage(engine, "irac", FIELD, overrides={"channel": "ch1", "galfit_flux_limit": None})
    assert not changed.skipped and changed.rows["irac_flux"] > 0
    with engine.connect() as conn:
        channels = conn.execute(text("SELECT DISTINCT channel FROM irac_flux WHERE run_id = :r"),
                                {"r": changed.run_id}).scalars().all()
    assert channels == [1]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "issue 6 targets not met on the mocks (numbers and causes: benchmarks/irac_accuracy.py, README): medians "
    "are within 3%, but the pulls of bright sources are several to tens of sigma: 1-2% model systematics "
    "(HST segments that cut galaxy wings, SED-dependent HST PSF, Sersic refits, the drizzle-sampled models' "
    "remaining 1.4% of a point source's peak) and faint red sources the HST models miss"))
def test_irac_accuracy_meets_the_issue_targets(chain):
    engine, results, mock_dir = chain
    truth = Table.read(mock_dir / "truth.fits", "SOURCES")
    scores = score.evaluate(engine, FIELD, truth, results["irac"].run_id)
    for ch, s in scores.items():
        # the 0.5' field holds ~10 sources with S/N > 10: enough for these medians, not for more
        assert s["model"].n >= 5, ch
        assert abs(s["model"].median_rel) <= 0.03, (ch, s["model"])
        assert 0.8 <= s["model"].pull_nmad <= 1.3, (ch, s["model"])
        if s["model_neighbour"].n >= 3:
            assert abs(s["model_neighbour"].median_rel) <= 0.03, (ch, s["model_neighbour"])
            assert 0.8 <= s["model_neighbour"].pull_nmad <= 1.3, (ch, s["model_neighbour"])
        assert s["residual_ratio"] <= 1.2, (ch, s["residual_ratio"])



@pytest.mark.slow
def test_photoz_irac_scale_puts_irac_colours_on_the_hst_totals(chain):
    """``irac_scale=hst_total``: each IRAC flux and error is its colour against the model's HST
    flux (``model_norm``) times the detection image's Kron total with the reddest filter's
    point-source correction, computed here independently in SQL; ``model`` (the release) leaves
    them as fitted; an unknown choice is a one-line InputError before any run is made."""
    from pipeline.stages.photoz import _fluxes

    engine, results, _ = chain
    irac_run, phot_run, det_run = (results[s].run_id for s in ("irac", "photometry", "detect"))
    with engine.connect() as conn:
        expected = conn.execute(text(
            "SELECT i.source_id, i.channel, i.flux, i.err, i.model_norm, "
            "i.flux * s.flux_auto * t.tot_corr / i.model_norm AS scaled, "
            "i.err * s.flux_auto * t.tot_corr / i.model_norm AS scaled_err "
            "FROM irac_flux i JOIN source s USING (source_id) "
            "JOIN total_correction t ON t.source_id = i.source_id AND t.run_id = :p "
            "JOIN filter f ON f.filter_id = t.filter_id AND f.name = 'f160w' "
            "WHERE i.run_id = :r AND i.flux IS NOT NULL"), {"r": irac_run, "p": phot_run}).all()
        params = {"photometry_run": phot_run, "irac_run": irac_run, "aperture_index": 2}
        src, plain, _, numbers = _fluxes(conn, FIELD, {**params, "irac_scale": "model"})
        _, scaled, scaled_err, _ = _fluxes(conn, FIELD, {**params, "irac_scale": "hst_total"})
        n_sources = conn.execute(text("SELECT count(*) FROM source WHERE run_id = :d"), {"d": det_run}).scalar_one()
    assert len(expected) > 0.5 * n_sources
    assert all(r.model_norm > 0 for r in expected)
    row = {int(s): k for k, s in enumerate(src["source_id"])}
    col = {1: numbers.index(18), 2: numbers.index(19)}
    for r in expected:
        k, c = row[r.source_id], col[r.channel]
        assert plain[k, c] == pytest.approx(r.flux)
        if r.scaled is not None and r.scaled_err > 0:
            assert scaled[k, c] == pytest.approx(r.scaled, rel=1e-9)
            assert scaled_err[k, c] == pytest.approx(r.scaled_err, rel=1e-9)
    hst = [numbers.index(n) for n in numbers if n not in (18, 19)]
    np.testing.assert_array_equal(np.isnan(plain[:, hst]), np.isnan(scaled[:, hst]))
    np.testing.assert_allclose(plain[:, hst], scaled[:, hst])
    with pytest.raises(InputError, match="irac_scale"):
        run_stage(engine, "photoz", FIELD, overrides={"irac_scale": "total"})
