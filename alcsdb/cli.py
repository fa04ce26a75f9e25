"""The `alcsdb` command line.

Every command accepts the global `--db URL` (else ALCSDB_DATABASE_URL, else the embedded
server) and `--debug` (full tracebacks). Errors print one line and exit non-zero.
"""
from __future__ import annotations

import functools
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__
from .errors import AlcsdbError

log = logging.getLogger("alcsdb")


class State:
    """Lazily opened database engine shared by the commands of one invocation."""

    def __init__(self, db_url: str | None, debug: bool):
        self.db_url = db_url
        self.debug = debug
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            from . import db

            self._engine = db.make_engine(self.db_url)
        return self._engine

    def migrated_engine(self):
        """The engine, after checking the database is at the code's migration head."""
        from . import db

        db.require_current(self.engine)
        return self.engine


pass_state = click.make_pass_decorator(State)


def echo_table(rows: list[dict] | list[tuple], headers: list[str] | None = None, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    if rows and isinstance(rows[0], dict):
        headers = headers or list(rows[0])
        rows = [tuple(r.get(h) for h in headers) for r in rows]
    for h in headers or []:
        table.add_column(h)
    for row in rows:
        table.add_row(*["" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)) for v in row])
    Console().print(table)


class AlcsdbGroup(click.Group):
    """Turns exceptions into one-line errors unless --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:  # the one place errors become user messages
            state = ctx.find_object(State)
            if state is not None and state.debug:
                raise
            click.echo(f"error: {one_line(exc)}", err=True)
            ctx.exit(1)


def one_line(exc: BaseException) -> str:
    if isinstance(exc, (AlcsdbError, ValueError, FileNotFoundError, PermissionError)):
        text = str(exc)
    else:
        from sqlalchemy.exc import DBAPIError, OperationalError

        if isinstance(exc, OperationalError):
            text = f"database unreachable: {str(exc.orig).strip()}"
        elif isinstance(exc, DBAPIError):
            text = f"database error: {str(exc.orig).strip()}"
        else:
            text = f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"
    return " ".join(text.split())


@click.group(cls=AlcsdbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_url", metavar="URL", envvar="ALCSDB_DATABASE_URL",
              help="PostgreSQL URL (default: ALCSDB_DATABASE_URL, else the embedded server in $ALCSDB_HOME/pgdata).")
@click.option("--debug", is_flag=True, help="Show full tracebacks and debug logging.")
@click.version_option(__version__, prog_name="alcsdb")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, debug: bool) -> None:
    """alcsdb: the ALCS HST + Spitzer/IRAC catalog database and pipeline."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("sqlalchemy", "alembic", "pgserver", "matplotlib", "PIL", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not debug:
        warnings.filterwarnings("ignore")
    ctx.obj = State(db_url, debug)


# --- db -------------------------------------------------------------------------------

@cli.group("db")
def db_group() -> None:
    """Database server and schema: url, start, stop, upgrade, status."""


@db_group.command("url")
@pass_state
def db_url_cmd(state: State) -> None:
    """Print the database URL in use (password hidden)."""
    from . import db

    click.echo(db.describe(state.engine))


@db_group.command("start")
def db_start() -> None:
    """Start the embedded server (no effect with --db / ALCSDB_DATABASE_URL)."""
    from . import db

    url = db.embedded_url()
    click.echo(f"embedded PostgreSQL running: {url}")


@db_group.command("stop")
def db_stop() -> None:
    """Stop the embedded server."""
    from . import db

    click.echo("embedded PostgreSQL stopped" if db.stop_embedded() else "embedded PostgreSQL was not running")


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
@pass_state
def db_upgrade(state: State, revision: str) -> None:
    """Migrate the schema to the latest revision and load the 33 fields and the filters."""
    from . import db

    if not revision.strip():
        raise click.BadParameter("give a revision id or 'head'", param_hint="--revision")
    before = db.current_revision(state.engine)
    db.upgrade(state.engine, revision)
    click.echo(f"database {db.describe(state.engine)}: revision {before or 'none'} -> {db.current_revision(state.engine)}")


