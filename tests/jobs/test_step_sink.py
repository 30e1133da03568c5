"""The worker's step sink: steps are written beside the flow, in order, and a failed write is
raised before the action is recorded as ended."""

import hashlib
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from engine.automation.runner import Artifact, StepResult
from engine.jobs.runner import DbStepSink, JobServices
from engine.storage.db import Database
from engine.storage.evidence import evidence_store
from engine.storage.models import Action, Evidence, Step
from engine.storage.vault import Vault
from tests.jobs.support import new_identity, running_job
from tests.storage.support import PNG, own_database, settings_in

__all__ = ["own_database"]


def services_for(database: Database, tmp_path: Path, redis_url: str) -> JobServices:
    """Return what the sink uses: the database, an evidence directory and Redis."""
    settings = settings_in(tmp_path)
    return JobServices(
        settings=settings,
        db=database,
        vault=Vault.from_path(settings.vault_key_path),
        evidence=evidence_store(settings, database),
        browsers=None,  # type: ignore[arg-type]
        ledger=None,  # type: ignore[arg-type]
        queue=None,  # type: ignore[arg-type]
        redis=Redis.from_url(redis_url),
    )


def result(position: int) -> StepResult:
    """Return a step that took a screenshot of a different picture each time."""
    return StepResult(position, f"step {position}", "click", "ok", 10, None, "http://app/")


def shot(position: int) -> Artifact:
    """Return a screenshot unique to its step."""
    return Artifact("screenshot", PNG + bytes([position]), "image/png", "png")


async def test_every_step_is_written_in_order_with_its_screenshot(
    own_database: Database, tmp_path: Path, redis_url: str
) -> None:
    """Thirty steps recorded back to back are all there after `drain`, in order, each with
    its screenshot's file and hash."""
    services = services_for(own_database, tmp_path, redis_url)
    claimed = await running_job(own_database, await new_identity(own_database))
    assert claimed.job is not None
    action = Action(job_id=claimed.job.id, name="create_user")
    async with own_database.session() as session:
        session.add(action)
        await session.commit()
    sink = DbStepSink(services, claimed.job.id, action, "acme")
    for position in range(1, 31):
        await sink.record(result(position), [shot(position)])
    await sink.drain()
    async with own_database.reader() as session:
        steps = (
            await session.exec(
                select(Step).where(Step.action_id == action.id).order_by(col(Step.started_at))
            )
        ).all()
        files = (
            await session.exec(select(Evidence).where(Evidence.job_id == claimed.job.id))
        ).all()
    assert [s.position for s in steps] == list(range(1, 31))
    by_step = {f.step_id: f for f in files}
    for step in steps:
        stored = by_step[step.id]
        data = (services.settings.evidence_dir / stored.key).read_bytes()
        assert data == PNG + bytes([step.position])
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
    await services.redis.aclose()


async def test_a_step_that_cannot_be_written_is_raised_by_drain(
    own_database: Database, tmp_path: Path, redis_url: str
) -> None:
    """An action row that was never stored refuses its steps (a foreign key): `drain` raises
    it, and the steps after it are not written either."""
    services = services_for(own_database, tmp_path, redis_url)
    claimed = await running_job(own_database, await new_identity(own_database))
    assert claimed.job is not None
    unstored = Action(job_id=claimed.job.id, name="create_user")
    sink = DbStepSink(services, claimed.job.id, unstored, "acme")
    for position in (1, 2, 3):
        await sink.record(result(position), [shot(position)])
    with pytest.raises(IntegrityError):
        await sink.drain()
    async with own_database.reader() as session:
        written = (await session.exec(select(Step).where(Step.action_id == unstored.id))).all()
    assert written == []
    await services.redis.aclose()
