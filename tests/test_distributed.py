"""The pipeline on a dask.distributed cluster (issue 9 item 1): a LocalCluster of 2 worker
processes, the embedded PostgreSQL, two 0.5' mock fields through mosaic, detect and photometry.

- the cluster's rows equal the single-process run's: `source`, `aperture_flux`,
  `total_correction`, `bcd` and every product file (sha256) exactly; `exposure` and `aor` to
  1e-12 relative (`align_rms_arcsec` differs in the last bit: the workers run BLAS on one
  thread, dask's default);
- two fields run at once, on both workers; the cluster is recorded in the run's message, not its
  parameters, so a cluster run and an in-process run skip each other's unchanged stages;
- a worker killed mid-stage (after writing rows, before commit) leaves no rows, its run is
  marked failed, the CLI says so in one line, and re-running finishes the job;
- errors raised on a worker reach the CLI as one line;
- IRAC patches fitted on the cluster from a stage task give the serial fit's fluxes.
"""
from __future__ import annotations

import math
import os
import signal
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from alcsdb.cli import cli
from pipeline import distributed
from pipeline.runner import FieldJob, field_jobs, run_fields, run_stage

from .conftest import MOCK_FIELD, MOCK_SEED, MOCK_SIZE_ARCMIN

FIELDS = ("j001408m3023", "j224900m4432")
SIZE_ARCMIN, SEED = 0.5, 3
HST = ("mosaic", "detect", "photometry")


@pytest.fixture(scope="module")
def cluster(alcsdb_home):
    with distributed.open_cluster(workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def url(server_urls):
    from alcsdb import db

    with db.scratch_schema(server_urls["embedded"], "dist") as schema_url:
        yield schema_url


@pytest.fixture(scope="module")
def engine(url):
    from alcsdb import db

    eng = db.make_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def mocks(tmp_path_factory, mock_core):
    """DIR/FIELD/ for both fields, as `alcsdb mock DIR/FIELD --field FIELD` writes them (the first
    is the session's `mock_core`, linked)."""
    from pipeline.mock import _field_defaults, simulate_field

    assert FIELDS[0] == MOCK_FIELD and (SIZE_ARCMIN, SEED) == (MOCK_SIZE_ARCMIN, MOCK_SEED)
    root = tmp_path_factory.mktemp("fields")
    (root / FIELDS[0]).symlink_to(mock_core.outdir, target_is_directory=True)
    for name in FIELDS[1:]:
        simulate_field(root / name, field=name, size_arcmin=SIZE_ARCMIN, seed=SEED, **_field_defaults(name))
    return root


@pytest.fixture(scope="module")
def runs(engine, mocks, cluster):
    """Field 1 in this process; then both fields on the cluster (field 1 forced to run again)."""
    single = run_fields(engine, [FieldJob(FIELDS[0], mocks / FIELDS[0])], stages=HST)
    assert single[0].error is None, single[0].error
    with engine.connect() as conn:
        jobs = field_jobs(conn, mocks)
    assert [j.field for j in jobs] == sorted(FIELDS)
    on_cluster = distributed.run_fields(cluster, engine, jobs, stages=HST, force=True)
    by_field = {o.field: o for o in on_cluster}
    for o in on_cluster:
        assert o.error is None, o.error
        assert [r.stage for r in o.results] == list(HST) and not any(r.skipped for r in o.results)
    return {"single": {r.stage: r.run_id for r in single[0].results},
            "cluster": {f: {r.stage: r.run_id for r in by_field[f].results} for f in FIELDS}}


def _cli(url: str, *args: str):
    return CliRunner().invoke(cli, ["--db", url, *map(str, args)])


def _rows(conn, table: str, run_id: int) -> list[dict]:
    """A run's rows in a stable order, without the ids that differ between runs (sources by `id`)."""
    order = {"source": "t.id", "exposure": "t.rootname", "aor": "t.aorkey, t.channel", "bcd": "t.file"}
    if table in ("aperture_flux", "total_correction"):
        sql = (f"SELECT s.id AS source_number, t.* FROM {table} t JOIN source s USING (source_id) "
               f"WHERE t.run_id = :r ORDER BY s.id, t.filter_id{', t.aperture' if table == 'aperture_flux' else ''}")
    else:
        sql = f"SELECT t.* FROM {table} t WHERE t.run_id = :r ORDER BY {order[table]}"
    drop = {"run_id", "source_id", "exposure_id", "aor_id", "product_id"}
    return [{k: v for k, v in r.items() if k not in drop} for r in conn.execute(text(sql), {"r": run_id}).mappings()]


def _same(a, b, rtol: float = 0.0) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= rtol * max(abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, rtol) for x, y in zip(a, b))
    return a == b