@db_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def db_status(state: State, as_json: bool) -> None:
    """Show the schema revision, row counts per table and runs by status."""
    from . import status

    info = status.database_status(state.engine)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"database: {info['url']}")
    click.echo(f"revision: {info['revision']} (code head {info['head']})")
    echo_table([{"table": k, "rows": v} for k, v in info["tables"].items()], title="rows per table")
    if info["runs"]:
        echo_table(info["runs"], title="runs by stage and status")
    if info["abandoned"]:
        click.echo(f"abandoned runs (process gone while running): {', '.join(map(str, info['abandoned']))}")


# --- fields ---------------------------------------------------------------------------

@cli.group("fields")
def fields_group() -> None:
    """The ALCS fields: list, add."""


@fields_group.command("list")
@pass_state
def fields_list(state: State) -> None:
    """List the fields with their centre, redshift and source counts."""
    from sqlalchemy import text

    with state.migrated_engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT f.name, f.hst_root, f.cluster, f.survey, f.ra, f.dec, f.z_cluster, f.ebv, "
            "(SELECT count(*) FROM source s WHERE s.field_id = f.field_id) AS n_sources "
            "FROM field f ORDER BY f.survey, f.name")).mappings().all()
    echo_table([dict(r) for r in rows], title=f"{len(rows)} fields")


@fields_group.command("add")
@click.argument("name")
@click.option("--ra", type=float, required=True, help="Centre RA, deg.")
@click.option("--dec", type=float, required=True, help="Centre Dec, deg.")
@click.option("--hst-root", help="HST product root (default: NAME).")
@click.option("--irac-root", help="IRAC product root.")
@click.option("--cluster", help="Cluster name (default: NAME).")
@click.option("--survey", help="Survey (HFF, CLASH, RELICS, ...).")
@click.option("--z", "z_cluster", type=float, help="Cluster redshift.")
@click.option("--ebv", type=float, help="Galactic E(B-V), mag.")
@pass_state
def fields_add(state: State, name: str, ra: float, dec: float, hst_root: str | None, irac_root: str | None,
               cluster: str | None, survey: str | None, z_cluster: float | None, ebv: float | None) -> None:
    """Add a new field NAME (e.g. j123456p0102)."""
    from . import fields

    with state.migrated_engine().begin() as conn:
        fid = fields.add_field(conn, name, ra, dec, hst_root=hst_root, irac_root=irac_root, cluster=cluster,
                               survey=survey, z_cluster=z_cluster, ebv=ebv)
    click.echo(f"field {name} added (field_id {fid})")


# --- cone -----------------------------------------------------------------------------

@cli.command("cone", context_settings={"ignore_unknown_options": True})  # so that DEC may be negative
@click.argument("ra", type=float)
@click.argument("dec", type=float)
@click.argument("radius_arcsec", type=float)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "fits"]), default="table",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE instead of stdout.")
@pass_state
def cone(state: State, ra: float, dec: float, radius_arcsec: float, fmt: str, out: Path | None) -> None:
    """Sources within RADIUS_ARCSEC of (RA, DEC) in degrees, over all fields, nearest first."""
    from . import query

    table = query.cone_search(state.migrated_engine(), ra, dec, radius_arcsec)
    write_table(table, fmt, out, title=f"{len(table)} sources within {radius_arcsec}\" of ({ra}, {dec})")


# --- ingest ---------------------------------------------------------------------------

