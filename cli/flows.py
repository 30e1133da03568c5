"""`usher flows`: check flows statically, replay one action against an app, print the schema,
and list the steps that needed a fallback locator (the app's UI drifted)."""

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.commands import fail, in_session, redis_beside_up, run, settings_for
from cli.recorder import flows_import, flows_record
from engine.apps.template import AppError, available_apps, load_app
from engine.automation.check import check_app
from engine.constants import DRIFT_REPORT_DAYS
from engine.jobs.ui_drift import app_fallbacks, render_fallbacks

flows = typer.Typer(
    help="Check flows, replay one action, print the flow schema, list the fallbacks needed."
)
flows.command("import")(flows_import)
flows.command("record")(flows_record)


def _parse_vars(pairs: list[str]) -> dict[str, str]:
    """Turn k=v pairs into a dict, refusing a pair without '='."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--var takes key=value, got {pair!r}")
        result[key.strip()] = value
    return result


@flows.command("check")
def flows_check(
    app_name: Annotated[str | None, typer.Argument(help="One app; default: every app.")] = None,
    flows_dir: Annotated[Path | None, typer.Option(help="Default: USHER_FLOWS_DIR.")] = None,
) -> None:
    """Validate flows: schema, variables, secrets only in fills, each capability's actions."""
    settings = settings_for(None, flows_dir=flows_dir)
    apps = [app_name] if app_name else available_apps(settings.flows_dir)
    if not apps:
        raise fail(f"no app templates under {settings.flows_dir}")
    problems = [p for name in apps for p in check_app(settings.flows_dir, name)]
    for problem in problems:
        typer.echo(str(problem), err=True)
    if any(p.severity == "error" for p in problems):
        raise typer.Exit(code=1)
    typer.echo(f"{', '.join(apps)}: flows OK")


@flows.command("schema")
def flows_schema() -> None:
    """Print the flow language's JSON Schema (published as flows/flow.schema.json)."""
    from engine.automation.language import flow_json_schema

    typer.echo(json.dumps(flow_json_schema(), indent=2, sort_keys=True))


@flows.command("replay")
def flows_replay(
    app_name: Annotated[str, typer.Argument(help="The app, e.g. acme.")],
    action: Annotated[str, typer.Argument(help="The action, e.g. create_user.")],
    integration: Annotated[str, typer.Option("--integration", help="The integration's id.")],
    var: Annotated[list[str] | None, typer.Option("--var", help="k=v, e.g. email=a@b.c")] = None,
    headed: Annotated[bool, typer.Option(help="Show the browser window.")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Run one action with sample data, printing each step, its locator and screenshot.

    Beside a running `usher up` on the same data dir it shares that process's Redis (its
    TOTP ledger and sign-in lock) and leaves it running.
    """
    from engine.automation.language import FlowError
    from engine.automation.replay import FlowFailed, ReplayRequest, run_replay

    settings = settings_for(data_dir)
    request = ReplayRequest(app_name, action, integration, _parse_vars(var or []), headed)
    try:
        with redis_beside_up(settings) as redis_url:
            outcome = run(lambda: run_replay(settings, redis_url, request, typer.echo))
    except (FlowFailed, FlowError) as error:
        typer.echo(f"usher: replay failed: {error}", err=True)
        raise typer.Exit(code=1) from None
    if outcome.extracted:
        typer.echo(f"extracted: {json.dumps(outcome.extracted)}")
    for name, rows in outcome.rows.items():
        typer.echo(f"{name}: {len(rows)} row(s)")
        for row in rows:
            typer.echo(f"  {json.dumps(row)}")


@flows.command("drift")
def flows_drift(
    app_name: Annotated[str, typer.Argument(help="The app, e.g. acme.")],
    integration: Annotated[
        str | None, typer.Option("--integration", help="Only this integration's runs.")
    ] = None,
    days: Annotated[
        float, typer.Option(min=0.001, help="How far back to look, in days.")
    ] = DRIFT_REPORT_DAYS,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """List the steps that matched only through a fallback locator lately: what to update.

    Each row: the flow, the step, the locator that found nothing, the fallback that matched,
    how often, when last, and the newest job (its page shows the step's screenshot).
    """
    settings = settings_for(data_dir)
    try:
        load_app(settings.flows_dir, app_name)
    except AppError as error:
        raise fail(str(error)) from None
    rows = run(
        lambda: in_session(settings, lambda s: app_fallbacks(s, app_name, integration, days))
    )
    if as_json:
        typer.echo(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
        return
    for line in render_fallbacks(rows, app_name, days):
        typer.echo(line)
