"""What every `usher` command shares: Settings from options, one-line errors, a session."""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.apps.integrations import IntegrationError
from engine.apps.template import AppError
from engine.automation.browser import BrowserError
from engine.settings import Settings
from engine.storage.db import Database
from engine.storage.vault import VaultError

T = TypeVar("T")
USER_ERRORS = (AppError, IntegrationError, VaultError, BrowserError)


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
    db = Database.from_settings(settings)
    try:
        await db.migrate()
        async with db.session() as session:
            return await work(session)
    finally:
        await db.dispose()
