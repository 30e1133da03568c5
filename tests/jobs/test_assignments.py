"""Direct assignments on both databases: the row, its audit event and the identity's job commit
together; the planner sees a live one as a source; expiry ends each once across workers."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from engine.apps.grants import group_sources_of
from engine.apps.template import load_app
from engine.jobs import state
from engine.jobs.assignments import (
    AssignmentIn,
    AssignmentInvalid,
    Requester,
    assign,
    expire_due,
    unassign,
)
from engine.planner import desired_state
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import Assignment, AuditEvent, Identity, Job, utcnow
from tests.harness import ROOT
from tests.jobs.support import new_identity

TICKET = Requester("key:servicedesk")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Return Settings reading the real app templates (Acme's catalogue)."""
    return Settings(data_dir=tmp_path_factory.mktemp("assignments"), flows_dir=ROOT / "flows")


def billing_for(identity: Identity, **extra: object) -> AssignmentIn:
    """Return a request granting Billing to an identity, by its id."""
    body = {"integration_id": identity.integration_id, "identity_id": identity.id}
    return AssignmentIn.model_validate(
        body | {"value": "billing", "reason": "TICKET-1: close"} | extra
    )


async def generation(database: Database, identity_id: str) -> int:
    """Return an identity's generation as the database holds it."""
    async with database.session() as session:
        found = await session.get(Identity, identity_id)
        assert found is not None
        return found.generation


async def audit_of(database: Database, assignment_id: str) -> list[AuditEvent]:
    """Return the audit events about an assignment, oldest first."""
    async with database.session() as session:
        query = select(AuditEvent).where(AuditEvent.target == assignment_id)
        return list((await session.exec(query.order_by(col(AuditEvent.at)))).all())


async def expire_for(database: Database, identity: Identity) -> list[Job]:
    """Run one expiry pass; return the jobs it queued for this identity (the database is shared)."""
    return [job for job in await expire_due(database, limit=100) if job.identity_id == identity.id]


async def age(database: Database, assignment_id: str) -> None:
    """Move an assignment's expiry into the past, as if its time had run out."""
    async with database.session() as session:
        past = utcnow() - timedelta(seconds=1)
        await session.exec(
            update(Assignment).where(col(Assignment.id) == assignment_id).values(expires_at=past)
        )
        await session.commit()


async def test_an_assignment_its_audit_event_and_the_job_commit_together(
    database: Database, settings: Settings
) -> None:
    """The created assignment names the pending job of its identity; the audit event too."""
    identity = await new_identity(database)
    async with database.session() as session:
        change = await assign(session, settings, TICKET, billing_for(identity))
    assert change.status_code == 201 and change.view.state == "active"
    async with database.session() as session:
        query = select(Job).where(Job.identity_id == identity.id)
        (job,) = (await session.exec(query)).all()
    assert job.status in state.PENDING and change.view.job_id == job.id == change.jobs[0].id
    (event,) = await audit_of(database, change.view.id)
    assert (event.event, event.actor, event.job_id) == ("assignment.created", TICKET.actor, job.id)
    assert event.detail["value"] == "billing" and event.detail["user_name"] == identity.user_name
    assert await generation(database, identity.id) == identity.generation + 1


async def test_the_planner_merges_a_live_assignment_and_drops_it_past_its_expiry(
    database: Database, settings: Settings
) -> None:
    """Billing has the source "assignment: <reason>" until expires_at, timer or not."""
    identity = await new_identity(database)
    async with database.session() as session:
        change = await assign(session, settings, TICKET, billing_for(identity, ttl_seconds=3600))
        sources = await group_sources_of(session, identity.integration_id, identity.id)
    acme = load_app(settings.flows_dir, "acme")
    desired = desired_state(identity, acme, sources)
    assert desired.sources == {"billing": ("assignment: TICKET-1: close",)}
    await age(database, change.view.id)
    async with database.session() as session:
        sources = await group_sources_of(session, identity.integration_id, identity.id)
    assert desired_state(identity, acme, sources).entitlements == frozenset()


async def test_expiry_ends_an_assignment_once_however_many_workers_pass(
    database: Database, settings: Settings
) -> None:
    """Three passes at once: one marks it expired, queues one job and writes one event."""
    identity = await new_identity(database)
    async with database.session() as session:
        change = await assign(session, settings, TICKET, billing_for(identity, ttl_seconds=60))
    assert await expire_for(database, identity) == []
    await age(database, change.view.id)
    before = await generation(database, identity.id)
    passes = await asyncio.gather(*(expire_due(database, limit=100) for _ in range(3)))
    jobs = [job for found in passes for job in found if job.identity_id == identity.id]
    assert len(jobs) == 1
    async with database.session() as session:
        row = await session.get(Assignment, change.view.id)
    assert row is not None and row.expired_at is not None and row.revoked_at is None
    events = [e.event for e in await audit_of(database, change.view.id)]
    assert events == ["assignment.created", "assignment.expired"]
    assert await generation(database, identity.id) == before + 1
    assert await expire_for(database, identity) == []


async def test_revoking_twice_revokes_and_queues_once(
    database: Database, settings: Settings
) -> None:
    """The second DELETE answers the revoked assignment and changes nothing."""
    identity = await new_identity(database)
    async with database.session() as session:
        created = await assign(session, settings, TICKET, billing_for(identity))
    async with database.session() as session:
        first = await unassign(session, Requester("admin"), created.view.id)
    async with database.session() as session:
        again = await unassign(session, Requester("admin"), created.view.id)
    assert first.view.state == again.view.state == "revoked"
    assert len(first.jobs) == 1 and again.jobs == []
    assert again.view.revoked_by == "admin"
    events = [e.event for e in await audit_of(database, created.view.id)]
    assert events == ["assignment.created", "assignment.revoked"]


async def test_one_idempotency_key_sent_at_once_twice_makes_one_assignment(
    database: Database, settings: Settings
) -> None:
    """Two requests racing under one key: one row; both answers name it."""
    identity = await new_identity(database)

    async def post() -> str:
        async with database.session() as session:
            change = await assign(session, settings, TICKET, billing_for(identity), "race-1")
        return change.view.id

    first, second = await asyncio.gather(post(), post())
    assert first == second
    async with database.session() as session:
        query = select(Assignment).where(Assignment.identity_id == identity.id)
        assert len((await session.exec(query)).all()) == 1


async def test_a_value_outside_the_catalogue_names_the_valid_ones(
    database: Database, settings: Settings
) -> None:
    """An unknown value is refused with every value Acme offers."""
    identity = await new_identity(database)
    async with database.session() as session:
        with pytest.raises(AssignmentInvalid) as refused:
            await assign(session, settings, TICKET, billing_for(identity, value="superuser"))
    assert "'superuser'" in str(refused.value)
    assert "viewer, editor, admin, billing, plan-free, plan-pro, plan-enterprise" in str(
        refused.value
    )
