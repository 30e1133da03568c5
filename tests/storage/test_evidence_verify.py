"""`usher evidence verify` on SQLite and PostgreSQL: it names what was altered or removed.

Each test tampers with a database of its own, as an attacker with write access would: a
screenshot changed on disk, an event deleted, an event rewritten with every later hash
recomputed (only the anchor kept outside the database disagrees), a row and its file both
gone. Retention pruning, an audited event, leaves a chain that verifies.
"""

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, update
from sqlmodel import col, select
from typer.testing import CliRunner

from cli.main import app
from engine.jobs.maintenance import audit_once
from engine.jobs.runner import JobServices
from engine.storage import anchors, audit
from engine.storage.db import Database
from engine.storage.evidence import DirectoryEvidenceStore, evidence_store
from engine.storage.models import (
    Action,
    AuditEvent,
    Evidence,
    EvidenceBlob,
    Job,
    JobStatus,
    Step,
    utcnow,
)
from engine.storage.vault import Vault
from engine.storage.verify import PRUNED, prune_evidence, verify_deployment
from tests.databases import run_apart
from tests.storage.support import job_with_screenshots, own_database, settings_in

__all__ = ["own_database"]


def append_to(path: Path, data: bytes) -> None:
    """Change a stored file behind Usher's back."""
    with path.open("ab") as handle:
        handle.write(data)


async def events_of(database: Database) -> list[AuditEvent]:
    """Return the chain in order."""
    async with database.session() as session:
        query = select(AuditEvent).where(col(AuditEvent.seq).is_not(None))
        return list((await session.exec(query.order_by(col(AuditEvent.seq)))).all())


async def test_an_untouched_deployment_verifies(own_database: Database, tmp_path: Path) -> None:
    """Two jobs, anchored: every event, anchor and file checks out."""
    settings = settings_in(tmp_path)
    store = evidence_store(settings, own_database)
    await job_with_screenshots(own_database, store)
    await anchors.anchor_head(own_database, settings)
    await job_with_screenshots(own_database, store)
    await anchors.anchor_head(own_database, settings)
    report = await verify_deployment(own_database, settings)
    assert report.ok, report.problems
    assert report.files == 4 and report.anchors == 2
    assert report.events == len(await events_of(own_database)) >= 6


async def test_a_modified_screenshot_is_named(own_database: Database, tmp_path: Path) -> None:
    """One byte changed in a stored screenshot: verify names the file and its job."""
    settings = settings_in(tmp_path)
    store = DirectoryEvidenceStore(settings.evidence_dir)
    job = await job_with_screenshots(own_database, store)
    async with own_database.session() as session:
        shot = (await session.exec(select(Evidence).where(Evidence.job_id == job.id))).first()
    assert shot is not None
    path = Path(store.locate(shot.key))
    append_to(path, b"edited")
    report = await verify_deployment(own_database, settings)
    assert report.problems == [
        f"screenshot {shot.key} (job {job.id}) altered: its SHA-256 is not the one recorded"
    ]
    await store.delete(shot.key)
    report = await verify_deployment(own_database, settings)
    assert report.problems == [
        f"screenshot {shot.key} (job {job.id}) removed from the evidence store"
    ]


async def test_a_deleted_event_is_named(own_database: Database, tmp_path: Path) -> None:
    """An event deleted from the middle of the chain, and events deleted from its end after
    an anchor named them."""
    settings = settings_in(tmp_path)
    store = evidence_store(settings, own_database)
    await job_with_screenshots(own_database, store)
    await job_with_screenshots(own_database, store)
    await anchors.anchor_head(own_database, settings)
    events = await events_of(own_database)
    middle = events[1]
    async with own_database.session() as session:
        await session.exec(delete(AuditEvent).where(AuditEvent.id == middle.id))
        await session.exec(delete(AuditEvent).where(AuditEvent.id == events[-1].id))
        await session.commit()
    report = await verify_deployment(own_database, settings)
    assert (
        f"event {middle.seq} removed: the chain jumps to event {middle.seq + 1}" in report.problems
    )
    tail = [p for p in report.problems if p.startswith(f"events after {events[-2].seq} removed")]
    assert tail and f"names event {events[-1].seq}" in tail[0]
    assert not report.ok