@cli.command("ingest")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--field", help="Field of the files (default: from each file's root).")
@click.option("--dry-run", is_flag=True, help="Read and validate, report what would be written, write nothing.")
@pass_state
def ingest_cmd(state: State, path: Path, field: str | None, dry_run: bool) -> None:
    """Load release files (catalogs, zout, AOR logs, mosaics) from PATH, a file or a directory."""
    from rich.console import Console

    from ingest.load import iter_ingest

    counts: dict[str, int] = {}
    with Console(stderr=True).status("ingesting") as status:
        for r in iter_ingest(state.migrated_engine(), path, field=field, dry_run=dry_run,
                             progress=lambda msg: status.update(f"ingesting {msg}")):
            counts[r.status] = counts.get(r.status, 0) + 1
            rows = ", ".join(f"{k} {v}" for k, v in r.rows.items() if v)
            run = f" run {r.run_id}" if r.run_id and r.status == "ingested" else ""
            click.echo(f"{r.status:>12}  {r.path.name}  [{r.kind}{', ' + r.field if r.field else ''}]{run}"
                       f"{'  ' + rows if rows else ''}{'  ' + r.message if r.message else ''}")
    click.echo(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no release files found")


# --- versions and export ----------------------------------------------------------------

@cli.group("version")
def version_group() -> None:
    """Catalog versions: create, list, show, diff."""


@version_group.command("create")
@click.argument("name")
@click.option("--field", "fields", multiple=True, help="Field to include (repeatable; default: all with sources).")
@click.option("--all", "all_fields", is_flag=True, help="All fields that have sources (the default).")
@click.option("--note", help="Free text stored with the version.")
@pass_state
def version_create(state: State, name: str, fields: tuple[str, ...], all_fields: bool, note: str | None) -> None:
    """Freeze the latest succeeded runs of each field as catalog version NAME (immutable)."""
    from . import versions

    if all_fields and fields:
        raise click.UsageError("--all and --field exclude each other")
    info = versions.create_version(state.migrated_engine(), name, fields=list(fields) or None, note=note)
    click.echo(f"version {name} created: {len(info['fields'])} field(s), content hash {info['content_hash']}")
    for fname, runs in info["fields"].items():
        click.echo(f"  {fname}: " + ", ".join(f"{role} run {run}" for role, run in runs.items()))


@version_group.command("list")
@pass_state
def version_list(state: State) -> None:
    """List catalog versions."""
    from sqlalchemy import text

    with state.migrated_engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT v.name, v.created_at, v.created_by, count(DISTINCT cvr.field_id) AS fields, v.content_hash, v.note "
            "FROM catalog_version v LEFT JOIN catalog_version_run cvr USING (version_id) GROUP BY v.version_id "
            "ORDER BY v.created_at")).mappings().all()
    echo_table([dict(r) for r in rows], title=f"{len(rows)} catalog versions")


@version_group.command("show")
@click.argument("name")
@click.option("--verify", is_flag=True, help="Recompute the content hash and compare.")
@pass_state
def version_show(state: State, name: str, verify: bool) -> None:
    """Show a version: its fields, pinned runs and content hash."""
    from sqlalchemy import text

    from . import versions

    with state.migrated_engine().connect() as conn:
        version, fields = versions.version_runs(conn, name)
        click.echo(f"version {version['name']} created {version['created_at']} by {version['created_by']} "
                   f"(alcsdb {version['software_version']})")
        click.echo(f"content hash {version['content_hash']}")
        if version["note"]:
            click.echo(f"note: {version['note']}")
        rows = []
        for fr in fields:
            n = conn.execute(text("SELECT count(*) FROM source WHERE run_id = :r"), {"r": fr.runs["detect"]}).scalar()
            rows.append({"field": fr.field, "sources": n, **{r: fr.runs.get(r) for r in versions.ROLES}})
        echo_table(rows, title="pinned runs")
        if verify:
            stored, now = versions.verify_hash(conn, name)
            click.echo("content hash verified" if stored == now else f"CONTENT HASH MISMATCH: now {now}")
            if stored != now:
                raise click.exceptions.Exit(1)


@cli.command("export")
@click.option("--version", "version_name", required=True, help="Catalog version to export.")
@click.option("--field", help="Only this field.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory.")
@click.option("--format", "fmt", type=click.Choice(["fits", "csv", "hats"]), default="fits", show_default=True)
@click.option("--zspec", help="External catalog (alcsdb external load) whose nearest z_spec fills z_spec.")
@click.option("--zspec-radius", type=float, default=0.5, show_default=True, help="Match radius for --zspec, arcsec.")
@pass_state
def export_cmd(state: State, version_name: str, field: str | None, out_dir: Path, fmt: str, zspec: str | None,
               zspec_radius: float) -> None:
    """Write a catalog version in the release's format (byte-reproducible)."""
    from rich.console import Console

    from .export import export_version

    with Console(stderr=True).status("exporting") as status:
        files = export_version(state.migrated_engine(), version_name, out_dir, field=field, fmt=fmt, zspec=zspec,
                               zspec_radius=zspec_radius, progress=lambda msg: status.update(f"exporting {msg}"))
    for f in files:
        click.echo(f"{f.path}  {f.rows} rows  sha256 {f.sha256}")


