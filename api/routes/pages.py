"""The operator's pages: the Activity, a job with its steps (live), and what admins may do."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from api.deps import (
    DbDep,
    EvidenceDep,
    PageAdmin,
    PageOperator,
    QueueDep,
    ReaderDep,
    SettingsDep,
)
from api.pages import render
from api.routes.jobs import JobOut, job_out
from engine.apps.template import ACTIONS
from engine.constants import SSE_HEARTBEAT_S
from engine.jobs import events
from engine.jobs.activity import ActivityFilter, list_activity
from engine.jobs.guard import is_held
from engine.jobs.people import describe_identity
from engine.jobs.state import (
    FINAL,
    LIVE,
    RETRYABLE,
    JobNotFound,
    JobStateError,
)
from engine.jobs.views import cancel_job, job_record, job_status, retry_job, unblock_identity
from engine.storage.models import ActionStatus, Identity, Integration, JobStatus

router = APIRouter(include_in_schema=False)
JOB_ACTIONS = tuple(a for a in ACTIONS if a not in ("login", "list_users"))
"""The actions a job runs, which the Activity can be filtered by."""


def _when(value: str | None, *, end_of_day: bool = False) -> datetime | None:
    """Read a date or UTC date-time from a filter field; an unreadable one is no filter.

    A date alone means its whole day: `until` a date includes that day.
    """
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if end_of_day and len(value) == len("YYYY-MM-DD"):
        when += timedelta(days=1)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class ActivityQuery(BaseModel):
    """The Activity's filters and its page cursor, as the query string carries them."""

    state: str | None = Field(default=None, max_length=200)
    action: str | None = Field(default=None, max_length=200)
    user: str | None = Field(default=None, max_length=200)
    since: str | None = Field(default=None, max_length=200)
    until: str | None = Field(default=None, max_length=200)
    after: str | None = Field(default=None, max_length=200)


ActivityParams = Annotated[ActivityQuery, Query()]


async def _activity(
    request: Request,
    session: ReaderDep,
    operator: PageOperator,
    integration: Integration | None,
    query: ActivityQuery,
) -> HTMLResponse:
    """Render the Activity, global or of one integration."""
    wanted = ActivityFilter(
        integration_id=integration.id if integration else None,
        status=query.state or None,
        action=query.action or None,
        user=query.user or None,
        since=_when(query.since),
        until=_when(query.until, end_of_day=True),
    )
    page = await list_activity(session, wanted, cursor=query.after)
    filters = query.model_dump(exclude={"after"})
    return render(
        request,
        "activity.html",
        operator,
        page=page,
        integration=integration,
        filters={k: v or "" for k, v in filters.items()},
        states=list(JobStatus),
        actions=JOB_ACTIONS,
    )


@router.get("/activity", response_class=HTMLResponse)
async def activity(
    request: Request, session: ReaderDep, operator: PageOperator, query: ActivityParams
) -> HTMLResponse:
    """Show every integration's jobs, newest first."""
    return await _activity(request, session, operator, None, query)


@router.get("/integrations/{integration_id}/activity", response_class=HTMLResponse)
async def integration_activity(
    integration_id: str,
    request: Request,
    session: ReaderDep,
    operator: PageOperator,
    query: ActivityParams,
) -> HTMLResponse:
    """Show one integration's jobs, newest first."""
    integration = await session.get(Integration, integration_id)
    if integration is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no integration {integration_id}")
    return await _activity(request, session, operator, integration, query)


