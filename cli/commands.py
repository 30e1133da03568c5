"""What every `usher` command shares: Settings from options, one-line errors, a session."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from sqlmodel.ext.asyncio.session import AsyncSession

from cli.embedded import DataDirServed, borrowed_redis, claim_redis
from engine.apps.integrations import IntegrationError
from engine.apps.template import AppError
from engine.automation.browser import BrowserError
from engine.jobs.export import ExportError
from engine.jobs.state import JobStateError
from engine.operators.accounts import OperatorError
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.vault import VaultError

T = TypeVar("T")
USER_ERRORS = (
    AppError,
    IntegrationError,
    VaultError,
    BrowserError,
    JobStateError,
    OperatorError,
    ExportError,
)


def settings_for(data_dir: Path | None, **overrides: Any) -> Settings:
    """Build Settings from the environment, with the command's options on top."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def fail(message: str) -> typer.Exit:
    """Print one clear line to stderr and return the exit to raise (code 2)."""
    typer.echo(f"usher: {message}", err=True)
    return typer.Exit(code=2)


def run(coroutine_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine, turning a user error into one line and exit code 2."""
    try:
        return asyncio.run(coroutine_factory())  # type: ignore[arg-type]
    except USER_ERRORS as error:
        raise fail(str(error)) from None


async def in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Open and migrate the database, and run one command's work in a session."""
    return await with_database(settings, lambda db: _in_one_session(db, work))


async def _in_one_session(db: Database, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run work in one session of a database."""
    async with db.session() as session:
        return await work(session)


async def with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Open and migrate the database, and run one command's work on it."""
    db = Database.from_settings(settings)
    try:
        await db.migrate()
        return await work(db)
    finally:
        await db.dispose()


@contextlib.contextmanager
def redis_for_up(settings: Settings) -> Iterator[str]:
    """Yield the Redis `usher up` runs over: the given one, else the data dir's, owned.

    Exit 2 with one line when another live `usher up` already owns the data dir's Redis.
    """
    if settings.redis_url:
        yield settings.redis_url
        return
    settings.ensure_data_dir()
    try:
        owned = claim_redis(settings.data_dir)
    except DataDirServed as error:
        raise fail(str(error)) from None
    try:
        yield owned.url
    finally:
        owned.release()


@contextlib.contextmanager
def redis_beside_up(settings: Settings) -> Iterator[str]:
    """Yield the Redis a one-off command uses: the given one, the running `usher up`'s, or
    a private embedded one that is stopped afterwards. A running `usher up`'s is never stopped.
    """
    if settings.redis_url:
        yield settings.redis_url
        return
    with borrowed_redis(settings.data_dir) as url:
        yield url
