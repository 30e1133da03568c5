"""The assignments API for ticketing systems: grant a value to a user directly, revoke it."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Path, Query, Response, status
from fastapi.openapi.models import Example

from api.deps import AssignmentReader, AssignmentWriter, QueueDep, SessionDep, SettingsDep
from engine.apps.template import AppError
from engine.constants import (
    IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENT_REPLAY_HEADER,
    JOB_ID_HEADER,
)
from engine.jobs.assignments import (
    AssignmentChange,
    AssignmentError,
    AssignmentForbidden,
    AssignmentIn,
    AssignmentNotFound,
    AssignmentView,
    assign,
    list_assignments,
    unassign,
)

router = APIRouter(prefix="/api/assignments", tags=["assignments"])

ASSIGNMENT_EXAMPLE: dict[str, Any] = {
    "id": "5b0c6f0e9d1a4c55a3f2e6b7c8d9e0f1",
    "integration_id": "0f5e3a9c2b7d4e1f8a6c5b4d3e2f1a0b",
    "identity_id": "9a8b7c6d5e4f40312a1b2c3d4e5f6a7b",
    "user_name": "ann.lee@example.com",
    "value": "billing",
    "reason": "TICKET-4711: quarter-end close",
    "state": "active",
    "created_by": "key:servicedesk",
    "created_at": "2026-12-01T09:00:00Z",
    "expires_at": "2026-12-08T09:00:00Z",
    "revoked_at": None,
    "revoked_by": None,
    "expired_at": None,
    "job_id": "c1d2e3f4a5b64c7d8e9f0a1b2c3d4e5f",
}
POST_EXAMPLES: dict[str, Example] = {
    "by_user_name_for_a_week": Example(
        summary="A user by userName, for 7 days",
        description="`ttl_seconds` counts from now; send `Idempotency-Key` to retry safely.",
        value={
            "integration_id": "0f5e3a9c2b7d4e1f8a6c5b4d3e2f1a0b",
            "user_name": "ann.lee@example.com",
            "value": "billing",
            "reason": "TICKET-4711: quarter-end close",
            "ttl_seconds": 604800,
        },
    ),
    "by_id_until_a_date": Example(
        summary="A user by SCIM id, until a moment",
        value={
            "integration_id": "0f5e3a9c2b7d4e1f8a6c5b4d3e2f1a0b",
            "identity_id": "9a8b7c6d5e4f40312a1b2c3d4e5f6a7b",
            "value": "editor",
            "reason": "TICKET-4712: cover for a colleague",
            "expires_at": "2026-12-24T17:00:00+01:00",
        },
    ),
    "until_deleted": Example(
        summary="Until DELETE /api/assignments/{id}",
        value={
            "integration_id": "0f5e3a9c2b7d4e1f8a6c5b4d3e2f1a0b",
            "user_name": "bob.ng@example.com",
            "value": "admin",
            "reason": "TICKET-4713: on-call administrator",
        },
    ),
}


def _error(detail: str) -> dict[str, Any]:
    """Return an OpenAPI response whose JSON body carries one example message."""
    return {"content": {"application/json": {"example": {"detail": detail}}}}


REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "No valid integration API key or operator token",
        **_error("this API key is unknown or revoked (usher integrations keys ID lists them)"),
    },
    403: {
        "description": "The API key belongs to another integration, or a viewer asked",
        **_error("this API key belongs to another integration; use that integration's key"),
    },
}
POST_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "Created, and the user's reconcile job queued (`X-Usher-Job`); a "
        f"retry under the same `{IDEMPOTENCY_KEY_HEADER}` gets this answer again, with "
        f"`{IDEMPOTENT_REPLAY_HEADER}: true`",
        "content": {"application/json": {"example": ASSIGNMENT_EXAMPLE}},
    },
    **REFUSALS,
    404: {"description": "No such integration", **_error("no integration 'nope'")},
    422: {
        "description": "An unknown value (the message names the valid ones), an unknown "
        f"user, an expiry in the past, or an {IDEMPOTENCY_KEY_HEADER} reused with another body",
        **_error(
            "app acme has no entitlement 'superuser'; valid values: viewer, editor, admin, "
            "billing, plan-free, plan-pro, plan-enterprise"
        ),
    },
}
DELETE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Revoked, and the user's reconcile job queued; one that had already "
        "ended is answered as it is",
        "content": {
            "application/json": {
                "example": ASSIGNMENT_EXAMPLE
                | {
                    "state": "revoked",
                    "revoked_at": "2026-12-02T10:30:00Z",
                    "revoked_by": "key:servicedesk",
                }
            }
        },
    },
    **REFUSALS,
    404: {
        "description": "No such assignment, or one of another integration",
        **_error("no assignment '5b0c6f0e9d1a4c55a3f2e6b7c8d9e0f1'"),
    },
}


def _refusal(error: Exception) -> HTTPException:
    """Answer an assignment error: 403 another integration's, 404 not there, 422 the rest."""
    if isinstance(error, AssignmentForbidden):
        return HTTPException(status.HTTP_403_FORBIDDEN, str(error))
    if isinstance(error, AssignmentNotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(error))
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error))


