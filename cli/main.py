"""The `usher` command line: run the service, manage integrations, run the demo."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.commands import fail, in_session, redis_for_up, run, settings_for, with_database
from cli.drift import drift_command, reconcile_command, skip_import_command
from cli.embedded import running_owner, served_by
from cli.evidence import evidence
from cli.flows import flows
from cli.guard import approve_command, held_command, set_guard_command
from cli.jobs import CLI_ACTOR, identities, jobs
from cli.keys import create_key_command, keys_command, revoke_key_command
from cli.logs import configure
from cli.operators import operators
from engine.apps.integrations import (
    ONBOARDING_SAYS,
    create_api_token,
    create_integration,
    describe_integration,
    list_integrations,
    render_integration,
    rotate_token,
    scim_base_url,
    set_ownership,
    set_secret,
)
from engine.apps.webhooks import render_webhook, set_webhook
from engine.constants import WEBHOOK_REPLAY_WINDOW_S
from engine.jobs.breaker import resume
from engine.jobs.groups import map_group, unmap_group
from engine.jobs.preview import plan_integration, render_plan
from engine.operators.accounts import list_api_tokens
from engine.settings import Settings
from engine.storage.models import Integration, Role
from engine.storage.vault import Vault
from engine.version import usher_version

app = typer.Typer(
    help="Usher: provision IdP identities into web apps without an API.",
    pretty_exceptions_show_locals=False,
)
integrations = typer.Typer(help="Connect apps: create integrations, set their secrets.")
tokens = typer.Typer(help="Operator API tokens.")
fixtures = typer.Typer(help="Fixture apps for tests and the demo.")
app.add_typer(integrations, name="integrations")
app.add_typer(tokens, name="tokens")
app.add_typer(fixtures, name="fixtures")
app.add_typer(flows, name="flows")
app.add_typer(operators, name="operators")
app.add_typer(jobs, name="jobs")
app.add_typer(identities, name="identities")
app.add_typer(evidence, name="evidence")
app.command("held")(held_command)
app.command("approve")(approve_command)
integrations.command("set-guard")(set_guard_command)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Database, vault key and evidence (default ./var)."),
]
RedisUrl = Annotated[
    str | None, typer.Option("--redis-url", help="redis:// or unix:// URL (USHER_REDIS_URL).")
]
Host = Annotated[str | None, typer.Option("--host", help="Address to bind (USHER_HOST).")]
Port = Annotated[int | None, typer.Option("--port", help="Port to bind (USHER_PORT).")]
FlowsDir = Annotated[
    Path | None,
    typer.Option("--flows-dir", help="Your own apps, beside the built-in ones (USHER_FLOWS_DIR)."),
]


def print_version(value: bool) -> None:
    """Print the installed package's version and exit, so operators know what runs."""
    if value:
        typer.echo(f"usher {usher_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Usher: provision IdP identities into web apps without an API."""


def vault_of(settings: Settings) -> Vault:
    """Open the vault once the data dir exists, so its key is created owner-only inside it."""
    return Vault.from_path(settings.vault_key_path)


def require_redis(settings: Settings, command: str) -> str:
    """Return the Redis URL, or exit 2 saying how to give one."""
    if not settings.redis_url:
        raise fail(
            f"`usher {command}` needs a real Redis: set USHER_REDIS_URL or pass --redis-url"
            " (`usher up` runs an embedded one)"
        )
    return settings.redis_url


@app.command()
def up(
    data_dir: DataDir = None,
    host: Host = None,
    port: Port = None,
    redis_url: RedisUrl = None,
    flows_dir: FlowsDir = None,
) -> None:
    """Run the API and one worker in one process, over an embedded Redis unless one is given."""
    from cli.server import run_up

    settings = settings_for(
        data_dir, host=host, port=port, redis_url=redis_url, flows_dir=flows_dir
    )
    with redis_for_up(settings) as url:
        configure()
        run(lambda: run_up(settings, url))


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Host = None,
    port: Port = None,
    redis_url: RedisUrl = None,
    flows_dir: FlowsDir = None,
) -> None:
    """Run the API only, against a real Redis shared with workers."""
    from cli.server import run_serve

    settings = settings_for(
        data_dir, host=host, port=port, redis_url=redis_url, flows_dir=flows_dir
    )
    url = require_redis(settings, "serve")
    configure()
    run(lambda: run_serve(settings, url))


