"""No injection: hostile strings through every parameter of every CLI command change nothing.

The command tree is walked (commands added later are covered too): every parameter that takes
a value (names, paths, numbers, KEY=VALUE pairs, hidden options) receives each hostile
string in turn, the other parameters benign values. After each invocation:

- the output is clean: exit 0, or exit 1 with one `error:` line, or click's usage error;
- no row of any table changed or vanished, no table, function or trigger changed;
- a failed command added nothing (a `failed` run row at most);
- where the value is meant to be stored (a field's cluster name, a version note, the path of
  an ingested file, an export directory), the command succeeded and the value is stored verbatim.

Values inside files (ids and text columns of an external catalog) must round-trip verbatim too.
Bugs found here (negative DEC read as an option, empty cone to a file, empty --revision) have
regression tests at the end.
"""
from __future__ import annotations

import functools
import json
import uuid
from collections import Counter
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from alcsdb import db, roles, versions
from alcsdb.cli import cli
from alcsdb.external import load_catalog
from ingest import fixtures
from ingest.load import ingest_path
from tests.test_roles import drop_roles_with_prefix

A2744 = ("j001408m3023", "hff-j001408m3023", 3.588333, -30.39725)

HOSTILE = (
    "'; DROP TABLE source; --",
    '"; DROP TABLE catalog_version CASCADE; --',
    "x') OR ('1'='1",
    "$$; DELETE FROM run; $$",
    "%(n)s %s :name {0} \\",
    "nul\x00byte",
    "ｊ００１４０８ｍ３０２３ \u202e🙂 ' \" ;",
    "../../../etc/passwd",
    "",
)
HOSTILE_NUMBERS = ("nan", "-inf", "1e309", "1; DROP TABLE source")

#: commands not fuzzed: a valid value starts a simulation of minutes (a hostile --field that
#: names a field added by `fields add` in this test would); their paths and numbers go to the
#: simulator, never to SQL, and their field name through `resolve_field`, which the --field of
#: every other command exercises
EXCLUDED = {"mock", "demo"}
#: exceptions that mean a value was not validated: the user gets a type name, not a reason
PROGRAMMING_ERRORS = ("AssertionError", "KeyError", "IndexError", "TypeError", "AttributeError", "NameError",
                      "UnboundLocalError", "ZeroDivisionError", "RecursionError")
#: (command, parameter, value) of known bugs (none open: the three found here are fixed)
KNOWN_BUGS: set[tuple[str, str, str]] = set()
#: (command, parameter) whose value is stored: the command must succeed and store it verbatim
STORED = {("fields add", "hst_root"), ("fields add", "irac_root"), ("fields add", "cluster"),
          ("fields add", "survey"), ("version create", "note"), ("ingest", "path"), ("export", "out_dir")}


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def value_params(command: click.Command) -> list[click.Parameter]:
    return [p for p in command.params if not getattr(p, "is_flag", False) and not isinstance(p.type, click.Choice)]


def is_numeric(param: click.Parameter) -> bool:
    return isinstance(param.type, (click.types.FloatParamType, click.types.IntParamType))


def path_component(value: str) -> bool:
    """Can `value` be the name of a file in a directory (so that a path holding it exists)?"""
    return value not in ("", ".", "..") and "/" not in value and "\x00" not in value and len(value.encode()) < 200


