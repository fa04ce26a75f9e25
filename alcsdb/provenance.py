"""Runs: the provenance of every write.

A stage writes through `stage_run(engine, stage, field_id=..., params=...)`:

1. a `run` row (status `running`, code and package versions, parameters and their hash, host,
   user, pid) is committed first, so a crash leaves a visible trace;
2. the stage's rows are written in ONE transaction on `run.conn`, which also holds a
   session advisory lock on the run id: while the lock is held the run is alive;
3. on success the status becomes `succeeded` in that same transaction (rows and status commit
   together); on an exception the transaction is rolled back and the run is marked `failed`
   with the error message. A process killed mid-write commits nothing; its run stays
   `running` without a lock holder, which `abandoned_runs()` detects from any host.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import resource
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, text

from . import __version__, config

#: packages whose versions every run records
TRACKED_PACKAGES = ("numpy", "astropy", "scipy", "sep", "drizzlepac", "eazy", "healpy", "galsim", "photutils",
                    "tweakwcs", "sqlalchemy", "psycopg2-binary", "alembic")
#: advisory-lock namespace of alcsdb runs ("ALCS")
LOCK_NAMESPACE = 0x414C4353


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces): what parameter hashes are computed on."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)


def params_hash(params: dict) -> str:
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The alcsdb source commit, with `+dirty` when the work tree has changes; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(config.REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(config.REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class RunContext:
    """A running stage: its id, its open transaction, and helpers to record inputs and outputs."""

    run_id: int
    stage: str
    field_id: int | None
    params: dict
    conn: Connection
    n_rows: dict[str, int] = field(default_factory=dict)

    def count(self, table: str, n: int) -> None:
        self.n_rows[table] = self.n_rows.get(table, 0) + int(n)

    def add_input(self, product_id: int, role: str) -> None:
        self.conn.execute(
            text("INSERT INTO run_input (run_id, product_id, role) VALUES (:r, :p, :role) ON CONFLICT DO NOTHING"),
            {"r": self.run_id, "p": product_id, "role": role},
        )

    def register_product(self, path: str | Path, kind: str, *, field_id: int | None = None,
                         filter_id: int | None = None, footprint: list | None = None, meta: dict | None = None,
                         ingested: bool = False, sha256: str | None = None) -> int:
        """Record a file (made or registered by this run) with its checksum and size."""
        path = Path(path).resolve()
        row = {
            "run": self.run_id, "kind": kind, "field": field_id if field_id is not None else self.field_id,
            "filter": filter_id, "path": str(path), "sha": sha256 or file_sha256(path),
            "size": path.stat().st_size, "ingested": ingested, "footprint": footprint,
            "meta": canonical_json(meta) if meta is not None else None,
        }
        product_id = self.conn.execute(
            text("INSERT INTO product (run_id, kind, field_id, filter_id, path, sha256, size_bytes, ingested, "
                 "footprint, meta) VALUES (:run, :kind, :field, :filter, :path, :sha, :size, :ingested, "
                 ":footprint, CAST(:meta AS jsonb)) RETURNING product_id"),
            row,
        ).scalar_one()
        self.count("product", 1)
        return product_id


def _lock_sql(fn: str) -> str:
    return f"SELECT {fn}({LOCK_NAMESPACE}, CAST(:r AS integer))"


def insert_run(conn: Connection, stage: str, *, field_id: int | None = None, params: dict | None = None,
               message: str | None = None) -> int:
    """Insert a `running` run row (not committed) and return its id."""
    params = params or {}
    return conn.execute(
        text("INSERT INTO run (stage, field_id, status, software_version, git_commit, package_versions, params, "
             "params_hash, host, username, pid, message) VALUES (:stage, :field, 'running', :ver, :git, "
             "CAST(:pkgs AS jsonb), CAST(:params AS jsonb), :hash, :host, :user, :pid, :msg) RETURNING run_id"),
        {"stage": stage, "field": field_id, "ver": __version__, "git": git_commit(),
         "pkgs": canonical_json(package_versions()), "params": canonical_json(params),
         "hash": params_hash(params), "host": socket.gethostname(), "user": getpass.getuser(),
         "pid": os.getpid(), "msg": message},
    ).scalar_one()


@contextmanager
def stage_run(engine: Engine, stage: str, *, field_id: int | None = None, params: dict | None = None,
              message: str | None = None) -> Iterator[RunContext]:
    """Run a stage with provenance: all of its rows commit with status `succeeded`, or none do."""
    params = params or {}
    t0 = time.perf_counter()
    conn = engine.connect()
    try:
        # the lock is held before the run row becomes visible, so a live run always has a holder
        run_id = insert_run(conn, stage, field_id=field_id, params=params, message=message)
        conn.execute(text(_lock_sql("pg_advisory_lock")), {"r": run_id})
        conn.commit()
    except BaseException:
        conn.close()
        raise
    try:
        ctx = RunContext(run_id=run_id, stage=stage, field_id=field_id, params=params, conn=conn)
        with conn.begin():
            yield ctx
            conn.execute(
                text("UPDATE run SET status = 'succeeded', finished_at = now(), wall_time_s = :wall, "
                     "peak_rss_mb = :rss, n_rows = CAST(:n AS jsonb) WHERE run_id = :r"),
                {"r": run_id, "wall": time.perf_counter() - t0, "rss": peak_rss_mb(),
                 "n": canonical_json(ctx.n_rows)},
            )
        _analyze(conn, ctx.n_rows)
    except BaseException as exc:
        _mark_failed(engine, run_id, exc, time.perf_counter() - t0)
        raise
    finally:
        _release(conn, run_id)


#: a committed run that wrote at least this many rows to a table has the table ANALYZEd
ANALYZE_MIN_ROWS = 1_000


def _analyze(conn: Connection, n_rows: dict[str, int]) -> None:
    """ANALYZE the tables a committed run filled (docs/scaling.md, "Statistics after a write").

    Until then the planner has no statistics for the new run_id: with every older run in the
    most-common-values list it estimates 1 row, and joins a field's rows by nested loop (a version
    of one field took 139 s instead of 3 s in benchmarks/scaling.py; hours at the release's size).
    Autovacuum only re-analyzes after 10% of a table changed, which one field of 33 never is.
    ANALYZE samples a fixed 30,000 rows. Outside the stage's transaction (it would hold its lock
    until commit and serialize concurrent stages); a failure only logs (the rows are committed).
    """
    from .schema import Base

    tables = sorted(t for t, n in n_rows.items() if n >= ANALYZE_MIN_ROWS and t in Base.metadata.tables)
    try:
        for table in tables:
            conn.execute(text(f'ANALYZE "{table}"'))
            conn.commit()
    except Exception as exc:  # noqa: BLE001 (statistics are an optimisation)
        conn.rollback()
        logging.getLogger(__name__).warning("ANALYZE after the run failed: %s", exc)


def _release(conn: Connection, run_id: int) -> None:
    """Unlock the run; a pooled connection that cannot unlock is discarded (closing it releases the lock)."""
    try:
        conn.execute(text(_lock_sql("pg_advisory_unlock")), {"r": run_id})
        conn.commit()
    except Exception:  # the session is broken: drop it rather than return it to the pool
        conn.invalidate()
    finally:
        conn.close()


def _mark_failed(engine: Engine, run_id: int, exc: BaseException, wall: float) -> None:
    msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, KeyboardInterrupt) else "interrupted"
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE run SET status = 'failed', finished_at = now(), wall_time_s = :wall, peak_rss_mb = :rss, "
                 "message = :msg WHERE run_id = :r AND status = 'running'"),
            {"r": run_id, "msg": msg[:2000], "wall": wall, "rss": peak_rss_mb()},
        )


def abandoned_runs(conn: Connection, *, mark: bool = False) -> list[int]:
    """Runs still `running` whose process is gone (nobody holds their advisory lock).

    With `mark=True` their status becomes `abandoned`. Works from any host: the lock lives in
    the server, held by the stage's own connection, and is released when that process dies.
    """
    running = conn.execute(text("SELECT run_id FROM run WHERE status = 'running' ORDER BY run_id")).scalars().all()
    dead = []
    for run_id in running:
        if conn.execute(text(_lock_sql("pg_try_advisory_lock")), {"r": run_id}).scalar():
            conn.execute(text(_lock_sql("pg_advisory_unlock")), {"r": run_id})
            dead.append(run_id)
    if mark and dead:
        conn.execute(
            text("UPDATE run SET status = 'abandoned', message = coalesce(message || '; ', '') || "
                 "'process ended without finishing (crash or kill)' WHERE run_id = ANY(:ids) AND status = 'running'"),
            {"ids": dead},
        )
    return dead
