"""`usher reconcile` and `usher drift`: read an app's accounts, and what differs in it."""

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cli.commands import in_session, run, settings_for, with_database
from cli.jobs import CLI_ACTOR, _with_queue
from engine.constants import RECONCILE_WAIT_S
from engine.jobs.inventory import (
    DriftState,
    drift_of,
    queue_inventory,
    render_drift,
    skip_import,
)
from engine.jobs.queue import JobQueue
from engine.jobs.views import watch_job
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Job, JobStatus
from engine.storage.vault import Vault

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Database, vault key and evidence (default ./var)."),
]
IntegrationId = Annotated[str, typer.Option("--integration", help="The integration's id.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print it as JSON.")]


async def _queue_and_wait(
    db: Database, queue: JobQueue, settings: Settings, integration_id: str, wait_s: float | None
) -> tuple[Job, DriftState | None]:
    """Queue an inventory and deliver it; with `wait_s`, wait for its end and its report."""
    vault = Vault.from_path(settings.vault_key_path)
    async with db.session() as session:
        job = await queue_inventory(session, settings, vault, integration_id, actor=CLI_ACTOR)
    await queue.enqueue(job)
    if wait_s is None:
        return job, None
    try:
        async with asyncio.timeout(wait_s):
            async for record in watch_job(db, queue.redis, job.id):
                job = record.job
    except TimeoutError:
        return job, None
    async with db.reader() as session:
        return job, await drift_of(session, integration_id, job_id=job.id)


def reconcile_command(
    integration_id: IntegrationId,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the run and print its report.")
    ] = True,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the run before giving up waiting.")
    ] = RECONCILE_WAIT_S,
    as_json: AsJson = False,
    data_dir: DataDir = None,
) -> None:
    """Read the app's accounts now (list_users) and print the drift it finds.

    The run is a job like any other (sign-in, screenshots, retries); exit 0 when it
    succeeded, 1 when it failed or was still running after --timeout.
    """
    settings = settings_for(data_dir)
    job, drift = run(
        lambda: _with_queue(
            settings,
            lambda db, queue: _queue_and_wait(
                db, queue, settings, integration_id, timeout if wait else None
            ),
        )
    )
    if not wait:
        typer.echo(f"inventory job {job.id} {job.status}; `usher drift` shows its report")
        return
    if as_json:
        typer.echo(drift.model_dump_json(indent=2) if drift else "null")
    else:
        error = f" ({job.error})" if job.error else ""
        typer.echo(f"inventory job {job.id}: {job.status}{error}")
        if drift is not None and drift.report is not None:
            typer.echo(render_drift(drift))
    if job.status != JobStatus.succeeded:
        raise typer.Exit(code=1)


def drift_command(
    integration_id: IntegrationId, as_json: AsJson = False, data_dir: DataDir = None
) -> None:
    """Print the latest drift report: orphans, missing accounts, what differs, protected ones.

    Orphans are accounts no identity owns; missing, identities the app does not list;
    differing, accounts that show otherwise than Usher granted; protected accounts (the
    service account, break-glass admins) are listed apart and never touched.
    """
    settings = settings_for(data_dir)
    drift = run(lambda: in_session(settings, lambda s: drift_of(s, integration_id)))
    typer.echo(drift.model_dump_json(indent=2) if as_json else render_drift(drift))


def skip_import_command(
    integration_id: Annotated[str, typer.Argument(help="The integration's id.")],
    data_dir: DataDir = None,
) -> None:
    """Plan without importing the app's accounts first: the app holds none Usher must find.

    The jobs that waited for the import run now; an account already in the app is then met
    by a create that finds it, as before imports existed.
    """
    settings = settings_for(data_dir)
    released = run(
        lambda: with_database(settings, lambda db: skip_import(db, integration_id, actor=CLI_ACTOR))
    )
    typer.echo(
        f"integration {integration_id} plans without an import;"
        f" {len(released)} waiting job(s) queued"
    )
