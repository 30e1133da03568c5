"""SQLite transactions: writers queue inside the process, readers never wait for them."""

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from engine.storage.db import Database

WRITERS = 8
HOLD_S = 0.02
"""How long each writer keeps its transaction open between its read and its write."""


def no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
    """Make SQLite refuse at once a write lock another connection holds: no busy handler."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


async def counter_database(tmp_path: Path) -> Database:
    """Return a SQLite database with one table of numbers, whose busy handler never waits."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'writers.db'}")
    event.listen(database.engine.sync_engine, "connect", no_busy_wait)
    async with database.session() as session:
        connection = await session.connection()
        await connection.execute(text("CREATE TABLE numbers (n INTEGER NOT NULL UNIQUE)"))
        await session.commit()
    return database


async def write_next(database: Database) -> None:
    """Read the highest number, hold the transaction a moment, then write the next one."""
    async with database.session() as session:
        connection = await session.connection()
        highest = (await connection.execute(text("SELECT max(n) FROM numbers"))).scalar()
        await asyncio.sleep(HOLD_S)
        await connection.execute(text("INSERT INTO numbers VALUES (:n)"), {"n": (highest or 0) + 1})
        await session.commit()


async def test_concurrent_writers_queue_in_the_process_and_never_meet_sqlites_lock(
    tmp_path: Path,
) -> None:
    """Eight writers at once, with SQLite refusing any wait: each one begins after the one
    before committed, so none is refused and each sees the number the one before wrote."""
    database = await counter_database(tmp_path)
    try:
        await asyncio.gather(*(write_next(database) for _ in range(WRITERS)))
        async with database.reader() as session:
            connection = await session.connection()
            numbers = (await connection.execute(text("SELECT n FROM numbers ORDER BY n"))).all()
    finally:
        await database.dispose()
    assert [n for (n,) in numbers] == list(range(1, WRITERS + 1))


async def test_a_reader_reads_while_a_writer_holds_its_transaction(tmp_path: Path) -> None:
    """A reader neither takes nor waits for the write lock: it answers from the last commit
    while a writer's transaction is still open."""
    database = await counter_database(tmp_path)
    await write_next(database)
    writing, done = asyncio.Event(), asyncio.Event()

    async def hold_a_write() -> None:
        async with database.session() as session:
            connection = await session.connection()
            await connection.execute(text("INSERT INTO numbers VALUES (2)"))
            writing.set()
            await done.wait()
            await session.commit()

    writer = asyncio.create_task(hold_a_write())
    try:
        await writing.wait()
        async with asyncio.timeout(5), database.reader() as session:
            connection = await session.connection()
            seen = (await connection.execute(text("SELECT count(*) FROM numbers"))).scalar()
        assert seen == 1
    finally:
        done.set()
        await writer
        await database.dispose()
