"""Pipeline runs on a dask.distributed cluster: fields in parallel, IRAC patches in parallel.

Units of work:

- **a field's stage**: one task running `runner.run_stage` on a worker. Fields run in parallel;
  the stages of a field run in order, each submitted when the previous one has finished,
  since a stage's `plan` reads its inputs from the upstream runs in the database.
- **an IRAC patch**: the irac stage, running as a task, submits its patch fits to the same
  cluster (`patch_executor`; outside dask `fit_field` uses its own `n_proc` processes).

Writes: a stage task writes from its worker through its own database connection, inside
`stage_run`: the rows and the `succeeded` status commit in one transaction, so a stage that
raises is rolled back and marked `failed` as in a single-process run, and a worker killed
mid-stage commits nothing. Its run row then stays `running` with nobody holding the run's
advisory lock; the submitting process sees the task lost, waits until the server has dropped
the dead connection (the lock is free) and marks the run `failed`. Re-running skips the
stages that succeeded (skip-if-unchanged) and runs the rest. A cluster we start
(`open_cluster(workers=N)`) does not retry a task whose worker died (`allowed-failures` 0): a
stage that kills its worker would kill the next one too. A scheduler of your own may retry
(its `distributed.scheduler.allowed-failures`); the lost attempt's run is still marked failed.

The cluster is recorded in each run's `message` (scheduler, number of workers, the worker
that ran it), never in its parameters: results do not depend on it, and neither does the
skip-if-unchanged hash.

Workers need the same code, the database (the submitter's URL is passed to them: the embedded
server's unix socket serves local workers only, remote workers need a TCP
`ALCSDB_DATABASE_URL`) and the files at the same paths (input folders, `ALCSDB_HOME`'s
products, the reference data); the submitter's `ALCSDB_*` settings are applied on the workers.
"""
from __future__ import annotations

import gc
import logging
import os
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import Engine, text

from alcsdb import config
from alcsdb.errors import AlcsdbError, ConfigError
from alcsdb.provenance import LOCK_NAMESPACE

from .runner import STAGES, FieldJob, FieldOutcome, Progress, StageResult, get_field, run_stage

log = logging.getLogger("alcsdb.pipeline")

PROGRESS_TOPIC = "alcsdb-progress"
SETTINGS = ("ALCSDB_HOME", "ALCSDB_SHARED_DIR", "ALCSDB_EAZY_DIR")
#: how long the submitter waits for the server to drop a lost worker's connection (s); the
#: connections check their client every 2 s (`db.make_engine`)
LOST_RUN_WAIT = 30.0


class WorkerLost(AlcsdbError):
    """The dask worker running a stage died (killed, out of memory) or the cluster went away."""


# ----------------------------------------------------------------------------- the cluster
@contextmanager
def open_cluster(scheduler: str | None = None, workers: int = 2) -> Iterator:
    """A dask `Client`: on the scheduler at ``scheduler`` (an address such as
    ``tcp://host:8786``), else on a `LocalCluster` of ``workers`` processes, one thread each,
    closed on exit."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        _probe_scheduler(scheduler)
        try:
            client = Client(scheduler, timeout="10s")
        except Exception as exc:  # noqa: BLE001 (any failure to connect is the user's address)
            # the half-built Client closes itself in __del__; collect it here, not later inside
            # another Client's start (distributed then deadlocks on its loop lock)
            del exc
            gc.collect()
            raise ConfigError(f"cannot connect to the dask scheduler at {scheduler}") from None
        try:
            yield client
        finally:
            client.close()
        return
    if workers < 1:
        raise ConfigError(f"--workers {workers}: need at least 1")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,  # no retry of a stage that killed its worker
                          "distributed.worker.daemon": False}):  # stages may start processes (n_proc)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(cluster) as client:
            client.wait_for_workers(workers, timeout=120)  # every worker registered before work is placed
            yield client
    finally:
        cluster.close()


def _probe_scheduler(scheduler: str) -> None:
    """A one-line ConfigError unless ``scheduler`` is a dask address whose TCP port answers.

    Checked before `Client` is made: a Client that fails to connect leaves a half-built object
    whose finaliser can deadlock a later Client in the same process (seen in the CLI tests).
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        protocol, location = parse_address(scheduler)
        host, port = parse_host_port(location, 8786)
    except Exception:  # noqa: BLE001
        raise ConfigError(f"--scheduler {scheduler!r}: not a dask scheduler address such as tcp://host:8786") from None
    if protocol not in ("tcp", "tls"):
        return  # inproc / ucx / ws: nothing to probe with a socket
    if not host or any(c.isspace() or c in "'\";/\\" for c in host) or len(host) > 253:
        raise ConfigError(f"--scheduler {scheduler!r}: not a valid host name")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError, UnicodeError) as exc:
        raise ConfigError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None