# --- pipeline ---------------------------------------------------------------------------

def _print_stage(result) -> None:
    if result.skipped:
        click.echo(f"{result.stage:>10}  {result.field}: skipped ({result.message})")
    else:
        rows = ", ".join(f"{k} {v}" for k, v in result.rows.items() if v)
        click.echo(f"{result.stage:>10}  {result.field}: run {result.run_id} in {result.seconds:.1f} s  {rows}")


def _cluster_options(fn: Callable) -> Callable:
    fn = click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                      help="Run on a dask LocalCluster of N worker processes (N > 1); 1 runs in this process.")(fn)
    return click.option("--scheduler", metavar="ADDRESS",
                        help="Run on an existing dask.distributed scheduler (e.g. tcp://host:8786).")(fn)


def _run_jobs(state: State, jobs: list, stages: tuple[str, ...], overrides: dict, force: bool,
              scheduler: str | None, workers: int) -> list:
    """Run the jobs in this process, or on a dask cluster when --scheduler or --workers N > 1."""
    from pipeline import runner

    engine = state.migrated_engine()
    kw = dict(stages=stages, overrides=overrides, force=force, progress=lambda msg: log.info(msg),
              on_result=_print_stage)
    if scheduler and workers > 1:
        raise click.UsageError("--scheduler and --workers exclude each other (the scheduler has its workers)")
    if not scheduler and workers == 1:
        return runner.run_fields(engine, jobs, **kw)
    from pipeline import distributed

    with distributed.open_cluster(scheduler, workers) as client:
        log.info(distributed.describe(client))
        return distributed.run_fields(client, engine, jobs, **kw)


def _report(outcomes: list) -> None:
    """One error stops the command as one line; several fields' errors print one line each."""
    failed = [o for o in outcomes if o.error is not None]
    if len(outcomes) == 1 and failed:
        raise failed[0].error
    for o in failed:
        click.echo(f"error: {o.field}, stage {o.failed_stage}: {one_line(o.error)}", err=True)
    if failed:
        raise click.exceptions.Exit(1)


@cli.command("run")
@click.argument("stage", type=click.Choice(["mosaic", "detect", "photometry", "irac", "photoz"]))
@click.option("--field", required=True, help="Field name or root.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Override a stage parameter (repeatable).")
@click.option("--input", "input_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Raw exposures folder (mosaic stage; e.g. made by `alcsdb mock`).")
@click.option("--force", is_flag=True, help="Run even if an identical run (same inputs and parameters) exists.")
@_cluster_options
@pass_state
def run_cmd(state: State, stage: str, field: str, params: tuple[str, ...], input_dir: Path | None, force: bool,
            scheduler: str | None, workers: int) -> None:
    """Run one pipeline STAGE for a field, as a recorded run."""
    from pipeline.runner import FieldJob, parse_params

    if stage == "mosaic" and input_dir is None:
        raise click.UsageError("the mosaic stage needs --input DIR (raw exposures)")
    _report(_run_jobs(state, [FieldJob(field, input_dir)], (stage,), {stage: parse_params(params)}, force,
                      scheduler, workers))


@cli.command("pipeline")
@click.option("--field", help="Field name or root (its raw exposures in --input DIR).")
@click.option("--all-fields", is_flag=True,
              help="Every field with inputs: --input DIR holds one sub-folder per field (DIR/FIELD/hst/ ...).")
@click.option("--input", "input_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Raw exposures folder (with --all-fields: the folder of the fields' folders).")
@click.option("--force", is_flag=True, help="Re-run stages even when unchanged.")
@_cluster_options
@pass_state
def pipeline_cmd(state: State, field: str | None, all_fields: bool, input_dir: Path, force: bool,
                 scheduler: str | None, workers: int) -> None:
    """Run every stage in order (mosaic, detect, photometry, irac, photoz), skipping unchanged ones."""
    from pipeline.runner import STAGES, FieldJob, field_jobs

    if bool(field) == all_fields:
        raise click.UsageError("give either --field F or --all-fields")
    if all_fields:
        with state.migrated_engine().connect() as conn:
            jobs = field_jobs(conn, input_dir)
    else:
        jobs = [FieldJob(field, input_dir)]
    _report(_run_jobs(state, jobs, STAGES, {}, force, scheduler, workers))


