"""Groups that grant, on both databases: mappings, the loader, re-evaluation of members.

SCIM requests go through `serve_scim` as the route sends them; group jobs are run by the
real `JobRunner` over a queue that only records what it is handed.
"""

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from engine.apps.grants import GroupKind, group_sources_of
from engine.apps.integrations import IntegrationError, create_integration
from engine.apps.mappings import MappingError, MappingNotFound
from engine.constants import GROUP_FANOUT_BATCH
from engine.jobs import state
from engine.jobs.groups import map_group, mappings_of, unmap_group
from engine.jobs.runner import JobRunner, JobServices
from engine.jobs.sweep import behind
from engine.scim.provider import ScimServices
from engine.scim.service import serve_scim
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.models import AppAccount, Identity, Job, JobStatus, utcnow
from fixtures.idp import filled
from tests.harness import ROOT

SCIM_JSON = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Return Settings reading the real app templates."""
    return Settings(data_dir=tmp_path_factory.mktemp("grants"), flows_dir=ROOT / "flows")


@pytest.fixture(scope="module")
def services(settings: Settings) -> ScimServices:
    """Build the SCIM services once for the module."""
    return ScimServices(settings)


@dataclass
class RecordingQueue:
    """A job queue that keeps what it is handed: these tests run no worker."""

    jobs: list[Job] = field(default_factory=list)

    async def enqueue_all(self, jobs: list[Job]) -> None:
        """Keep the jobs."""
        self.jobs += jobs


@dataclass
class Idp:
    """One Acme integration on one database, spoken to as an IdP does."""

    db: Database
    services: ScimServices
    settings: Settings
    id: str
    token: str

    async def call(self, method: str, path: str, body: Any = None) -> dict:
        """Serve one SCIM request and return its body."""

        async def read() -> bytes:
            return json.dumps(body).encode() if body is not None else b""

        served = await serve_scim(
            self.db,
            self.services,
            integration_id=self.id,
            method=method,
            base_url=f"https://usher.example/scim/v2/{self.id}",
            path=path,
            query={},
            headers=[("authorization", f"Bearer {self.token}"), ("content-type", SCIM_JSON)],
            read_body=read,
        )
        assert int(served.response.status) < 300, served.response.body
        return served.response.body or {}

    async def user(self, name: str) -> str:
        """Create a user and return its id."""
        body = {"schemas": [USER], "userName": f"{name}@example.com", "active": True}
        return (await self.call("POST", "Users", body))["id"]

    async def group(self, name: str, *members: str, external_id: str | None = None) -> str:
        """Create a group with members and return its id."""
        body: dict[str, Any] = {"schemas": [GROUP], "displayName": name}
        body["members"] = [{"value": m} for m in members]
        if external_id is not None:
            body["externalId"] = external_id
        return (await self.call("POST", "Groups", body))["id"]

    async def settle(self) -> None:
        """Finish every pending job, as a worker would, so that new ones stand out."""
        async with self.db.session() as session:
            await session.exec(
                update(Job)
                .where(col(Job.integration_id) == self.id, col(Job.status).in_(state.PENDING))
                .values(status=JobStatus.succeeded, finished_at=utcnow())
            )
            await session.commit()

    async def group_jobs(self) -> dict[str, set[str]]:
        """Return the pending group jobs, by group, with their members."""
        async with self.db.session() as session:
            query = select(Job).where(
                Job.integration_id == self.id,
                col(Job.group_id).is_not(None),
                col(Job.status).in_(state.PENDING),
            )
            return {j.group_id: set(j.members) for j in (await session.exec(query)).all()}


@pytest.fixture
async def idp(database: Database, services: ScimServices, settings: Settings) -> Idp:
    """Return a fresh Acme integration on the test's database."""
    async with database.session() as session:
        integration, token = await create_integration(
            session, settings, app="acme", base_url="http://127.0.0.1:9"
        )
    return Idp(database, services, settings, integration.id, token)


async def test_the_loader_returns_live_groups_and_the_mappings(idp: Idp) -> None:
    """An identity's live groups only: a deleted group and others' groups are left out."""
    ann, bob = await idp.user("ann"), await idp.user("bob")
    editors = await idp.group("editor", ann, bob)
    await idp.group("Acme Editors", ann, external_id="0a1b-object-id")
    doomed = await idp.group("billing", ann)
    await idp.group("viewer", bob)
    await idp.call("DELETE", f"Groups/{doomed}")
    async with idp.db.session() as session:
        await map_group(session, idp.settings, idp.id, "Acme Editors", "admin", actor="test")
    async with idp.db.session() as session:
        sources = await group_sources_of(session, idp.id, ann)
    assert [(g.display_name, g.external_id) for g in sources.groups] == [
        ("Acme Editors", "0a1b-object-id"),
        ("editor", None),
    ]
    assert editors in {g.id for g in sources.groups}
    assert [(m.kind, m.key, m.value) for m in sources.mappings] == [
        (GroupKind.external_id, "0a1b-object-id", "admin")
    ]


