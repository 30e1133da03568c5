"""Jobs for operators: a job with its actions, steps and evidence links; retry and cancel."""

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field

from api.deps import AdminOperator, CurrentOperator, DbDep, EvidenceDep, QueueDep, SessionDep
from engine.jobs.state import JobNotFound, JobStateError
from engine.jobs.views import JobRecord, cancel_job, job_record, retry_job
from engine.storage.evidence import EvidenceStore
from engine.storage.models import Evidence, Job

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
    failed_locator: str | None = Field(
        description="Set when only a fallback matched: what found nothing before `locator`."
    )
    url: str | None
    error: str | None
    evidence: list[EvidenceOut]


class ActionOut(BaseModel):
    """One flow run inside the job."""

    id: str
    name: str
    target: str | None
    flow_sha256: str | None
    fragment_sha256: dict[str, str]
    attempt: int
    status: str
    degraded: bool = Field(description="A step matched only through a fallback locator.")
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    steps: list[StepOut]


class JobStateOut(BaseModel):
    """Where a job stands, without its actions."""

    id: str
    integration_id: str
    identity_id: str | None
    group_id: str | None
    status: str
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None
    superseded_by: str | None
    error: str | None


class JobOut(JobStateOut):
    """A job with everything an operator reviews."""

    degraded: bool = Field(description="One of its actions needed a fallback locator.")
    actions: list[ActionOut]


def _evidence_out(item: Evidence, request: Request, store: EvidenceStore) -> EvidenceOut:
    """Return one evidence file with its URL and its path in the store."""
    return EvidenceOut(
        **item.model_dump(include={"id", "kind", "content_type", "sha256", "size"}),
        url=str(request.url_for("read_evidence", evidence_id=item.id)),
        path=store.locate(item.key),
    )


def job_out(record: JobRecord, request: Request, store: EvidenceStore) -> JobOut:
    """Return a job record in its public shape."""
    return JobOut(
        **JobStateOut.model_validate(record.job, from_attributes=True).model_dump(),
        degraded=any(action.degraded for action in record.actions),
        actions=[
            ActionOut(
                **action.model_dump(exclude={"job_id", "position"}),
                steps=[
                    StepOut(
                        **step.model_dump(exclude={"id", "action_id", "started_at"}),
                        evidence=[
                            _evidence_out(item, request, store)
                            for item in record.evidence.get(step.id, [])
                        ],
                    )
                    for step in record.steps.get(action.id, [])
                ],
            )
            for action in record.actions
        ],
    )


def _state_out(job: Job) -> JobStateOut:
    """Return where a job stands."""
    return JobStateOut.model_validate(job, from_attributes=True)


@router.get("/{job_id}", response_model=JobOut)
async def read_job(
    job_id: str,
    request: Request,
    session: SessionDep,
    evidence_store: EvidenceDep,
    _operator: CurrentOperator,
) -> JobOut:
    """Return a job with its actions, steps and evidence links."""
    record = await job_record(session, job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job_out(record, request, evidence_store)


@router.post("/{job_id}/retry", response_model=JobStateOut)
async def retry(job_id: str, db: DbDep, queue: QueueDep, operator: AdminOperator) -> JobStateOut:
    """Queue a closed job's next attempt now."""
    try:
        return _state_out(await retry_job(db, queue, job_id, actor=operator.name))
    except JobNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except JobStateError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None


@router.post("/{job_id}/cancel", response_model=JobStateOut)
async def cancel(job_id: str, db: DbDep, operator: AdminOperator) -> JobStateOut:
    """Cancel a live job; a running one stops before its next action."""
    try:
        return _state_out(await cancel_job(db, job_id, actor=operator.name))
    except JobNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except JobStateError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
