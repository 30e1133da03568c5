"""Jobs for operators: a job with its actions, steps and evidence links."""

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel
from sqlmodel import col, select

from api.deps import CurrentOperator, EvidenceDep, SessionDep
from engine.storage.models import Action, Evidence, Job, Step

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


class EvidenceOut(BaseModel):
    """One evidence file: where to fetch it and what it hashes to."""

    id: str
    kind: str
    content_type: str
    sha256: str
    size: int
    url: str
    path: str


class StepOut(BaseModel):
    """One step of an action."""

    position: int
    name: str
    kind: str
    status: str
    duration_ms: int
    locator: str | None
    url: str | None
    error: str | None
    evidence: list[EvidenceOut]


class ActionOut(BaseModel):
    """One flow run inside the job."""

    id: str
    name: str
    target: str | None
    attempt: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    steps: list[StepOut]


class JobOut(BaseModel):
    """A job with everything an operator reviews."""

    id: str
    integration_id: str
    identity_id: str | None
    group_id: str | None
    status: str
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    actions: list[ActionOut]


@router.get("/{job_id}", response_model=JobOut)
async def read_job(
    job_id: str,
    request: Request,
    session: SessionDep,
    evidence_store: EvidenceDep,
    _operator: CurrentOperator,
) -> JobOut:
    """Return a job with its actions, steps and evidence links."""
    job = await session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    actions = (
        await session.exec(
            select(Action)
            .where(Action.job_id == job.id)
            .order_by(col(Action.attempt), col(Action.position))
        )
    ).all()
    steps = (
        await session.exec(
            select(Step)
            .where(col(Step.action_id).in_([a.id for a in actions]))
            .order_by(col(Step.position))
        )
    ).all()
    files = (await session.exec(select(Evidence).where(Evidence.job_id == job.id))).all()
    by_step: dict[str | None, list[EvidenceOut]] = {}
    for item in files:
        by_step.setdefault(item.step_id, []).append(
            EvidenceOut(
                id=item.id,
                kind=item.kind,
                content_type=item.content_type,
                sha256=item.sha256,
                size=item.size,
                url=str(request.url_for("read_evidence", evidence_id=item.id)),
                path=evidence_store.locate(item.key),
            )
        )
    return JobOut(
        **job.model_dump(exclude={"lease_until", "worker"}),
        actions=[
            ActionOut(
                **action.model_dump(exclude={"job_id", "position"}),
                steps=[
                    StepOut(
                        **step.model_dump(exclude={"id", "action_id", "started_at"}),
                        evidence=by_step.get(step.id, []),
                    )
                    for step in steps
                    if step.action_id == action.id
                ],
            )
            for action in actions
        ],
    )