class Snapshot:
    """Every row of every table of the schema (md5 of its text, counted), and the schema's objects.

    Given the previous snapshot, only the tables whose row count or sum of row hashes moved are
    read again.
    """

    def __init__(self, engine, previous: "Snapshot | None" = None):
        with engine.connect() as conn:
            tables = conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")).scalars().all()
            self.digest = {t: (n, h) for t, n, h in conn.execute(text(" UNION ALL ".join(
                f"SELECT '{t}', count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) "
                f'FROM "{t}" t' for t in tables)))}
            self.rows = {}
            for t in tables:
                if previous is not None and previous.digest.get(t) == self.digest[t]:
                    self.rows[t] = previous.rows[t]
                else:
                    self.rows[t] = Counter(conn.execute(text(f'SELECT md5(t::text) FROM "{t}" t')).scalars())
            here = "current_schema()::regnamespace"
            self.objects = conn.execute(text(
                f"SELECT c.relname, c.relkind::text FROM pg_class c WHERE c.relnamespace = {here} "
                f"UNION ALL SELECT p.oid::regprocedure::text || md5(p.prosrc), 'f' FROM pg_proc p "
                f"WHERE p.pronamespace = {here} UNION ALL SELECT t.tgname || t.tgenabled::text, 't' "
                f"FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = {here} "
                "ORDER BY 1, 2")).all()

    def new_rows(self, engine, after: "Snapshot") -> dict[str, list[dict]]:
        out = {}
        with engine.connect() as conn:
            for table, counts in after.rows.items():
                added = counts - self.rows.get(table, Counter())
                if added:
                    rows = conn.execute(text(f'SELECT md5(t::text), row_to_json(t)::text FROM "{table}" t')).all()
                    out[table] = [json.loads(j) for h, j in rows if h in added]
        return out


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def clean_output(result) -> str | None:
    """None if the command ended cleanly, else what was wrong."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"raised {type(result.exception).__name__}: {result.exception}"
    if "Traceback" in result.output:
        return "traceback printed"
    if result.exit_code == 1:
        lines = result.stderr.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("error: "):
            return f"error output is not one line: {result.stderr!r}"
        if lines[0].startswith(tuple(f"error: {e}:" for e in PROGRAMMING_ERRORS)):
            return f"unhandled exception: {lines[0]}"
    elif result.exit_code == 2:
        if "Error:" not in result.stderr:
            return f"usage error without message: {result.stderr!r}"
    elif result.exit_code != 0:
        return f"exit code {result.exit_code}"
    return None


@pytest.fixture
def loaded(engine, db_url, tmp_path, monkeypatch):
    """A schema with one field ingested, version v1, private roles; the CLI shares one engine per URL."""
    fixtures.write_release(tmp_path / "release", [A2744], n_sources=40, seed=3, filters=["f814w", "f160w"],
                           n_aors=1, n_bcd=3, mosaic_shape=(32, 32))
    ingest_path(engine, tmp_path / "release")
    versions.create_version(engine, "v1")
    external = tmp_path / "external.csv"
    external.write_text("id,ra,dec,z_spec\n" + "".join(
        f"e{i},{A2744[2] + 1e-4 * i},{A2744[3]},0.3\n" for i in range(5)))
    load_catalog(engine, external, "ext_benign")
    prefix = f"t_{uuid.uuid4().hex[:8]}_"
    with engine.begin() as conn:
        roles.create_roles(conn, prefix=prefix)
    engines: dict[str, object] = {}
    make_engine = db.make_engine
    monkeypatch.setattr(db, "make_engine", lambda url=None, **kw: engines.setdefault(url, make_engine(url, **kw)))
    monkeypatch.setattr(db, "head_revision", functools.lru_cache(maxsize=1)(db.head_revision))  # read once
    work = tmp_path / "cwd" / "a" / "b" / "c"  # relative paths (../../../etc/passwd) stay inside tmp_path
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    yield {"prefix": prefix, "catalog": next((tmp_path / "release").rglob("*_phot_apcorr.fits")), "work": work,
           "external": external}
    for e in engines.values():
        e.dispose()
    drop_roles_with_prefix(engine, prefix)


def test_hostile_values_through_every_command(engine, db_url, loaded):
    work: Path = loaded["work"]
    counter = iter(range(10**6))
    benign = {
        "db grant": {"user": "someone_benign", "prefix": loaded["prefix"]},
        "db roles": {"prefix": loaded["prefix"]},
        "fields add": {"name": lambda: f"jtest{next(counter)}", "ra": "10", "dec": "10"},
        "cone": {"ra": str(A2744[2]), "dec": str(A2744[3]), "radius_arcsec": "60"},
        "ingest": {"path": str(loaded["catalog"])},  # already ingested: a no-op
        "version create": {"name": lambda: f"vb{next(counter)}"},
        "version show": {"name": "v1"},
        "version diff": {"a": "v1", "b": "v1"},
        "export": {"version_name": "v1", "out_dir": str(work / "export")},
        "run": {"stage": "detect", "field": A2744[0]},
        "pipeline": {"field": A2744[0], "input_dir": str(work)},
        "external load": {"path": str(loaded["external"]), "name": lambda: f"ext{next(counter)}"},
        "crossmatch": {"name": "ext_benign", "radius": "1"},
        "compare": {"name": "ext_benign", "out_dir": str(work / "compare")},
        "provenance source": {"ident": "1"},
        "provenance product": {"path_or_id": "1"},
        "provenance version": {"name": "v1"},
    }

    def argv(name: str, command: click.Command, target: click.Parameter, value: str) -> list[str]:
        args, options = [], []
        for param in command.params:
            if param is target:
                v = value
            else:
                v = benign.get(name, {}).get(param.name)
                if v is None and param.required:
                    v = param.type.choices[0] if isinstance(param.type, click.Choice) else (
                        str(work) if isinstance(param.type, click.Path) else "1")
                if v is None:
                    continue
                v = v() if callable(v) else v
            if getattr(param, "is_flag", False):
                continue
            if isinstance(param, click.Argument):
                args.append(v)
            else:
                options += [param.opts[0], v]
        return [*name.split(), *options, "--", *args] if args else [*name.split(), *options]

    def hostile_inputs(param: click.Parameter, value: str) -> list[str]:
        if param.metavar and "=" in param.metavar:  # KEY=VALUE options: hostile key, hostile value
            return [f"{value}=1", f"detect_thresh={value}"]
        return [value]

    def prepare_path(name: str, param: click.Parameter, value: str) -> None:
        """Make the hostile path exist where the command reads it, so the value goes all the way in."""
        if not isinstance(param.type, click.Path) or not path_component(value):
            return
        if name == "ingest":  # a directory named `value` holding a new catalog
            fixtures.write_phot_apcorr(work / "ingest" / value / f"{A2744[0]}_irac_phot_apcorr.fits", A2744[0],
                                       A2744[2], A2744[3], 10, ["f160w"], seed=next(counter))
        elif param.type.exists:
            (work / value).mkdir(exist_ok=True)

    def given_path(name: str, param: click.Parameter, value: str) -> str:
        return str(work / "ingest" / value) if name == "ingest" and path_component(value) else value

    runner = CliRunner()
    problems, tried = [], 0
    before = Snapshot(engine)
    for name, command in leaf_commands(cli):
        if name in EXCLUDED:
            continue
        for param in value_params(command):
            for value in (HOSTILE_NUMBERS if is_numeric(param) else HOSTILE):
                if (name, param.name, value) in KNOWN_BUGS:
                    continue
                prepare_path(name, param, value)
                for given in hostile_inputs(param, given_path(name, param, value)):
                    args = argv(name, command, param, given)
                    result = runner.invoke(cli, ["--db", db_url, *args])
                    tried += 1
                    where = f"alcsdb {' '.join(map(repr, args))}"
                    after = Snapshot(engine, before)
                    if (bad := clean_output(result)) is not None:
                        problems.append(f"{where}: {bad}")
                    if after.objects != before.objects:
                        problems.append(f"{where}: schema objects changed")
                    changed = [t for t in before.rows if before.rows[t] - after.rows.get(t, Counter())]
                    if changed:
                        problems.append(f"{where}: rows changed or deleted in {changed}")
                    added = before.new_rows(engine, after)
                    if result.exit_code != 0:
                        extra = {t: rows for t, rows in added.items()
                                 if t != "run" or any(r["status"] != "failed" for r in rows)}
                        if extra:
                            problems.append(f"{where}: failed but wrote rows to {sorted(extra)}")
                    stored_here = (name, param.name) in STORED and value and "\x00" not in value and (
                        not isinstance(param.type, click.Path) or path_component(value))
                    if stored_here:
                        if result.exit_code != 0:
                            problems.append(f"{where}: refused a value it should store: {result.output.strip()}")
                        elif not any(value in s for rows in added.values() for r in rows for s in strings(r)):
                            problems.append(f"{where}: value not stored verbatim")
                    before = after
    print(f"{tried} hostile invocations")
    assert tried > 200
    assert not problems, "\n".join(problems)
    with engine.connect() as conn:  # the data set loaded first is whole
        pinned = conn.execute(text(
            "SELECT count(*) FROM source s JOIN catalog_version_run c ON c.run_id = s.run_id AND c.stage = 'detect' "
            "JOIN catalog_version v USING (version_id) WHERE v.name = 'v1'")).scalar()
        assert pinned == 40
        stored, now = versions.verify_hash(conn, "v1")
        assert stored == now


def test_hostile_values_inside_files_round_trip(engine, tmp_path):
    """Ids and text cells of an external catalog reach the table verbatim (COPY's CSV quoting holds)."""
    from astropy.table import Table

    values = [v for v in HOSTILE if v and "\x00" not in v] + ['a,b\n"c"\td', "\\.", "\\N", "NULL", ",,,"]
    path = tmp_path / "hostile.ecsv"
    Table({"id": values, "ra": [A2744[2]] * len(values), "dec": [A2744[3]] * len(values),
           "note": values[::-1]}).write(path)
    assert list(Table.read(path)["id"]) == values  # the file holds them as written
    load_catalog(engine, path, "hostile")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT ext_id, data->>'note' FROM external_source e JOIN external_catalog c "
                                 "USING (catalog_id) WHERE c.name = 'hostile' ORDER BY ext_source_id")).all()
    assert [r[0] for r in rows] == values
    assert [r[1] for r in rows] == values[::-1]


def invoke(db_url: str, *args: str):
    return CliRunner().invoke(cli, ["--db", db_url, *args])


def test_cone_with_negative_declination(db_url):
    result = invoke(db_url, "cone", str(A2744[2]), str(A2744[3]), "5")
    assert result.exit_code == 0, result.output


def test_cone_empty_result_to_file(db_url, tmp_path):
    out = tmp_path / "cone.txt"
    result = invoke(db_url, "cone", "--out", str(out), "--", "10", "10", "1")
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_upgrade_to_empty_revision_is_a_clean_error(db_url):
    result = invoke(db_url, "db", "upgrade", "--revision", "")
    assert result.exit_code in (1, 2) and clean_output(result) is None, result.output
