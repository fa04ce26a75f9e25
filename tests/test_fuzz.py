"""Fuzzed release files: every mutation ends in a clean ingest or a clean one-line error.

Hypothesis mutates release-format files (a phot_apcorr catalog, its zout table, an AOR log):
columns dropped, renamed (to a new or a duplicate name) or changed in dtype; NaN, inf, -99 or
huge values injected; rows dropped, duplicated or shuffled; units changed; header cards
corrupted; the file truncated or overwritten with junk bytes. Each mutant is ingested:

- either it is ingested cleanly: every run succeeded and holds exactly the rows it counted;
- or `ingest_path` raises an `InputError` whose message is one line naming the file, and the
  database is exactly as before (row counts of every table, the run sequence).

The number of cases is ALCSDB_FUZZ_EXAMPLES (default 40); the test prints the outcomes.
A bug found here gets a regression test at the end (AOR log corners off the sky, now fixed);
while a bug is open the property test counts its cases apart (`KNOWN_BUGS`).
"""
from __future__ import annotations

import collections
import os
import shutil
import traceback
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from alcsdb.errors import AlcsdbError
from alcsdb.schema import Base
from ingest import fixtures
from ingest.load import ingest_path

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)
EXAMPLES = int(os.environ.get("ALCSDB_FUZZ_EXAMPLES", "40"))
JUNK_VALUES = (np.nan, np.inf, -np.inf, -99.0, 1e308, -1e308, 0.0, 2.0**63)
UNITS = ("nJy", "mag", "", "deg", "uJy", "arcsec", "garbage unit", "ÂµJy")
DTYPES = ("f4", "f8", "i2", "i4", "i8", "S8", "u1")


#: function in whose frames a known bug raises -> the xfail test that reports it
KNOWN_BUGS: dict[str, str] = {}  # the AOR-corners bug found here is fixed; its test stays as a regression test


def known_bug(exc: BaseException) -> str | None:
    frames = {f.name for f in traceback.extract_tb(exc.__traceback__)}
    return next((test for fn, test in KNOWN_BUGS.items() if fn in frames), None)


def snapshot(engine) -> dict[str, int]:
    with engine.connect() as conn:
        counts = {t.name: conn.execute(text(f'SELECT count(*) FROM "{t.name}"')).scalar()
                  for t in Base.metadata.sorted_tables}
        counts["max_run"] = conn.execute(text("SELECT coalesce(max(run_id), 0) FROM run")).scalar()
    return counts


@pytest.fixture(scope="module")
def base_files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("fuzz_base")
    cat = out / f"{A2744[0]}_irac_phot_apcorr.fits"
    columns = fixtures.write_phot_apcorr(cat, A2744[0], A2744[2], A2744[3], 40, ["f814w", "f160w"], seed=9)
    zout = out / f"{A2744[0]}_irac.eazypy.zout.fits"
    fixtures.write_zout(zout, columns["id"], columns["ra"], columns["dec"], seed=9)
    aor = out / "r50000256-ch1.log.fits"
    fixtures.write_aor_log(aor, 50000256, 1, A2744[2], A2744[3], 5, seed=9)
    return {"catalog": cat, "zout": zout, "aor_log": aor}


# --- mutations -------------------------------------------------------------------------

def table_columns(path: Path) -> list[fits.Column]:
    with fits.open(path) as hdul:
        data = hdul[1].data
        return [fits.Column(name=c.name, format=c.format, unit=c.unit, dim=c.dim, array=np.array(data[c.name]))
                for c in hdul[1].columns]


def write_columns(path: Path, cols: list[fits.Column]) -> None:
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path, overwrite=True)


def retype(col: fits.Column, dtype: str) -> fits.Column:
    arr = np.asarray(col.array)
    with np.errstate(all="ignore"):
        new = arr.astype("U8").astype("S8") if dtype == "S8" else (
            np.nan_to_num(arr.astype("f8") if arr.dtype.kind in "SU" else arr, posinf=1e30, neginf=-1e30)
            .astype(dtype) if dtype[0] in "iu" else arr.astype(dtype) if arr.dtype.kind not in "SU" else
            np.zeros(arr.shape, dtype))
    fmt = {"f4": "E", "f8": "D", "i2": "I", "i4": "J", "i8": "K", "u1": "B", "S8": "8A"}[dtype]
    repeat = int(np.prod(new.shape[1:])) if new.ndim > 1 and dtype != "S8" else 1
    return fits.Column(name=col.name, format=(f"{repeat}{fmt}" if repeat > 1 else fmt), unit=col.unit,
                       array=new if dtype != "S8" or new.ndim == 1 else new[:, 0])


