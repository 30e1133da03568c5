"""The audit chain on SQLite and PostgreSQL: every job move and operator action, linked."""

import asyncio
import itertools

from sqlmodel import col, select

from engine.jobs import state
from engine.storage import audit
from engine.storage.db import Database
from engine.storage.models import AuditEvent, JobStatus
from tests.jobs.support import new_identity, pending_job, running_job

CONCURRENT_WRITERS = 12


async def chain(database: Database) -> list[AuditEvent]:
    """Return every chained event in order."""
    async with database.session() as session:
        query = select(AuditEvent).where(col(AuditEvent.seq).is_not(None))
        return list((await session.exec(query.order_by(col(AuditEvent.seq)))).all())


def assert_linked(events: list[AuditEvent]) -> None:
    """Each event is numbered after the one before, carries its hash and hashes to its own."""
    assert events, "the chain is empty"
    for before, after in itertools.pairwise(events):
        assert after.seq == before.seq + 1
        assert after.prev_sha256 == before.sha256
    for item in events:
        assert item.sha256 == audit.event_hash(item)


async def job_events(database: Database, job_id: str) -> list[tuple[str, str]]:
    """Return a job's audit events in chain order, as (event, actor)."""
    return [(e.event, e.actor) for e in await chain(database) if e.job_id == job_id]


async def test_a_job_s_life_is_in_the_chain(database: Database) -> None:
    """Queued, claimed by a worker, retried, claimed again, failed: each move is one event."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity, worker="w-audit")
    assert claimed.lease is not None and claimed.job is not None
    await state.retry_later(database, claimed.lease, "a 503", max_attempts=3, delay_s=0)
    again = await state.claim(database, claimed.job.id, 2, "w-audit", lease_s=30)
    assert again.lease is not None
    await state.finish(database, again.lease, JobStatus.failed, "the app said no")

    assert await job_events(database, claimed.job.id) == [
        ("job.queued", "usher"),
        ("job.running", "w-audit"),
        ("job.retrying", "w-audit"),
        ("job.running", "w-audit"),
        ("job.failed", "w-audit"),
    ]
    events = await chain(database)
    assert_linked(events)
    last = [e for e in events if e.job_id == claimed.job.id][-1]
    assert last.detail["error"] == "the app said no"
    assert last.detail["evidence"] == {"files": 0, "sha256": audit.digest_of([])}


async def test_operator_actions_name_their_operator(database: Database) -> None:
    """Cancel and retry record who asked and the state they moved the job from."""
    identity = await new_identity(database)
    job = await pending_job(database, identity)
    await state.cancel(database, job.id, actor="alice")
    await state.retry(database, job.id, actor="bob")
    moves = await job_events(database, job.id)
    assert moves[-2:] == [("job.cancelled", "alice"), ("job.queued", "bob")]
    events = [e for e in await chain(database) if e.job_id == job.id]
    assert events[-1].detail == {"attempt": 2, "previous": "cancelled"}
    assert_linked(await chain(database))


async def test_concurrent_writers_never_fork_the_chain(database: Database) -> None:
    """Many transactions appending at once still make one line: no seq twice, no prev twice."""
    identities = [await new_identity(database) for _ in range(CONCURRENT_WRITERS)]
    jobs = await asyncio.gather(*(pending_job(database, i) for i in identities))
    await asyncio.gather(*(state.cancel(database, j.id, actor="racer") for j in jobs))
    events = await chain(database)
    assert_linked(events)
    assert len({e.prev_sha256 for e in events}) == len(events)
    assert {j.id for j in jobs} <= {e.job_id for e in events if e.event == "job.cancelled"}


async def test_an_event_flushed_early_is_chained_at_commit_and_a_rollback_leaves_no_gap(
    database: Database,
) -> None:
    """An event added before a flush or a savepoint joins the chain once, at commit; one
    whose transaction rolls back never takes a number."""
    async with database.session() as session:
        audit.record(session, actor="carol", event_name="test.rolled_back")
        await session.flush()
        await session.rollback()
    async with database.session() as session:
        first = audit.record(session, actor="carol", event_name="test.flushed")
        await session.flush()
        async with session.begin_nested():
            audit.record(session, actor="carol", event_name="test.in_savepoint")
        await session.commit()
    events = await chain(database)
    assert_linked(events)
    names = [e.event for e in events]
    assert "test.rolled_back" not in names
    assert names[-2:] == ["test.flushed", "test.in_savepoint"]
    assert first.seq == events[-2].seq
