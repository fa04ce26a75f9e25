"""Commands for external catalogs: `external load|list`, `crossmatch`, `compare`.

Registered on the main group by `alcsdb.cli` (`cli.add_command(external_group)`, ...).
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from .cli import State, echo_table, pass_state


@click.group("external")
def external_group() -> None:
    """External catalogs (spectroscopic redshifts, published photometry): load, list."""


@external_group.command("load")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name of the catalog in the database (letters, digits, _.+-).")
@click.option("--ra", "ra_col", metavar="COL", help="RA column (default: ra, RAJ2000, ALPHA_J2000, ...).")
@click.option("--dec", "dec_col", metavar="COL", help="Dec column (default: dec, DEJ2000, DELTA_J2000, ...).")
@click.option("--id", "id_col", metavar="COL", help="Id column (default: id, objid, number, ... if present).")
@click.option("--z-spec", "z_col", metavar="COL",
              help="Spectroscopic redshift column (default: z_spec, zspec, specz, ... if present).")
@click.option("--columns", metavar="COL,COL", help="Other columns to keep (default: every scalar column).")
@click.option("--chunk-rows", type=click.IntRange(min=1000), default=100_000, show_default=True,
              help="Rows per COPY chunk.")
@pass_state
def external_load(state: State, path: Path, name: str, ra_col: str | None, dec_col: str | None,
                  id_col: str | None, z_col: str | None, columns: str | None, chunk_rows: int) -> None:
    """Load a FITS, CSV, ECSV or VOTable catalog from PATH as external catalog NAME."""
    from .external import load_catalog

    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns is not None else None
    info = load_catalog(state.migrated_engine(), path, name, ra=ra_col, dec=dec_col, id_col=id_col, z_spec=z_col,
                        columns=cols, chunk_rows=chunk_rows)
    plan = info.columns
    click.echo(f"external catalog {info.name}: {info.n_rows} rows (run {info.run_id}, sha256 {info.sha256[:12]}); "
               f"ra={plan['ra']} dec={plan['dec']} id={plan['id']} z_spec={plan['z_spec']}, "
               f"{len(plan['data'])} other columns")


@external_group.command("list")
@pass_state
def external_list(state: State) -> None:
    """List the external catalogs."""
    from .external import list_catalogs

    with state.migrated_engine().connect() as conn:
        rows = list_catalogs(conn)
    for row in rows:
        row["loaded_at"] = row["loaded_at"].strftime("%Y-%m-%d %H:%M") if row["loaded_at"] else None
        row["file"] = Path(row["file"]).name if row["file"] else None
    echo_table(rows, title=f"{len(rows)} external catalogs")


@click.command("crossmatch")
@click.argument("name")
@click.option("--radius", "radius", type=float, required=True, help="Match radius, arcsec.")
@click.option("--version", "version", help="Catalog version whose sources are matched (default: latest runs).")
@click.option("--field", help="Only this field.")
@pass_state
def crossmatch_cmd(state: State, name: str, radius: float, version: str | None, field: str | None) -> None:
    """Match sources with external catalog NAME: every pair within --radius, stored with separations.

    The pairs are in table `crossmatch` under the printed run id, e.g. the nearest match of each
    source: SELECT s.field_id, s.id, e.ext_id, x.separation_arcsec FROM crossmatch x JOIN source s
    USING (source_id) JOIN external_source e USING (ext_source_id) WHERE x.run_id = RUN AND x.is_nearest
    """
    from .crossmatch import crossmatch

    r = crossmatch(state.migrated_engine(), name, radius, version=version, field=field)
    click.echo(f"crossmatch run {r.run_id}: {r.stats.n_source} sources x {r.stats.n_external} {r.catalog} rows "
               f"within {r.radius_arcsec}\": {r.stats.n_pairs} pairs, {r.n_sources_matched} sources and "
               f"{r.n_external_matched} external rows matched")


@click.command("compare")
@click.argument("name")
@click.option("--version", "version", help="Catalog version (default: each field's latest runs).")
@click.option("--field", help="Only this field.")
@click.option("--map", "mapping", multiple=True, metavar="OURS=THEIRS,...",
              help="Columns to compare: our release column = their column (e.g. f160w_tot_1=F160W,z_phot=z_spec).")
@click.option("--radius", type=float, default=1.0, show_default=True, help="Match radius, arcsec.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Report directory (report.json, index.html, PNG figures).")
@pass_state
def compare_cmd(state: State, name: str, version: str | None, field: str | None, mapping: tuple[str, ...],
                radius: float, out_dir: Path) -> None:
    """Verification report of our catalog against external catalog NAME."""
    from .compare import compare, parse_map

    report = compare(state.migrated_engine(), name, mapping=parse_map(mapping), out_dir=out_dir, version=version,
                     field=field, radius_arcsec=radius)
    mf = report["matched_fraction"]
    click.echo(f"{report['n_pairs']} pairs (crossmatch run {report['crossmatch_run']}); matched fraction ours "
               f"{mf['ours']['fraction']:.3f}, theirs {mf['theirs']['fraction']:.3f}")
    for key, s in report["flux_ratio"].items():
        click.echo(f"  flux ratio {key}: median {s['median']:.4f}, scatter {s['sigma']:.4f} (N = {s['n']})")
    for key, s in report["redshift"].items():
        click.echo(f"  {key}: sigma_NMAD {s['sigma_nmad']:.4f}, outliers {s['outlier_frac']:.3f} (N = {s['N']})")
    off = report["offsets_arcsec"]
    click.echo(f"  offsets (theirs - ours): dRA cos(dec) {off['dra_cosdec_median']:.3f}\", "
               f"dDec {off['ddec_median']:.3f}\"")
    click.echo(f"report: {out_dir / 'index.html'} ({json.dumps(sorted(report['figures'].values()))})")