def describe(client) -> str:
    """`dask scheduler ADDRESS, N workers (T threads)`: what a run's message records."""
    threads = client.nthreads()
    return f"dask scheduler {client.scheduler.address}, {len(threads)} workers ({sum(threads.values())} threads)"


# ----------------------------------------------------------------------------- on the workers
_ENGINES: dict[str, Engine] = {}


def _engine(url: str) -> Engine:
    if url not in _ENGINES:
        from alcsdb import db

        _ENGINES[url] = db.make_engine(url)
    return _ENGINES[url]


def stage_task(url: str, settings: dict[str, str], stage: str, field: str, overrides: dict | None,
               input_dir: str | None, force: bool, cluster: str) -> StageResult:
    """One stage of one field, run on a worker (its rows written from there, in one transaction)."""
    from distributed import get_worker

    os.environ.update(settings)
    worker = get_worker()

    def progress(msg: str) -> None:
        worker.log_event(PROGRESS_TOPIC, msg)

    return run_stage(_engine(url), stage, field, overrides=overrides, input_dir=Path(input_dir) if input_dir else None,
                     force=force, progress=progress, note=f"{cluster}; ran on worker {worker.address}")


class _ClientMap:
    """`Executor.map` on a dask client: every call's arguments scattered first (patch cutouts
    are megabytes: too large to travel inside the task graph), the calls dealt to the workers in
    turn (a loose restriction: another worker may take a call if its own is gone). A worker's
    client scatters to its own worker, and tasks follow their data: without the restriction every
    patch ran on the submitting worker. Results in order."""

    def __init__(self, client):
        self.client = client

    def map(self, fn: Callable, *iterables) -> Iterator:
        calls = list(zip(*iterables))
        if not calls:
            return iter(())
        workers = sorted(self.client.scheduler_info().get("workers", {}))
        futures = []
        for i, args in enumerate(calls):
            data = self.client.scatter(list(args), hash=False)
            where = {"workers": [workers[i % len(workers)]], "allow_other_workers": True} if workers else {}
            futures.append(self.client.submit(fn, *data, pure=False, **where))
        return iter(self.client.gather(futures))


@contextmanager
def patch_executor() -> Iterator[_ClientMap | None]:
    """Where a stage fits its IRAC patches: the stage's dask cluster when it runs as a dask
    task (the task leaves its worker thread while the patches run, so stages on every worker can
    wait for patches without starving them), else None (the stage's own `n_proc` processes)."""
    try:
        from distributed import get_worker, worker_client

        get_worker()
    except (ImportError, ValueError):
        yield None
        return
    with worker_client() as client:
        yield _ClientMap(client)


# ----------------------------------------------------------------------------- the submitter
def _max_run_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(run_id), 0) FROM run")).scalar())


def mark_lost_runs(engine: Engine, field_id: int, after_run_id: int, reason: str, *, wait: float = 0.0) -> list[int]:
    """Mark `failed` the runs of a field newer than ``after_run_id`` still `running` whose process
    is gone (nobody holds their advisory lock), waiting up to ``wait`` s for the server to notice
    a dead connection. A live run (its lock held) is never touched."""
    lock = f"SELECT pg_try_advisory_lock({LOCK_NAMESPACE}, CAST(:r AS integer))"
    unlock = f"SELECT pg_advisory_unlock({LOCK_NAMESPACE}, CAST(:r AS integer))"
    marked: list[int] = []
    deadline = time.monotonic() + wait
    with engine.connect() as conn:
        pending = list(conn.execute(text("SELECT run_id FROM run WHERE field_id = :f AND run_id > :r AND "
                                         "status = 'running' ORDER BY run_id"),
                                    {"f": field_id, "r": after_run_id}).scalars())
        conn.commit()
        while pending:
            for run_id in list(pending):
                if conn.execute(text(lock), {"r": run_id}).scalar():
                    try:  # holding the lock: its writer is gone, its transaction rolled back
                        done = conn.execute(text(
                            "UPDATE run SET status = 'failed', finished_at = now(), message = :m "
                            "WHERE run_id = :r AND status = 'running'"), {"r": run_id, "m": reason[:2000]}).rowcount
                        conn.commit()
                    finally:
                        conn.execute(text(unlock), {"r": run_id})
                        conn.commit()
                    if done:
                        marked.append(run_id)
                    pending.remove(run_id)
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    return marked


