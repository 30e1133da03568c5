"""The mass-change guard of an integration: what it holds, its limit, and approval."""

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from api.deps import AdminOperator, CurrentOperator, DbDep, PageAdmin, QueueDep, SessionDep
from engine.apps.integrations import IntegrationError
from engine.jobs.guard import GuardView, approve, guard_view, set_guard

router = APIRouter(prefix="/api/integrations", tags=["integrations"])
pages = APIRouter(include_in_schema=False)


@router.get("/{integration_id}/held", response_model=GuardView)
async def get_held(
    integration_id: str, _operator: CurrentOperator, session: SessionDep
) -> GuardView:
    """The removals the guard holds for approval, the limit and the accounts of the hour."""
    try:
        return await guard_view(session, integration_id)
    except IntegrationError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


class ApprovedOut(BaseModel):
    """What approving an integration's held removals did."""

    id: str
    released_jobs: int


@router.post("/{integration_id}/approve", response_model=ApprovedOut)
async def post_approve(
    integration_id: str, db: DbDep, queue: QueueDep, operator: AdminOperator
) -> ApprovedOut:
    """Approve every held removal: their jobs run now and are never held again (audited)."""
    try:
        released = await approve(db, integration_id, actor=operator.name)
    except IntegrationError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    await queue.enqueue_all(released)
    return ApprovedOut(id=integration_id, released_jobs=len(released))


class GuardIn(BaseModel):
    """How many accounts may lose access within an hour before the rest wait (0: all wait)."""

    max_removals_per_hour: int = Field(ge=0, le=1_000_000)


@router.put("/{integration_id}/guard", response_model=GuardView)
async def put_guard(
    integration_id: str, body: GuardIn, operator: AdminOperator, session: SessionDep
) -> GuardView:
    """Change the guard's limit; it applies to the next job that plans a removal."""
    try:
        await set_guard(session, integration_id, body.max_removals_per_hour, actor=operator.name)
        return await guard_view(session, integration_id)
    except IntegrationError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


@pages.post("/integrations/{integration_id}/approve")
async def approve_from_page(
    integration_id: str, db: DbDep, queue: QueueDep, admin: PageAdmin
) -> Response:
    """Approve the held removals from the integration's page, then show it again."""
    try:
        released = await approve(db, integration_id, actor=admin.name)
    except IntegrationError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    await queue.enqueue_all(released)
    return RedirectResponse(f"/integrations/{integration_id}", status.HTTP_303_SEE_OTHER)
