"""CLI commands for provenance, audit and version diff.

`provenance_group` (`alcsdb provenance source|product|version`), `audit_cmd` (`alcsdb audit`)
and `diff_cmd` (`alcsdb version diff`); `register(cli, version_group)` adds them (idempotent).
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from .cli import echo_table, pass_state

FORMATS = ("tree", "prov-json", "json")


def _emit(payload: str, out: Path | None) -> None:
    if out is None:
        click.echo(payload)
    else:
        out.write_text(payload + "\n")
        click.echo(f"wrote {out}")


def _show(lin, fmt: str, out: Path | None) -> None:
    from . import lineage

    if fmt == "tree":
        _emit(lineage.render_tree(lin), out)
    elif fmt == "prov-json":
        _emit(lineage.prov_json(lin), out)
    else:
        _emit(json.dumps(lineage.as_dict(lin), indent=1), out)


_format_option = click.option("--format", "fmt", type=click.Choice(FORMATS), default="tree", show_default=True,
                              help="tree: readable; prov-json: W3C PROV-JSON; json: runs, products and inputs.")
_out_option = click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                           help="Write to FILE instead of stdout.")


@click.group("provenance")
def provenance_group() -> None:
    """Every run behind a source, a product or a catalog version, back to the raw inputs."""


@provenance_group.command("source")
@click.argument("ident", metavar="ID", type=int)
@click.option("--field", help="ID is a catalog id in this field's detection run (default: ID is a source_id).")
@click.option("--version", "version_name", help="With --field: the detection run this version pins "
                                                "(default: the field's newest).")
@_format_option
@_out_option
@pass_state
def provenance_source(state, ident: int, field: str | None, version_name: str | None, fmt: str,
                      out: Path | None) -> None:
    """Lineage of source ID: the runs that wrote its rows and everything upstream of them."""
    from . import lineage

    with state.migrated_engine().connect() as conn:
        sid = lineage.resolve_source(conn, ident, field=field, version=version_name)
        _show(lineage.source_lineage(conn, sid), fmt, out)


@provenance_group.command("product")
@click.argument("path_or_id", metavar="PATH_OR_ID")
@_format_option
@_out_option
@pass_state
def provenance_product(state, path_or_id: str, fmt: str, out: Path | None) -> None:
    """Lineage of a product (a product id, or the path of a registered file)."""
    from . import lineage

    with state.migrated_engine().connect() as conn:
        _show(lineage.product_lineage(conn, path_or_id), fmt, out)


@provenance_group.command("version")
@click.argument("name")
@_format_option
@_out_option
@pass_state
def provenance_version(state, name: str, fmt: str, out: Path | None) -> None:
    """Lineage of catalog version NAME: its pinned runs per field and everything upstream."""
    from . import lineage

    with state.migrated_engine().connect() as conn:
        _show(lineage.version_lineage(conn, name), fmt, out)


@click.command("audit")
@click.option("--field", help="Only this field's products, runs, sources and versions.")
@click.option("--quick", is_flag=True, help="Skip reading every byte: no file sha256 (sizes still checked), "
                                            "no version content hashes.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def audit_cmd(state, field: str | None, quick: bool, as_json: bool) -> None:
    """Check product files, run statuses, crashed runs, version hashes and orphan rows.

    Prints each violation on a line and exits 1 if there is any.
    """
    from . import audit

    report = audit.audit(state.migrated_engine(), field=field, quick=quick)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "checked": report.checked,
                               "violations": [vars(v) for v in report.violations]}, indent=1))
    else:
        for v in report.violations:
            click.echo(str(v))
        click.echo(("audit passed: " if report.ok else f"audit FAILED: {len(report.violations)} violation(s); ")
                   + report.summary())
    if not report.ok:
        raise click.exceptions.Exit(1)


@click.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--field", help="Only this field.")
@click.option("--flux-rtol", type=float, default=0.01, show_default=True,
              help="A flux changed when |b - a| > FLUX_RTOL * max(|a|, |b|).")
@click.option("--z-tol", type=float, default=0.01, show_default=True,
              help="z_phot changed when |b - a| > Z_TOL * (1 + a).")
@click.option("--radius", type=float, default=0.1, show_default=True,
              help="Match radius, arcsec, across detection runs.")
@click.option("--aperture", type=click.IntRange(0, 6), default=1, show_default=True,
              help="Aperture index of the compared HST total fluxes ({f}_tot_N).")
@click.option("--top", type=click.IntRange(0), default=10, show_default=True, help="Largest changes per field.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_state
def diff_cmd(state, a: str, b: str, field: str | None, flux_rtol: float, z_tol: float, radius: float,
             aperture: int, top: int, fmt: str) -> None:
    """Compare catalog versions A and B: sources only in A, only in B, matched, changed."""
    from .diff import Tolerances, diff_versions

    tol = Tolerances(flux_rtol=flux_rtol, z_tol=z_tol, match_radius_arcsec=radius, aperture=aperture)
    with state.migrated_engine().connect() as conn:
        result = diff_versions(conn, a, b, field=field, tolerances=tol, top=top)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=1))
        return
    rows = [{"field": f.field, "match": f.match, "a": f.n_a, "b": f.n_b, "only a": f.only_a, "only b": f.only_b,
             "matched": f.matched, "flux": f.flux_changed, "z_phot": f.zphot_changed} for f in result.fields]
    echo_table(rows, title=f"sources of a = {a}, b = {b}; matched sources whose flux, z_phot changed")
    for f in result.fields:
        if f.quantities_only_a or f.quantities_only_b:
            click.echo(f"{f.field}: only in {a}: {', '.join(f.quantities_only_a) or '-'}; "
                       f"only in {b}: {', '.join(f.quantities_only_b) or '-'}")
    changes = [{"field": f.field, "id a": c.id_a, "id b": c.id_b, "quantity": c.quantity, "a": c.a, "b": c.b,
                "change": "missing" if c.change is None else c.change} for f in result.fields for c in f.largest]
    if changes:
        echo_table(changes, title="largest changes (relative for fluxes, |dz|/(1+z) for z_phot)")


def register(cli: click.Group, version_group: click.Group) -> None:
    """Add the commands to the `alcsdb` group and `diff` to its `version` group (idempotent)."""
    cli.add_command(provenance_group)
    cli.add_command(audit_cmd)
    version_group.add_command(diff_cmd, "diff")
