"""Settings read from the environment, in one place.

| variable               | meaning                                               | default                         |
|------------------------|-------------------------------------------------------|---------------------------------|
| ALCSDB_HOME            | home of the embedded server and scratch files         | ~/.alcsdb                       |
| ALCSDB_DATABASE_URL    | any PostgreSQL server instead of the embedded one     | (embedded server)               |
| ALCSDB_SHARED_DIR      | folder of reference data (EAZY files, PSFs, docs)     | ../shared/data next to the repo |
| ALCSDB_EAZY_DIR        | EAZY filters/templates folder                         | $ALCSDB_SHARED_DIR/eazy         |
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    path = Path(os.environ.get("ALCSDB_HOME", "~/.alcsdb")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str | None:
    return os.environ.get("ALCSDB_DATABASE_URL") or None


def shared_dir() -> Path:
    """The reference-data folder (the project's ``../shared/data``).

    Looked up from ALCSDB_SHARED_DIR, else ``../shared/data`` beside the repository
    or the current directory. Raises ConfigError naming what to set when absent.
    """
    env = os.environ.get("ALCSDB_SHARED_DIR")
    candidates = [Path(env).expanduser()] if env else [
        REPO_ROOT.parent / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
    ]
    for cand in candidates:
        if cand.is_dir():
            return cand.resolve()
    where = env or ", ".join(str(c) for c in candidates)
    raise ConfigError(
        f"reference data folder not found (looked in {where}): set ALCSDB_SHARED_DIR to the "
        "folder holding alcs-docs/, eazy/, psf/, hff-cutouts/ and sextractor-ref/ "
        "(the project's shared/data)"
    )


def shared_path(*parts: str) -> Path:
    """A file or folder inside the reference data, with a clear error when missing."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        raise ConfigError(f"{path}: missing from the reference data folder (ALCSDB_SHARED_DIR)")
    return path


def eazy_dir() -> Path:
    """EAZY's data folder: FILTER.RES.latest and templates/ (ALCSDB_EAZY_DIR)."""
    env = os.environ.get("ALCSDB_EAZY_DIR")
    path = Path(env).expanduser() if env else None
    if path is None:
        try:
            path = shared_dir() / "eazy"
        except ConfigError:
            path = None
    if path is None or not (path / "FILTER.RES.latest").is_file():
        raise ConfigError(
            f"EAZY data folder not found ({path or 'ALCSDB_EAZY_DIR unset'}): set ALCSDB_EAZY_DIR to a "
            "folder with FILTER.RES.latest and templates/ (on a machine with network, "
            "`python -c 'import eazy; eazy.fetch_eazy_photoz()'` downloads them)"
        )
    return path.resolve()
