"""What the job tests share: an identity to reconcile and its jobs in each state."""

from datetime import timedelta

from sqlalchemy import update

from engine.jobs import guard, state
from engine.storage.db import Database
from engine.storage.models import Identity, Integration, Job, JobStatus, new_id, utcnow
from tests.databases import run_apart

LEASE_S = 30.0
JOBS_REDIS_DB = 14
"""The Redis database the job tests queue into, which the session's workers never read."""
REVOKE = ["revoke_entitlement editor"]
"""What a guarded test job plans to remove, as the runner labels it."""


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


async def guarded_integration(database: Database, people: int, limit: int) -> list[Identity]:
    """Insert an integration whose mass-change guard allows `limit` accounts an hour, with
    that many people; return them."""
    async with database.session() as session:
        integration = Integration(
            app="acme",
            name="Acme",
            base_url="https://acme.example",
            scim_token_hash=new_id(),
            max_removals_per_hour=limit,
        )
        session.add(integration)
        await session.flush()
        identities = [
            Identity(
                integration_id=integration.id,
                user_name=f"person{n}.{new_id()[:6]}@example.com",
                user_name_key=new_id(),
                resource={},
            )
            for n in range(people)
        ]
        session.add_all(identities)
        await session.commit()
        return identities


async def claimed(database: Database, identity: Identity) -> state.Claim:
    """Claim a fresh job of the identity, as a worker does before it plans."""
    job = await pending_job(database, identity)
    claim = await state.claim(database, job.id, job.attempt, f"w-{new_id()[:6]}", lease_s=LEASE_S)
    assert claim.job is not None and claim.lease is not None
    return claim


async def admit_and_park(database: Database, claim: state.Claim) -> str | None:
    """Ask the guard about a job's removal and park it when held, as the runner does;
    return why it is held, or None when it may run."""
    assert claim.job is not None and claim.lease is not None
    reason = await guard.admit(database, claim.job, REVOKE)
    if reason is None:
        return None
    parked = await guard.park(database, claim.lease, claim.job.integration_id, reason)
    assert parked == JobStatus.waiting
    return reason


def hold_removals(database_url: str, people: int) -> tuple[str, list[str]]:
    """Hold the removals of `people` jobs in a served database, under a guard that allows
    none; return the integration and the held jobs. Pause the served worker first."""

    async def work() -> tuple[str, list[str]]:
        """Claim, admit and park each person's job."""
        database = Database(database_url)
        try:
            identities = await guarded_integration(database, people, limit=0)
            jobs = []
            for identity in identities:
                claim = await claimed(database, identity)
                assert await admit_and_park(database, claim) is not None
                assert claim.job is not None
                jobs.append(claim.job.id)
            return identities[0].integration_id, jobs
        finally:
            await database.dispose()

    return run_apart(work)
