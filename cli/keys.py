"""`usher integrations create-key / revoke-key / keys`: API keys for the assignments API."""

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.commands import in_session, run, settings_for
from cli.jobs import CLI_ACTOR
from engine.apps.keys import create_key, list_keys, render_keys, revoke_key

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Database, vault key and evidence (default ./var)."),
]


def create_key_command(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Who uses the key (default: assignments).")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an API key for the integration's assignments API and print it, shown only once."""
    settings = settings_for(data_dir)
    view, key = run(
        lambda: in_session(settings, lambda s: create_key(s, integration_id, name, actor=CLI_ACTOR))
    )
    typer.echo(f"key id   {view.id}")
    typer.echo(f"name     {view.name}")
    typer.echo(f"API key  {key}")
    typer.echo(
        "The key is shown only now; only its hash is stored. It opens POST, DELETE and GET "
        f"/api/assignments of integration {view.integration_id} and nothing else."
    )


def revoke_key_command(
    key_id: Annotated[str, typer.Argument(help="The key's id (usher integrations keys ID).")],
    data_dir: DataDirOption = None,
) -> None:
    """Revoke an API key: it opens nothing from now on."""
    settings = settings_for(data_dir)
    view = run(lambda: in_session(settings, lambda s: revoke_key(s, key_id, actor=CLI_ACTOR)))
    typer.echo(f"key {view.id} ({view.name}) of integration {view.integration_id} revoked")


def keys_command(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """List an integration's API keys: id, name, created, last used, revoked (never the key)."""
    settings = settings_for(data_dir)
    keys = run(lambda: in_session(settings, lambda s: list_keys(s, integration_id)))
    if as_json:
        typer.echo(json.dumps([k.model_dump(mode="json") for k in keys], indent=2))
        return
    typer.echo(render_keys(keys))
