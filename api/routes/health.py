"""Health for load balancers and orchestrators: `/livez`, `/readyz` (and `/healthz`)."""

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from api.deps import DbDep, QueueDep
from engine.jobs.health import check_readiness
from engine.version import usher_version

router = APIRouter(tags=["health"])


class LiveOut(BaseModel):
    """The process answers."""

    status: str
    version: str


class CheckOut(BaseModel):
    """One readiness check, without details: `usher status` prints those to operators."""

    ok: bool


class ReadyOut(BaseModel):
    """Every readiness check by name, and the names of those that failed."""

    ready: bool
    failed: list[str]
    checks: dict[str, CheckOut]


@router.get("/livez", response_model=LiveOut)
@router.get("/healthz", response_model=LiveOut, include_in_schema=False)
async def livez() -> LiveOut:
    """Answer while the process serves requests, so a supervisor restarts it only when dead."""
    return LiveOut(status="ok", version=usher_version())


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
async def readyz(db: DbDep, queue: QueueDep, response: Response) -> ReadyOut:
    """Answer 200 only when the database and Redis answer and a worker's heartbeat is fresh."""
    readiness = await check_readiness(db, queue.redis)
    if not readiness.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return ReadyOut.model_validate(readiness.model_dump())