@app.command()
def worker(
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    flows_dir: FlowsDir = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            help="Serve this worker's Prometheus metrics on this port at /metrics"
            " (USHER_METRICS_PORT; 0: none).",
        ),
    ] = None,
) -> None:
    """Run one worker that reconciles accounts, against a real Redis."""
    from api.metrics import MetricsUnavailable, WorkerMetrics
    from engine.jobs.worker import run_worker

    settings = settings_for(
        data_dir, redis_url=redis_url, flows_dir=flows_dir, metrics_port=metrics_port
    )
    url = require_redis(settings, "worker")
    configure()
    try:
        metrics = WorkerMetrics(settings) if settings.metrics_port else None
    except MetricsUnavailable as error:
        raise fail(str(error)) from None
    if metrics is not None:
        typer.echo(f"worker metrics at {metrics.url}", err=True)
    try:
        run(lambda: run_worker(settings, url))
    finally:
        if metrics is not None:
            metrics.stop()


@app.command()
def demo(data_dir: DataDir = None) -> None:
    """Provision one Okta-created user into the Acme fixture app and print the job."""
    from cli.demo import run_demo

    settings = settings_for(data_dir, isolated_dns=True)
    owner = running_owner(settings.data_dir)
    if owner is not None:
        raise fail(served_by(owner, settings.data_dir))
    configure("WARNING")
    code = run(lambda: run_demo(settings))
    raise typer.Exit(code=code)


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Few samples: see that every row runs, not judge it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    postgres: Annotated[
        str | None,
        typer.Option(
            "--postgres",
            help="A PostgreSQL server URL (SQLAlchemy async) the bench may create a throw-away"
            " database on: adds the *_pg rows.",
        ),
    ] = None,
) -> None:
    """Measure Usher against baselines served and run the same way, in one run.

    Rows: SCIM at concurrency 8 against scim2-server's in-memory app while the worker
    drains, a job from SCIM POST to the account in Acme against bare Playwright,
    throughput, memory and evidence per step. Targets are reported, not enforced.
    """
    from cli.bench import BenchError, bench_main

    configure("WARNING")
    try:
        typer.echo(bench_main(quick=quick, as_json=as_json, postgres_url=postgres))
    except BenchError as error:
        raise fail(f"the bench could not measure: {error}") from None