async def test_a_rewritten_event_with_recomputed_hashes_is_caught_by_the_anchor(
    own_database: Database, tmp_path: Path
) -> None:
    """Who rewrites an event and recomputes every later hash in the database leaves a chain
    that links, and the anchor signed outside the database disagrees."""
    settings = settings_in(tmp_path)
    store = evidence_store(settings, own_database)
    job = await job_with_screenshots(own_database, store)
    await anchors.anchor_head(own_database, settings)
    events = await events_of(own_database)
    victim = next(e for e in events if e.job_id == job.id and e.event == "job.succeeded")
    async with own_database.session() as session:
        prev = None
        for item in events[events.index(victim) :]:
            row = await session.get(AuditEvent, item.id)
            assert row is not None
            if row.id == victim.id:
                row.event, row.actor = "job.failed", "somebody else"
            row.prev_sha256 = prev or row.prev_sha256
            row.sha256 = prev = audit.event_hash(row)
            session.add(row)
        await session.commit()
    report = await verify_deployment(own_database, settings)
    assert len(report.problems) == 1, report.problems
    assert f"event {events[-1].seq} (job.failed by somebody else" in report.problems[0]
    assert "disagrees with the anchor signed at" in report.problems[0]
    assert f"rewritten at or before event {events[-1].seq}" in report.problems[0]


async def test_a_rewritten_event_without_recomputed_hashes_is_named(
    own_database: Database, tmp_path: Path
) -> None:
    """An event edited in place no longer hashes to itself."""
    settings = settings_in(tmp_path)
    await job_with_screenshots(own_database, evidence_store(settings, own_database))
    first = (await events_of(own_database))[0]
    async with own_database.session() as session:
        await session.exec(
            update(AuditEvent).where(AuditEvent.id == first.id).values(actor="nobody")
        )
        await session.commit()
    report = await verify_deployment(own_database, settings)
    assert report.problems == [
        f"event {first.seq} ({first.event} by nobody at {first.at.isoformat()}) altered:"
        " it no longer hashes to its recorded SHA-256"
    ]


async def test_an_evidence_row_removed_with_its_file_is_named(
    own_database: Database, tmp_path: Path
) -> None:
    """Row and file both gone: the digest the job's last audited move recorded disagrees."""
    settings = settings_in(tmp_path)
    store = evidence_store(settings, own_database)
    job = await job_with_screenshots(own_database, store)
    async with own_database.session() as session:
        shot = (await session.exec(select(Evidence).where(Evidence.job_id == job.id))).first()
        assert shot is not None
        await session.exec(delete(Evidence).where(Evidence.id == shot.id))
        await session.commit()
    await store.delete(shot.key)
    report = await verify_deployment(own_database, settings)
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"job {job.id}: its evidence rows differ")
    assert "(2 files then, 1 now)" in report.problems[0]


async def test_a_step_rewritten_in_the_database_is_named(
    own_database: Database, tmp_path: Path
) -> None:
    """A failed step made to say ok: the steps digest the job's last move recorded disagrees."""
    settings = settings_in(tmp_path)
    store = evidence_store(settings, own_database)
    job = await job_with_screenshots(own_database, store, status=JobStatus.failed)
    async with own_database.session() as session:
        step = (
            await session.exec(
                select(Step).join(Action).where(Action.job_id == job.id, Step.position == 2)
            )
        ).one()
        step.status, step.error = "ok", None
        session.add(step)
        await session.commit()
    report = await verify_deployment(own_database, settings)
    assert report.problems == [
        f"job {job.id}: its steps differ from what event"
        f" {(await events_of(own_database))[-1].seq} recorded (2 steps then, 2 now): a step"
        " removed, added or rewritten"
    ]


async def test_pruning_is_in_the_chain_and_verifies(own_database: Database, tmp_path: Path) -> None:
    """Evidence of ended jobs pruned: files and rows gone, one audited event, verify accepts."""
    settings = settings_in(tmp_path)
    store = evidence_store(settings, own_database)
    job = await job_with_screenshots(own_database, store)
    pruned = await prune_evidence(own_database, store, keep_days=0)
    assert pruned == 2
    async with own_database.session() as session:
        left = (await session.exec(select(Evidence).where(Evidence.job_id == job.id))).all()
    assert left == []
    event = (await events_of(own_database))[-1]
    assert event.event == PRUNED and event.detail["jobs"] == [job.id]
    assert event.detail["files"] == 2
    await anchors.anchor_head(own_database, settings)
    report = await verify_deployment(own_database, settings)
    assert report.ok, report.problems
    assert await prune_evidence(own_database, store, keep_days=0) == 0