async def _job_view(
    request: Request, session: ReaderDep, store: EvidenceDep, job_id: str
) -> tuple[JobOut, Identity | None, Integration | None]:
    """Return a job in its public shape with its identity and integration, or answer 404."""
    record = await job_record(session, job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    job = job_out(record, request, store)
    identity = await session.get(Identity, job.identity_id) if job.identity_id else None
    return job, identity, await session.get(Integration, job.integration_id)


def _attempts(job: JobOut) -> list[tuple[int, list]]:
    """Group a job's actions by attempt, the newest attempt first, to show side by side."""
    grouped: dict[int, list] = {}
    for action in job.actions:
        grouped.setdefault(action.attempt, []).append(action)
    return sorted(grouped.items(), reverse=True)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(
    job_id: str,
    request: Request,
    session: ReaderDep,
    store: EvidenceDep,
    operator: PageOperator,
    error: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """Show a job: its actions and steps by attempt, screenshots, and the admin's buttons."""
    job, identity, integration = await _job_view(request, session, store, job_id)
    return render(
        request,
        "job.html",
        operator,
        job=job,
        identity=identity,
        integration=integration,
        attempts=_attempts(job),
        live=job.status not in FINAL,
        retryable=job.status in RETRYABLE,
        cancellable=job.status in LIVE,
        blocked=job.status in (JobStatus.blocked, JobStatus.action_required),
        held=await is_held(session, job.id),
        error=error,
        failed=ActionStatus.failed,
    )


@router.get("/identities/{identity_id}", response_class=HTMLResponse)
async def identity_page(
    identity_id: str,
    request: Request,
    session: ReaderDep,
    operator: PageOperator,
    settings: SettingsDep,
    error: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """Show an identity as the IdP sent it, its groups, entitlements with sources, its jobs."""
    view = await describe_identity(session, settings, identity_id)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no identity {identity_id}")
    return render(request, "identity.html", operator, view=view, error=error)


@router.get("/jobs/{job_id}/timeline", response_class=HTMLResponse)
async def job_timeline(
    job_id: str, request: Request, session: ReaderDep, store: EvidenceDep, operator: PageOperator
) -> HTMLResponse:
    """Return the part of a job's page that changes while it runs."""
    job, _identity, _integration = await _job_view(request, session, store, job_id)
    return render(
        request,
        "timeline.html",
        operator,
        job=job,
        attempts=_attempts(job),
        live=job.status not in FINAL,
        failed=ActionStatus.failed,
    )


@router.get("/jobs/{job_id}/events")
async def job_events(
    job_id: str, request: Request, db: DbDep, queue: QueueDep, _operator: PageOperator
) -> StreamingResponse:
    """Stream a job's events to its page as server-sent events, fed by Redis pub/sub."""

    async def stream() -> AsyncIterator[str]:
        """Relay events until the job ends or the browser leaves; a comment keeps it open."""
        async for event in events.listen(queue.redis, job_id, idle_s=SSE_HEARTBEAT_S):
            kind = event.get("kind")
            if kind == events.SUBSCRIBED:
                if await job_status(db, job_id) in FINAL | {None}:
                    yield f"event: {events.FINAL}\ndata: {{}}\n\n"
                    return
                continue
            if not event:
                if await request.is_disconnected():
                    return
                yield ": still here\n\n"
                continue
            yield f"event: {kind}\ndata: {json.dumps(event)}\n\n"
            if kind == events.FINAL:
                return

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _back_to(job_id: str, problem: Exception | None = None) -> RedirectResponse:
    """Return to a job's page, naming what went wrong if something did."""
    target = f"/jobs/{job_id}"
    if problem is not None:
        target += f"?error={quote(str(problem))}"
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.post("/jobs/{job_id}/retry")
async def retry_from_page(job_id: str, db: DbDep, queue: QueueDep, admin: PageAdmin) -> Response:
    """Queue a closed job's next attempt, then show it."""
    try:
        job = await retry_job(db, queue, job_id, actor=admin.name)
    except JobNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except JobStateError as error:
        return _back_to(job_id, error)
    return _back_to(job.id)


@router.post("/jobs/{job_id}/cancel")
async def cancel_from_page(job_id: str, db: DbDep, admin: PageAdmin) -> Response:
    """Cancel a live job, then show it."""
    try:
        await cancel_job(db, job_id, actor=admin.name)
    except JobNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except JobStateError as error:
        return _back_to(job_id, error)
    return _back_to(job_id)


@router.post("/identities/{identity_id}/unblock")
async def unblock_from_page(
    identity_id: str, db: DbDep, queue: QueueDep, admin: PageAdmin
) -> Response:
    """Retry a blocked identity's parked job, then show it."""
    try:
        job = await unblock_identity(db, queue, identity_id, actor=admin.name)
    except JobNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except JobStateError as error:
        target = f"/identities/{identity_id}?error={quote(str(error))}"
        return RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    return _back_to(job.id)