async def test_mappings_are_created_listed_and_removed(idp: Idp) -> None:
    """Pushed groups are named by externalId, else id; others as typed; errors are clear."""
    ann = await idp.user("ann")
    okta = await idp.group("Acme Editors", ann)
    await idp.group("Finance", ann, external_id="fin-object-id")
    await idp.settle()
    async with idp.db.session() as session:
        by_name, jobs = await map_group(
            session, idp.settings, idp.id, "acme editors", "editor", actor="test"
        )
        assert by_name.created and [j.group_id for j in jobs] == [okta]
        assert jobs[0].members == [ann]
        entra, _ = await map_group(
            session, idp.settings, idp.id, "Finance", "billing", actor="test"
        )
        later, later_jobs = await map_group(
            session, idp.settings, idp.id, "Contractors", "viewer", actor="test"
        )
        again, again_jobs = await map_group(
            session, idp.settings, idp.id, okta, "editor", actor="test"
        )
        with pytest.raises(MappingError, match="no entitlement 'root'"):
            await map_group(session, idp.settings, idp.id, "Finance", "root", actor="test")
        with pytest.raises(MappingError, match="name a group"):
            await map_group(session, idp.settings, idp.id, "  ", "viewer", actor="test")
        with pytest.raises(IntegrationError, match="no integration 'nope'"):
            await map_group(session, idp.settings, "nope", "Finance", "viewer", actor="test")
    assert (by_name.mappings[0].group_kind, by_name.mappings[0].group) == (GroupKind.id, okta)
    assert (entra.mappings[0].group_kind, entra.mappings[0].group) == (
        GroupKind.external_id,
        "fin-object-id",
    )
    assert (later.mappings[0].group_kind, later.mappings[0].group) == (
        GroupKind.name,
        "Contractors",
    )
    assert not later.groups and later_jobs == []
    assert not again.created and again_jobs == []

    async with idp.db.session() as session:
        listed = await mappings_of(session, idp.id)
    assert [(m.group_label, m.value) for m in listed] == [
        ("Acme Editors", "editor"),
        ("Contractors", "viewer"),
        ("Finance", "billing"),
    ]

    await idp.settle()
    async with idp.db.session() as session:
        removed, jobs = await unmap_group(session, idp.id, "fin-object-id", actor="test")
        assert [m.value for m in removed.mappings] == ["billing"]
        assert [j.members for j in jobs] == [[ann]]
        gone, no_jobs = await unmap_group(session, idp.id, "Contractors", "viewer", actor="test")
        assert [m.group_label for m in gone.mappings] == ["Contractors"] and no_jobs == []
        with pytest.raises(MappingNotFound, match="no mapping of 'Finance'"):
            await unmap_group(session, idp.id, "Finance", actor="test")
        with pytest.raises(MappingNotFound, match="to 'admin'"):
            await unmap_group(session, idp.id, "Acme Editors", "admin", actor="test")
    async with idp.db.session() as session:
        assert [m.group_label for m in await mappings_of(session, idp.id)] == ["Acme Editors"]


async def test_a_rename_that_changes_the_grants_re_evaluates_every_member(idp: Idp) -> None:
    """Entra renames: to a name that grants nothing new, no job; to a value, all members."""
    ann, bob = await idp.user("ann"), await idp.user("bob")
    values = {"object_id": "sales-object-id", "name": "Sales"}
    group = (await idp.call("POST", "Groups", filled("entra", "create_group", **values)))["id"]
    await idp.call(
        "PATCH", f"Groups/{group}", filled("entra", "add_members", first=ann, second=bob)
    )
    await idp.settle()

    await idp.call("PATCH", f"Groups/{group}", filled("entra", "rename_group", name="Sales EMEA"))
    assert await idp.group_jobs() == {}

    await idp.call("PATCH", f"Groups/{group}", filled("entra", "rename_group", name="editor"))
    assert await idp.group_jobs() == {group: {ann, bob}}
    await idp.settle()

    async with idp.db.session() as session:
        await map_group(session, idp.settings, idp.id, "sales-object-id", "editor", actor="t")
    await idp.settle()
    await idp.call("PATCH", f"Groups/{group}", filled("entra", "rename_group", name="Sales"))
    assert await idp.group_jobs() == {}, "the mapping by externalId still grants editor"


