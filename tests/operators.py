"""Operators for the API and page tests: made with the real CLI, signed in over HTTP."""

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from engine.constants import CSRF_FIELD, SESSION_COOKIE
from tests.harness import Usher

PASSWORD_BYTES = 18


@dataclass(frozen=True)
class Account:
    """An operator the tests created with the real CLI, and their password."""

    username: str
    password: str
    role: str


def usher_cli(usher: Usher, *args: str, stdin: str | None = None, queue: bool = False) -> Result:
    """Run the real `usher` command on the session's data dir, in a thread of its own.

    Playwright's sync API keeps an event loop on the main thread; the CLI runs its own.
    `queue`: on the session's Redis too, so the jobs the command queues go to its workers.
    """
    command = [*args, "--data-dir", str(usher.settings.data_dir)]
    env = {"USHER_DATABASE_URL": usher.settings.resolved_database_url}
    if queue:
        env["USHER_REDIS_URL"] = usher.redis_url
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(CliRunner().invoke, app, command, input=stdin, env=env).result()


def create_account(usher: Usher, role: str) -> Account:
    """Create an operator through `usher operators create`, the password on standard input."""
    account = Account(f"{role}-{secrets.token_hex(4)}", secrets.token_urlsafe(PASSWORD_BYTES), role)
    result = usher_cli(
        usher,
        *("operators", "create", "--username", account.username, "--role", role),
        stdin=account.password + "\n",
    )
    assert result.exit_code == 0, result.output
    return account


@pytest.fixture(scope="session")
def admin(usher: Usher) -> Account:
    """Return an admin operator."""
    return create_account(usher, "admin")


@pytest.fixture(scope="session")
def viewer(usher: Usher) -> Account:
    """Return a viewer operator."""
    return create_account(usher, "viewer")


@pytest.fixture
def signed_in_client(usher: Usher) -> Iterator[Any]:
    """Return a factory of httpx clients signed in as an operator, with their CSRF token."""
    clients: list[httpx.Client] = []

    def open_as(account: Account) -> tuple[httpx.Client, str]:
        """Sign in over HTTP like a browser: fetch the form, post it with its token."""
        client = httpx.Client(base_url=usher.api)
        clients.append(client)
        form = client.get("/login")
        token = form.text.split(f'name="{CSRF_FIELD}" value="')[1].split('"')[0]
        answer = client.post(
            "/login",
            data={"username": account.username, "password": account.password, "csrf": token},
        )
        assert answer.status_code == 303, answer.text
        assert SESSION_COOKIE in client.cookies
        page = client.get("/activity")
        return client, page.text.split(f'name="{CSRF_FIELD}" value="')[1].split('"')[0]

    yield open_as
    for client in clients:
        client.close()
