"""CLI commands for figures: `alcsdb plot sed SOURCE_ID --out FILE.png`.

`register(cli)` adds the `plot` group (idempotent).
"""
from __future__ import annotations

from pathlib import Path

import click

from .cli import pass_state


@click.group("plot")
def plot_group() -> None:
    """QA figures from the database (PNG)."""


@plot_group.command("sed")
@click.argument("source_id", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG file to write.")
@click.option("--run", "run_id", type=int, help="Photoz run (default: the newest succeeded one with this source).")
@pass_state
def plot_sed(state, source_id: int, out: Path, run_id: int | None) -> None:
    """SED and p(z) of SOURCE_ID (a source_id): the fitted fluxes with errors, the best-fit
    template SED at z_phot rebuilt from the run's stored coefficients, and p(z)."""
    from pipeline.plots import sed_pz_png
    from pipeline.stages.photoz import source_sed

    if out.suffix.lower() != ".png":
        raise click.UsageError(f"--out {out}: the figure is a PNG, name it FILE.png")
    with state.migrated_engine().connect() as conn:
        sed, title = source_sed(conn, source_id, run_id)
    sed_pz_png(sed, None, out, title=title)
    click.echo(f"wrote {out}")


def register(cli: click.Group) -> None:
    if "plot" not in cli.commands:
        cli.add_command(plot_group)
