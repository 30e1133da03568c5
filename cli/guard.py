"""`usher held`, `usher approve` and `usher integrations set-guard`: the mass-change guard."""

from typing import Annotated

import typer

from cli.commands import in_session, run, settings_for
from cli.jobs import CLI_ACTOR, DataDir, _with_queue
from engine.jobs.guard import approve, guard_view, render_guard, set_guard
from engine.jobs.queue import JobQueue
from engine.storage.db import Database
from engine.storage.models import Job

IntegrationOption = Annotated[str, typer.Option("--integration", help="The integration's id.")]


def held_command(
    integration_id: IntegrationOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Show the removals the mass-change guard holds for approval, and the hour so far."""
    settings = settings_for(data_dir)
    view = run(lambda: in_session(settings, lambda s: guard_view(s, integration_id)))
    typer.echo(view.model_dump_json(indent=2) if as_json else render_guard(view))


async def _approve_and_deliver(db: Database, queue: JobQueue, integration_id: str) -> list[Job]:
    """Approve the held removals and deliver the jobs they release."""
    released = await approve(db, integration_id, actor=CLI_ACTOR)
    await queue.enqueue_all(released)
    return released


def approve_command(integration_id: IntegrationOption, data_dir: DataDir = None) -> None:
    """Approve the removals the mass-change guard holds: their jobs run now, not held again."""
    settings = settings_for(data_dir)
    released = run(
        lambda: _with_queue(
            settings, lambda db, queue: _approve_and_deliver(db, queue, integration_id)
        )
    )
    if not released:
        typer.echo(f"integration {integration_id}: nothing held")
        return
    typer.echo(
        f"integration {integration_id}: approved; {len(released)} held job(s) queued to run"
        " their removals"
    )


def set_guard_command(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    max_removals: Annotated[
        int,
        typer.Option(
            "--max-removals",
            min=0,
            help="Accounts that may lose access within an hour before the rest wait for"
            " approval (0: every removal waits).",
        ),
    ],
    data_dir: DataDir = None,
) -> None:
    """Set how many accounts may lose access within an hour before the rest wait."""
    settings = settings_for(data_dir)
    integration = run(
        lambda: in_session(
            settings, lambda s: set_guard(s, integration_id, max_removals, actor=CLI_ACTOR)
        )
    )
    typer.echo(
        f"integration {integration.id}: at most {integration.max_removals_per_hour} accounts lose"
        " access within an hour; more wait for `usher approve`"
    )
