"""The audit chain on SQLite and PostgreSQL: every job move and operator action, linked."""

import asyncio
import itertools
import json
import uuid

import httpx
from sqlmodel import col, select

from engine.jobs import state
from engine.storage import audit
from engine.storage.db import Database
from engine.storage.models import AuditEvent, JobStatus
from tests.databases import run_apart
from tests.harness import Usher
from tests.jobs.support import new_identity, pending_job, running_job
from tests.operators import usher_cli

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
    assert last.detail["evidence"] == {
        "files": 0,
        "sha256": audit.digest_of([]),
        "steps": 0,
        "steps_sha256": audit.steps_digest_of([]),
    }


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


async def test_one_session_committing_again_and_again_never_renumbers_an_event(
    database: Database,
) -> None:
    """A session that commits several times (the CLI's, the harness's) chains each event
    once: its number and hash never change after its commit."""
    async with database.session() as session:
        first = audit.record(session, actor="dave", event_name="test.first")
        await session.commit()
        kept = (first.seq, first.sha256)
        second = audit.record(session, actor="dave", event_name="test.second")
        await session.commit()
        third = audit.record(session, actor="dave", event_name="test.third")
        await session.commit()
    assert (first.seq, first.sha256) == kept
    assert [second.seq, third.seq] == [kept[0] + 1, kept[0] + 2]
    events = await chain(database)
    assert [(e.event, e.seq) for e in events[-3:]] == [
        ("test.first", kept[0]),
        ("test.second", kept[0] + 1),
        ("test.third", kept[0] + 2),
    ]
    assert_linked(events)


def test_an_api_change_names_its_operator_and_the_served_chain_verifies(usher: Usher) -> None:
    """Through the real serve: a token's resume is in the chain under the token's name, and
    `usher evidence verify` finds the chain the session's processes wrote intact (other
    tests plant evidence rows on purpose, tests/api/test_evidence.py, which verify names)."""
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    bearer = usher_cli(usher, "tokens", "create", "--name", name).output.strip()
    created = usher_cli(
        usher,
        "integrations",
        "create",
        "--app",
        "acme",
        "--base-url",
        "http://127.0.0.1:9",
        "--json",
    )
    integration_id = json.loads(created.output)["id"]
    with httpx.Client(base_url=usher.api) as client:
        resumed = client.post(
            f"/api/integrations/{integration_id}/resume",
            headers={"Authorization": f"Bearer {bearer}"},
        )
    assert resumed.status_code == 200, resumed.text

    async def events() -> list[AuditEvent]:
        """Read the served database's chain."""
        database = Database(usher.database_url)
        try:
            return await chain(database)
        finally:
            await database.dispose()

    served = run_apart(events)
    assert_linked(served)
    mine = [(e.event, e.actor) for e in served if e.integration_id == integration_id]
    assert mine == [("integration.created", "cli"), ("integration.resumed", f"token:{name}")]
    verified = usher_cli(usher, "evidence", "verify")
    chain_problems = [
        line
        for line in verified.output.splitlines()
        if line.startswith("ALTERED:") and ("event" in line or "anchor" in line)
    ]
    assert chain_problems == [], verified.output
    assert verified.exit_code == 0 or "ALTERED: screenshot" in verified.output
