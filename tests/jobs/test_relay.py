"""The relay on SQLite and PostgreSQL with a real Redis: reclaim, supersede, deliver."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.constants import QUEUE_NAME
from engine.jobs import breaker, state
from engine.jobs.alerts import deliver_due
from engine.jobs.queue import JobQueue, arq_job_id
from engine.jobs.relay import relay
from engine.jobs.sweep import sweep
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import JobStatus
from engine.storage.vault import Vault
from tests.databases import Backend, migrate
from tests.harness import other_redis_db
from tests.jobs.support import JOBS_REDIS_DB, lapse, new_identity, pending_job, reload, running_job
from tests.scim.directory import recording


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[JobQueue]:
    """Return a job queue on the suite's private Redis, emptied before and after."""
    queue = await JobQueue.connect(other_redis_db(redis_url, JOBS_REDIS_DB))
    await queue.redis.delete(QUEUE_NAME)
    yield queue
    await queue.redis.delete(QUEUE_NAME)
    await queue.close()


async def queued_ids(queue: JobQueue) -> set[str]:
    """Return the arq job ids waiting in Usher's queue."""
    return {member.decode() for member in await queue.redis.zrange(QUEUE_NAME, 0, -1)}


async def test_a_lapsed_job_whose_identity_has_a_newer_job_is_superseded(
    database: Database, queue: JobQueue
) -> None:
    """The bug that stalled every relay: now the newer job wins and nothing raises."""
    identity = await new_identity(database)
    dead = await running_job(database, identity)
    newer = await pending_job(database, identity)
    await lapse(database, dead.job.id)

    delivered, reclaimed = await relay(database, queue, max_attempts=3)

    stale = await reload(database, dead.job.id)
    assert (stale.status, stale.superseded_by) == (JobStatus.superseded, newer.id)
    assert reclaimed == 0 and delivered >= 1
    assert arq_job_id(newer) in await queued_ids(queue)
    _, again = await relay(database, queue, max_attempts=3)
    assert again == 0 and (await reload(database, dead.job.id)).status == JobStatus.superseded


async def test_one_pass_reclaims_supersedes_and_fails_each_row_on_its_own(
    database: Database, queue: JobQueue
) -> None:
    """Several lapsed jobs: each gets its own outcome in the same pass."""
    alone = await running_job(database, await new_identity(database))
    crowded_identity = await new_identity(database)
    crowded = await running_job(database, crowded_identity)
    newer = await pending_job(database, crowded_identity)
    for claimed in (alone, crowded):
        await lapse(database, claimed.job.id)

    _, reclaimed = await relay(database, queue, max_attempts=3)

    back = await reload(database, alone.job.id)
    assert (back.status, back.attempt) == (JobStatus.retrying, 2)
    assert (await reload(database, crowded.job.id)).status == JobStatus.superseded
    assert reclaimed == 1
    ids = await queued_ids(queue)
    assert {arq_job_id(back), arq_job_id(newer)} <= ids


async def test_a_job_held_for_a_busy_identity_is_not_delivered_early(
    database: Database, queue: JobQueue
) -> None:
    """The relay respects `not_before`: a held job waits for its turn, it is not spun."""
    identity = await new_identity(database)
    first = await running_job(database, identity)
    newer = await pending_job(database, identity)
    assert (await state.claim(database, newer.id, 1, "w2", lease_s=30)).busy
    await relay(database, queue, max_attempts=3)
    assert arq_job_id(newer) not in await queued_ids(queue)
    await state.finish(database, first.lease, JobStatus.succeeded, None)
    await queue.enqueue_all(await state.release_next(database, first.job))
    assert arq_job_id(newer) in await queued_ids(queue)


async def test_an_idle_workers_maintenance_never_takes_the_sqlite_write_lock(
    tmp_path: Path, queue: JobQueue
) -> None:
    """Each pass of every worker looks for lapsed leases, due jobs, cooled breakers, due
    alerts and identities behind: with nothing to do it only reads, so a worker that is
    stopped (or slow) between passes never holds up the API's writes."""
    backend = Backend(f"sqlite+aiosqlite:///{tmp_path / 'usher.db'}")
    await migrate(backend)
    database = backend.database()
    settings = Settings(data_dir=tmp_path / "var")
    settings.ensure_data_dir()
    try:
        with recording(database) as statements:
            assert await relay(database, queue, max_attempts=3) == (0, 0)
            assert await breaker.due_probes(database, cooldown_s=0) == []
            assert (
                await deliver_due(database, Vault.from_path(settings.vault_key_path), settings) == 0
            )
            assert await sweep(database, queue, base_s=1, cap_s=1, limit=10) == 0
        begun = [sql for sql, _params, _many in statements.statements if sql.startswith("BEGIN")]
        assert begun and "BEGIN IMMEDIATE" not in begun
    finally:
        await database.dispose()
