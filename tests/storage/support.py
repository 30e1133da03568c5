"""What the evidence tests share: a database of their own (they tamper with it) and a job
with screenshots, written as the runner's step sink writes them."""

import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.jobs import state
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.evidence import EvidenceStore
from engine.storage.models import Action, Evidence, Job, JobStatus, Step
from tests.databases import DATABASES, POSTGRES_ENV, Backend, migrate, postgres_server
from tests.jobs.support import new_identity, running_job


def png(width: int = 8, height: int = 6) -> bytes:
    """Return a real PNG of one colour, so a browser that opens an export shows it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        """Return one PNG chunk with its length and CRC."""
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x20\x60\xc0" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png()


@pytest.fixture(params=DATABASES)
async def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """Yield a freshly migrated database only this test writes: a SQLite file or a schema."""
    if request.param == "sqlite":
        backend = Backend(f"sqlite+aiosqlite:///{tmp_path / 'usher.db'}")
    else:
        server = postgres_server()
        backend = Backend(
            server.render_as_string(hide_password=False), f"ev_{uuid.uuid4().hex[:12]}"
        )
        admin = Database(backend.url)
        try:
            async with admin.engine.begin() as connection:
                await connection.execute(text(f'CREATE SCHEMA "{backend.schema}"'))
        except Exception as exc:
            pytest.fail(f"PostgreSQL is unreachable ({exc!r}); see {POSTGRES_ENV}", pytrace=False)
    await migrate(backend)
    database = backend.database()
    try:
        yield database
    finally:
        await database.dispose()
        if backend.schema is not None:
            async with admin.engine.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA "{backend.schema}" CASCADE'))
            await admin.dispose()


def settings_in(tmp_path: Path) -> Settings:
    """Return Settings whose data dir (anchor file, key, evidence) is the test's own."""
    settings = Settings(data_dir=tmp_path / "var")
    settings.ensure_data_dir()
    return settings


async def job_with_screenshots(
    database: Database, store: EvidenceStore, *, steps: int = 2, status: str = JobStatus.succeeded
) -> Job:
    """Run a job through the state machine with one screenshot per step, and close it.

    The files are stored before the rows, as the runner's step sink stores them."""
    identity = await new_identity(database)
    claimed = await running_job(database, identity, worker="w-evidence")
    assert claimed.job is not None and claimed.lease is not None
    job = claimed.job
    files = []
    for position in range(1, steps + 1):
        key = f"{job.id}/attempt-1/00-create_user/{position:03d}-screenshot.png"
        files.append((position, await store.put(key, PNG)))
    async with database.session() as session:
        action = Action(job_id=job.id, name="create_user", status="succeeded")
        session.add(action)
        await session.flush()
        for position, stored in files:
            failed = position == steps and status != JobStatus.succeeded
            step = Step(
                action_id=action.id,
                position=position,
                name=f"step {position}",
                kind="click",
                status="failed" if failed else "ok",
                error="the app said no" if failed else None,
            )
            session.add(step)
            await session.flush()
            session.add(
                Evidence(
                    job_id=job.id,
                    step_id=step.id,
                    kind="screenshot",
                    key=stored.key,
                    content_type="image/png",
                    sha256=stored.sha256,
                    size=stored.size,
                )
            )
        await session.commit()
    await state.finish(database, claimed.lease, status, None)
    return job
