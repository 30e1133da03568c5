"""`usher operators`: people who sign in to the pages, with a role."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.commands import in_session, run, settings_for
from engine.operators.accounts import create_operator, disable_operator, list_operators
from engine.storage.models import Role

operators = typer.Typer(help="Operators who sign in to the pages: viewers read, admins act.")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Database, vault key and evidence (default ./var)."),
]


@operators.command("create")
def operators_create(
    username: Annotated[str, typer.Option("--username", help="What they type to sign in.")],
    role: Annotated[Role, typer.Option("--role", help="viewer reads; admin also acts.")] = (
        Role.viewer
    ),
    password: Annotated[
        str | None,
        typer.Option("--password", help="Default: read from standard input (safer)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an operator; the password is read from standard input unless given."""
    settings = settings_for(data_dir)
    secret = password if password is not None else sys.stdin.readline().rstrip("\r\n")
    operator = run(
        lambda: in_session(
            settings, lambda s: create_operator(s, username, secret, role.value, actor="cli")
        )
    )
    typer.echo(f"operator {operator.username} created ({operator.role})")


@operators.command("list")
def operators_list(data_dir: DataDir = None) -> None:
    """List operators with their role and whether they may sign in."""
    settings = settings_for(data_dir)
    found = run(lambda: in_session(settings, list_operators))
    width = max((len(o.username) for o in found), default=8)
    typer.echo(f"{'username':<{width}}  role    state     created")
    for operator in found:
        state = "disabled" if operator.disabled else "active"
        created = operator.created_at.strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{operator.username:<{width}}  {operator.role:<6}  {state:<8}  {created}")


@operators.command("disable")
def operators_disable(
    username: Annotated[str, typer.Argument(help="The operator's username.")],
    data_dir: DataDir = None,
) -> None:
    """Disable an operator: their session stops working at their next request."""
    settings = settings_for(data_dir)
    operator = run(
        lambda: in_session(settings, lambda s: disable_operator(s, username, actor="cli"))
    )
    typer.echo(f"operator {operator.username} disabled")