def _products(conn, run_id: int) -> dict:
    return {(k, f): sha for k, f, sha in conn.execute(text(
        "SELECT p.kind, f.name, p.sha256 FROM product p LEFT JOIN filter f USING (filter_id) WHERE p.run_id = :r"),
        {"r": run_id})}


# ----------------------------------------------------------------------------- same results, in parallel
@pytest.mark.slow
def test_cluster_rows_equal_the_single_process_rows(engine, runs):
    single, dask_runs = runs["single"], runs["cluster"][FIELDS[0]]
    exact = {"mosaic": ("bcd",), "detect": ("source",), "photometry": ("aperture_flux", "total_correction")}
    with engine.connect() as conn:
        for stage, tables in exact.items():
            for table in tables:
                a, b = _rows(conn, table, single[stage]), _rows(conn, table, dask_runs[stage])
                assert len(a) == len(b) > 0, table
                bad = [(k, x[k], y[k]) for x, y in zip(a, b) for k in x if not _same(x[k], y[k])]
                assert not bad, (table, bad[:5])
        for table in ("exposure", "aor"):
            a, b = _rows(conn, table, single["mosaic"]), _rows(conn, table, dask_runs["mosaic"])
            assert len(a) == len(b) > 0
            assert all(_same(x[k], y[k], rtol=1e-12) for x, y in zip(a, b) for k in x), table
        for stage in ("mosaic", "detect"):  # mosaics, alignment log, detection image, segmentation: byte for byte
            mine, theirs = _products(conn, single[stage]), _products(conn, dask_runs[stage])
            assert mine == theirs and len(mine) >= 3, stage


@pytest.mark.slow
def test_fields_run_at_once_on_both_workers_and_the_cluster_is_not_a_parameter(engine, runs, cluster, mocks):
    ids = [runs["cluster"][f]["mosaic"] for f in FIELDS]
    with engine.connect() as conn:
        # (finished_at is the time the writing transaction began: now(); started_at + wall_time_s is the end)
        rows = conn.execute(text("SELECT run_id, pid, started_at, started_at + wall_time_s * interval '1 second', "
                                 "message, params_hash FROM run WHERE run_id = ANY(:r) ORDER BY run_id"),
                            {"r": ids}).all()
        single_hash = conn.execute(text("SELECT params_hash FROM run WHERE run_id = :r"),
                                   {"r": runs["single"]["mosaic"]}).scalar()
    # FIELDS[0]'s run first: the two workers insert their run rows in either order, and the
    # parameters (the input folder) of the other field's run differ from the single run's
    rows = sorted(rows, key=lambda r: r[0] != ids[0])
    (_, pid_a, start_a, end_a, msg_a, hash_a), (_, pid_b, start_b, end_b, _, _) = rows
    assert pid_a != pid_b and os.getpid() not in (pid_a, pid_b), rows          # two worker processes
    assert start_a < end_b and start_b < end_a, rows                          # at the same time
    assert "dask scheduler" in msg_a and "2 workers" in msg_a and "ran on worker" in msg_a
    assert hash_a == single_hash
    # the newest detect run of field 1 is the cluster's: unchanged in this process, so skipped
    again = run_stage(engine, "detect", FIELDS[0])
    assert again.skipped and again.run_id == runs["cluster"][FIELDS[0]]["detect"]


