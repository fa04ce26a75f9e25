"""Crash safety: a stage killed (SIGKILL) mid-write leaves nothing visible, is reported, and re-runs.

Each case runs the real CLI in a subprocess while the test holds `LOCK TABLE t IN SHARE MODE`
on a table the stage writes late: the stage blocks inside its transaction right after it has
written earlier rows (the test checks its backend holds their row locks), so the kill lands
mid-write, deterministically. Then:

- no row of the killed run is visible in any table;
- `alcsdb db status` lists the run as abandoned and `alcsdb audit` reports and marks it;
- re-running gives the same result as an uninterrupted run made before (same content hash of
  the rows, or the same bytes for an export).

The embedded server killed mid-write (every server process, SIGKILL) is recovered by the next
command. To cover a new stage, add a `Case` to `CASES`.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil
import pytest
from astropy.io import fits
from click.testing import CliRunner
from sqlalchemy import Engine, text

from alcsdb import db, versions
from alcsdb.cli import cli
from alcsdb.export import export_version
from alcsdb.provenance import abandoned_runs
from alcsdb.schema import Base
from benchmarks.load import register_fixture_mosaics
from ingest import fixtures
from ingest.load import ingest_path

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)
RUN_TABLES = sorted(t.name for t in Base.metadata.sorted_tables if "run_id" in t.c and t.name != "run")


@dataclass(frozen=True)
class Case:
    """A stage to kill: how to prepare its inputs, run it, and compare its result."""

    name: str
    stage: str  # run.stage of the killed run
    lock_table: str  # the test locks this table: the stage blocks at its first write to it ...
    written_before: str  # ... after it has written rows to this one
    prepare: Callable[[Engine, Path], dict]  # inputs; returns a context for the other callables
    argv: Callable[[dict], list[str]]  # the CLI command that is killed
    run: Callable[[Engine, dict, str], int]  # an uninterrupted run in-process ("reference" or "rerun"): its id
    result: Callable[[Engine, dict, int], object]  # what must be equal for the reference and the re-run
    slow: bool = False


def catalog_copy(src: Path, dest: Path) -> Path:
    """The same rows under another sha256 (one more header card), so that ingest loads them again."""
    with fits.open(src) as hdul:
        hdul[1].header["COMMENT"] = "copy"
        hdul.writeto(dest)
    return dest


def run_hash(engine: Engine, field: str, runs: dict[str, int]) -> str:
    with engine.connect() as conn:
        fid = conn.execute(text("SELECT field_id FROM field WHERE name = :n"), {"n": field}).scalar_one()
        return versions.content_hash(conn, [versions.FieldRuns(fid, field, runs)])


# --- ingest ----------------------------------------------------------------------------

def ingest_prepare(engine: Engine, tmp: Path) -> dict:
    path = tmp / "cat" / f"{A2744[0]}_irac_phot_apcorr.fits"
    fixtures.write_phot_apcorr(path, A2744[0], A2744[2], A2744[3], 400, ["f606w", "f814w", "f160w"], seed=4)
    return {"path": path, "copy": catalog_copy(path, tmp / f"{A2744[0]}_irac_phot_apcorr.fits")}


def ingest_run(engine: Engine, ctx: dict, which: str) -> int:
    (result,) = ingest_path(engine, ctx["copy"] if which == "reference" else ctx["path"])
    assert result.status == "ingested", result
    return result.run_id


INGEST = Case("ingest", "ingest", "aperture_flux", "source", ingest_prepare,
              lambda ctx: ["ingest", str(ctx["path"])], ingest_run,
              lambda engine, ctx, run: run_hash(engine, A2744[0], {"detect": run, "photometry": run, "irac": run}))


# --- export ----------------------------------------------------------------------------

def export_prepare(engine: Engine, tmp: Path) -> dict:
    fixtures.write_release(tmp / "release", [A2744], n_sources=300, seed=8, filters=["f814w", "f160w"], n_aors=1,
                           n_bcd=3, mosaic_shape=(32, 32))
    ingest_path(engine, tmp / "release")
    versions.create_version(engine, "v1")
    return {"tmp": tmp}


def export_run(engine: Engine, ctx: dict, which: str) -> int:
    export_version(engine, "v1", ctx["tmp"] / which)
    with engine.connect() as conn:
        return conn.execute(text("SELECT max(run_id) FROM run WHERE stage = 'export'")).scalar_one()


def files_sha(engine: Engine, ctx: dict, run_id: int) -> dict[str, str]:
    """The exported files of a run (its product rows) and their bytes' sha256."""
    with engine.connect() as conn:
        paths = conn.execute(text("SELECT path FROM product WHERE run_id = :r ORDER BY path"), {"r": run_id}).scalars()
        return {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


EXPORT = Case("export", "export", "product", "run_input", export_prepare,
              lambda ctx: ["export", "--version", "v1", "--out", str(ctx["tmp"] / "rerun")], export_run, files_sha)


# --- pipeline stages -------------------------------------------------------------------

def mosaic_run(engine: Engine, tmp: Path) -> dict:
    register_fixture_mosaics(engine, A2744, tmp / "mosaics")
    return {"tmp": tmp}


def stage_runner(stage: str) -> Callable[[Engine, dict, str], int]:
    def run(engine: Engine, ctx: dict, which: str) -> int:
        from pipeline.runner import run_stage

        return run_stage(engine, stage, A2744[0], force=True).run_id

    return run


def photometry_prepare(engine: Engine, tmp: Path) -> dict:
    ctx = mosaic_run(engine, tmp)
    ctx["detect"] = stage_runner("detect")(engine, ctx, "detect")
    return ctx


DETECT = Case("detect", "detect", "source", "product", mosaic_run,
              lambda ctx: ["run", "detect", "--field", A2744[0], "--force"], stage_runner("detect"),
              lambda engine, ctx, run: run_hash(engine, A2744[0], {"detect": run}), slow=True)
PHOTOMETRY = Case("photometry", "photometry", "total_correction", "aperture_flux", photometry_prepare,
                  lambda ctx: ["run", "photometry", "--field", A2744[0], "--force"], stage_runner("photometry"),
                  lambda engine, ctx, run: run_hash(engine, A2744[0], {"detect": ctx["detect"], "photometry": run}),
                  slow=True)

CASES = [INGEST, EXPORT, DETECT, PHOTOMETRY]


def available(case: Case) -> bool:
    """A pipeline stage is covered once `alcsdb run --help` lists it and its module exists."""
    import importlib.util

    from pipeline.runner import STAGES

    if case.stage not in STAGES:
        return True
    choices = next(p for p in cli.commands["run"].params if p.name == "stage").type.choices
    return case.stage in choices and importlib.util.find_spec(f"pipeline.stages.{case.stage}") is not None


# --- the kill --------------------------------------------------------------------------

def rows_of_run(engine: Engine, run_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        counts = {t: conn.execute(text(f'SELECT count(*) FROM "{t}" WHERE run_id = :r'), {"r": run_id}).scalar()
                  for t in RUN_TABLES}
    return {t: n for t, n in counts.items() if n}


def wait_for(condition: Callable[[], object], what: str, timeout: float = 300, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := condition()) is not None:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the stage ended ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def blocked_backend(engine: Engine, table: str) -> int | None:
    """pid of the backend waiting for a lock on `table`, if any."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT pid FROM pg_locks WHERE relation = CAST(:t AS regclass) AND NOT granted"),
                            {"t": table}).scalar()


def backend_gone(engine: Engine, pid: int) -> bool | None:
    with engine.connect() as conn:
        alive = conn.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar()
    return True if alive is None else None


def kill_mid_write(engine: Engine, argv: list[str], case: Case, env: dict | None = None,
                   kill: Callable[[subprocess.Popen], None] | None = None) -> int:
    """Run `alcsdb argv`, let it block at its write to `case.lock_table`, kill it; return the run id."""
    lock = engine.connect()
    lock.execute(text(f'LOCK TABLE "{case.lock_table}" IN SHARE MODE'))
    proc = subprocess.Popen([sys.executable, "-m", "alcsdb", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env or os.environ.copy())
    try:
        backend = wait_for(lambda: blocked_backend(engine, case.lock_table), f"a write to {case.lock_table}",
                           proc=proc)
        with engine.connect() as conn:
            run_id = conn.execute(text("SELECT run_id FROM run WHERE pid = :p AND status = 'running'"),
                                  {"p": proc.pid}).scalar_one()
            held = set(conn.execute(text(
                "SELECT relation::regclass::text FROM pg_locks WHERE pid = :b AND mode = 'RowExclusiveLock' "
                "AND granted AND relation IS NOT NULL"), {"b": backend}).scalars())
        assert case.written_before in held, f"{case.name} blocked before writing {case.written_before}: {held}"
        assert rows_of_run(engine, run_id) == {}, "rows of a running stage are visible"
        (kill or (lambda p: p.send_signal(signal.SIGKILL)))(proc)
        proc.wait(timeout=60)
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            lock.rollback()
            lock.close()
        except Exception:  # the server itself was killed: the lock is gone with it
            lock.invalidate()
    if kill is None:  # the killed client's backend ends when it next talks to the client
        wait_for(lambda: backend_gone(engine, backend), "the killed stage's backend to end", timeout=60)
    return run_id


def abandoned_now(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return abandoned_runs(conn)


def invoke(db_url: str, *args: str):
    return CliRunner().invoke(cli, ["--db", db_url, *args])


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else [])
                                  for c in CASES])
def test_stage_killed_mid_write(engine, db_url, tmp_path, case):
    if not available(case):
        pytest.skip(f"`alcsdb run {case.stage}` is not available yet")
    ctx = case.prepare(engine, tmp_path)
    reference_run = case.run(engine, ctx, "reference")
    assert rows_of_run(engine, reference_run).get(case.lock_table, 0) > 0  # the stage writes the locked table
    reference = case.result(engine, ctx, reference_run)

    run_id = kill_mid_write(engine, ["--db", db_url, *case.argv(ctx)], case)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM run WHERE run_id = :r"), {"r": run_id}).scalar() == "running"
        assert abandoned_runs(conn) == [run_id]
    assert rows_of_run(engine, run_id) == {}

    status = invoke(db_url, "db", "status")
    assert status.exit_code == 0, status.output
    line = next(x for x in status.output.splitlines() if x.startswith("abandoned runs"))
    assert str(run_id) in line.split(":")[-1].replace(",", " ").split()
    audit = invoke(db_url, "audit")
    assert f"run {run_id} ({case.stage}" in audit.output and "abandoned" in audit.output, audit.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM run WHERE run_id = :r"), {"r": run_id}).scalar() == "abandoned"

    again = case.result(engine, ctx, case.run(engine, ctx, "rerun"))
    assert again == reference
    assert rows_of_run(engine, run_id) == {}


def kill_server(pgdata: Path) -> Callable[[subprocess.Popen], None]:
    """SIGKILL every process of the embedded server (the postmaster and its children), then the client."""

    def kill(proc: subprocess.Popen) -> None:
        postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
        victims = [postmaster, *postmaster.children(recursive=True)]
        for p in victims:
            p.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=30)
        proc.wait(timeout=120)  # the client fails on its own: its connection is gone

    return kill


@pytest.mark.slow
def test_embedded_server_killed_mid_write_recovers(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "ALCSDB_HOME": str(home)}
    env.pop("ALCSDB_DATABASE_URL", None)

    def alcsdb(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "alcsdb", *args], capture_output=True, text=True, env=env,
                              timeout=300)

    assert alcsdb("db", "upgrade").returncode == 0
    pgdata = home / "pgdata"
    engine = db.make_engine(f"postgresql+psycopg2://postgres@/alcsdb?host={pgdata}")
    try:
        ctx = INGEST.prepare(engine, tmp_path)
        reference = INGEST.result(engine, ctx, INGEST.run(engine, ctx, "reference"))
        run_id = kill_mid_write(engine, INGEST.argv(ctx), INGEST, env=env, kill=kill_server(pgdata))
        engine.dispose()

        status = alcsdb("db", "status")  # starts the server again: crash recovery
        assert status.returncode == 0, status.stderr
        line = next(x for x in status.stdout.splitlines() if x.startswith("abandoned runs"))
        assert str(run_id) in line
        assert rows_of_run(engine, run_id) == {}
        rerun = alcsdb("ingest", str(ctx["path"]))
        assert rerun.returncode == 0 and "ingested" in rerun.stdout, rerun.stderr
        with engine.connect() as conn:
            new_run = conn.execute(text("SELECT max(run_id) FROM run WHERE stage = 'ingest' AND status = 'succeeded'")
                                   ).scalar()
        assert INGEST.result(engine, ctx, new_run) == reference
    finally:
        engine.dispose()
        alcsdb("db", "stop")


def test_killed_stage_waiting_on_a_lock_is_abandoned_at_once(engine, db_url, tmp_path):
    """A stage killed while its statement waits is abandoned within seconds, not when the wait ends.

    The server notices a dead client only when it talks to it, unless
    `client_connection_check_interval` is set (alcsdb.db.make_engine sets it to 2 s).
    """
    ctx = INGEST.prepare(engine, tmp_path)
    lock = engine.connect()
    lock.execute(text(f'LOCK TABLE "{INGEST.lock_table}" IN SHARE MODE'))
    proc = subprocess.Popen([sys.executable, "-m", "alcsdb", "--db", db_url, *INGEST.argv(ctx)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        wait_for(lambda: blocked_backend(engine, INGEST.lock_table), "the ingest to block", proc=proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        with engine.connect() as conn:  # the lock is still held: only the dead client is gone
            run_id = conn.execute(text("SELECT run_id FROM run WHERE pid = :p"), {"p": proc.pid}).scalar_one()
        wait_for(lambda: True if run_id in abandoned_now(engine) else None, "the killed run to be reported abandoned",
                 timeout=10)
    finally:
        lock.rollback()
        lock.close()