@st.composite
def table_mutation(draw, names: list[str], nrows: int):
    kind = draw(st.sampled_from(["drop", "rename", "dtype", "inject", "rows", "unit"]))
    name = draw(st.sampled_from(names))
    if kind == "rename":
        return kind, name, draw(st.one_of(st.sampled_from(names), st.sampled_from([name.upper(), name + "_x", "x"])))
    if kind == "dtype":
        return kind, name, draw(st.sampled_from(DTYPES))
    if kind == "inject":
        cells = draw(st.lists(st.integers(0, nrows - 1), min_size=1, max_size=5))
        return kind, name, (cells, draw(st.sampled_from(JUNK_VALUES)))
    if kind == "rows":
        return kind, name, draw(st.sampled_from(["empty", "first", "duplicate", "shuffle"]))
    if kind == "unit":
        return kind, name, draw(st.sampled_from(UNITS))
    return kind, name, None


def apply_table_mutation(cols: list[fits.Column], mutation) -> list[fits.Column]:
    kind, name, arg = mutation
    index = next((i for i, c in enumerate(cols) if c.name == name), None)
    if index is None:  # dropped or renamed by an earlier mutation
        return cols
    col = cols[index]
    if kind == "drop":
        return cols[:index] + cols[index + 1:]
    if kind == "rename":
        return cols[:index] + [fits.Column(name=arg, format=col.format, unit=col.unit, dim=col.dim, array=col.array)] \
            + cols[index + 1:]
    if kind == "dtype":
        return cols[:index] + [retype(col, arg)] + cols[index + 1:]
    if kind == "unit":
        return cols[:index] + [fits.Column(name=name, format=col.format, unit=arg, dim=col.dim, array=col.array)] \
            + cols[index + 1:]
    if kind == "inject":
        cells, value = arg
        arr = np.array(col.array)
        if len(arr) == 0:  # an earlier mutation emptied the table
            return cols
        if arr.dtype.kind == "f":
            arr[np.array(cells) % len(arr)] = value
        elif arr.dtype.kind in "iu":
            arr[np.array(cells) % len(arr)] = np.iinfo(arr.dtype).max if np.isnan(value) or abs(value) > 1e18 \
                else int(value)
        else:
            return cols
        return cols[:index] + [fits.Column(name=name, format=col.format, unit=col.unit, dim=col.dim, array=arr)] \
            + cols[index + 1:]
    n = len(cols[0].array)
    rows = {"empty": np.arange(0), "first": np.arange(min(3, n)),
            "duplicate": np.r_[np.arange(n), 0] if n else np.arange(0),  # an earlier mutation may have emptied it
            "shuffle": np.random.default_rng(n).permutation(n)}[arg]
    return [fits.Column(name=c.name, format=c.format, unit=c.unit, dim=c.dim, array=np.asarray(c.array)[rows])
            for c in cols]


@st.composite
def byte_mutation(draw, size: int):
    kind = draw(st.sampled_from(["truncate", "header", "data", "append"]))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1)), b""
    if kind == "header":  # the value field of a card of the table's header
        return kind, draw(st.integers(0, 71)), draw(st.binary(min_size=1, max_size=20))
    if kind == "data":
        return kind, draw(st.integers(5760, max(5760, size - 1))), draw(st.binary(min_size=1, max_size=64))
    return kind, 0, draw(st.binary(min_size=1, max_size=3000))


def apply_byte_mutation(path: Path, mutation) -> None:
    kind, where, payload = mutation
    raw = bytearray(path.read_bytes())
    if kind == "truncate":
        raw = raw[:where]
    elif kind == "header":
        start = 2880 + 80 * where + 10  # card `where` of the first extension's header, after `KEYWORD= `
        raw[start:start + len(payload)] = payload[: max(0, len(raw) - start)]
    elif kind == "data":
        raw[where:where + len(payload)] = payload
    else:
        raw += payload
    path.write_bytes(bytes(raw))


# --- the property ----------------------------------------------------------------------