@cli.command("mock")
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--field", default="j001408m3023", show_default=True, help="Field to simulate (its centre and redshift).")
@click.option("--size-arcmin", type=float, default=2.0, show_default=True, help="Side of the square field.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--depth", "depths", multiple=True, metavar="BAND=MAG",
              help="5-sigma depth (AB) of a band's stack, e.g. f160w=28.5 (repeatable; default: HFF-like).")
@click.option("--no-offsets", is_flag=True, help="Exact header WCS (no injected pointing errors).")
@pass_state
def mock_cmd(state: State, outdir: Path, field: str, size_arcmin: float, seed: int, depths: tuple[str, ...],
             no_offsets: bool) -> None:
    """Simulate the raw HST and IRAC exposures of a field (with truth) into OUTDIR."""
    from pipeline.mock import simulate_field
    from pipeline.runner import get_field, parse_params

    depth = {k: float(v) for k, v in parse_params(depths).items()} or None
    with state.migrated_engine().connect() as conn:
        f = get_field(conn, field)
    info = simulate_field(outdir, field=f.name, ra=f.ra, dec=f.dec, z_cluster=f.z_cluster or 0.3,
                          size_arcmin=size_arcmin, seed=seed, depth=depth, offsets=not no_offsets,
                          progress=lambda msg: log.info(f"mock: {msg}"))
    click.echo(f"simulated {f.name} ({size_arcmin}' x {size_arcmin}', seed {seed}) in {outdir}")
    return info


@cli.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the demo writes its files (default: $ALCSDB_HOME/demo).")
@click.option("--size-arcmin", type=float, default=1.0, show_default=True, help="Side of the simulated field.")
@pass_state
def demo_cmd(state: State, workdir: Path | None, size_arcmin: float) -> None:
    """The main job: ingest a release, simulate a field and run every stage, cone search, export a version."""
    from .demo import default_workdir, run_demo

    run_demo(state.engine, workdir or default_workdir(), size_arcmin=size_arcmin, say=click.echo)


def write_table(table, fmt: str, out: Path | None, title: str | None = None) -> None:
    """Print or write an astropy Table as a rich table, CSV, JSON (records) or FITS."""
    if fmt == "fits" and out is None:
        raise click.UsageError("--format fits needs --out FILE")
    if fmt == "table":
        if out is not None:  # astropy's fixed-width writer cannot size columns of an empty table
            table.write(out, format="ascii.fixed_width" if len(table) else "ascii.basic", overwrite=True)
        else:
            echo_table([tuple(row) for row in table.iterrows()], headers=table.colnames, title=title)
        return
    if fmt == "fits":
        table.write(out, format="fits", overwrite=True)
        click.echo(f"wrote {len(table)} rows to {out}")
        return
    if fmt == "csv":
        import io

        buf = io.StringIO()
        table.write(buf, format="ascii.csv")
        payload = buf.getvalue()
    else:
        payload = json.dumps([{k: _jsonable(row[k]) for k in table.colnames} for row in table], indent=1)
    if out is None:
        click.echo(payload, nl=not payload.endswith("\n"))
    else:
        out.write_text(payload)
        click.echo(f"wrote {len(table)} rows to {out}")


def _jsonable(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _register_commands() -> None:
    """Commands kept in their own modules (they import `State`/`pass_state` from here)."""
    from . import cli_audit, cli_external, cli_plot, cli_roles

    cli.add_command(cli_external.external_group)
    cli.add_command(cli_external.crossmatch_cmd)
    cli.add_command(cli_external.compare_cmd)
    cli_audit.register(cli, version_group)
    cli_plot.register(cli)
    db_group.add_command(cli_roles.roles_cmd)
    db_group.add_command(cli_roles.grant_cmd)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="alcsdb")


if __name__ == "__main__":  # pragma: no cover
    main()
