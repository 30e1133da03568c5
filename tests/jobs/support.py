"""What the job tests share: an identity to reconcile and its jobs in each state."""

from datetime import timedelta

from sqlalchemy import update

from engine.jobs import state
from engine.storage.db import Database
from engine.storage.models import Identity, Integration, Job, new_id, utcnow

LEASE_S = 30.0
JOBS_REDIS_DB = 14
"""The Redis database the job tests queue into, which the session's workers never read."""


async def new_identity(database: Database) -> Identity:
    """Insert an integration with one identity and return the identity."""
    async with database.session() as session:
        integration = Integration(
            app="acme", name="Acme", base_url="https://acme.example", scim_token_hash=new_id()
        )
        session.add(integration)
        await session.flush()
        identity = Identity(
            integration_id=integration.id,
            user_name=f"{new_id()}@example.com",
            user_name_key=new_id(),
            resource={},
        )
        session.add(identity)
        await session.commit()
        return identity


async def pending_job(database: Database, identity: Identity) -> Job:
    """Return the identity's pending job, as a SCIM change would make it."""
    async with database.session() as session:
        job = await state.ensure_pending(session, identity.integration_id, identity_id=identity.id)
        await session.commit()
        return job


async def reload(database: Database, job_id: str) -> Job:
    """Read a job as the database holds it now."""
    async with database.session() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def lapse(database: Database, job_id: str) -> None:
    """Make a running job's lease lie in the past, as if its worker had stopped."""
    async with database.session() as session:
        await session.exec(
            update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1))
        )
        await session.commit()


async def running_job(database: Database, identity: Identity, worker: str = "w1") -> state.Claim:
    """Return the claim of a fresh job of the identity by a worker."""
    job = await pending_job(database, identity)
    claimed = await state.claim(database, job.id, job.attempt, worker, lease_s=LEASE_S)
    assert claimed.lease is not None
    return claimed