def test_fuzzed_release_files(engine, base_files, tmp_path):
    ingest_path(engine, base_files["catalog"])  # zout files need their catalog
    names = {kind: [c.name for c in table_columns(p)] for kind, p in base_files.items()}
    nrows = {kind: len(table_columns(p)[0].array) for kind, p in base_files.items()}
    outcomes: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    counter = iter(range(10**9))

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def check(data):
        kind = data.draw(st.sampled_from(sorted(base_files)), label="file")
        src = base_files[kind]
        path = tmp_path / f"case{next(counter)}" / src.name
        path.parent.mkdir()
        mutations = data.draw(st.lists(st.one_of(table_mutation(names[kind], nrows[kind]),
                                                 byte_mutation(src.stat().st_size)), min_size=1, max_size=3),
                              label="mutations")
        cols = table_columns(src)
        table_muts = [m for m in mutations if m[0] not in ("truncate", "header", "data", "append")]
        try:
            for m in table_muts:
                cols = apply_table_mutation(cols, m)
            write_columns(path, cols)
        except (ValueError, TypeError, KeyError) as exc:  # astropy refuses to write it (e.g. duplicate names)
            outcomes[f"unwritable mutant ({type(exc).__name__})"] += 1
            shutil.rmtree(path.parent)
            return
        for m in mutations:
            if m not in table_muts:
                apply_byte_mutation(path, m)
        before = snapshot(engine)
        try:
            results = ingest_path(engine, path)
        except AlcsdbError as exc:
            message = str(exc)
            outcomes["error: " + message.replace(str(path), "FILE").partition(": ")[2][:40]] += 1
            if "\n" in message or path.name not in message:
                failures.append(f"{kind} {mutations}: error not one line naming the file: {message!r}")
            if snapshot(engine) != before:
                failures.append(f"{kind} {mutations}: failed but changed the database")
        except Exception as exc:  # noqa: BLE001 (recorded, reported below)
            if (test := known_bug(exc)) is not None:
                outcomes[f"known bug ({test})"] += 1
            else:
                outcomes[f"UNCLEAN {type(exc).__name__}"] += 1
                failures.append(f"{kind} {mutations}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        else:
            outcomes[", ".join(sorted({r.status for r in results}))] += 1
            with engine.connect() as conn:
                for r in results:
                    if r.status != "ingested":
                        continue
                    status, n_rows = conn.execute(text("SELECT status, n_rows FROM run WHERE run_id = :r"),
                                                  {"r": r.run_id}).one()
                    stored = {t: conn.execute(text(f'SELECT count(*) FROM "{t}" WHERE run_id = :r'),
                                              {"r": r.run_id}).scalar() for t in n_rows}
                    if status != "succeeded" or stored != n_rows or not r.rows:
                        failures.append(f"{kind} {mutations}: ingested run {r.run_id} {status}, rows {stored} "
                                        f"vs n_rows {n_rows}")
        shutil.rmtree(path.parent)

    check()
    print(f"\n{sum(outcomes.values())} fuzzed files:")
    for outcome, n in outcomes.most_common():
        print(f"  {n:5d}  {outcome}")
    assert sum(outcomes.values()) >= min(EXAMPLES, 20)
    assert not failures, f"{len(failures)} unclean outcomes:\n" + "\n".join(failures[:30])


def test_aor_log_corners_off_the_sky_are_a_clean_error(engine, base_files, tmp_path):
    path = tmp_path / base_files["aor_log"].name
    cols = [retype(c, "u1") if c.name == "corners" else c for c in table_columns(base_files["aor_log"])]
    write_columns(path, cols)  # corners become integers 0..255: declinations beyond 90
    before = snapshot(engine)
    with pytest.raises(AlcsdbError) as err:
        ingest_path(engine, path)
    assert path.name in str(err.value) and "corners" in str(err.value)
    assert snapshot(engine) == before


def test_aor_log_corners_without_area_are_a_clean_error(engine, base_files, tmp_path):
    """Corners that are all one sky point (a fuzzed integer column found it): the footprint hull
    is flat, which scipy reports as a QhullError; ingest must turn it into a one-line error."""
    path = tmp_path / base_files["aor_log"].name
    cols = []
    for c in table_columns(base_files["aor_log"]):
        if c.name == "corners":
            data = np.asarray(c.array, dtype=float)
            same = np.tile(data.reshape(-1)[:2], data.size // 2).reshape(data.shape)  # every corner = the first
            c = fits.Column(name=c.name, format=c.format, dim=c.dim, unit=c.unit, array=same)
        cols.append(c)
    write_columns(path, cols)
    before = snapshot(engine)
    with pytest.raises(AlcsdbError) as err:
        ingest_path(engine, path)
    assert path.name in str(err.value) and "corners" in str(err.value) and "\n" not in str(err.value)
    assert snapshot(engine) == before