async def test_a_forged_anchor_and_since(own_database: Database, tmp_path: Path) -> None:
    """An anchor line not signed with the key is named; --since checks only what is newer."""
    settings = settings_in(tmp_path)
    store = evidence_store(settings, own_database)
    await job_with_screenshots(own_database, store)
    middle = utcnow()
    await job_with_screenshots(own_database, store)
    genuine = await anchors.anchor_head(own_database, settings)
    assert genuine is not None
    forged = anchors.Anchor(genuine.seq, "f" * 64, genuine.at, genuine.signature)
    anchors.append(settings.anchors_path, forged)
    report = await verify_deployment(own_database, settings)
    assert report.problems == [
        f"the anchor of event {forged.seq} signed at {forged.at} has a bad signature:"
        " altered, or signed with another key"
    ]
    settings.anchors_path.write_text(json.dumps(genuine.as_dict()) + "\n")
    recent = await verify_deployment(own_database, settings, since=middle)
    everything = await verify_deployment(own_database, settings)
    assert recent.ok and everything.ok
    assert recent.files == 2 and everything.files == 4
    assert 0 < recent.events < everything.events
    later = await verify_deployment(own_database, settings, since=utcnow() + timedelta(days=1))
    assert later.ok and later.events == 0


def test_the_command_line_exits_1_naming_the_file(tmp_path: Path) -> None:
    """`usher evidence verify`: exit 0 on an intact deployment, 1 naming an altered file."""
    settings = settings_in(tmp_path)

    async def one_job() -> str:
        """Write one job with screenshots in the data dir's own SQLite database."""
        database = Database.from_settings(settings)
        await database.migrate()
        try:
            return (await job_with_screenshots(database, evidence_store(settings, database))).id
        finally:
            await database.dispose()

    job_id = run_apart(one_job)
    runner = CliRunner()
    data_dir = ["--data-dir", str(settings.data_dir)]
    intact = runner.invoke(app, ["evidence", "verify", *data_dir])
    assert intact.exit_code == 0, intact.output
    assert "ok: nothing altered or removed" in intact.output
    shot = next(settings.evidence_dir.glob(f"{job_id}/**/*.png"))
    append_to(shot, b"not the screenshot")
    altered = runner.invoke(app, ["evidence", "verify", *data_dir])
    assert altered.exit_code == 1
    assert f"ALTERED: screenshot {shot.relative_to(settings.evidence_dir)}" in altered.output


async def test_the_worker_s_timer_prunes_past_retention_and_anchors(
    own_database: Database, tmp_path: Path
) -> None:
    """The maintenance pass prunes the evidence of jobs ended before `evidence_keep_days`,
    keeps the newer, and appends the chain's head to the anchor file."""
    settings = settings_in(tmp_path).model_copy(update={"evidence_keep_days": 7})
    store = evidence_store(settings, own_database)
    old = await job_with_screenshots(own_database, store)
    new = await job_with_screenshots(own_database, store)
    async with own_database.session() as session:
        await session.exec(
            update(Job).where(Job.id == old.id).values(finished_at=utcnow() - timedelta(days=8))
        )
        await session.commit()
    services = JobServices(
        settings=settings,
        db=own_database,
        vault=Vault.from_path(settings.vault_key_path),
        evidence=store,
        browsers=None,  # type: ignore[arg-type]
        ledger=None,  # type: ignore[arg-type]
        queue=None,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
    )
    await audit_once(services)
    async with own_database.session() as session:
        kept = (await session.exec(select(Evidence.job_id))).all()
    assert set(kept) == {new.id}
    written, _ = anchors.read(settings.anchors_path)
    head = (await events_of(own_database))[-1]
    assert head.event == PRUNED and [(a.seq, a.sha256) for a in written] == [
        (head.seq, head.sha256)
    ]
    report = await verify_deployment(own_database, settings)
    assert report.ok and report.anchors == 1, report.problems


async def test_a_screenshot_altered_in_the_database_store_is_named(
    own_database: Database, tmp_path: Path
) -> None:
    """With USHER_EVIDENCE_STORE=database, a blob rewritten in its row is named like a file."""
    settings = settings_in(tmp_path).model_copy(update={"evidence_store": "database"})
    store = evidence_store(settings, own_database)
    job = await job_with_screenshots(own_database, store)
    assert not list(settings.evidence_dir.iterdir())
    async with own_database.session() as session:
        shot = (await session.exec(select(Evidence).where(Evidence.job_id == job.id))).first()
        assert shot is not None
        await session.exec(
            update(EvidenceBlob).where(EvidenceBlob.key == shot.key).values(data=b"edited")
        )
        await session.commit()
    report = await verify_deployment(own_database, settings)
    assert report.problems == [
        f"screenshot {shot.key} (job {job.id}) altered: its SHA-256 is not the one recorded"
    ]