# ----------------------------------------------------------------------------- a worker killed mid-stage
def _install_killer():
    """On a worker: photometry writes its aperture rows (in the open transaction), then the process dies."""
    from pipeline.stages import photometry

    original = photometry.write_total_corrections

    def write_then_die(*args, **kwargs):
        original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    photometry._original_write_total_corrections = original
    photometry.write_total_corrections = write_then_die


def _remove_killer():
    from pipeline.stages import photometry

    original = getattr(photometry, "_original_write_total_corrections", None)
    if original is not None:
        photometry.write_total_corrections = original


@pytest.mark.slow
def test_killed_worker_leaves_no_rows_marks_the_run_failed_and_a_rerun_finishes(url, engine, runs, cluster):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    field, address = FIELDS[1], cluster.scheduler.address
    cluster.run(_install_killer)
    try:
        res = _cli(url, "run", "photometry", "--field", field, "--force", "--scheduler", address)
    finally:
        cluster.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker
        cluster.run(_remove_killer)
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "worker running it was lost" in errors[0] and "marked failed" in errors[0], res.output
    with engine.connect() as conn:
        run_id, status, message = conn.execute(text(
            "SELECT run_id, status, message FROM run WHERE stage = 'photometry' ORDER BY run_id DESC LIMIT 1")).one()
        assert status == "failed" and "worker lost" in message
        assert f"run {run_id} marked failed" in errors[0]
        for table in ("aperture_flux", "total_correction", "product"):
            assert conn.execute(text(f"SELECT count(*) FROM {table} WHERE run_id = :r"), {"r": run_id}).scalar() == 0
    res = _cli(url, "run", "photometry", "--field", field, "--force", "--scheduler", address)
    assert res.exit_code == 0, res.output
    with engine.connect() as conn:
        rerun, status = conn.execute(text(
            "SELECT run_id, status FROM run WHERE stage = 'photometry' ORDER BY run_id DESC LIMIT 1")).one()
        assert status == "succeeded" and rerun > run_id
        before = _rows(conn, "aperture_flux", runs["cluster"][field]["photometry"])
        assert _rows(conn, "aperture_flux", rerun) == before and len(before) > 0


# ----------------------------------------------------------------------------- errors as one line
def _one_error_line(res) -> str:
    lines = [line for line in res.output.splitlines() if line.strip() and not line.startswith(("dask ", "  "))]
    assert res.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


@pytest.mark.slow
def test_worker_errors_reach_the_cli_as_one_line(url, engine, cluster):
    # raised by the stage's plan on a worker
    line = _one_error_line(_cli(url, "run", "detect", "--field", "j024004m0136", "--scheduler",
                                cluster.scheduler.address))
    assert "needs a succeeded mosaic run" in line
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run r JOIN field f USING (field_id) "
                                 "WHERE f.name = 'j024004m0136'")).scalar() == 0
    line = _one_error_line(_cli(url, "run", "detect", "--field", FIELDS[0], "--scheduler", "tcp://127.0.0.1:9"))
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in line


def test_all_fields_folders_are_checked_before_anything_runs(url, engine, tmp_path):
    with engine.connect() as conn:
        n_runs = conn.execute(text("SELECT count(*) FROM run")).scalar()
    (tmp_path / "j001408m3023" / "hst").mkdir(parents=True)
    (tmp_path / "j001408m3023" / "hst" / "x_flt.fits").write_bytes(b"")
    (tmp_path / "not-a-field").mkdir()
    line = _one_error_line(_cli(url, "pipeline", "--all-fields", "--input", tmp_path))
    assert "not-a-field: the folder name is not a known field" in line
    (tmp_path / "not-a-field").rmdir()
    (tmp_path / "hff-j224900m4432").mkdir()
    line = _one_error_line(_cli(url, "pipeline", "--all-fields", "--input", tmp_path, "--workers", "2"))
    assert "hff-j224900m4432: no HST exposures" in line
    res = _cli(url, "pipeline", "--all-fields", "--field", "j001408m3023", "--input", tmp_path)
    assert res.exit_code == 2 and "either --field F or --all-fields" in res.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == n_runs


