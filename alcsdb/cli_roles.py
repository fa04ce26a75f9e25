"""`alcsdb db roles` and `alcsdb db grant`: the least-privilege roles of `alcsdb.roles`.

Both commands belong to the `db` group (`db_group.add_command(roles_cmd)`,
`db_group.add_command(grant_cmd)`); they run on the schema of the connection (`--db URL`, whose
`options=-csearch_path=...` selects a schema other than `public`) and need a superuser.
"""
from __future__ import annotations

import click

from . import roles

#: hidden option: tests on a shared server use private role names (roles are cluster-wide)
prefix_option = click.option("--prefix", default=roles.DEFAULT_PREFIX, show_default=True, hidden=True,
                             help="Prefix of the role names.")


@click.command("roles")
@prefix_option
@click.pass_obj
def roles_cmd(state, prefix: str) -> None:
    """Create the alcs_reader, alcs_writer and alcs_admin roles (idempotent) and grant them on this schema."""
    with state.migrated_engine().begin() as conn:
        report = roles.create_roles(conn, prefix=prefix)
    for name in report.created:
        click.echo(f"role {name} created")
    for name in report.existing:
        click.echo(f"role {name} exists")
    reader, writer, admin = (roles.role_name(k, prefix) for k in roles.KINDS)
    click.echo(f"schema {report.schema}: {reader} reads {report.tables} tables and calls {report.functions} "
               f"functions; {writer} also appends rows and closes runs; {admin} owns {report.owned} objects")


@click.command("grant")
@click.argument("user")
@click.option("--role", "kind", type=click.Choice(roles.KINDS), required=True, help="Role to grant.")
@click.option("--create", is_flag=True, help="Create USER (LOGIN, no password) if it does not exist.")
@prefix_option
@click.pass_obj
def grant_cmd(state, user: str, kind: str, create: bool, prefix: str) -> None:
    """Give login role USER the reader, writer or admin rights (run `alcsdb db roles` first)."""
    with state.migrated_engine().begin() as conn:
        created = roles.grant_role(conn, user, kind, prefix=prefix, create=create)
    click.echo(f"{'created user ' + user + ', ' if created else ''}granted {roles.role_name(kind, prefix)} to {user}")