def _is_lost_worker(exc: BaseException) -> bool:
    from distributed import CancelledError
    from distributed.comm import CommClosedError
    from distributed.scheduler import KilledWorker

    return isinstance(exc, (KilledWorker, CommClosedError, CancelledError))


def run_fields(client, engine: Engine, jobs: list[FieldJob], *, stages: tuple[str, ...] = STAGES,
               overrides: dict[str, dict] | None = None, force: bool = False, progress: Progress | None = None,
               on_result: Callable[[StageResult], None] | None = None) -> list[FieldOutcome]:
    """`runner.run_fields` on the cluster of ``client``: every field's first stage is submitted
    at once, each next stage when its field's previous one has finished. A failed stage stops
    its field only; a lost worker's run is marked failed (`WorkerLost`)."""
    from distributed import as_completed

    url = engine.url.render_as_string(hide_password=False)
    settings = {k: os.environ[k] for k in SETTINGS if os.environ.get(k)}
    settings["ALCSDB_HOME"] = str(config.home())
    cluster = describe(client)
    if progress is not None:
        client.subscribe_topic(PROGRESS_TOPIC, lambda event: progress(str(event[1])))
    with engine.connect() as conn:
        field_ids = {job.field: get_field(conn, job.field).field_id for job in jobs}
    outcomes = [FieldOutcome(job.field, []) for job in jobs]
    submitted: dict = {}  # future -> (job index, stage index, newest run id before it)

    def submit(i: int, k: int):
        job, stage = jobs[i], stages[k]
        floor = _max_run_id(engine)
        future = client.submit(stage_task, url, settings, stage, job.field, (overrides or {}).get(stage),
                               str(job.input_dir) if job.input_dir and stage == "mosaic" else None, force, cluster,
                               key=f"alcsdb-{stage}-{job.field}-{uuid.uuid4().hex[:8]}", pure=False, retries=0)
        submitted[future] = (i, k, floor)
        return future

    queue = as_completed([submit(i, 0) for i in range(len(jobs))])
    try:
        for future in queue:
            i, k, floor = submitted.pop(future)
            job, stage = jobs[i], stages[k]
            try:
                result = future.result()
            except Exception as exc:
                lost = _is_lost_worker(exc)
                reason = (f"dask worker lost while running {stage} of {job.field} ({type(exc).__name__}: {exc})"
                          if lost else f"{type(exc).__name__}: {exc}")
                marked = mark_lost_runs(engine, field_ids[job.field], floor, reason, wait=LOST_RUN_WAIT)
                if lost:
                    runs = f"run {', '.join(map(str, marked))} marked failed" if marked else "no run was started"
                    exc = WorkerLost(f"{stage} of {job.field}: the dask worker running it was lost "
                                     f"({type(exc).__name__}); {runs}, nothing written; re-run to finish")
                outcomes[i].error, outcomes[i].failed_stage = exc, stage
                continue
            # a scheduler that retried a lost task leaves the lost attempt's run `running`
            mark_lost_runs(engine, field_ids[job.field], floor,
                           f"dask worker lost while running {stage} of {job.field}; retried as run {result.run_id}")
            outcomes[i].results.append(result)
            if on_result:
                on_result(result)
            if k + 1 < len(stages):
                queue.add(submit(i, k + 1))
    finally:
        if progress is not None:
            client.unsubscribe_topic(PROGRESS_TOPIC)
    return outcomes