# ----------------------------------------------------------------------------- lost runs
def test_mark_lost_runs_marks_only_runs_nobody_holds(engine):
    from alcsdb.provenance import insert_run, stage_run

    with engine.connect() as conn:
        fid = conn.execute(text("SELECT field_id FROM field WHERE name = :n"), {"n": FIELDS[0]}).scalar()
        floor = conn.execute(text("SELECT coalesce(max(run_id), 0) FROM run")).scalar()
        dead = insert_run(conn, "detect", field_id=fid)  # committed without its lock: its process is gone
        conn.commit()
    with stage_run(engine, "photometry", field_id=fid) as live:
        marked = distributed.mark_lost_runs(engine, fid, floor, "worker lost (test)")
        assert marked == [dead]
        with engine.connect() as conn:
            status = dict(conn.execute(text("SELECT run_id, status FROM run WHERE run_id > :f"), {"f": floor}).all())
        assert status == {dead: "failed", live.run_id: "running"}
    assert distributed.mark_lost_runs(engine, fid, floor, "again") == []


# ----------------------------------------------------------------------------- IRAC patches
def _fit_on_cluster(scene, kernel, params):
    """Runs as a dask task: the stage's hook sends the patches to the cluster."""
    from pipeline.irac import SourceTable, fit_field

    with distributed.patch_executor() as executor:
        assert executor is not None
        return fit_field(scene.hst_ujy, scene.seg, SourceTable(scene.ids, scene.x, scene.y, scene.mag), scene.irac,
                         scene.irac_weight, scene.geometry, kernel, None, params, executor=executor)


@pytest.mark.slow
def test_irac_patches_on_the_cluster_match_the_serial_fit(cluster):
    import cloudpickle
    from distributed import get_task_stream

    from pipeline.irac import IracParams, SourceTable, fit_field, matching_kernel
    from pipeline.irac_synthetic import gaussian_psf, synthetic_scene

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    kernel = matching_kernel(gaussian_psf(1.8, 41), 0.1, gaussian_psf(17.0, 100), 0.1, out_scale=0.1)
    scene = synthetic_scene((90, 90), 120, kernel, seed=17, noise=0.02, pairs=20, mag_range=(19.0, 26.0),
                            background=(0.02, 0.0, 0.01))
    params = IracParams(patch_arcmin=0.25, patch_overlap=0.1, galfit_flux_limit=None)
    with distributed.patch_executor() as executor:
        assert executor is None  # outside a dask task: fit_field's own processes
    serial = fit_field(scene.hst_ujy, scene.seg, SourceTable(scene.ids, scene.x, scene.y, scene.mag), scene.irac,
                       scene.irac_weight, scene.geometry, kernel, None, params)
    with get_task_stream(cluster) as stream:
        parallel = cluster.submit(_fit_on_cluster, scene, kernel, params, pure=False).result()
    patches = [t for t in stream.data if t["key"].startswith("fit_patch")]
    assert len(patches) == len(serial.grid.boxes) == 4
    assert len({t["worker"] for t in patches}) == 2
    assert np.array_equal(parallel.flag, serial.flag) and np.array_equal(parallel.patch, serial.patch)
    assert np.allclose(parallel.flux, serial.flux, rtol=1e-12, atol=0, equal_nan=True)
    assert np.allclose(parallel.err, serial.err, rtol=1e-12, atol=0, equal_nan=True)
    assert np.allclose(parallel.model_image, serial.model_image, rtol=1e-12, atol=1e-15)
