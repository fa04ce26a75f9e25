"""Test fixtures: a real PostgreSQL for every database test, never a mock.

Servers: the embedded server (pgserver, always, in a private ALCSDB_HOME under pytest's temp
dir) and, when ALCSDB_TEST_DATABASE_URL is set, that server too: every test using `engine`
runs once per server. Each test gets its own freshly migrated schema (dropped afterwards).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SERVERS = ["embedded"] + (["external"] if os.environ.get("ALCSDB_TEST_DATABASE_URL") else [])


@pytest.fixture(scope="session")
def alcsdb_home() -> Path:
    """A private ALCSDB_HOME (embedded server, products) per test session.

    Not under pytest's basetemp: pytest deletes old basetemp folders of other sessions of the
    same user, which would delete a concurrently running session's database.
    """
    home = Path(tempfile.mkdtemp(prefix="alcsdb-test-"))
    os.environ["ALCSDB_HOME"] = str(home)
    os.environ.pop("ALCSDB_DATABASE_URL", None)
    yield home
    from alcsdb import db

    db.stop_embedded()
    shutil.rmtree(home, ignore_errors=True)


#: the small mock most pipeline tests share (`mock_core`)
MOCK_FIELD, MOCK_SIZE_ARCMIN, MOCK_SEED = "j001408m3023", 0.5, 3


def simulate_core(outdir: Path):
    """`alcsdb mock OUTDIR --field j001408m3023 --size-arcmin 0.5 --seed 3`: 0.5' of Abell 2744's
    cluster core at the field's release position, with injected pointing errors."""
    from pipeline import mock

    return mock.simulate_field(outdir, field=MOCK_FIELD, size_arcmin=MOCK_SIZE_ARCMIN, seed=MOCK_SEED,
                               **mock._field_defaults(MOCK_FIELD))


@pytest.fixture(scope="session")
def mock_core(tmp_path_factory):
    """The `simulate_core` mock, simulated once per test process (the simulation is the costliest
    part of several test modules) and shared read-only: tests write their outputs elsewhere."""
    return simulate_core(tmp_path_factory.mktemp("mock_core") / MOCK_FIELD)


@pytest.fixture(scope="session")
def server_urls(alcsdb_home) -> dict[str, str]:
    from alcsdb import db

    urls = {"embedded": db.embedded_url()}
    if "external" in SERVERS:
        urls["external"] = db.resolve_url(os.environ["ALCSDB_TEST_DATABASE_URL"])
    return urls


@pytest.fixture(params=SERVERS)
def db_url(request, server_urls) -> str:
    """URL of a fresh, migrated, isolated schema on one of the test servers."""
    from alcsdb import db

    # the embedded server is looked up each time: a test that stops it (db stop) must not break the next
    base = db.embedded_url() if request.param == "embedded" else server_urls[request.param]
    with db.scratch_schema(base, "t") as url:
        yield url


@pytest.fixture
def engine(db_url):
    from alcsdb import db

    eng = db.make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def run_cli(db_url, alcsdb_home):
    """Run the real `alcsdb` command in a subprocess against the test schema."""

    def run(*args: str, check: bool = True, env: dict | None = None, timeout: float = 600):
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run([sys.executable, "-m", "alcsdb", "--db", db_url, *map(str, args)],
                              capture_output=True, text=True, env=full_env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"alcsdb {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def invoke(db_url):
    """Run a CLI command in-process (click's CliRunner) against the test schema."""
    from click.testing import CliRunner

    from alcsdb.cli import cli

    return lambda *args: CliRunner().invoke(cli, ["--db", db_url, *map(str, args)])