@integrations.command("create")
def integrations_create(
    app_name: Annotated[str, typer.Option("--app", help="The app's folder under flows/.")],
    base_url: Annotated[str, typer.Option("--base-url", help="Where this app instance runs.")],
    name: Annotated[str | None, typer.Option(help="A name for people.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print id, URL and token as JSON.")] = (
        False
    ),
    skip_import: Annotated[
        bool,
        typer.Option(
            "--skip-import",
            help="The app holds no accounts yet: plan at once, without importing them first.",
        ),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Create an integration and print its SCIM base URL and token, shown only once.

    Its jobs wait until Usher has imported the accounts already in the app (list_users),
    once its secrets are set; --skip-import is for an app known to be empty.
    """
    settings = settings_for(data_dir)
    integration, token = run(
        lambda: in_session(
            settings,
            lambda s: create_integration(
                s,
                settings,
                app=app_name,
                base_url=base_url,
                name=name,
                import_accounts=not skip_import,
            ),
        )
    )
    result = {
        "id": integration.id,
        "scim_base_url": scim_base_url(settings, integration),
        "token": token,
    }
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"integration  {result['id']}")
    typer.echo(f"SCIM URL     {result['scim_base_url']}")
    typer.echo(f"SCIM token   {result['token']}")
    typer.echo(f"onboarding   {ONBOARDING_SAYS[integration.onboarding]}")
    typer.echo("The token is shown only now; only its hash is stored.")


@integrations.command("list")
def integrations_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List integrations: id, app, health, onboarding (importing or ready), name, SCIM URL."""
    settings = settings_for(data_dir)
    found = run(lambda: in_session(settings, list_integrations))
    rows = [
        {
            "id": i.id,
            "app": i.app,
            "name": i.name,
            "health": i.health,
            "max_removals_per_hour": i.max_removals_per_hour,
            "onboarding": i.onboarding,
            "scim_base_url": scim_base_url(settings, i),
        }
        for i in found
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(
            f"{row['id']}  {row['app']:<10}  {row['health']:<16}  {row['onboarding']:<9}"
            f"  {row['name']}  {row['scim_base_url']}"
            f"  guard {row['max_removals_per_hour']}/h"
        )


@integrations.command("set-secret")
def integrations_set_secret(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    name: Annotated[str, typer.Argument(help="A secret the app's template declares.")],
    data_dir: DataDir = None,
) -> None:
    """Store a secret read from standard input (never from the command line)."""
    settings = settings_for(data_dir)
    value = sys.stdin.read().rstrip("\r\n")
    run(
        lambda: in_session(
            settings,
            lambda s: set_secret(s, settings, vault_of(settings), integration_id, name, value),
        )
    )
    typer.echo(f"secret {name} stored for {integration_id}")


@integrations.command("rotate-token")
def integrations_rotate_token(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    data_dir: DataDir = None,
) -> None:
    """Replace an integration's SCIM token and print the new one, shown only once."""
    settings = settings_for(data_dir)
    typer.echo(run(lambda: in_session(settings, lambda s: rotate_token(s, integration_id))))


integrations.command("create-key")(create_key_command)
integrations.command("revoke-key")(revoke_key_command)
integrations.command("keys")(keys_command)


@integrations.command("resume")
def integrations_resume(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    data_dir: DataDir = None,
) -> None:
    """Close the sign-in breaker after fixing a secret; the jobs that waited run again."""
    settings = settings_for(data_dir)
    released = run(
        lambda: with_database(settings, lambda db: resume(db, integration_id, actor=CLI_ACTOR))
    )
    typer.echo(
        f"integration {integration_id} resumed: sign-in allowed again,"
        f" {len(released)} waiting job(s) queued"
    )


@integrations.command("show")
def integrations_show(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print an integration's SCIM URL, app, health, missing secrets and entitlement values."""
    settings = settings_for(data_dir)
    view = run(
        lambda: in_session(
            settings,
            lambda s: describe_integration(s, settings, vault_of(settings), integration_id),
        )
    )
    if as_json:
        typer.echo(view.model_dump_json(indent=2))
        return
    webhook = run(lambda: in_session(settings, lambda s: render_webhook(s, integration_id)))
    typer.echo("\n".join([render_integration(view), *webhook]))


@integrations.command("set-webhook")
def integrations_set_webhook(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    url: Annotated[str, typer.Argument(help="Where to POST alerts (http or https).")],
    data_dir: DataDir = None,
) -> None:
    """Send this integration's alerts to a URL, signed with a new secret shown only once."""
    settings = settings_for(data_dir)
    secret = run(
        lambda: in_session(
            settings,
            lambda s: set_webhook(s, vault_of(settings), integration_id, url, actor=CLI_ACTOR),
        )
    )
    typer.echo(f"webhook  {url}")
    typer.echo(f"secret   {secret}")
    typer.echo(
        "(shown once: verify X-Usher-Signature, the HMAC-SHA256 of `{X-Usher-Timestamp}.{body}`"
        f" under it, and refuse a timestamp over {WEBHOOK_REPLAY_WINDOW_S} s away)"
    )


@integrations.command("map-group")
def integrations_map_group(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    group: Annotated[str, typer.Argument(help="The group's displayName, externalId or id.")],
    value: Annotated[str, typer.Argument(help="The entitlement value its members get.")],
    data_dir: DataDir = None,
) -> None:
    """Grant an entitlement value to the members of a group named otherwise."""
    settings = settings_for(data_dir)
    change, jobs = run(
        lambda: in_session(
            settings,
            lambda s: map_group(s, settings, integration_id, group, value, actor="cli"),
        )
    )
    mapping = change.mappings[0]
    if not change.groups:
        typer.echo(
            f"group {mapping.group_label!r} -> {value}: no such group pushed yet; the mapping"
            " applies once the IdP pushes a group with that displayName or externalId"
        )
        return
    done = "mapped" if change.created else "already mapped"
    typer.echo(
        f"group {mapping.group_label!r} ({mapping.group_kind} {mapping.group}) {done} -> {value};"
        f" {len(jobs)} group job(s) queued to re-evaluate its members"
    )


@integrations.command("unmap-group")
def integrations_unmap_group(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    group: Annotated[str, typer.Argument(help="The group's displayName, externalId or id.")],
    value: Annotated[
        str | None, typer.Argument(help="Only this value's mapping (default: all of them).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Remove a group's mappings; its members lose what no other source grants."""
    settings = settings_for(data_dir)
    change, jobs = run(
        lambda: in_session(
            settings, lambda s: unmap_group(s, integration_id, group, value, actor="cli")
        )
    )
    for mapping in change.mappings:
        typer.echo(f"unmapped {mapping.group_label!r} -> {mapping.value}")
    typer.echo(f"{len(jobs)} group job(s) queued to re-evaluate the members")


OnOff = Annotated[str, typer.Argument(help="on or off.", metavar="on|off")]


def on_off(value: str) -> bool:
    """Read an on|off argument, or exit 2 saying what it takes."""
    if value.casefold() not in ("on", "off"):
        raise fail(f"expected on or off, not {value!r}")
    return value.casefold() == "on"


def _set_ownership(settings: Settings, integration_id: str, **change: object) -> Integration:
    """Change an integration's ownership settings from the command line."""
    return run(
        lambda: in_session(
            settings, lambda s: set_ownership(s, integration_id, actor="cli", **change)
        )
    )


@integrations.command("set-authoritative")
def integrations_set_authoritative(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    value: OnOff,
    data_dir: DataDir = None,
) -> None:
    """on: Usher also revokes and deactivates what it only found in the app (default off)."""
    settings = settings_for(data_dir)
    integration = _set_ownership(settings, integration_id, authoritative=on_off(value))
    what = (
        "authoritative: also removes what it only observed in the app"
        if integration.authoritative
        else "not authoritative: removes only what Usher granted"
    )
    typer.echo(f"integration {integration.id} {what}; `usher plan` shows each next job")


@integrations.command("set-delete-users")
def integrations_set_delete_users(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    value: OnOff,
    data_dir: DataDir = None,
) -> None:
    """on: a SCIM DELETE runs the app's delete_user, where its template declares one."""
    settings = settings_for(data_dir)
    integration = _set_ownership(settings, integration_id, delete_users=on_off(value))
    what = "runs delete_user" if integration.delete_users else "deactivates and revokes"
    typer.echo(f"integration {integration.id}: a SCIM DELETE {what}")


@integrations.command("set-protected")
def integrations_set_protected(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    accounts: Annotated[
        list[str] | None,
        typer.Argument(help="userNames or emails never touched (none: clear the list)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Replace the accounts Usher never touches (break-glass admins); the service account
    always is."""
    settings = settings_for(data_dir)
    integration = _set_ownership(settings, integration_id, protected_accounts=accounts or [])
    listed = ", ".join(integration.protected_accounts) or "none but the service account"
    typer.echo(f"integration {integration.id} protects: {listed}")


@integrations.command("set-remediate")
def integrations_set_remediate(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    value: OnOff,
    data_dir: DataDir = None,
) -> None:
    """on: an inventory's drift is remedied (differing identities reconciled, orphans
    deactivated), where the integration is also authoritative (default off)."""
    settings = settings_for(data_dir)
    integration = _set_ownership(settings, integration_id, remediate=on_off(value))
    if not integration.remediate:
        what = "drift is reported only"
    elif integration.authoritative:
        what = "drift is remedied: differing identities reconciled, orphans deactivated"
    else:
        what = "drift is remedied once it is also authoritative (set-authoritative on)"
    typer.echo(f"integration {integration.id}: {what}; protected accounts are never touched")


integrations.command("skip-import")(skip_import_command)
app.command("reconcile")(reconcile_command)
app.command("drift")(drift_command)


@app.command("plan")
def plan_command(
    integration_id: Annotated[str, typer.Option("--integration", help="The integration's id.")],
    user: Annotated[str | None, typer.Option(help="Only this userName (or identity id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Show what each user's job would do now and what grants each action; run nothing."""
    settings = settings_for(data_dir)
    preview = run(
        lambda: in_session(settings, lambda s: plan_integration(s, settings, integration_id, user))
    )
    typer.echo(preview.model_dump_json(indent=2) if as_json else render_plan(preview))


@app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print what /readyz checks, each lane's queue and the oldest queued job."""
    from cli.status import gather_status, render_status

    settings = settings_for(data_dir)
    readiness, queue, problem = run(lambda: gather_status(settings))
    if as_json:
        report = {"readiness": readiness.model_dump(), "queue": queue and queue.model_dump()}
        typer.echo(json.dumps(report | {"problem": problem or None}, indent=2))
    else:
        typer.echo(render_status(readiness, queue, problem))
    if not readiness.ready:
        raise typer.Exit(code=1)


@tokens.command("create")
def tokens_create(
    name: Annotated[str, typer.Option(help="Who or what uses the token.")] = "operator",
    role: Annotated[Role, typer.Option(help="viewer reads; admin also acts.")] = Role.admin,
    data_dir: DataDir = None,
) -> None:
    """Create an operator API token and print it, shown only once."""
    settings = settings_for(data_dir)
    typer.echo(run(lambda: in_session(settings, lambda s: create_api_token(s, name, role.value))))


@tokens.command("list")
def tokens_list(data_dir: DataDir = None) -> None:
    """List operator API tokens with their role and last use (never the token)."""
    settings = settings_for(data_dir)
    found = run(lambda: in_session(settings, list_api_tokens))
    width = max((len(t.name) for t in found), default=4)
    typer.echo(f"{'name':<{width}}  role    created           last used")
    for token in found:
        used = token.last_used_at.strftime("%Y-%m-%d %H:%M") if token.last_used_at else "never"
        created = token.created_at.strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{token.name:<{width}}  {token.role:<6}  {created}  {used}")


@fixtures.command("serve")
def fixtures_serve(
    fixture: Annotated[str, typer.Argument(help="The fixture app: acme or globex.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8100,
) -> None:
    """Run a fixture app in the foreground, printing its sign-in details."""
    if fixture == "acme":
        from fixtures.acme.server import serve as serve_acme

        serve_acme(port)
    elif fixture == "globex":
        from fixtures.globex.server import serve as serve_globex

        serve_globex(port)
    else:
        raise fail(f"unknown fixture {fixture!r} (fixtures: acme, globex)")