def _answer(change: AssignmentChange, response: Response) -> AssignmentView:
    """Set the answer's status and headers from what the command did."""
    response.status_code = change.status_code
    if change.replayed:
        response.headers[IDEMPOTENT_REPLAY_HEADER] = "true"
    if change.view.job_id is not None:
        response.headers[JOB_ID_HEADER] = change.view.job_id
    return change.view


@router.post(
    "",
    response_model=AssignmentView,
    status_code=status.HTTP_201_CREATED,
    responses=POST_RESPONSES,
)
async def post_assignment(
    body: Annotated[AssignmentIn, Body(openapi_examples=POST_EXAMPLES)],
    response: Response,
    requester: AssignmentWriter,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_KEY_HEADER,
            max_length=IDEMPOTENCY_KEY_MAX,
            description="Any unique string per request: a retry with the same key and body "
            "returns the first answer and creates nothing.",
            openapi_examples={"ticket": Example(value="TICKET-4711-billing")},
        ),
    ] = None,
) -> AssignmentView:
    """Grant an entitlement value to one user directly, with a reason and maybe an expiry.

    Authenticate with the integration's API key (`usher integrations create-key ID`) or an
    admin operator token. The value must be in the app's catalogue; the user must have been
    pushed by the IdP. The user's job grants the value in the app; the value is revoked when
    the assignment expires or is deleted and no other source grants it.
    """
    try:
        change = await assign(session, settings, requester, body, idempotency_key)
    except (AssignmentError, AppError) as error:
        raise _refusal(error) from None
    await queue.enqueue_all(change.jobs)
    return _answer(change, response)


@router.delete("/{assignment_id}", response_model=AssignmentView, responses=DELETE_RESPONSES)
async def delete_assignment(
    assignment_id: Annotated[
        str,
        Path(
            max_length=32,
            openapi_examples={"an_assignment": Example(value=ASSIGNMENT_EXAMPLE["id"])},
        ),
    ],
    response: Response,
    requester: AssignmentWriter,
    session: SessionDep,
    queue: QueueDep,
) -> AssignmentView:
    """Revoke an assignment now; the user's job revokes its value unless another source
    grants it. Deleting it again answers the same and queues nothing."""
    try:
        change = await unassign(session, requester, assignment_id)
    except AssignmentError as error:
        raise _refusal(error) from None
    await queue.enqueue_all(change.jobs)
    return _answer(change, response)


@router.get("", response_model=list[AssignmentView], responses=REFUSALS)
async def get_assignments(
    requester: AssignmentReader,
    session: SessionDep,
    integration_id: Annotated[
        str | None, Query(description="Default: the API key's own integration.")
    ] = None,
    user: Annotated[str | None, Query(description="A userName (any case) or an id.")] = None,
    include_ended: Annotated[bool, Query(description="Also the revoked and expired ones.")] = False,
) -> list[AssignmentView]:
    """List assignments, newest first: of an integration (an API key's own by default), of a
    user (`user`: a userName or an id), the revoked and expired ones with `include_ended`."""
    try:
        return await list_assignments(
            session, requester, integration_id, user, include_ended=include_ended
        )
    except AssignmentError as error:
        raise _refusal(error) from None
