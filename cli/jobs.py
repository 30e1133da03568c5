"""`usher jobs` and `usher identities`: the Activity and its buttons from the command line."""

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from redis.asyncio import Redis

from cli.commands import in_session, redis_beside_up, run, settings_for, with_database
from engine.jobs.activity import ActivityFilter, list_activity
from engine.jobs.queue import JobQueue
from engine.jobs.state import FINAL, JobNotFound
from engine.jobs.views import (
    cancel_job,
    job_record,
    render_job,
    retry_job,
    step_count,
    unblock_identity,
    watch_job,
)
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.evidence import evidence_store
from engine.storage.models import JobKind, JobStatus

T = TypeVar("T")
CLI_ACTOR = "cli"
"""Who the audit chain names for a change made from the command line."""
jobs = typer.Typer(help="Jobs: list, show, follow live, retry and cancel.")
identities = typer.Typer(help="Identities: unblock one whose job waits for a person.")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Database, vault key and evidence (default ./var)."),
]
JobId = Annotated[str, typer.Argument(help="The job's id (the X-Usher-Job header of SCIM).")]


@jobs.command("list")
def jobs_list(
    integration: Annotated[str | None, typer.Option(help="Only this integration's jobs.")] = None,
    state: Annotated[JobStatus | None, typer.Option(help="Only jobs in this state.")] = None,
    user: Annotated[str | None, typer.Option(help="Part of a userName or name.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Only jobs that ran this action, e.g. deactivate_user.")
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(help="Created at or after (UTC), e.g. 2026-11-30 or 2026-11-30T08:00:00."),
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Created before this time (UTC).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """List jobs newest first: state, attempt, identity and actions."""
    settings = settings_for(data_dir)
    wanted = ActivityFilter(
        integration_id=integration,
        status=state and state.value,
        user=user,
        action=action,
        since=since and _aware(since),
        until=until and _aware(until),
    )
    page = run(lambda: in_session(settings, lambda s: list_activity(s, wanted, limit=limit)))
    if as_json:
        typer.echo(json.dumps([row.model_dump(mode="json") for row in page.rows], indent=2))
        return
    typer.echo(f"{'created':<19}  {'job':<32}  {'state':<15}  try  who / actions")
    for row in page.rows:
        who = row.user_name or (f"group {row.group_name}" if row.group_id else None)
        who = who or ("inventory" if row.kind == JobKind.inventory else "-")
        done = ", ".join(a.name + (f" {a.target}" if a.target else "") for a in row.actions)
        typer.echo(
            f"{row.created_at:%Y-%m-%d %H:%M:%S}  {row.id}  {row.status:<15}  {row.attempt:>3}"
            f"  {who}" + (f": {done}" if done else "")
        )


def _aware(moment: datetime) -> datetime:
    """Return a time typed without a zone as UTC, the zone every job time is stored in."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _show(settings: Settings, job_id: str) -> list[str]:
    """Return the lines of a job's header and step table."""

    async def read(db: Database) -> list[str]:
        """Read the job's record and lay it out."""
        async with db.reader() as session:
            record = await job_record(session, job_id)
        if record is None:
            raise JobNotFound(f"no job {job_id}")
        job = record.job
        head = f"job {job.id}: {job.status}, attempt {job.attempt}"
        lines = [head + (f" ({job.error})" if job.error else "")]
        return lines + render_job(record, evidence_store(settings, db))

    return await with_database(settings, read)


@jobs.command("show")
def jobs_show(job_id: JobId, data_dir: DataDir = None) -> None:
    """Print a job's actions and steps: status, duration, screenshot path, error."""
    settings = settings_for(data_dir)
    typer.echo("\n".join(run(lambda: _show(settings, job_id))))


async def _with_queue(settings: Settings, work: Callable[[Database, JobQueue], Awaitable[T]]) -> T:
    """Open the job queue on the Redis beside `usher up` (or the given one) for one command."""
    with redis_beside_up(settings) as url:
        queue = await JobQueue.connect(url)
        try:
            return await with_database(settings, lambda db: work(db, queue))
        finally:
            await queue.close()


@jobs.command("retry")
def jobs_retry(job_id: JobId, data_dir: DataDir = None) -> None:
    """Queue a closed job's next attempt now."""
    settings = settings_for(data_dir)
    job = run(
        lambda: _with_queue(
            settings, lambda db, queue: retry_job(db, queue, job_id, actor=CLI_ACTOR)
        )
    )
    typer.echo(f"job {job.id} {job.status}, attempt {job.attempt}")


@jobs.command("cancel")
def jobs_cancel(job_id: JobId, data_dir: DataDir = None) -> None:
    """Cancel a live job; a running one stops before its next action."""
    settings = settings_for(data_dir)
    job = run(lambda: with_database(settings, lambda db: cancel_job(db, job_id, actor=CLI_ACTOR)))
    typer.echo(f"job {job.id} {job.status}")


async def _watch(settings: Settings, job_id: str) -> str:
    """Print a job's steps as they are recorded, until it ends; return its state."""
    with redis_beside_up(settings) as url:
        redis = Redis.from_url(url)
        db = Database.from_settings(settings)
        store = evidence_store(settings, db)
        shown, status, attempt, error = 0, "", 0, None
        try:
            async for record in watch_job(db, redis, job_id):
                job = record.job
                if not status:
                    typer.echo(f"job {job.id}: {job.status}, attempt {job.attempt}")
                for line in render_job(record, store, skip=shown):
                    typer.echo(line)
                shown = step_count(record)
                changed = (job.status, job.attempt) != (status, attempt)
                if status and changed and job.status not in FINAL:
                    typer.echo(f"job {job.id}: {job.status}, attempt {job.attempt}")
                status, attempt, error = job.status, job.attempt, job.error
        finally:
            await redis.aclose()
            await db.dispose()
        typer.echo(f"job {job_id}: {status}, attempt {attempt}")
        if error and status != JobStatus.succeeded:
            typer.echo(f"error: {error}")
        return status


@jobs.command("watch")
def jobs_watch(job_id: JobId, data_dir: DataDir = None) -> None:
    """Follow a job live, step by step, until it ends; exit 0 only if it succeeded."""
    settings = settings_for(data_dir)
    status = run(lambda: _watch(settings, job_id))
    raise typer.Exit(code=0 if status == JobStatus.succeeded else 1)


@identities.command("unblock")
def identities_unblock(
    identity_id: Annotated[str, typer.Argument(help="The identity's id (its SCIM id).")],
    data_dir: DataDir = None,
) -> None:
    """Retry a blocked identity's parked job now, after fixing what blocked it."""
    settings = settings_for(data_dir)
    job = run(
        lambda: _with_queue(
            settings, lambda db, queue: unblock_identity(db, queue, identity_id, actor=CLI_ACTOR)
        )
    )
    typer.echo(f"job {job.id} {job.status}, attempt {job.attempt}")