async def test_a_group_job_moves_its_members_on_so_a_failed_member_comes_back(
    idp: Idp, settings: Settings
) -> None:
    """The fan-out bumps each member's generation with its job; a failed job is swept back."""
    ann = await idp.user("ann")
    await idp.settle()
    async with idp.db.session() as session:
        identity = await session.get(Identity, ann)
        assert identity is not None
        before = identity.generation
        session.add(
            AppAccount(
                integration_id=idp.id, identity_id=ann, exists=True, reconciled_generation=before
            )
        )
        await session.commit()
    assert ann not in {i for i, _ in await behind(idp.db, limit=100, integration_id=idp.id)}

    group = await idp.group("editor", ann)
    (group_job,) = await jobs_of(idp.db, group_id=group)
    queue = RecordingQueue()
    services = JobServices(
        settings=settings,
        db=idp.db,
        vault=None,  # type: ignore[arg-type]
        evidence=None,  # type: ignore[arg-type]
        browsers=None,  # type: ignore[arg-type]
        ledger=None,  # type: ignore[arg-type]
        queue=queue,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
    )
    assert await JobRunner(services).run(group_job.id, group_job.attempt) == JobStatus.succeeded
    (member_job,) = await jobs_of(idp.db, identity_id=ann)
    assert [j.id for j in queue.jobs] == [member_job.id]
    async with idp.db.session() as session:
        identity = await session.get(Identity, ann)
        assert identity is not None and identity.generation == before + 1

    claimed = await state.claim(idp.db, member_job.id, member_job.attempt, "w", lease_s=30)
    assert claimed.lease is not None
    await state.finish(idp.db, claimed.lease, JobStatus.failed, "the app answered 500")
    assert (ann, idp.id) in await behind(idp.db, limit=100, integration_id=idp.id)


async def jobs_of(
    db: Database, *, identity_id: str | None = None, group_id: str | None = None
) -> list[Job]:
    """Return the pending jobs of an identity or a group."""
    async with db.session() as session:
        query = select(Job).where(col(Job.status).in_(state.PENDING))
        if identity_id is not None:
            query = query.where(Job.identity_id == identity_id)
        if group_id is not None:
            query = query.where(Job.group_id == group_id)
        return list((await session.exec(query)).all())


@dataclass
class BatchQueue(RecordingQueue):
    """A recording queue that also keeps the size of each delivery."""

    batches: list[int] = field(default_factory=list)

    async def enqueue_all(self, jobs: list[Job]) -> None:
        """Keep the jobs and how many came at once."""
        self.batches.append(len(jobs))
        await super().enqueue_all(jobs)


async def test_a_push_of_1000_members_is_one_job_row_fanned_out_in_batches(
    idp: Idp, settings: Settings
) -> None:
    """One SCIM request, one group job row; the worker queues every member, 500 at a time."""
    members = 1000
    async with idp.db.session() as session:
        users = [
            Identity(
                integration_id=idp.id,
                user_name=f"member{n:04d}@example.com",
                user_name_key=f"member{n:04d}@example.com",
                resource={"userName": f"member{n:04d}@example.com", "active": True},
            )
            for n in range(members)
        ]
        session.add_all(users)
        await session.commit()
        ids = sorted(u.id for u in users)
    group = await idp.group("editor", *ids)
    async with idp.db.session() as session:
        rows = (await session.exec(select(Job).where(Job.integration_id == idp.id))).all()
    assert [(j.group_id, len(j.members)) for j in rows] == [(group, members)], "one job row"

    queue = BatchQueue()
    services = JobServices(
        settings=settings,
        db=idp.db,
        vault=None,  # type: ignore[arg-type]
        evidence=None,  # type: ignore[arg-type]
        browsers=None,  # type: ignore[arg-type]
        ledger=None,  # type: ignore[arg-type]
        queue=queue,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
    )
    (group_job,) = rows
    assert await JobRunner(services).run(group_job.id, group_job.attempt) == JobStatus.succeeded
    assert queue.batches[:2] == [GROUP_FANOUT_BATCH, members - GROUP_FANOUT_BATCH]
    async with idp.db.session() as session:
        pending = (
            await session.exec(
                select(Job.identity_id).where(
                    Job.integration_id == idp.id, col(Job.status).in_(state.PENDING)
                )
            )
        ).all()
        generations = set(
            (
                await session.exec(
                    select(Identity.generation).where(Identity.integration_id == idp.id)
                )
            ).all()
        )
    assert sorted(pending) == ids, "every member has its job"
    assert sorted(j.identity_id for j in queue.jobs) == ids
    assert generations == {2}, "every member's generation moved on"
